//! The fake Odoo against ../shared/odoo/API-NOTES.md, through raw JSON-RPC over reqwest: each
//! request/response pair of §6 compared as JSON values (the `debug` traceback aside), the
//! transport 400s, the login cooldown, the purchase → partial receipt → backorder → bill flow,
//! the patient invoice → payment flow, stock consumption, and the switches.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Down, FakeOdoo};
use crate::support::eventually;

const KEY: &str = "K";

/// A raw JSON-RPC client of the fake.
struct Rpc {
    http: reqwest::Client,
    endpoint: String,
}

impl Rpc {
    fn new(fake: &FakeOdoo) -> Rpc {
        Rpc {
            http: reqwest::Client::new(),
            endpoint: fake.endpoint(),
        }
    }

    /// POSTs a JSON body; the HTTP status must be 200.
    async fn post(&self, body: &Value) -> Value {
        let response = self
            .http
            .post(&self.endpoint)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        response.json().await.unwrap()
    }

    /// The whole envelope of an `execute_kw` with the right key.
    async fn execute(
        &self,
        model: &str,
        method: &str,
        args: Value,
        kwargs: Option<Value>,
    ) -> Value {
        let mut call = vec![
            json!("careflow"),
            json!(2),
            json!(KEY),
            json!(model),
            json!(method),
            args,
        ];
        if let Some(kwargs) = kwargs {
            call.push(kwargs);
        }
        self.post(&json!({"jsonrpc":"2.0","method":"call","id":1,
            "params":{"service":"object","method":"execute_kw","args":call}}))
            .await
    }

    /// The result of a call that must succeed.
    async fn ok(&self, model: &str, method: &str, args: Value, kwargs: Option<Value>) -> Value {
        let envelope = self.execute(model, method, args, kwargs).await;
        assert!(
            envelope.get("error").is_none(),
            "{model}.{method} failed: {envelope}"
        );
        envelope.get("result").cloned().unwrap_or(Value::Null)
    }

    /// `error.data` of a call that must fail.
    async fn fails(&self, model: &str, method: &str, args: Value, kwargs: Option<Value>) -> Value {
        let envelope = self.execute(model, method, args, kwargs).await;
        assert!(
            envelope.get("result").is_none(),
            "{model}.{method} succeeded: {envelope}"
        );
        assert_eq!(envelope["error"]["code"], 200);
        assert_eq!(envelope["error"]["message"], "Odoo Server Error");
        envelope["error"]["data"].clone()
    }

    async fn create(&self, model: &str, vals: Value) -> i64 {
        self.ok(model, "create", json!([vals]), None)
            .await
            .as_i64()
            .unwrap()
    }

    async fn read(&self, model: &str, id: i64, fields: Value) -> Value {
        self.ok(
            model,
            "read",
            json!([[id]]),
            Some(json!({"fields": fields})),
        )
        .await[0]
            .clone()
    }
}

/// Compares an envelope with the expected one; `error.data.debug` must be a traceback and is
/// otherwise free (API-NOTES §6 abbreviates it).
#[track_caller]
fn check(actual: Value, mut expected: Value) {
    if let Some(debug) = actual.pointer("/error/data/debug") {
        assert!(
            debug
                .as_str()
                .unwrap()
                .starts_with("Traceback (most recent call last):")
        );
        expected["error"]["data"]["debug"] = debug.clone();
    }
    assert_eq!(actual, expected);
}

fn request(id: i64, service: &str, method: &str, args: Value) -> Value {
    json!({"jsonrpc":"2.0","method":"call","params":{"service":service,"method":method,"args":args},"id":id})
}

fn kw(id: i64, model: &str, method: &str, args: Value) -> Value {
    request(
        id,
        "object",
        "execute_kw",
        json!(["careflow", 2, KEY, model, method, args]),
    )
}

fn kw_ctx(id: i64, model: &str, method: &str, args: Value, kwargs: Value) -> Value {
    request(
        id,
        "object",
        "execute_kw",
        json!(["careflow", 2, KEY, model, method, args, kwargs]),
    )
}

fn error(id: i64, name: &str, message: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"error":{"code":200,"message":"Odoo Server Error","data":{
        "name":name,"debug":"","message":message,"arguments":[message],"context":{}}}})
}

#[tokio::test]
async fn fake_odoo_version_and_login_pairs() {
    let fake = FakeOdoo::start(KEY);
    let rpc = Rpc::new(&fake);
    check(
        rpc.post(&request(1, "common", "version", json!([]))).await,
        json!({"jsonrpc":"2.0","id":1,"result":{"server_version":"17.0","server_version_info":[17,0,0,"final",0,""],"server_serie":"17.0","protocol_version":1}}),
    );
    check(
        rpc.post(&request(
            2,
            "common",
            "login",
            json!(["careflow", "integration@careflow.test", "K"]),
        ))
        .await,
        json!({"jsonrpc":"2.0","id":2,"result":2}),
    );
    check(
        rpc.post(&request(
            2,
            "common",
            "login",
            json!(["careflow", "integration@careflow.test", "bad"]),
        ))
        .await,
        json!({"jsonrpc":"2.0","id":2,"result":false}),
    );
    check(
        rpc.post(&request(
            2,
            "common",
            "authenticate",
            json!(["careflow", "integration@careflow.test", "K", {}]),
        ))
        .await,
        json!({"jsonrpc":"2.0","id":2,"result":2}),
    );
    check(
        rpc.post(&request(
            3,
            "object",
            "execute_kw",
            json!(["careflow", 2, "wrong", "res.partner", "search", [[]]]),
        ))
        .await,
        error(3, "odoo.exceptions.AccessDenied", "Access Denied"),
    );
    // The id is echoed whatever it is, and absent means null.
    let envelope = rpc
        .post(&json!({"jsonrpc":"2.0","method":"call","params":{"service":"common","method":"version","args":[]},"id":"abc"}))
        .await;
    assert_eq!(envelope["id"], "abc");
    let envelope = rpc
        .post(&json!({"jsonrpc":"2.0","params":{"service":"common","method":"version","args":[]}}))
        .await;
    assert_eq!(envelope["id"], Value::Null);
    // Unknown service and unknown methods.
    check(
        rpc.post(&request(4, "foo", "bar", json!([]))).await,
        json!({"jsonrpc":"2.0","id":4,"error":{"code":200,"message":"Odoo Server Error","data":{
            "name":"builtins.KeyError","debug":"","message":"'foo'","arguments":["foo"],"context":{}}}}),
    );
    check(
        rpc.post(&request(5, "common", "frobnicate", json!([])))
            .await,
        error(5, "builtins.Exception", "Method not found: frobnicate"),
    );
    check(
        rpc.post(&request(6, "object", "call", json!(["careflow", 2, KEY])))
            .await,
        error(6, "builtins.NameError", "Method not available call"),
    );
}

