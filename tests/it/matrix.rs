//! Issue #15 part 3, and part 5's OpenAPI item: the authorization matrix and the document.
//!
//! The route table (`openapi::ROUTES`, each route with its right) is the one source: the
//! server's guard enforces it, `/openapi.json` derives security and 401/403 from it,
//! docs/http-api.md prints the matrix from it. These tests walk every cell of the matrix
//! (every route × each role, no token, an expired token, one signed with another key, and
//! `alg: none`) against a real `careflow serve`, and check the document and the page.
//!
//! `CAREFLOW_WRITE_DOCS=1 cargo test --test it matrix_in_http_api_md` rewrites the matrix in
//! docs/http-api.md from the table.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use careflow::clock::Clock;
use careflow::config::Secret;
use careflow::inbound::http::auth::{
    Access, Answer, Principal, Role, Route, TokenKeys, authorization_matrix,
};
use careflow::inbound::http::openapi::{self, ROUTES};
use serde_json::{Value, json};

use crate::server::{Server, token};
use crate::support::TempDir;

const ROLES: [Role; 4] = [Role::System, Role::Finance, Role::Auditor, Role::Admin];

/// A value for a path parameter that passes every route's own checks (the id rule, a
/// roster's `{facility}.{department}.{date}`, a dead letter's number), so that an allowed
/// caller is answered by the route itself.
fn concrete(path: &str) -> String {
    let value = if path.starts_with("/v1/dead-letters/") {
        "1"
    } else {
        "F1.D1.2026-01-01"
    };
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').unwrap() + open;
        out.push_str(&rest[..open]);
        out.push_str(value);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The tokens that must all fail, carrying `role` (one the route would allow, so a 403
/// cannot pass for the 401 expected).
fn bad_token(dir: &std::path::Path, who: Principal, role: Role) -> Option<String> {
    let ttl = Duration::from_secs(3_600);
    match who {
        Principal::Role(_) => unreachable!("valid tokens come from `careflow token issue`"),
        Principal::NoToken => None,
        Principal::Expired => {
            let secret = std::fs::read_to_string(dir.join("data/jwt_secret")).unwrap();
            let two_hours_ago = Clock::system().now() - chrono::Duration::hours(2);
            let keys = TokenKeys::new(&Secret::new(secret.trim()))
                .with_clock(Clock::manual(two_hours_ago).clock());
            Some(keys.issue("matrix", role, ttl).unwrap())
        }
        Principal::OtherKey => Some(
            TokenKeys::new(&Secret::new("not-this-server's-secret"))
                .issue("matrix", role, ttl)
                .unwrap(),
        ),
        Principal::AlgNone => {
            let now = Clock::system().now().timestamp();
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
            let claims = URL_SAFE_NO_PAD.encode(
                json!({"sub": "matrix", "role": role.as_str(), "iat": now, "exp": now + 3_600})
                    .to_string(),
            );
            Some(format!("{header}.{claims}."))
        }
    }
}

fn documented_statuses(doc: &Value, route: &Route) -> Vec<u16> {
    doc["paths"][route.path][route.method]["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("{} {} is not documented", route.method, route.path))
        .keys()
        .filter_map(|status| status.parse().ok())
        .collect()
}

#[tokio::test]
async fn every_cell_of_the_authorization_matrix_gets_its_documented_answer() {
    let dir = TempDir::new();
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let valid: Vec<(Role, String)> = ROLES
        .iter()
        .map(|role| (*role, token(&dir.path(), role.as_str(), "matrix")))
        .collect();
    let client = reqwest::Client::new();
    let doc: Value = client
        .get(format!("{}/openapi.json", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let mut cells = 0;
    let mut wrong = Vec::new();
    for route in ROUTES {
        let allowed = match route.access {
            Access::Token(right) => *ROLES.iter().find(|role| role.allows(right)).unwrap(),
            Access::Public => Role::Admin,
        };
        let url = format!("{}{}", server.base, concrete(route.path));
        let fhir = route.path.starts_with("/fhir/r4");
        let documented = documented_statuses(&doc, route);
        for who in Principal::ALL {
            let bearer = match who {
                Principal::Role(role) => {
                    Some(valid.iter().find(|(r, _)| *r == role).unwrap().1.clone())
                }
                other => bad_token(&dir.path(), other, allowed),
            };
            let method =
                reqwest::Method::from_bytes(route.method.to_uppercase().as_bytes()).unwrap();
            let mut request = client.request(method.clone(), &url);
            if let Some(bearer) = &bearer {
                request = request.bearer_auth(bearer);
            }
            if method == reqwest::Method::POST || method == reqwest::Method::PUT {
                let media = if fhir {
                    "application/fhir+json"
                } else {
                    "application/json"
                };
                request = request.header("content-type", media).body("{}");
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let media = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            cells += 1;
            let expected = route.answer(who);
            let cell = format!(
                "{} {} as {}: expected {}, got {status} {body}",
                route.method.to_uppercase(),
                route.path,
                who.label(),
                expected.cell()
            );
            let refusal_shape = |code: u16| {
                if fhir {
                    media.starts_with("application/fhir+json")
                        && body["resourceType"] == "OperationOutcome"
                } else {
                    media.starts_with("application/problem+json") && body["status"] == code
                }
            };
            let right = match expected {
                Answer::Unauthorized => status == 401 && refusal_shape(401),
                Answer::Forbidden => status == 403 && refusal_shape(403),
                Answer::Served => {
                    status != 401 && status != 403 && status < 500 && documented.contains(&status)
                }
            };
            if !right {
                wrong.push(cell);
            }
        }
    }
    assert_eq!(cells, ROUTES.len() * Principal::ALL.len());
    assert!(
        wrong.is_empty(),
        "{} of {cells} cells answered otherwise:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(server.terminate().await.success());
}

const MATRIX_START: &str = "<!-- authorization-matrix: start (generated from openapi::ROUTES; see tests/it/matrix.rs) -->\n";
const MATRIX_END: &str = "<!-- authorization-matrix: end -->";

#[test]
fn the_matrix_in_http_api_md_is_the_route_tables() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/http-api.md");
    let page = std::fs::read_to_string(&path).unwrap();
    let start = page
        .find(MATRIX_START)
        .expect("docs/http-api.md has no matrix markers")
        + MATRIX_START.len();
    let end = page[start..].find(MATRIX_END).unwrap() + start;
    let generated = authorization_matrix();
    if std::env::var_os("CAREFLOW_WRITE_DOCS").is_some() {
        let rewritten = format!("{}{generated}{}", &page[..start], &page[end..]);
        std::fs::write(&path, rewritten).unwrap();
        return;
    }
    assert_eq!(
        page[start..end],
        generated,
        "docs/http-api.md's matrix differs from the route table; rewrite it with \
         CAREFLOW_WRITE_DOCS=1 cargo test --test it the_matrix_in_http_api_md"
    );
    // Every route is a row, every principal a column.
    assert_eq!(generated.lines().count(), ROUTES.len() + 2);
    assert!(
        generated
            .lines()
            .all(|l| l.matches('|').count() == Principal::ALL.len() + 2)
    );
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            out.push((method.clone(), path.clone(), operation));
        }
    }
    out
}

/// Issue #15 part 5: 401 was missing on about 19 routes that take a token.
#[test]
fn every_operation_that_takes_a_token_documents_401_and_403() {
    let doc = openapi::document().unwrap();
    let mut secured = 0;
    for (method, path, operation) in operations(&doc) {
        let route =
            Route::find(&method, &path).unwrap_or_else(|| panic!("{method} {path} not in ROUTES"));
        let has_security = operation["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty());
        assert_eq!(
            has_security,
            matches!(route.access, Access::Token(_)),
            "{method} {path}: security vs the route table"
        );
        if has_security {
            secured += 1;
            for status in ["401", "403"] {
                let media = if path.starts_with("/fhir/r4") {
                    "application/fhir+json"
                } else {
                    "application/problem+json"
                };
                assert!(
                    operation["responses"][status]["content"][media].is_object(),
                    "{method} {path} does not document {status} as {media}"
                );
            }
        }
    }
    assert!(secured >= 40, "only {secured} secured operations");
}

/// Issue #15 part 5: the id rule was missing from the path parameters.
#[test]
fn every_id_path_parameter_carries_the_id_rule() {
    let doc = openapi::document().unwrap();
    let pattern = openapi::id_pattern();
    let mut ids = 0;
    for (method, path, operation) in operations(&doc) {
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            if parameter["in"] != "path" {
                continue;
            }
            let schema = &parameter["schema"];
            if path.starts_with("/v1/dead-letters/") {
                assert_eq!(schema["type"], "integer", "{method} {path}");
                continue;
            }
            if path.starts_with("/v1/webhooks/") || path.starts_with("/v1/projections/") {
                continue;
            }
            ids += 1;
            assert_eq!(
                (
                    &schema["pattern"],
                    &schema["minLength"],
                    &schema["maxLength"]
                ),
                (&json!(pattern), &json!(1), &json!(128)),
                "{method} {path} {}",
                parameter["name"]
            );
        }
    }
    assert!(ids >= 25, "only {ids} id parameters");
}

/// Issue #15 part 5: the Idempotency-Key limits, and `days` sent as an array.
#[test]
fn idempotency_key_limits_and_purchase_cycle_days_are_documented_as_enforced() {
    let doc = openapi::document().unwrap();
    let mut keys = 0;
    for (method, path, operation) in operations(&doc) {
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            if parameter["name"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case("idempotency-key")
            {
                keys += 1;
                assert_eq!(
                    parameter["schema"],
                    json!({"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"}),
                    "{method} {path}"
                );
            }
        }
    }
    // Every route that sends commands honours the key (commands and the FHIR writes).
    let writes = ROUTES
        .iter()
        .filter(|r| r.access == Access::Token(careflow::inbound::http::auth::Right::SendCommands))
        .count();
    assert_eq!(
        keys, writes,
        "Idempotency-Key documented on {keys} operations"
    );
    let days = &doc["components"]["schemas"]["PurchaseCycleView"]["properties"]["days"];
    assert_eq!(days["type"], "array", "{days}");
    assert_eq!(days["items"]["type"], "array", "{days}");
    assert_eq!(
        days["items"]["prefixItems"].as_array().unwrap().len(),
        3,
        "{days}"
    );
}
