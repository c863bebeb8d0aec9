//! Boundary tests of the money text rule and checked arithmetic.

use super::*;

#[track_caller]
fn check(input: &str, expected: Result<i64, MoneyError>) {
    assert_eq!(Cents::parse(input), expected.map(Cents), "{input:?}");
}

#[test]
fn parses_the_contract_shapes() {
    check("125.50", Ok(12_550));
    check("3", Ok(300));
    check("-4.1", Ok(-410));
    check("0.05", Ok(5));
    check("-0.05", Ok(-5));
    check("0", Ok(0));
    check("007.5", Ok(750));
    check("92233720368547758.07", Ok(i64::MAX));
}

#[test]
fn refuses_everything_else() {
    check("", Err(MoneyError::Empty));
    check("-", Err(MoneyError::Malformed));
    check("1.", Err(MoneyError::Malformed));
    check(".5", Err(MoneyError::Malformed));
    check("+1", Err(MoneyError::Malformed));
    check("1e3", Err(MoneyError::Malformed));
    check(" 1", Err(MoneyError::Malformed));
    check("1,000.00", Err(MoneyError::Malformed));
    check("1.2.3", Err(MoneyError::Malformed));
    check("--1", Err(MoneyError::Malformed));
    check("1.005", Err(MoneyError::TooManyFractionDigits));
    check("1.000", Err(MoneyError::TooManyFractionDigits));
    check("92233720368547758.08", Err(MoneyError::OutOfRange));
    check("99999999999999999999999", Err(MoneyError::OutOfRange));
}

#[test]
fn prints_exactly_two_fraction_digits() {
    for (cents, text) in [
        (12_550, "125.50"),
        (300, "3.00"),
        (-410, "-4.10"),
        (-5, "-0.05"),
        (0, "0.00"),
        (i64::MIN, "-92233720368547758.08"),
    ] {
        assert_eq!(Cents(cents).to_string(), text);
    }
}

#[test]
fn serde_uses_strings_and_refuses_numbers() {
    assert_eq!(serde_json::to_string(&Cents(12_550)).unwrap(), "\"125.50\"");
    let parsed: Cents = serde_json::from_str("\"125.5\"").unwrap();
    assert_eq!(parsed, Cents(12_550));
    for refused in ["125.5", "125", "\"1.234\"", "\"\"", "null", "true"] {
        assert!(
            serde_json::from_str::<Cents>(refused).is_err(),
            "{refused} accepted"
        );
    }
}

#[test]
fn checked_arithmetic_reports_overflow() {
    assert_eq!(Cents(100).checked_add(Cents(50)), Some(Cents(150)));
    assert_eq!(Cents(100).checked_sub(Cents(150)), Some(Cents(-50)));
    assert_eq!(Cents(1_250).checked_mul(3), Some(Cents(3_750)));
    assert_eq!(Cents(i64::MAX).checked_add(Cents(1)), None);
    assert_eq!(Cents(i64::MIN).checked_sub(Cents(1)), None);
    assert_eq!(Cents(i64::MAX / 2).checked_mul(3), None);
}

#[test]
fn currency_is_three_upper_case_letters_defaulting_to_usd() {
    assert_eq!(Currency::default(), Currency::USD);
    assert_eq!(Currency::parse("EUR").unwrap().as_str(), "EUR");
    for refused in ["usd", "US", "USDD", "", "U1D", "ÜSD"] {
        assert_eq!(
            Currency::parse(refused),
            Err(MoneyError::Currency),
            "{refused}"
        );
    }
    assert_eq!(serde_json::to_string(&Currency::USD).unwrap(), "\"USD\"");
    assert!(serde_json::from_str::<Currency>("\"usd\"").is_err());
}

proptest::proptest! {
    #[test]
    fn display_and_parse_round_trip(cents in proptest::prelude::any::<i64>()) {
        // i64::MIN has no positive counterpart, so it is the one value that cannot come back.
        proptest::prop_assume!(cents != i64::MIN);
        let text = Cents(cents).to_string();
        proptest::prop_assert_eq!(Cents::parse(&text), Ok(Cents(cents)));
    }
}