#[tokio::test]
async fn fake_odoo_xmlid_partner_and_read_pairs() {
    let fake = FakeOdoo::start(KEY);
    let rpc = Rpc::new(&fake);
    fake.set_next_id("res.partner", 42);
    fake.set_next_id("ir.model.data", 901);
    let lookup = kw_ctx(
        4,
        "ir.model.data",
        "search_read",
        json!([[
            ["module", "=", "careflow"],
            ["name", "=", "partner_CUST-42"]
        ]]),
        json!({"fields":["model","res_id"],"limit":1}),
    );
    check(
        rpc.post(&lookup).await,
        json!({"jsonrpc":"2.0","id":4,"result":[]}),
    );
    check(
        rpc.post(&kw(
            5,
            "res.partner",
            "create",
            json!([{"name":"Jane Doe","ref":"CUST-42","is_company":false,"customer_rank":1}]),
        ))
        .await,
        json!({"jsonrpc":"2.0","id":5,"result":42}),
    );
    let xmlid = json!([{"module":"careflow","name":"partner_CUST-42","model":"res.partner","res_id":42,"noupdate":true}]);
    check(
        rpc.post(&kw(6, "ir.model.data", "create", xmlid.clone()))
            .await,
        json!({"jsonrpc":"2.0","id":6,"result":901}),
    );
    check(
        rpc.post(&lookup).await,
        json!({"jsonrpc":"2.0","id":4,"result":[{"id":901,"model":"res.partner","res_id":42}]}),
    );
    let duplicate = "The operation cannot be completed: duplicate key value violates unique constraint \"ir_model_data_module_name_uniq_index\"\nDETAIL:  Key (module, name)=(careflow, partner_CUST-42) already exists.\n";
    check(
        rpc.post(&kw(7, "ir.model.data", "create", xmlid)).await,
        error(7, "odoo.exceptions.ValidationError", duplicate),
    );
    assert_eq!(
        fake.xmlids(),
        vec![(
            "careflow".to_owned(),
            "partner_CUST-42".to_owned(),
            "res.partner".to_owned(),
            42
        )]
    );
    rpc.ok(
        "res.partner",
        "write",
        json!([[42], {"country_id": 21}]),
        None,
    )
    .await;
    check(
        rpc.post(&kw_ctx(
            8,
            "res.partner",
            "read",
            json!([[42]]),
            json!({"fields":["name","country_id","email"]}),
        ))
        .await,
        json!({"jsonrpc":"2.0","id":8,"result":[{"id":42,"name":"Jane Doe","country_id":[21,"Belgium"],"email":false}]}),
    );
    check(
        rpc.post(&kw(
            9,
            "ir.model.data",
            "check_object_reference",
            json!(["careflow", "partner_CUST-42"]),
        ))
        .await,
        json!({"jsonrpc":"2.0","id":9,"result":["res.partner",42]}),
    );
    check(
        rpc.post(&kw(
            9,
            "ir.model.data",
            "check_object_reference",
            json!(["careflow", "partner_NOPE"]),
        ))
        .await,
        error(
            9,
            "builtins.ValueError",
            "External ID not found in the system: careflow.partner_NOPE",
        ),
    );
    check(
        rpc.post(&kw(
            15,
            "ir.model.data",
            "_xmlid_lookup",
            json!(["careflow.partner_CUST-42"]),
        ))
        .await,
        error(
            15,
            "odoo.exceptions.AccessError",
            "Private methods (such as _xmlid_lookup) cannot be called remotely.",
        ),
    );
    // Unlinking a record drops its xmlid; the lookup then misses again.
    rpc.ok("res.partner", "unlink", json!([[42]]), None).await;
    check(
        rpc.post(&lookup).await,
        json!({"jsonrpc":"2.0","id":4,"result":[]}),
    );
    assert!(fake.xmlids().is_empty());

    // A list create answers a list, in a fresh database so the ids are the example's.
    let other = FakeOdoo::start(KEY);
    other.set_next_id("res.partner", 42);
    check(
        Rpc::new(&other)
            .post(&kw(
                5,
                "res.partner",
                "create",
                json!([[{"name":"Jane Doe","ref":"CUST-42"},{"name":"John Roe","ref":"CUST-43"}]]),
            ))
            .await,
        json!({"jsonrpc":"2.0","id":5,"result":[42,43]}),
    );
    assert_eq!(other.records("res.partner").len(), 2);
    let last = other.calls().pop().unwrap();
    assert_eq!(
        (last.model.as_deref(), last.model_method.as_deref(), last.ok),
        (Some("res.partner"), Some("create"), true)
    );
    assert_eq!(
        last.args,
        json!([[{"name":"Jane Doe","ref":"CUST-42"},{"name":"John Roe","ref":"CUST-43"}]])
    );
    assert_eq!(last.kwargs, Value::Null);
    assert!(
        other.all_records("res.partner").len() > 2,
        "the company partner is seeded"
    );
}

/// A third party's payment and a credit note settle a customer's invoice through the invoice's
/// "outstanding credits" reconciliation (`js_assign_outstanding_line`, 17.0): the receivable
/// lines careflow finds by `account_type`, partial amounts, no `result` key, and the refusals.
#[tokio::test]
async fn fake_odoo_outstanding_lines_settle_an_invoice_of_another_partner() {
    let fake = FakeOdoo::start(KEY);
    let rpc = Rpc::new(&fake);
    let patient = rpc
        .create("res.partner", json!({"name":"MRN-1","ref":"MRN-1"}))
        .await;
    let payer = rpc
        .create(
            "res.partner",
            json!({"name":"ACME","ref":"ACME","is_company":true}),
        )
        .await;
    let invoice = rpc
        .create("account.move", json!({"move_type":"out_invoice","partner_id":patient,"invoice_date":"2026-03-01","invoice_line_ids":[[0,0,{"name":"Visit","quantity":1,"price_unit":150.0,"tax_ids":[]}]]}))
        .await;
    rpc.ok("account.move", "action_post", json!([[invoice]]), None)
        .await;
    let receivable =
        json!({"fields": ["balance", "amount_residual", "reconciled", "account_type"]});
    let lines = rpc
        .ok(
            "account.move.line",
            "search_read",
            json!([[
                ["move_id", "=", invoice],
                ["account_type", "=", "asset_receivable"]
            ]]),
            Some(receivable.clone()),
        )
        .await;
    assert_eq!(lines.as_array().unwrap().len(), 1, "{lines}");
    assert_eq!(lines[0]["balance"], 150.0);
    assert_eq!(lines[0]["amount_residual"], 150.0);
    // The receivable line is a journal item of the invoice, not one of its invoice lines.
    let row = rpc
        .read(
            "account.move",
            invoice,
            json!(["invoice_line_ids", "line_ids"]),
        )
        .await;
    assert_eq!(row["invoice_line_ids"].as_array().unwrap().len(), 1);
    assert_eq!(row["line_ids"].as_array().unwrap().len(), 2);

    // The payer's payment: created with its journal entry, posted with it.
    let payment = rpc
        .create("account.payment", json!({"payment_type":"inbound","partner_type":"customer","partner_id":payer,"amount":108.0,"date":"2026-03-09","ref":"INS-1 claim V1-ACME"}))
        .await;
    assert_eq!(
        rpc.ok("account.payment", "action_post", json!([[payment]]), None)
            .await,
        Value::Null
    );
    let row = rpc
        .read("account.payment", payment, json!(["state", "move_id"]))
        .await;
    assert_eq!(row["state"], "posted");
    let entry = row["move_id"][0].as_i64().unwrap();
    assert_eq!(row["move_id"][1], "PBNK1/2026/00001");
    let line = rpc
        .ok(
            "account.move.line",
            "search_read",
            json!([[
                ["move_id", "=", entry],
                ["account_type", "=", "asset_receivable"]
            ]]),
            Some(receivable.clone()),
        )
        .await[0]
        .clone();
    assert_eq!(
        (
            &line["balance"],
            &line["amount_residual"],
            &line["reconciled"]
        ),
        (&json!(-108.0), &json!(-108.0), &json!(false))
    );
    let line = line["id"].as_i64().unwrap();
    // Reconciled with the patient's invoice: answers None, so no `result` key.
    let envelope = rpc
        .execute(
            "account.move",
            "js_assign_outstanding_line",
            json!([[invoice], line]),
            None,
        )
        .await;
    assert_eq!(envelope, json!({"jsonrpc":"2.0","id":1}));
    assert_eq!(
        rpc.read(
            "account.move",
            invoice,
            json!(["amount_residual", "payment_state"])
        )
        .await,
        json!({"id": invoice, "amount_residual": 42.0, "payment_state": "partial"})
    );
    let settled = fake.record("account.payment", payment).unwrap();
    assert_eq!(settled["is_reconciled"], true);
    assert_eq!(settled["reconciled_invoice_ids"], json!([invoice]));

    // A credit note larger than what is left settles the rest and keeps its own remainder.
    let refund = rpc
        .create("account.move", json!({"move_type":"out_refund","partner_id":patient,"invoice_date":"2026-03-09","ref":"INS-1-0","invoice_line_ids":[[0,0,{"name":"contractual adjustment","quantity":1,"price_unit":50.0,"tax_ids":[]}]]}))
        .await;
    let data = rpc
        .fails(
            "account.move",
            "js_assign_outstanding_line",
            json!([[invoice], refund_line(&rpc, refund).await]),
            None,
        )
        .await;
    assert_eq!(data["name"], "odoo.exceptions.UserError");
    assert_eq!(data["message"], "You can only reconcile posted entries.");
    rpc.ok("account.move", "action_post", json!([[refund]]), None)
        .await;
    let row = rpc
        .read("account.move", refund, json!(["name", "amount_total"]))
        .await;
    assert_eq!(row["name"], "RINV/2026/00001");
    rpc.ok(
        "account.move",
        "js_assign_outstanding_line",
        json!([[invoice], refund_line(&rpc, refund).await]),
        None,
    )
    .await;
    assert_eq!(
        rpc.read(
            "account.move",
            invoice,
            json!(["amount_residual", "payment_state"])
        )
        .await,
        json!({"id": invoice, "amount_residual": 0.0, "payment_state": "paid"})
    );
    assert_eq!(
        rpc.read(
            "account.move",
            refund,
            json!(["amount_residual", "payment_state"])
        )
        .await,
        json!({"id": refund, "amount_residual": 8.0, "payment_state": "partial"})
    );

    // A singleton only, and an existing line.
    let data = rpc
        .fails(
            "account.move",
            "js_assign_outstanding_line",
            json!([[invoice, refund], line]),
            None,
        )
        .await;
    assert_eq!(data["name"], "builtins.ValueError");
    assert_eq!(
        data["message"],
        format!("Expected singleton: account.move({invoice}, {refund})")
    );
    let data = rpc
        .fails(
            "account.move",
            "js_assign_outstanding_line",
            json!([[invoice], 999_999]),
            None,
        )
        .await;
    assert_eq!(data["name"], "odoo.exceptions.MissingError");
}

