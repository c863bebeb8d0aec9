//! An error and its causes on one line, for the places that must keep the text rather than the
//! error: the side stores' `Unavailable(String)` (several must stay `Clone`), a consumer's
//! `Exit::Failed` (shown on the status pages and in `/readyz`), a 5xx's logged cause.
//!
//! It sits at the crate's top because its users live in every layer (`store::side`,
//! `runtime::consumers`, `inbound::http`, `app`).

use crate::store::postgres::describe_pg_error;

/// `error: cause: cause of the cause`. A PostgreSQL cause is spelled with its SQLSTATE (and
/// ends the line: its own sources add nothing a reader can act on).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        if let Some(pg) = error.downcast_ref::<tokio_postgres::Error>() {
            text.push_str(&describe_pg_error(pg));
            break;
        }
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("opening views.db")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_is_on_the_line() {
        let error = Outer(std::io::Error::other("disk full"));
        assert_eq!(error_chain(&error), "opening views.db: disk full");
    }
}
