//! Black-box: workforce against demand through the real binary, process managers on. Demand
//! beyond the roster opens a shortfall (in `/v1/analytics/staffing` and in the log), a shift
//! resolves it, a cancelled shift opens it again; `/v1/analytics/labor` answers exact figures;
//! bad input is refused and appends nothing. Every wait polls with a deadline.

use std::time::Duration;

use careflow_aggregates::RecordedEvent;
use serde_json::{Value, json};

use crate::api::{Api, assert_log_is_sound};
use crate::server::{Server, careflow, token_with_env};
use crate::support::{TempDir, eventually};

const WITHIN: Duration = Duration::from_secs(30);
const ROSTER: &str = "MAIN.ED.2026-12-07";
const STAFFING: &str = "staffing-MAIN.ED.2026-12-07";
/// ED: one nurse per two emergencies an hour, no other role (a listed department replaces the
/// default whole).
const RULES: &str = "[departments.ED]\nnurse = { emergency = 2 }\n";

fn shift(id: &str, staff: &str, role: &str, start: &str, end: &str, cost: &str) -> Value {
    json!({
        "type": "AssignShift", "shift_id": id, "staff_id": staff, "role": role,
        "start": format!("2026-12-07T{start}:00Z"), "end": format!("2026-12-07T{end}:00Z"),
        "hourly_cost": cost
    })
}

fn emergency(at: &str) -> Value {
    json!({
        "type": "ScheduleEncounter", "account_id": "MRN-WF", "facility": "MAIN",
        "department": "ED", "class": "emergency", "scheduled_for": format!("2026-12-07T{at}:00Z")
    })
}