/// The receivable line of a credit note (posted or not: the fake adds it when posting, so a
/// draft's is its first line, which the reconciliation refuses as unposted).
async fn refund_line(rpc: &Rpc, refund: i64) -> i64 {
    let rows = rpc
        .ok(
            "account.move.line",
            "search_read",
            json!([[["move_id", "=", refund]]]),
            Some(json!({"fields": ["account_type"], "order": "id desc"})),
        )
        .await;
    rows[0]["id"].as_i64().unwrap()
}

#[tokio::test]
async fn fake_odoo_invoice_payment_pairs() {
    let fake = FakeOdoo::start(KEY);
    let rpc = Rpc::new(&fake);
    fake.set_next_id("res.partner", 42);
    fake.set_next_id("product.product", 12);
    fake.set_next_id("account.move", 310);
    fake.set_next_id("account.payment.register", 5);
    fake.set_next_id("account.payment", 77);
    rpc.create("res.partner", json!({"name":"Jane Doe","ref":"CUST-42"}))
        .await;
    rpc.create("product.product", json!({"name":"Consultation","default_code":"CONS","detailed_type":"service","list_price":120.0}))
        .await;
    check(
        rpc.post(&kw(9, "account.move", "create", json!([{"move_type":"out_invoice","partner_id":42,"invoice_date":"2024-05-01","invoice_line_ids":[[0,0,{"product_id":12,"quantity":1,"price_unit":120.0}]]}])))
            .await,
        json!({"jsonrpc":"2.0","id":9,"result":310}),
    );
    check(
        rpc.post(&kw(10, "account.move", "action_post", json!([[310]])))
            .await,
        json!({"jsonrpc":"2.0","id":10,"result":false}),
    );
    // No tax_ids given: the product's default 15% sale tax applies (API-NOTES §8).
    let invoice = rpc
        .read(
            "account.move",
            310,
            json!([
                "name",
                "state",
                "amount_total",
                "amount_residual",
                "payment_state"
            ]),
        )
        .await;
    assert_eq!(
        invoice,
        json!({"id":310,"name":"INV/2024/00001","state":"posted","amount_total":138.0,"amount_residual":138.0,"payment_state":"not_paid"})
    );
    check(
        rpc.post(&kw_ctx(
            11,
            "account.payment.register",
            "create",
            json!([{"amount":120.0,"payment_date":"2024-05-02"}]),
            json!({"context":{"active_model":"account.move","active_ids":[310]}}),
        ))
        .await,
        json!({"jsonrpc":"2.0","id":11,"result":5}),
    );
    check(
        rpc.post(&kw(
            12,
            "account.payment.register",
            "action_create_payments",
            json!([[5]]),
        ))
        .await,
        json!({"jsonrpc":"2.0","id":12,"result":{"name":"Payments","type":"ir.actions.act_window","res_model":"account.payment","context":{"create":false},"view_mode":"form","res_id":77}}),
    );
    let invoice = rpc
        .read(
            "account.move",
            310,
            json!(["amount_residual", "payment_state"]),
        )
        .await;
    assert_eq!(
        invoice,
        json!({"id":310,"amount_residual":18.0,"payment_state":"partial"})
    );
    let payment = fake.record("account.payment", 77).unwrap();
    assert_eq!(payment["amount"], 120.0);
    assert_eq!(payment["partner_id"], 42);
    assert_eq!(payment["state"], "posted");
    assert_eq!(payment["name"], "PBNK1/2024/00001");
    assert_eq!(payment["reconciled_invoice_ids"], json!([310]));
    // Posting twice is a UserError; the rest of the wizard's refusals.
    let data = rpc
        .fails("account.move", "action_post", json!([[310]]), None)
        .await;
    assert_eq!(data["name"], "odoo.exceptions.UserError");
    assert_eq!(
        data["message"],
        "The entry INV/2024/00001 (id 310) must be in draft."
    );
    let data = rpc
        .fails(
            "account.move",
            "write",
            json!([[310], {"invoice_date": "2024-06-01", "ref": "ENC-7"}]),
            None,
        )
        .await;
    assert_eq!(
        data["message"],
        "You cannot modify the following readonly fields on a posted move: invoice_date"
    );
    rpc.ok(
        "account.move",
        "write",
        json!([[310], {"ref": "ENC-7"}]),
        None,
    )
    .await;
    let data = rpc
        .fails(
            "account.payment.register",
            "create",
            json!([{"amount":1.0}]),
            Some(json!({"context":{"active_model":"res.partner","active_ids":[42]}})),
        )
        .await;
    assert_eq!(
        data["message"],
        "The register payment wizard should only be called on account.move or account.move.line records."
    );
    let draft = rpc
        .create("account.move", json!({"move_type":"out_invoice","partner_id":42,"invoice_line_ids":[[0,0,{"name":"Dressing","quantity":2,"price_unit":10.0,"tax_ids":[]}]]}))
        .await;
    let data = rpc
        .fails(
            "account.payment.register",
            "create",
            json!([{}]),
            Some(json!({"context":{"active_model":"account.move","active_ids":[draft]}})),
        )
        .await;
    assert_eq!(
        data["message"],
        "You can only register payment for posted journal entries."
    );
    rpc.ok("account.move", "action_post", json!([[draft]]), None)
        .await;
    let posted = rpc
        .read(
            "account.move",
            draft,
            json!(["amount_total", "invoice_date"]),
        )
        .await;
    assert_eq!(posted["amount_total"], 20.0, "tax_ids: [] means no tax");
    assert!(
        posted["invoice_date"].is_string(),
        "a customer invoice without a date gets today"
    );
    let wizard = rpc
        .ok(
            "account.payment.register",
            "create",
            json!([{"amount":38.0,"group_payment":true}]),
            Some(json!({"context":{"active_model":"account.move","active_ids":[310, draft]}})),
        )
        .await;
    rpc.ok(
        "account.payment.register",
        "action_create_payments",
        json!([[wizard]]),
        None,
    )
    .await;
    for id in [310, draft] {
        let rec = fake.record("account.move", id).unwrap();
        assert_eq!(rec["payment_state"], "paid", "{id}");
        assert_eq!(rec["amount_residual"], 0.0, "{id}");
    }
    let data = rpc
        .fails(
            "account.payment.register",
            "create",
            json!([{}]),
            Some(json!({"context":{"active_model":"account.move","active_ids":[310]}})),
        )
        .await;
    assert_eq!(
        data["message"],
        "You can't register a payment because there is nothing left to pay on the selected journal items."
    );
    assert_eq!(fake.records("account.payment").len(), 2);
    // Posting counts as a customer for the partner.
    assert_eq!(fake.record("res.partner", 42).unwrap()["customer_rank"], 2);
}

