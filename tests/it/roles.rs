//! Black-box: what each role may and may not call, and the OpenAPI document.

use serde_json::json;

use crate::api::Api;
use crate::journey::register_body;
use crate::server::{Server, token};
use crate::support::TempDir;

#[tokio::test]
async fn each_role_gets_its_rights_and_no_more() {
    let dir = TempDir::new();
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let tokens = [
        ("system", token(&dir.path(), "system", "ehr")),
        ("finance", token(&dir.path(), "finance", "recon")),
        ("auditor", token(&dir.path(), "auditor", "compliance")),
        ("admin", token(&dir.path(), "admin", "ops")),
    ];
    let system = &tokens[0].1;
    api.ok(system, "patient-accounts", "MRN-R1", register_body("Doe"))
        .await;

    // (role, command, state, history, global log): the expected statuses.
    let expected = [
        ("system", 200, 200, 403, 403),
        ("finance", 403, 403, 403, 403),
        ("auditor", 403, 200, 200, 200),
        ("admin", 403, 403, 403, 200),
    ];
    for ((role, token), (role2, command, state, history, events)) in tokens.iter().zip(expected) {
        assert_eq!(*role, role2);
        let replies = [
            (
                "command",
                command,
                api.command(
                    token,
                    "patient-accounts",
                    "MRN-R1",
                    json!({"type": "ActivateAccount"}),
                )
                .await,
            ),
            (
                "state",
                state,
                api.get("/v1/patient-accounts/MRN-R1", Some(token)).await,
            ),
            (
                "history",
                history,
                api.get("/v1/patient-accounts/MRN-R1/history", Some(token))
                    .await,
            ),
            ("events", events, api.get("/v1/events", Some(token)).await),
        ];
        for (what, status, reply) in replies {
            assert_eq!(reply.status, status, "{role} {what}: {}", reply.text);
            if status == 403 {
                assert_eq!(reply.assert_problem(403), "forbidden");
            }
        }
    }

    // Operator endpoints need no token.
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        assert_eq!(api.get(path, None).await.status, 200, "{path}");
    }
    assert!(server.terminate().await.success());
}

#[tokio::test]
async fn openapi_json_documents_every_route_and_metrics_count_commands() {
    let dir = TempDir::new();
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let doc = api.get("/openapi.json", None).await;
    assert_eq!(doc.status, 200);
    for kind in [
        "patient-accounts",
        "encounters",
        "inventory-items",
        "purchases",
    ] {
        let commands = format!("/v1/{kind}/{{id}}/commands");
        assert!(
            doc.body["paths"][&commands]["post"].is_object(),
            "{commands}"
        );
        for path in [
            format!("/v1/{kind}/{{id}}"),
            format!("/v1/{kind}/{{id}}/history"),
        ] {
            assert!(doc.body["paths"][&path]["get"].is_object(), "{path}");
        }
    }
    for path in [
        "/v1/events",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(doc.body["paths"][path]["get"].is_object(), "{path}");
    }
    assert_eq!(
        doc.body["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let ehr = token(&dir.path(), "system", "ehr");
    api.ok(
        &ehr,
        "inventory-items",
        "GAUZE-1",
        json!({
            "type": "DefineItem", "name": "gauze", "unit": "box", "facility": "MAIN",
            "reorder_point": 5, "reorder_quantity": 20, "vendor_id": "V-1", "unit_cost": "2.50"
        }),
    )
    .await;
    let item = api.get("/v1/inventory-items/GAUZE-1", Some(&ehr)).await;
    assert_eq!(item.body["on_hand"], 0);
    assert_eq!(item.body["open_replenishment"], serde_json::Value::Null);
    let metrics = api.get("/metrics", None).await.text;
    assert!(
        metrics.contains(
            "careflow_commands_total{aggregate=\"inventory_item\",command=\"DefineItem\",outcome=\"appended\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("careflow_actors_live"), "{metrics}");
    assert!(
        metrics.contains(
            "careflow_http_requests_total{route=\"/v1/inventory-items/{id}/commands\",status=\"2xx\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        !metrics.contains("GAUZE-1"),
        "a stream id leaked into a label"
    );
    assert!(server.terminate().await.success());
}