/// The staffing events of the log, as (type, required, rostered).
fn staffing_events(events: &[RecordedEvent]) -> Vec<(String, u64, u64)> {
    events
        .iter()
        .filter(|e| e.stream_id.as_str() == STAFFING)
        .map(|e| {
            assert_eq!(e.data["facility"], "MAIN");
            assert_eq!(e.data["department"], "ED");
            assert_eq!(e.data["hour"], "2026-12-07T09:00:00Z");
            assert_eq!(e.data["role"], "nurse");
            (
                e.event_type.clone(),
                e.data["required"].as_u64().unwrap(),
                e.data["rostered"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Polls the log until its staffing events are `expected`.
async fn wait_for_staffing(api: &Api, auditor: &str, expected: &[(&str, u64, u64)]) {
    let expected: Vec<(String, u64, u64)> = expected
        .iter()
        .map(|(t, r, s)| ((*t).to_owned(), *r, *s))
        .collect();
    eventually(WITHIN, "the staffing events", || {
        let expected = expected.clone();
        async move {
            let got = staffing_events(&api.all_events(auditor).await);
            (got == expected).then_some(())
        }
    })
    .await;
}

/// Polls `/v1/analytics/staffing` until it lists `expected` (required, rostered) shortfalls.
async fn wait_for_open(api: &Api, finance: &str, expected: &[(u64, u64)]) -> Value {
    eventually(WITHIN, "the open shortfalls", || async move {
        let reply = api.get("/v1/analytics/staffing", Some(finance)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let open: Vec<(u64, u64)> = reply.body["shortfalls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["required"].as_u64().unwrap(),
                    s["rostered"].as_u64().unwrap(),
                )
            })
            .collect();
        (open == expected).then_some(reply.body)
    })
    .await
}

#[tokio::test]
async fn demand_beyond_the_roster_opens_a_shortfall_that_shifts_resolve_and_labor_is_exact() {
    let dir = TempDir::new();
    let env = [
        ("CAREFLOW_PROCESS_MANAGERS", "true"),
        ("CAREFLOW_STAFFING", RULES),
    ];
    let mut cmd = careflow(&dir.path());
    for (key, value) in env {
        cmd.env(key, value);
    }
    let server = Server::spawn(cmd);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let hr = token_with_env(&dir.path(), &env, "system", "hr");
    let ehr = token_with_env(&dir.path(), &env, "system", "ehr");
    let finance = token_with_env(&dir.path(), &env, "finance", "billing");
    let auditor = token_with_env(&dir.path(), &env, "auditor", "compliance");

    // Given one nurse 08:00-16:00 at 45.00 and a technician 12:00-12:20 at 30.00.
    api.ok(
        &hr,
        "rosters",
        ROSTER,
        shift("S1", "N-1", "nurse", "08:00", "16:00", "45.00"),
    )
    .await;
    api.ok(
        &hr,
        "rosters",
        ROSTER,
        shift("S4", "T-1", "technician", "12:00", "12:20", "30.00"),
    )
    .await;
    // When three emergencies are booked between 09:00 and 10:00 (two nurses needed, one
    // rostered), one at 13:00 (covered), and one at 14:00 that is then cancelled.
    for (visit, at) in [
        ("WF-1", "09:10"),
        ("WF-2", "09:20"),
        ("WF-3", "09:40"),
        ("WF-4", "13:00"),
        ("WF-5", "14:00"),
    ] {
        api.ok(&ehr, "encounters", visit, emergency(at)).await;
    }
    api.ok(
        &ehr,
        "encounters",
        "WF-5",
        json!({"type": "CancelEncounter", "reason": "no show"}),
    )
    .await;

    // Then one shortfall is open at 09:00 for nurses: 2 required, 1 rostered.
    let open = wait_for_open(&api, &finance, &[(2, 1)]).await;
    let shortfall = &open["shortfalls"][0];
    assert_eq!(shortfall["facility"], "MAIN");
    assert_eq!(shortfall["department"], "ED");
    assert_eq!(shortfall["hour"], "2026-12-07T09:00:00Z");
    assert_eq!(shortfall["role"], "nurse");
    assert_eq!(shortfall["stream_id"], STAFFING);
    wait_for_staffing(&api, &auditor, &[("StaffingShortfallDetected", 2, 1)]).await;

    // When a second nurse works 09:00-11:00, then it is resolved.
    api.ok(
        &hr,
        "rosters",
        ROSTER,
        shift("S2", "N-2", "nurse", "09:00", "11:00", "50.00"),
    )
    .await;
    wait_for_open(&api, &finance, &[]).await;
    // When that shift is cancelled, the gap opens again; a one-hour shift closes it.
    api.ok(
        &hr,
        "rosters",
        ROSTER,
        json!({"type": "CancelShift", "shift_id": "S2", "reason": "sick"}),
    )
    .await;
    wait_for_open(&api, &finance, &[(2, 1)]).await;
    api.ok(
        &hr,
        "rosters",
        ROSTER,
        shift("S3", "N-3", "nurse", "09:00", "10:00", "37.37"),
    )
    .await;
    wait_for_open(&api, &finance, &[]).await;
    // Each transition is in the log exactly once: nothing was appended twice.
    wait_for_staffing(
        &api,
        &auditor,
        &[
            ("StaffingShortfallDetected", 2, 1),
            ("StaffingShortfallResolved", 2, 2),
            ("StaffingShortfallDetected", 2, 1),
            ("StaffingShortfallResolved", 2, 2),
        ],
    )
    .await;

    // Labor: S1 8 h × 45.00 = 360.00, S3 1 h × 37.37, S4 20 min × 30.00 = 10.00 (S2
    // cancelled): 560 minutes (9.33 h), 407.37; four encounters (WF-5 cancelled), so
    // 101.8425 → 101.84 per encounter.
    let labor = eventually(WITHIN, "the labor figures", || {
        let (api, finance) = (&api, &finance);
        async move {
            let reply = api
                .get(
                    "/v1/analytics/labor?facility=MAIN&from=2026-12-07&to=2026-12-07",
                    Some(finance),
                )
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            let day = reply.body["days"][0].clone();
            (day["rostered_minutes"] == 560 && day["encounters"] == 4).then_some(reply.body)
        }
    })
    .await;
    assert_eq!(labor["days"].as_array().unwrap().len(), 1, "{labor}");
    assert_eq!(
        labor["days"][0],
        json!({
            "date": "2026-12-07", "facility": "MAIN", "department": "ED",
            "rostered_minutes": 560, "rostered_hours": "9.33", "labor_cost": "407.37",
            "encounters": 4, "cost_per_encounter": "101.84"
        })
    );
    // Demand per hour: three emergencies at 09:00.
    let demand = api
        .get(
            "/v1/analytics/demand?facility=MAIN&department=ED&date=2026-12-07",
            Some(&finance),
        )
        .await;
    assert_eq!(demand.status, 200, "{}", demand.text);
    assert_eq!(demand.body["hours"][0]["hour"], "2026-12-07T09:00:00Z");
    assert_eq!(
        demand.body["hours"][0]["scheduled"],
        json!({"emergency": 3})
    );
    assert_eq!(
        demand.body["hours"].as_array().unwrap().len(),
        2,
        "{}",
        demand.text
    );

    // Bad input: a clear error, and nothing appended.
    let before = api.all_events(&auditor).await;
    let reply = api
        .command(
            &hr,
            "rosters",
            ROSTER,
            shift("S9", "N-9", "nurse", "15:00", "07:00", "45.00"),
        )
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(reply.body["code"], "shift_ends_before_start");
    let reply = api
        .command(
            &hr,
            "rosters",
            "MAIN.ED",
            shift("S9", "N-9", "nurse", "07:00", "15:00", "45.00"),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.body["code"], "invalid_id");
    let reply = api
        .get("/v1/analytics/labor?facility=MA.IN", Some(&finance))
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    let reply = api
        .get(
            "/v1/analytics/labor?from=2026-12-08&to=2026-12-07",
            Some(&finance),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    let reply = api.get("/v1/analytics/staffing", Some(&ehr)).await;
    assert_eq!(reply.status, 403, "{}", reply.text);
    let after = api.all_events(&auditor).await;
    assert_eq!(after.len(), before.len(), "bad input appended events");
    assert_log_is_sound(&after);
}