#[tokio::test]
async fn fake_odoo_without_group_payment_pays_each_invoice_in_full() {
    let fake = FakeOdoo::start(KEY);
    let rpc = Rpc::new(&fake);
    let partner = rpc.create("res.partner", json!({"name":"Jane Doe"})).await;
    let mut invoices = Vec::new();
    for price in [100.0, 50.0] {
        let id = rpc
            .create("account.move", json!({"move_type":"out_invoice","partner_id":partner,"invoice_date":"2026-01-05","invoice_line_ids":[[0,0,{"name":"Visit","price_unit":price,"tax_ids":[]}]]}))
            .await;
        rpc.ok("account.move", "action_post", json!([[id]]), None)
            .await;
        invoices.push(id);
    }
    // Two invoices, no group_payment: the wizard's amount is ignored (one payment each).
    let wizard = rpc
        .ok(
            "account.payment.register",
            "create",
            json!([{"amount":30.0}]),
            Some(json!({"context":{"active_model":"account.move","active_ids":invoices}})),
        )
        .await;
    let action = rpc
        .ok(
            "account.payment.register",
            "action_create_payments",
            json!([[wizard]]),
            None,
        )
        .await;
    assert_eq!(action["view_mode"], "tree,form");
    let amounts: Vec<Value> = fake
        .records("account.payment")
        .into_iter()
        .map(|p| p["amount"].clone())
        .collect();
    assert_eq!(amounts, vec![json!(100.0), json!(50.0)]);
    let names: Vec<Value> = invoices
        .iter()
        .map(|&id| fake.record("account.move", id).unwrap()["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![json!("INV/2026/00001"), json!("INV/2026/00002")]
    );
}

#[tokio::test]
async fn fake_odoo_backorder_and_none_pairs() {
    let fake = FakeOdoo::start(KEY);
    let rpc = Rpc::new(&fake);
    fake.set_next_id("stock.picking", 15);
    let vendor = rpc
        .create(
            "res.partner",
            json!({"name":"Acme Supplies","supplier_rank":1}),
        )
        .await;
    let product = rpc
        .create(
            "product.product",
            json!({"name":"Gauze","default_code":"GZ-1","detailed_type":"product"}),
        )
        .await;
    let order = rpc
        .create("purchase.order", json!({"partner_id":vendor,"partner_ref":"PR-9","order_line":[[0,0,{"product_id":product,"product_qty":10,"price_unit":4.5,"date_planned":"2024-05-10 00:00:00"}]]}))
        .await;
    assert_eq!(
        rpc.ok("purchase.order", "button_confirm", json!([[order]]), None)
            .await,
        true
    );
    let picking = rpc
        .read("purchase.order", order, json!(["picking_ids"]))
        .await["picking_ids"]
        .clone();
    assert_eq!(picking, json!([15]));
    let moves = rpc
        .read("stock.picking", 15, json!(["move_ids", "state"]))
        .await;
    assert_eq!(moves["state"], "assigned");
    let move_id = moves["move_ids"][0].as_i64().unwrap();
    let reserved = rpc
        .read(
            "stock.move",
            move_id,
            json!(["product_uom_qty", "quantity"]),
        )
        .await;
    assert_eq!(reserved["quantity"], 10.0, "a receipt is reserved in full");
    rpc.ok(
        "stock.move",
        "write",
        json!([[move_id], {"quantity": 6}]),
        None,
    )
    .await;
    check(
        rpc.post(&kw(13, "stock.picking", "button_validate", json!([[15]])))
            .await,
        json!({"jsonrpc":"2.0","id":13,"result":{"name":"Create Backorder?","type":"ir.actions.act_window","view_mode":"form","res_model":"stock.backorder.confirmation","views":[[321,"form"]],"view_id":321,"target":"new","context":{"button_validate_picking_ids":[15],"default_show_transfers":false,"default_pick_ids":[[4,15]]}}}),
    );
    assert_eq!(
        fake.record("stock.picking", 15).unwrap()["state"],
        "assigned",
        "the wizard validates nothing"
    );
    check(
        rpc.post(&kw_ctx(
            13,
            "stock.picking",
            "button_validate",
            json!([[15]]),
            json!({"context":{"skip_backorder":true}}),
        ))
        .await,
        json!({"jsonrpc":"2.0","id":13,"result":true}),
    );
    // §8: validating a done picking is the "no quantities are reserved" UserError.
    let data = rpc
        .fails("stock.picking", "button_validate", json!([[15]]), None)
        .await;
    assert_eq!(data["name"], "odoo.exceptions.UserError");
    assert_eq!(
        data["message"],
        "You cannot validate a transfer if no quantities are reserved. To force the transfer, encode quantities."
    );
    // §6.12: a None return has no result key.
    let quant = rpc
        .ok(
            "stock.quant",
            "create",
            json!([{"product_id":product,"location_id":8,"inventory_quantity":34}]),
            Some(json!({"context":{"inventory_mode":true}})),
        )
        .await;
    assert_eq!(quant, 88);
    check(
        rpc.post(&kw(
            14,
            "stock.quant",
            "action_apply_inventory",
            json!([[88]]),
        ))
        .await,
        json!({"jsonrpc":"2.0","id":14}),
    );
    assert_eq!(
        rpc.read("product.product", product, json!(["qty_available"]))
            .await["qty_available"],
        34.0
    );
    let data = rpc
        .fails(
            "stock.quant",
            "create",
            json!([{"product_id":product,"inventory_quantity":1}]),
            None,
        )
        .await;
    assert_eq!(
        data["message"],
        "Quant's creation is restricted, you can't do this operation."
    );
}

#[tokio::test]
async fn fake_odoo_transport_errors_are_http_400() {
    let fake = FakeOdoo::start(KEY);
    let http = reqwest::Client::new();
    let send = |content_type: &'static str, body: &'static str| {
        http.post(fake.endpoint())
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let response = send("application/json", "{").await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.text().await.unwrap(), "Invalid JSON data");
    let response = send("application/json", "[1]").await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.text().await.unwrap(), "Invalid JSON-RPC data");
    let version = r#"{"jsonrpc":"2.0","method":"call","params":{"service":"common","method":"version","args":[]},"id":1}"#;
    let response = send("text/plain", version).await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("is type=&#39;json&#39;")
    );
    let response = send("application/json-rpc; charset=utf-8", version)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(fake.requests(), 4);
    // Only the last one reached the services.
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].service.as_str(), calls[0].method.as_str()),
        ("common", "version")
    );
}

#[tokio::test]
async fn fake_odoo_login_cooldown_after_five_failures() {
    let fake = FakeOdoo::start(KEY);
    let rpc = Rpc::new(&fake);
    let with_key = |key: &str| {
        request(
            3,
            "object",
            "execute_kw",
            json!(["careflow", 2, key, "res.partner", "search_count", [[]]]),
        )
    };
    let login = |key: &str| {
        request(
            2,
            "common",
            "login",
            json!(["careflow", "integration@careflow.test", key]),
        )
    };
    for _ in 0..5 {
        check(
            rpc.post(&with_key("wrong")).await,
            error(3, "odoo.exceptions.AccessDenied", "Access Denied"),
        );
    }
    let cooldown = "Too many login failures, please wait a bit before trying again.";
    check(
        rpc.post(&with_key("wrong")).await,
        error(3, "odoo.exceptions.AccessDenied", cooldown),
    );
    // The right key too: a cold worker checks the cooldown before the key.
    check(
        rpc.post(&with_key(KEY)).await,
        error(3, "odoo.exceptions.AccessDenied", cooldown),
    );
    check(
        rpc.post(&login(KEY)).await,
        json!({"jsonrpc":"2.0","id":2,"result":false}),
    );
    // Once the cooldown is over, the right key works and clears the count.
    fake.set_login_cooldown(5, Duration::ZERO);
    check(
        rpc.post(&with_key(KEY)).await,
        json!({"jsonrpc":"2.0","id":3,"result":2}),
    );
    fake.set_login_cooldown(5, Duration::from_secs(60));
    check(
        rpc.post(&with_key("wrong")).await,
        error(3, "odoo.exceptions.AccessDenied", "Access Denied"),
    );
    check(
        rpc.post(&login(KEY)).await,
        json!({"jsonrpc":"2.0","id":2,"result":2}),
    );
    // An empty key is refused before the guard and never counts.
    for _ in 0..6 {
        check(
            rpc.post(&with_key("")).await,
            error(3, "odoo.exceptions.AccessDenied", "Access Denied"),
        );
    }
    check(
        rpc.post(&with_key(KEY)).await,
        json!({"jsonrpc":"2.0","id":3,"result":2}),
    );
}

#[tokio::test]
async fn fake_odoo_purchase_receipt_backorder_bill_flow() {
    let fake = FakeOdoo::start(KEY);
    let rpc = Rpc::new(&fake);
    let vendor = rpc
        .create(
            "res.partner",
            json!({"name":"Acme Supplies","ref":"V-1","supplier_rank":1,"is_company":true}),
        )
        .await;
    let gauze = rpc.create("product.product", json!({"name":"Gauze","default_code":"GZ-1","detailed_type":"product","standard_price":4.5})).await;
    let tape = rpc
        .create(
            "product.product",
            json!({"name":"Tape","default_code":"TP-1","detailed_type":"consu"}),
        )
        .await;
    let order = rpc
        .create("purchase.order", json!({"partner_id":vendor,"partner_ref":"PR-9","date_planned":"2026-05-10 00:00:00","order_line":[
            [0,0,{"product_id":gauze,"product_qty":10,"price_unit":4.5,"taxes_id":[]}],
            [0,0,{"product_id":tape,"product_qty":5,"price_unit":2.0,"taxes_id":[]}]]}))
        .await;
    let po = rpc
        .read(
            "purchase.order",
            order,
            json!(["name", "state", "amount_total", "order_line", "picking_ids"]),
        )
        .await;
    assert_eq!(po["name"], "P00001");
    assert_eq!(po["state"], "draft");
    assert_eq!(po["amount_total"], 55.0);
    assert_eq!(po["picking_ids"], json!([]));
    let data = rpc
        .fails(
            "purchase.order",
            "action_create_invoice",
            json!([[order]]),
            None,
        )
        .await;
    assert_eq!(
        data["message"],
        "There is no invoiceable line. If a product has a control policy based on received quantity, please make sure that a quantity has been received."
    );
    rpc.ok("purchase.order", "button_confirm", json!([[order]]), None)
        .await;
    // Confirming again changes nothing (only draft/sent orders are processed).
    rpc.ok("purchase.order", "button_confirm", json!([[order]]), None)
        .await;
    let po = rpc
        .read("purchase.order", order, json!(["state", "picking_ids"]))
        .await;
    assert_eq!(po["state"], "purchase");
    let pickings: Vec<i64> = serde_json::from_value(po["picking_ids"].clone()).unwrap();
    assert_eq!(pickings.len(), 1);
    let receipt = pickings[0];
    let picking = rpc
        .read(
            "stock.picking",
            receipt,
            json!([
                "name",
                "origin",
                "state",
                "move_ids",
                "location_id",
                "location_dest_id",
                "picking_type_code"
            ]),
        )
        .await;
    assert_eq!(picking["name"], "WH/IN/00001");
    assert_eq!(picking["origin"], "P00001");
    assert_eq!(picking["state"], "assigned");
    assert_eq!(picking["location_id"], json!([4, "Partners/Vendors"]));
    assert_eq!(picking["location_dest_id"], json!([8, "WH/Stock"]));
    assert_eq!(picking["picking_type_code"], "incoming");
    let moves = rpc
        .ok("stock.move", "search_read", json!([[["picking_id", "=", receipt]]]), Some(json!({"fields":["product_id","product_uom_qty","quantity","purchase_line_id"],"order":"id"})))
        .await;
    assert_eq!(moves.as_array().unwrap().len(), 2);
    assert_eq!(moves[0]["product_id"], json!([gauze, "[GZ-1] Gauze"]));
    assert_eq!(
        (
            moves[0]["product_uom_qty"].clone(),
            moves[0]["quantity"].clone()
        ),
        (json!(10.0), json!(10.0))
    );
    let (gauze_move, tape_move) = (
        moves[0]["id"].as_i64().unwrap(),
        moves[1]["id"].as_i64().unwrap(),
    );
    // Partial receipt: 6 of 10 gauze, all the tape.
    rpc.ok(
        "stock.move",
        "write",
        json!([[gauze_move], {"quantity": 6}]),
        None,
    )
    .await;
    let wizard = rpc
        .ok("stock.picking", "button_validate", json!([[receipt]]), None)
        .await;
    assert_eq!(wizard["res_model"], "stock.backorder.confirmation");
    assert_eq!(wizard["context"]["default_pick_ids"], json!([[4, receipt]]));
    // Answer the wizard the way the UI does: create it with the context, then process.
    let context = wizard["context"].clone();
    let answer = rpc
        .ok(
            "stock.backorder.confirmation",
            "create",
            json!([{}]),
            Some(json!({"context": context})),
        )
        .await;
    let done = rpc
        .ok(
            "stock.backorder.confirmation",
            "process",
            json!([[answer]]),
            Some(json!({"context": context})),
        )
        .await;
    assert_eq!(done, true);
    let picking = rpc
        .read("stock.picking", receipt, json!(["state", "backorder_ids"]))
        .await;
    assert_eq!(picking["state"], "done");
    let backorders: Vec<i64> = serde_json::from_value(picking["backorder_ids"].clone()).unwrap();
    assert_eq!(backorders.len(), 1);
    let backorder = fake.record("stock.picking", backorders[0]).unwrap();
    assert_eq!(backorder["name"], "WH/IN/00002");
    assert_eq!(backorder["origin"], "P00001");
    assert_eq!(backorder["purchase_id"], order);
    assert_eq!(backorder["state"], "assigned");
    let rest = backorder["move_ids"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    let rest_move = fake
        .record("stock.move", rest[0].as_i64().unwrap())
        .unwrap();
    assert_eq!(
        (
            rest_move["product_id"].clone(),
            rest_move["product_uom_qty"].clone(),
            rest_move["quantity"].clone()
        ),
        (json!(gauze), json!(4.0), json!(4.0))
    );
    assert_eq!(
        fake.record("stock.move", gauze_move).unwrap()["state"],
        "done"
    );
    assert_eq!(
        fake.record("stock.move", tape_move).unwrap()["state"],
        "done"
    );
    let lines = rpc
        .ok(
            "purchase.order.line",
            "search_read",
            json!([[["order_id", "=", order]]]),
            Some(json!({"fields":["qty_received","qty_invoiced","qty_to_invoice"],"order":"id"})),
        )
        .await;
    let received: Vec<Value> = lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["qty_received"].clone())
        .collect();
    assert_eq!(received, vec![json!(6.0), json!(5.0)]);
    assert_eq!(
        rpc.read("product.product", gauze, json!(["qty_available"]))
            .await["qty_available"],
        6.0
    );
    // Nothing can be cancelled once something was received.
    let data = rpc
        .fails("purchase.order", "button_cancel", json!([[order]]), None)
        .await;
    assert_eq!(data["name"], "odoo.exceptions.UserError");
    assert_eq!(
        data["message"],
        "Unable to cancel purchase order P00001 as some receptions have already been done."
    );
    // Bill what was received.
    let action = rpc
        .ok(
            "purchase.order",
            "action_create_invoice",
            json!([[order]]),
            None,
        )
        .await;
    assert_eq!(action["res_model"], "account.move");
    let bill = action["res_id"].as_i64().unwrap();
    assert_eq!(
        rpc.read("purchase.order", order, json!(["invoice_ids"]))
            .await["invoice_ids"],
        json!([bill])
    );
    let bill_lines = rpc
        .ok(
            "account.move.line",
            "search_read",
            json!([[["move_id", "=", bill]]]),
            Some(json!({"fields":["quantity","price_unit","purchase_line_id"],"order":"id"})),
        )
        .await;
    let quantities: Vec<Value> = bill_lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["quantity"].clone())
        .collect();
    assert_eq!(quantities, vec![json!(6.0), json!(5.0)]);
    let data = rpc
        .fails("account.move", "action_post", json!([[bill]]), None)
        .await;
    assert_eq!(
        data["message"],
        "The Bill/Refund date is required to validate this document."
    );
    rpc.ok(
        "account.move",
        "write",
        json!([[bill], {"invoice_date":"2026-05-12","ref":"VENDOR-INV-88"}]),
        None,
    )
    .await;
    assert_eq!(
        rpc.ok("account.move", "action_post", json!([[bill]]), None)
            .await,
        false
    );
    let posted = rpc
        .read(
            "account.move",
            bill,
            json!([
                "name",
                "state",
                "amount_total",
                "move_type",
                "partner_id",
                "invoice_origin"
            ]),
        )
        .await;
    assert_eq!(
        posted,
        json!({"id":bill,"name":"BILL/2026/05/0001","state":"posted","amount_total":37.0,"move_type":"in_invoice","partner_id":[vendor,"Acme Supplies"],"invoice_origin":"P00001"})
    );
    let data = rpc
        .fails(
            "purchase.order",
            "action_create_invoice",
            json!([[order]]),
            None,
        )
        .await;
    assert_eq!(data["name"], "odoo.exceptions.UserError");
    // Receive the backorder in full: done at once, no question.
    assert_eq!(
        rpc.ok(
            "stock.picking",
            "button_validate",
            json!([[backorders[0]]]),
            None
        )
        .await,
        true
    );
    let action = rpc
        .ok(
            "purchase.order",
            "action_create_invoice",
            json!([[order]]),
            None,
        )
        .await;
    let second = action["res_id"].as_i64().unwrap();
    assert_eq!(
        fake.record("account.move", second).unwrap()["amount_total"],
        18.0
    );
    assert_eq!(fake.count("stock.picking", "button_validate"), 2);
    assert_eq!(fake.count("purchase.order", "action_create_invoice"), 4);
    let po = rpc
        .read(
            "purchase.order",
            order,
            json!(["receipt_status", "invoice_status", "invoice_count"]),
        )
        .await;
    assert_eq!(
        po,
        json!({"id":order,"receipt_status":"full","invoice_status":"invoiced","invoice_count":2})
    );
}

#[tokio::test]
async fn fake_odoo_cancel_a_purchase_order_before_receipt() {
    let fake = FakeOdoo::start(KEY);
    let rpc = Rpc::new(&fake);
    let vendor = rpc
        .create("res.partner", json!({"name":"Acme Supplies"}))
        .await;
    let product = rpc
        .create(
            "product.product",
            json!({"name":"Gauze","detailed_type":"product"}),
        )
        .await;
    let order = rpc
        .create("purchase.order", json!({"partner_id":vendor,"order_line":[[0,0,{"product_id":product,"product_qty":3}]]}))
        .await;
    rpc.ok("purchase.order", "button_confirm", json!([[order]]), None)
        .await;
    let envelope = rpc
        .execute("purchase.order", "button_cancel", json!([[order]]), None)
        .await;
    assert_eq!(
        envelope,
        json!({"jsonrpc":"2.0","id":1}),
        "button_cancel returns None in 17.0"
    );
    let po = fake.record("purchase.order", order).unwrap();
    assert_eq!(po["state"], "cancel");
    let picking = po["picking_ids"][0].as_i64().unwrap();
    assert_eq!(
        fake.record("stock.picking", picking).unwrap()["state"],
        "cancel"
    );
    // `button_done` (lock the order) also returns None.
    let other = rpc
        .create("purchase.order", json!({"partner_id":vendor,"order_line":[[0,0,{"product_id":product,"product_qty":1}]]}))
        .await;
    rpc.ok("purchase.order", "button_confirm", json!([[other]]), None)
        .await;
    let envelope = rpc
        .execute("purchase.order", "button_done", json!([[other]]), None)
        .await;
    assert_eq!(envelope, json!({"jsonrpc":"2.0","id":1}));
    assert_eq!(
        fake.record("purchase.order", other).unwrap()["state"],
        "done"
    );
}

#[tokio::test]
async fn fake_odoo_stock_consumption_and_reorder_rules() {
    let fake = FakeOdoo::start(KEY);
    let rpc = Rpc::new(&fake);
    let product = rpc
        .create(
            "product.product",
            json!({"name":"Syringe","default_code":"SY-1","detailed_type":"product"}),
        )
        .await;
    let rule = rpc
        .create(
            "stock.warehouse.orderpoint",
            json!({"product_id":product,"product_min_qty":10,"product_max_qty":50}),
        )
        .await;
    let read = rpc
        .read(
            "stock.warehouse.orderpoint",
            rule,
            json!([
                "name",
                "warehouse_id",
                "location_id",
                "trigger",
                "qty_to_order"
            ]),
        )
        .await;
    assert_eq!(
        read,
        json!({"id":rule,"name":"OP/00001","warehouse_id":[1,"YourCompany"],"location_id":[8,"WH/Stock"],"trigger":"auto","qty_to_order":50.0})
    );
    let data = rpc
        .fails(
            "stock.warehouse.orderpoint",
            "create",
            json!([{"product_id":product,"product_min_qty":1,"product_max_qty":2}]),
            None,
        )
        .await;
    assert_eq!(data["name"], "odoo.exceptions.ValidationError");
    assert_eq!(
        data["message"],
        "The operation cannot be completed: A replenishment rule already exists for this product on this location."
    );
    let consumption = rpc
        .create("stock.picking", json!({"picking_type_id":super::stock::TYPE_OUT,"location_id":8,"location_dest_id":super::stock::CUSTOMERS,"origin":"ENC-7","move_ids":[[0,0,{"name":"Supplies ENC-7","product_id":product,"product_uom_qty":3,"product_uom":1,"location_id":8,"location_dest_id":5}]]}))
        .await;
    assert_eq!(
        rpc.ok(
            "stock.picking",
            "action_confirm",
            json!([[consumption]]),
            None
        )
        .await,
        true
    );
    assert_eq!(
        rpc.ok(
            "stock.picking",
            "action_assign",
            json!([[consumption]]),
            None
        )
        .await,
        true
    );
    let picking = rpc
        .read(
            "stock.picking",
            consumption,
            json!(["name", "state", "move_ids"]),
        )
        .await;
    assert_eq!(picking["name"], "WH/OUT/00001");
    assert_eq!(picking["state"], "confirmed", "nothing on hand to reserve");
    let data = rpc
        .fails(
            "stock.picking",
            "button_validate",
            json!([[consumption]]),
            None,
        )
        .await;
    assert_eq!(
        data["message"],
        "You cannot validate a transfer if no quantities are reserved. To force the transfer, encode quantities."
    );
    let move_id = picking["move_ids"][0].as_i64().unwrap();
    rpc.ok(
        "stock.move",
        "write",
        json!([[move_id], {"quantity": 3}]),
        None,
    )
    .await;
    assert_eq!(
        rpc.ok(
            "stock.picking",
            "button_validate",
            json!([[consumption]]),
            None
        )
        .await,
        true
    );
    assert_eq!(
        fake.record("stock.picking", consumption).unwrap()["state"],
        "done"
    );
    assert_eq!(
        rpc.read("product.product", product, json!(["qty_available"]))
            .await["qty_available"],
        -3.0
    );
    // A move without a name is a NOT NULL error, and nothing of the call is kept.
    let before = fake.records("stock.picking").len();
    let data = rpc
        .fails("stock.picking", "create", json!([{"picking_type_id":2,"move_ids":[[0,0,{"product_id":product,"product_uom_qty":1}]]}]), None)
        .await;
    assert_eq!(data["name"], "odoo.exceptions.ValidationError");
    assert!(
        data["message"]
            .as_str()
            .unwrap()
            .contains("Model: Stock Move (stock.move)\nField: Description (name)")
    );
    assert_eq!(fake.records("stock.picking").len(), before);
}

#[tokio::test]
async fn fake_odoo_generic_errors_and_domains() {
    let fake = FakeOdoo::start(KEY);
    let rpc = Rpc::new(&fake);
    let data = rpc.fails("res.parter", "search", json!([[]]), None).await;
    assert_eq!(
        (data["name"].clone(), data["message"].clone()),
        (
            json!("odoo.exceptions.UserError"),
            json!("Object res.parter doesn't exist")
        )
    );
    let data = rpc
        .fails("res.partner", "frobnicate", json!([[]]), None)
        .await;
    assert_eq!(data["name"], "builtins.AttributeError");
    let data = rpc
        .fails(
            "product.product",
            "create",
            json!([{"name":"X","is_storable":true}]),
            None,
        )
        .await;
    assert_eq!(
        (data["name"].clone(), data["message"].clone()),
        (
            json!("builtins.ValueError"),
            json!("Invalid field 'is_storable' on model 'product.product'")
        )
    );
    let data = rpc
        .fails(
            "product.product",
            "create",
            json!([{"name":"X","detailed_type":"storable"}]),
            None,
        )
        .await;
    assert_eq!(
        data["message"],
        "Wrong value for product.product.detailed_type: 'storable'"
    );
    let data = rpc
        .fails(
            "purchase.order",
            "create",
            json!([{"partner_id":1,"date_planned":"2024-05-10T00:00:00"}]),
            None,
        )
        .await;
    assert_eq!(
        data["message"],
        "time data '2024-05-10T00:00:00' does not match format '%Y-%m-%d %H:%M:%S'"
    );
    let data = rpc
        .fails(
            "res.partner",
            "create",
            json!([{"name":"X","country_id":99999}]),
            None,
        )
        .await;
    assert_eq!(data["name"], "odoo.exceptions.ValidationError");
    let data = rpc
        .fails("res.partner", "write", json!([[99999], {"name":"X"}]), None)
        .await;
    assert_eq!(data["name"], "odoo.exceptions.MissingError");
    let data = rpc
        .fails("res.partner", "create", json!([{"email":"a@b.c"}]), None)
        .await;
    assert_eq!(
        data["message"],
        "The operation cannot be completed: Contacts require a name"
    );
    let data = rpc
        .fails(
            "ir.model.data",
            "create",
            json!([{"module":"careflow","name":"has space","model":"res.partner","res_id":1}]),
            None,
        )
        .await;
    assert_eq!(
        data["message"],
        "The operation cannot be completed: External IDs cannot contain spaces"
    );

    let a = rpc
        .create(
            "res.partner",
            json!({"name":"Ann","ref":"A","email":"ann@x.org"}),
        )
        .await;
    let b = rpc
        .create("res.partner", json!({"name":"Bob","ref":"B"}))
        .await;
    let c = rpc
        .create(
            "res.partner",
            json!({"name":"Cid","ref":"C","active":false}),
        )
        .await;
    let search = |domain: Value| {
        rpc.ok(
            "res.partner",
            "search",
            json!([domain]),
            Some(json!({"order":"id"})),
        )
    };
    assert_eq!(
        search(json!([["ref", "in", ["A", "B", "C"]]])).await,
        json!([a, b]),
        "archived hidden"
    );
    assert_eq!(
        search(json!(["|", ["ref", "=", "A"], ["ref", "=", "C"]])).await,
        json!([a])
    );
    assert_eq!(
        search(json!([
            ["ref", "in", ["A", "C"]],
            ["active", "in", [true, false]]
        ]))
        .await,
        json!([a, c])
    );
    assert_eq!(
        search(json!([["ref", "!=", false], ["email", "=", false]])).await,
        json!([b])
    );
    assert_eq!(
        search(json!([["ref", "!=", "A"], ["ref", "!=", false]])).await,
        json!([b])
    );
    assert_eq!(
        search(json!([
            "!",
            ["name", "ilike", "an"],
            ["ref", "in", ["A", "B"]]
        ]))
        .await,
        json!([b])
    );
    assert_eq!(
        rpc.ok(
            "res.partner",
            "search_count",
            json!([[["ref", "in", ["A", "B"]]]]),
            None
        )
        .await,
        2
    );
    let data = rpc
        .fails("res.partner", "search", json!([[["nope", "=", 1]]]), None)
        .await;
    assert_eq!(data["name"], "builtins.ValueError");
    // execute: positional only.
    let envelope = rpc
        .post(&request(
            1,
            "object",
            "execute",
            json!([
                "careflow",
                2,
                KEY,
                "res.partner",
                "search",
                [["ref", "=", "A"]]
            ]),
        ))
        .await;
    assert_eq!(envelope["result"], json!([a]));
    let fields = rpc
        .ok(
            "res.partner",
            "fields_get",
            json!([]),
            Some(json!({"attributes":["type"]})),
        )
        .await;
    assert_eq!(fields["country_id"], json!({"type":"many2one"}));
}

#[tokio::test]
async fn fake_odoo_switches_down_and_back() {
    let fake = FakeOdoo::start(KEY);
    let rpc = Rpc::new(&fake);
    let partner = rpc.create("res.partner", json!({"name":"Before"})).await;

    fake.go_down(Down::Refused);
    let error = reqwest::Client::new()
        .post(fake.endpoint())
        .json(&request(1, "common", "version", json!([])))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_connect(), "{error:?}");
    fake.come_back();
    // A connection pooled before the outage was closed by it, as after a real restart: a new
    // client (or a retry) connects afresh.
    let rpc = Rpc::new(&fake);
    let name = rpc.read("res.partner", partner, json!(["name"])).await["name"].clone();
    assert_eq!(name, "Before", "the data survives the outage");

    fake.go_down(Down::BadGateway);
    let before = fake.calls().len();
    let response = rpc
        .http
        .post(fake.endpoint())
        .json(&kw(1, "res.partner", "create", json!([{"name":"Lost"}])))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(fake.calls().len(), before, "nothing reached Odoo");
    fake.come_back();

    fake.go_down(Down::Slow(Duration::from_millis(400)));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let error = impatient
        .post(fake.endpoint())
        .json(&kw(
            1,
            "res.partner",
            "create",
            json!([{"name":"Late","ref":"LATE"}]),
        ))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    // The call was carried out although the client gave up (API-NOTES §5.2).
    let landed = fake
        .records("res.partner")
        .iter()
        .filter(|p| p["ref"] == "LATE")
        .count();
    assert_eq!(landed, 1);
    fake.come_back();

    fake.reject("res.partner", "ref", "POISON");
    let data = rpc
        .fails(
            "res.partner",
            "create",
            json!([{"name":"Bad","ref":"POISON"}]),
            None,
        )
        .await;
    assert_eq!(data["name"], "odoo.exceptions.ValidationError");
    rpc.create("res.partner", json!({"name":"Good","ref":"FINE"}))
        .await;
    // One rejected record in a list create: none of the list is kept.
    let before = fake.records("res.partner").len();
    rpc.fails(
        "res.partner",
        "create",
        json!([[{"name":"One","ref":"ONE"},{"name":"Bad","ref":"POISON"}]]),
        None,
    )
    .await;
    assert_eq!(fake.records("res.partner").len(), before);
    // A write that makes a record match is refused too.
    rpc.fails(
        "res.partner",
        "write",
        json!([[partner], {"ref":"POISON"}]),
        None,
    )
    .await;
    fake.reject_if("product.product", |rec| {
        rec.get("list_price").and_then(Value::as_f64) == Some(0.0)
    });
    rpc.fails(
        "product.product",
        "create",
        json!([{"name":"Free","list_price":0}]),
        None,
    )
    .await;
    fake.accept_all();
    rpc.create("res.partner", json!({"name":"Fixed","ref":"POISON"}))
        .await;
    rpc.create("product.product", json!({"name":"Free","list_price":0}))
        .await;
    let failed = fake.calls().iter().filter(|c| !c.ok).count();
    assert_eq!(failed, 4);
    assert_eq!(fake.count("res.partner", "create"), 6);
    fake.clear_calls();
    assert!(fake.calls().is_empty());
    assert_eq!(fake.count("res.partner", "create"), 0);
}

#[tokio::test]
async fn fake_odoo_comes_back_after_refusing_under_polling() {
    let fake = FakeOdoo::start(KEY);
    fake.go_down(Down::Refused);
    fake.come_back();
    let rpc = Rpc::new(&fake);
    let login = request(
        1,
        "common",
        "login",
        json!(["careflow", fake.login.clone(), fake.api_key.clone()]),
    );
    let answered = eventually(Duration::from_secs(5), "the fake to answer again", || {
        let sent = rpc.http.post(fake.endpoint()).json(&login).send();
        async move { sent.await.ok()?.json::<Value>().await.ok() }
    })
    .await;
    assert_eq!(answered["result"], fake.uid);
    assert_eq!(fake.db, "careflow");
}

#[tokio::test]
async fn fake_odoo_python_argument_rules_and_serialization_failures() {
    let fake = FakeOdoo::start(KEY);
    let rpc = Rpc::new(&fake);
    // `create` reads args[0]: values by keyword are an IndexError.
    let data = rpc
        .fails(
            "res.partner",
            "create",
            json!([]),
            Some(json!({"vals_list": {"name": "X"}})),
        )
        .await;
    assert_eq!(
        (data["name"].clone(), data["message"].clone()),
        (
            json!("builtins.IndexError"),
            json!("list index out of range")
        )
    );
    let data = rpc
        .fails(
            "res.partner",
            "search_read",
            json!([[]]),
            Some(json!({"fieldz": ["name"]})),
        )
        .await;
    assert_eq!(data["name"], "builtins.TypeError");
    assert_eq!(
        data["message"],
        "search_read() got an unexpected keyword argument 'fieldz'"
    );
    let data = rpc
        .fails(
            "account.move",
            "action_post",
            json!([[1]]),
            Some(json!({"force": true})),
        )
        .await;
    assert_eq!(data["name"], "builtins.TypeError");
    // Record methods need the ids first.
    let data = rpc
        .fails("account.move", "action_post", json!([]), None)
        .await;
    assert_eq!(data["name"], "builtins.IndexError");
    // A GET is a request of the wrong type for a json route.
    let response = reqwest::get(fake.endpoint()).await.unwrap();
    assert_eq!(response.status(), 400);

    fake.serialization_failures(2);
    for _ in 0..2 {
        let data = rpc
            .fails("res.partner", "create", json!([{"name":"Racy"}]), None)
            .await;
        assert_eq!(data["name"], "psycopg2.errors.SerializationFailure");
    }
    assert!(
        fake.records("res.partner").is_empty(),
        "nothing of a failed call is kept"
    );
    rpc.create("res.partner", json!({"name":"Racy"})).await;
    assert_eq!(fake.records("res.partner").len(), 1);
}

#[tokio::test]
async fn fake_odoo_only_picked_moves_are_done() {
    let fake = FakeOdoo::start(KEY);
    let rpc = Rpc::new(&fake);
    let vendor = rpc.create("res.partner", json!({"name":"Acme"})).await;
    let a = rpc
        .create(
            "product.product",
            json!({"name":"A","detailed_type":"product"}),
        )
        .await;
    let b = rpc
        .create(
            "product.product",
            json!({"name":"B","detailed_type":"product"}),
        )
        .await;
    let order = rpc
        .create("purchase.order", json!({"partner_id":vendor,"order_line":[[0,0,{"product_id":a,"product_qty":2}],[0,0,{"product_id":b,"product_qty":3}]]}))
        .await;
    rpc.ok("purchase.order", "button_confirm", json!([[order]]), None)
        .await;
    let picking = fake.record("purchase.order", order).unwrap()["picking_ids"][0]
        .as_i64()
        .unwrap();
    let moves = fake.record("stock.picking", picking).unwrap()["move_ids"].clone();
    let (first, second) = (moves[0].as_i64().unwrap(), moves[1].as_i64().unwrap());
    // Only the first move is marked picked: the second is not processed although reserved.
    rpc.ok(
        "stock.move",
        "write",
        json!([[first], {"picked": true}]),
        None,
    )
    .await;
    let answer = rpc
        .ok(
            "stock.picking",
            "button_validate",
            json!([[picking]]),
            Some(json!({"context":{"skip_backorder":true}})),
        )
        .await;
    assert_eq!(answer, true);
    assert_eq!(fake.record("stock.move", first).unwrap()["state"], "done");
    let moved = fake.record("stock.move", second).unwrap();
    assert_ne!(
        moved["picking_id"], picking,
        "the unpicked move went to the backorder"
    );
    assert_eq!(moved["product_uom_qty"], 3.0);
    let lines: Vec<Value> = fake
        .records("purchase.order.line")
        .into_iter()
        .map(|l| l["qty_received"].clone())
        .collect();
    assert_eq!(lines, vec![json!(2.0), json!(0.0)]);
}

#[tokio::test]
async fn fake_odoo_backorder_refused_cancels_the_rest() {
    let fake = FakeOdoo::start(KEY);
    let rpc = Rpc::new(&fake);
    let vendor = rpc.create("res.partner", json!({"name":"Acme"})).await;
    let product = rpc
        .create(
            "product.product",
            json!({"name":"Gloves","detailed_type":"product"}),
        )
        .await;
    let order = rpc
        .create("purchase.order", json!({"partner_id":vendor,"order_line":[[0,0,{"product_id":product,"product_qty":8}]]}))
        .await;
    rpc.ok("purchase.order", "button_confirm", json!([[order]]), None)
        .await;
    let picking = fake.record("purchase.order", order).unwrap()["picking_ids"][0]
        .as_i64()
        .unwrap();
    let move_id = fake.record("stock.picking", picking).unwrap()["move_ids"][0]
        .as_i64()
        .unwrap();
    rpc.ok(
        "stock.move",
        "write",
        json!([[move_id], {"quantity": 5}]),
        None,
    )
    .await;
    let wizard = rpc
        .ok("stock.picking", "button_validate", json!([[picking]]), None)
        .await;
    let context = wizard["context"].clone();
    let answer = rpc
        .ok(
            "stock.backorder.confirmation",
            "create",
            json!([{}]),
            Some(json!({"context": context})),
        )
        .await;
    let answer = answer.as_i64().unwrap();
    assert_eq!(
        fake.record("stock.backorder.confirmation", answer).unwrap()["pick_ids"],
        json!([picking])
    );
    // Without the wizard's context `process` validates nothing (API-NOTES §4.4).
    assert_eq!(
        rpc.ok(
            "stock.backorder.confirmation",
            "process_cancel_backorder",
            json!([[answer]]),
            None
        )
        .await,
        true
    );
    assert_eq!(
        fake.record("stock.picking", picking).unwrap()["state"],
        "assigned"
    );
    let done = rpc
        .ok(
            "stock.backorder.confirmation",
            "process_cancel_backorder",
            json!([[answer]]),
            Some(json!({"context": context})),
        )
        .await;
    assert_eq!(done, true);
    let picking = fake.record("stock.picking", picking).unwrap();
    assert_eq!(picking["state"], "done");
    assert_eq!(picking["backorder_ids"], json!([]), "no backorder");
    assert_eq!(fake.records("stock.picking").len(), 1);
    let line = &fake.records("purchase.order.line")[0];
    assert_eq!(
        (line["qty_received"].clone(), line["product_qty"].clone()),
        (json!(5.0), json!(8.0))
    );
}

#[tokio::test]
async fn fake_odoo_wire_details() {
    let fake = FakeOdoo::start(KEY);
    let rpc = Rpc::new(&fake);
    // Non-ASCII goes out raw (ensure_ascii=False).
    let id = rpc
        .create("res.partner", json!({"name":"Zoë Müller"}))
        .await;
    let raw = rpc
        .http
        .post(fake.endpoint())
        .json(&kw_ctx(
            1,
            "res.partner",
            "read",
            json!([[id]]),
            json!({"fields":["name"]}),
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(raw.contains("Zoë Müller"), "{raw}");
    // Reading an id that does not exist skips it; write on it is a MissingError.
    let rows = rpc
        .ok(
            "res.partner",
            "read",
            json!([[id, 99999]]),
            Some(json!({"fields":["name"]})),
        )
        .await;
    assert_eq!(rows, json!([{"id":id,"name":"Zoë Müller"}]));
    // A database that does not exist, and a uid that is not the key's.
    let data = rpc
        .post(&request(
            1,
            "object",
            "execute_kw",
            json!(["nope", 2, KEY, "res.partner", "search", [[]]]),
        ))
        .await;
    assert_eq!(data["error"]["data"]["name"], "psycopg2.OperationalError");
    let data = rpc
        .post(&request(
            1,
            "object",
            "execute_kw",
            json!(["careflow", 3, KEY, "res.partner", "search", [[]]]),
        ))
        .await;
    assert_eq!(
        data["error"]["data"]["name"],
        "odoo.exceptions.AccessDenied"
    );
    // offset, limit and order.
    for name in ["B", "A", "C"] {
        rpc.create("res.partner", json!({"name": name, "ref": "paged"}))
            .await;
    }
    let page = rpc
        .ok(
            "res.partner",
            "search_read",
            json!([[["ref", "=", "paged"]]]),
            Some(json!({"fields":["name"],"order":"name desc","offset":1,"limit":1})),
        )
        .await;
    assert_eq!(page[0]["name"], "B");
    let names = rpc
        .ok(
            "res.partner",
            "search_read",
            json!([[["ref", "=", "paged"]], ["name"]]),
            None,
        )
        .await;
    let names: Vec<&str> = names
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["A", "B", "C"],
        "res.partner's own order is by name"
    );
}
