//! A faithful fake Odoo 17.0 for careflow's tests: `POST /jsonrpc` on 127.0.0.1:0 (actix-web in
//! its own system thread), answering as ../shared/odoo/API-NOTES.md §1–§6 and §8 show, over an
//! in-memory database behind one mutex.
//!
//! # What it models
//! - The transport (§1.1): the Content-Type check (HTTP 400 HTML page otherwise), `Invalid JSON
//!   data` / `Invalid JSON-RPC data` 400s, `id` echoed, `params` by name.
//! - Services `common` (`version`, `login`, `authenticate`) and `object` (`execute_kw`,
//!   `execute`), `db.list`/`db.server_version`. `security.check` runs before anything else; errors
//!   are HTTP 200 envelopes with `code` 200 and `data.name`/`message`/`arguments`/`debug`/
//!   `context` (§1.4); a `None` return has no `result` key (§1.3); `create` answers an int for a
//!   dict and a list for a list (§2.1). Private methods are an AccessError, an unknown model a
//!   UserError, an unknown method an AttributeError, an unknown field an `Invalid field`
//!   ValueError, a wrong selection value a `Wrong value` ValueError, a datetime with a `T` a
//!   ValueError (§8).
//! - Python's argument rules: an unexpected keyword argument is a TypeError, `create` values
//!   given by keyword an IndexError (`_call_kw_model_create` reads `args[0]`), a record method
//!   without ids an IndexError.
//! - One call is one transaction: a call that raises leaves nothing behind (§5.1), including
//!   the first records of a list `create`.
//! - The failed-login cooldown per client IP (§1.5): after 5 failures within 60 s (settable with
//!   [`FakeOdoo::set_login_cooldown`]) `execute_kw` answers AccessDenied "Too many login
//!   failures…" and `login`/`authenticate` answer `false`, whatever the key; a success clears it.
//! - Generic ORM for every model: `create`, `write`, `read`, `search`, `search_read`,
//!   `search_count`, `unlink`, `name_search`, `fields_get`, `exists`; domains with `=`, `!=`,
//!   `in`, `not in`, `<`…`>=`, `like`/`ilike` (and `=like`, `=ilike`, `=?`), `&`, `|`, `!`,
//!   dotted paths, archived records hidden unless the domain names `active`; x2many commands
//!   `[0,0,{}]` … `[6,0,ids]`; NOT NULL and foreign-key ValidationErrors worded as §5.1.
//! - `ir.model.data` with the unique `(module, name)` index (the exact §6.7 text),
//!   `check_object_reference`, the `name_nospaces` check; unlinking a record drops its xmlids.
//! - Business models for the patient and purchase journeys (§3–§4, §8): `res.partner`,
//!   `res.country`, `product.product`/`product.template` (storable via `detailed_type`, default
//!   15% sale/purchase taxes like a database with a chart of accounts), `stock.warehouse.orderpoint`
//!   (unique product/location), `account.move` (invoices and bills, amounts from lines and
//!   taxes, `action_post` → `false` with `INV/YYYY/NNNNN` / `BILL/YYYY/MM/NNNN`, the `_post`
//!   UserErrors, the partner's `customer_rank`/`supplier_rank` raised, 17.0's readonly fields
//!   of a posted move; credit notes `out_refund` numbered `RINV/YYYY/NNNNN`),
//!   `account.payment.register` (context `active_model`/`active_ids`, its UserErrors,
//!   `group_payment`, `action_create_payments` → act_window), `account.payment` (with its
//!   journal entry `move_id`), `account.move.js_assign_outstanding_line` (the invoice's
//!   "outstanding credits" reconciliation: any partner, posted entries of one reconcilable
//!   account, no `result` key), `account.account` (a receivable and a payable account),
//!   `purchase.order` (`button_confirm` → a receipt reserved in full, `button_cancel` → no
//!   result key or the "receptions have already been done" UserError, `action_create_invoice`
//!   for received-not-billed quantities or "There is no invoiceable line"), `stock.picking`
//!   (`action_confirm`, `action_assign`, `button_validate` → `true`, the backorder wizard of
//!   §6.11 on a short move (only `picked` moves count as processed; when none is picked,
//!   validation picks them all), `skip_backorder` → done plus a backorder,
//!   `picking_ids_not_to_backorder`, the "no quantities are reserved" UserError on a done
//!   picking), `stock.backorder.confirmation` (`process`, `process_cancel_backorder`),
//!   `stock.move`, `stock.quant` (`action_apply_inventory` → no result key).
//!
//! # Switches
//! [`FakeOdoo::go_down`] with [`Down::Refused`] stops the server and closes its listening
//! socket, so a client gets ECONNREFUSED (a connection error, never an HTTP answer); the port
//! stays bound by a socket that never listens, so nothing else takes it, and
//! [`FakeOdoo::come_back`] listens on it again. Keep-alive connections a client pooled
//! before the outage were closed by it, so the first request on one fails as a transport
//! error (hyper's `IncompleteMessage`), exactly as after a real Odoo restart; a retry connects
//! afresh. [`Down::BadGateway`] answers every request with an nginx-style 502 page without
//! touching Odoo. [`Down::Slow`] carries each call out at once (committed) and holds the answer
//! back for the given time: the ambiguous "timed out but committed" case of §5.2 that the
//! xmlid recipe must survive. [`FakeOdoo::reject`] / [`FakeOdoo::reject_if`] make create/write
//! of matching records a ValidationError until [`FakeOdoo::accept_all`].
//! [`FakeOdoo::serialization_failures`] makes the next calls fail as a persistent PostgreSQL
//! serialization failure (retryable, nothing kept).
//!
//! # Where it deviates from Odoo, and why
//! - Few accounting entries: a customer invoice or credit note has its product lines and, once
//!   posted, one receivable line (`payment_term`, whose `amount_residual` follows the move's);
//!   a payment's journal entry has only its receivable (payable) line; there are no tax,
//!   income, liquidity or vendor-bill payable lines, so a move does not balance. Payments
//!   reconcile by reducing `amount_residual` oldest invoice first. A fully paid invoice reads
//!   `paid` (a real database with outstanding accounts reads `in_payment` until the bank
//!   statement is matched; clients accept both).
//! - No access rights, record rules, multi-company, currencies or units conversion; one user
//!   (uid 2) whose only credential is the API key given at start.
//! - Odoo caches a successful `check` per worker, so a warm worker may accept the right key
//!   during a cooldown; the fake takes the cold-worker case, the one a client must survive.
//! - Counters (`P00001`, `WH/IN/00001`) roll back with a failed call; PostgreSQL sequences would
//!   leave a gap. Ids are per model and start at arbitrary but distinct numbers.
//! - Stock: one warehouse, one stock location, no lots, packages or routes; on-hand quantities
//!   are the sum of done moves into and out of WH/Stock; reservation of storable products is
//!   limited by what is on hand, consumables are always available.
//! - Fields Odoo computes (amounts, `state`, quantities received/billed, `picking_ids`,
//!   `invoice_ids`) ignore a client's value on create/write; Odoo would store a written
//!   `state`, but a client that needs to is doing something careflow must not.
//! - `debug` holds a one-line fake traceback. Texts marked UNVERIFIED in API-NOTES (the
//!   PostgreSQL tail of the unique-index error, `psycopg2.errors.SerializationFailure`, the
//!   MissingError and AttributeError wording, an unknown database's error) are plausible
//!   renderings, not copies.
//!
//! # For assertions and benchmarks
//! [`FakeOdoo::records`] / [`FakeOdoo::record`] return rows as stored (many2one as bare ids),
//! [`FakeOdoo::xmlids`] the external ids clients made, [`FakeOdoo::count`] exact per
//! (model, method) counts, [`FakeOdoo::calls`] the last [`CALL_LOG`] calls. Two actix workers
//! share the database mutex; nothing sleeps except [`Down::Slow`]. Measured: about 2 400
//! `execute_kw`/s from 16 concurrent in-process clients (debug build, busy 2-core machine).

mod account;
mod business;
mod fault;
mod orm;
mod purchase;
mod rpc;
mod schema;
mod stock;
mod store;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use orm::Rejection;
use store::{Record, Store};

/// The fake's database name.
pub const DB: &str = "careflow";
/// The integration user's login.
pub const LOGIN: &str = "integration@careflow.test";
/// The integration user's id.
pub const UID: i64 = 2;
/// How many calls [`FakeOdoo::calls`] keeps.
pub const CALL_LOG: usize = 100_000;

/// How the fake is down.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Down {
    /// The listening socket is closed: connections are refused.
    Refused,
    /// A reverse proxy answers 502 for every request; nothing reaches Odoo.
    BadGateway,
    /// Each call is carried out at once and answered after this long.
    Slow(Duration),
}

/// One call the fake received (after the transport checks).
#[derive(Clone, Debug)]
pub struct Call {
    pub service: String,
    pub method: String,
    /// `model` and its method for `object` calls.
    pub model: Option<String>,
    pub model_method: Option<String>,
    pub args: Value,
    pub kwargs: Value,
    /// Whether the answer was a result (not an error envelope).
    pub ok: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Up,
    BadGateway,
    Slow(Duration),
}

struct State {
    store: Store,
    seeded: HashSet<(&'static str, i64)>,
    rejections: Vec<Rejection>,
    /// The last [`CALL_LOG`] calls (a benchmark sends millions; counts stay exact).
    calls: VecDeque<Call>,
    counts: HashMap<(String, String), usize>,
    failures: HashMap<Option<IpAddr>, (u32, Instant)>,
    cooldown_after: u32,
    cooldown: Duration,
    serialization_failures: u32,
}

struct Shared {
    api_key: String,
    state: Mutex<State>,
    mode: Mutex<Mode>,
    requests: Mutex<u64>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct Running {
    handle: ServerHandle,
    thread: JoinHandle<()>,
}

/// A running fake Odoo; stopped when dropped.
pub struct FakeOdoo {
    /// `http://127.0.0.1:<port>`; the endpoint is `{url}/jsonrpc`.
    pub url: String,
    pub db: String,
    pub login: String,
    pub uid: i64,
    pub api_key: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    running: Mutex<Option<Running>>,
    /// While refusing: the port, bound but not listening (connections get a RST), so no other
    /// socket of the test process can take it before [`FakeOdoo::come_back`].
    placeholder: Mutex<Option<tokio::net::TcpSocket>>,
}

impl FakeOdoo {
    /// Starts a fake Odoo whose integration user authenticates with `api_key`.
    pub fn start(api_key: &str) -> FakeOdoo {
        let mut store = Store::new();
        let mut seeded = HashSet::new();
        let mut next_xmlid = 1;
        for seed in schema::seeds() {
            let Value::Object(values) = seed.values else {
                unreachable!("seed values are objects");
            };
            let def = store.schema.model(seed.model).unwrap();
            let mut rec = Record::new();
            for field in &def.fields {
                if !matches!(field.kind, schema::Kind::One2many(..)) {
                    rec.insert(field.name.into(), field.default.clone());
                }
            }
            rec.extend(values);
            store.insert(seed.model, rec, Some(seed.id));
            seeded.insert((seed.model, seed.id));
            if let Some((module, name)) = seed.xmlid {
                let imd = json!({"module": module, "name": name, "model": seed.model,
                                 "res_id": seed.id, "noupdate": true});
                let Value::Object(imd) = imd else {
                    unreachable!()
                };
                store.insert("ir.model.data", imd, Some(next_xmlid));
                seeded.insert(("ir.model.data", next_xmlid));
                next_xmlid += 1;
            }
        }
        store.commit();
        let shared = Arc::new(Shared {
            api_key: api_key.to_owned(),
            state: Mutex::new(State {
                store,
                seeded,
                rejections: Vec::new(),
                calls: VecDeque::new(),
                counts: HashMap::new(),
                failures: HashMap::new(),
                cooldown_after: 5,
                cooldown: Duration::from_secs(60),
                serialization_failures: 0,
            }),
            mode: Mutex::new(Mode::Up),
            requests: Mutex::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let running = serve(listener, shared.clone());
        FakeOdoo {
            url: format!("http://{addr}"),
            db: DB.into(),
            login: LOGIN.into(),
            uid: UID,
            api_key: api_key.to_owned(),
            addr,
            shared,
            running: Mutex::new(Some(running)),
            placeholder: Mutex::new(None),
        }
    }

    /// The JSON-RPC endpoint.
    pub fn endpoint(&self) -> String {
        format!("{}/jsonrpc", self.url)
    }

    /// Takes Odoo down the given way until [`FakeOdoo::come_back`].
    pub fn go_down(&self, how: Down) {
        match how {
            Down::Refused => {
                *self.shared.mode.lock().unwrap() = Mode::Up;
                self.stop();
            }
            Down::BadGateway => *self.shared.mode.lock().unwrap() = Mode::BadGateway,
            Down::Slow(delay) => *self.shared.mode.lock().unwrap() = Mode::Slow(delay),
        }
    }

    /// Back to normal: the listener is bound again (same port) if it was closed.
    pub fn come_back(&self) {
        *self.shared.mode.lock().unwrap() = Mode::Up;
        let mut running = self.running.lock().unwrap();
        if running.is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr) {
                Ok(listener) => break listener,
                Err(error) => {
                    assert!(
                        Instant::now() < deadline,
                        "fake Odoo could not bind {} again: {error}",
                        self.addr
                    );
                    std::thread::sleep(Duration::from_millis(20)); // port still held by the old socket
                }
            }
        };
        // Both sockets have SO_REUSEADDR and the placeholder never listens, so the listener
        // could be bound first: the port was never free for anyone else.
        drop(self.placeholder.lock().unwrap().take());
        *running = Some(serve(listener, self.shared.clone()));
    }

    fn stop(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some(running) = running {
            // `stop` sends the command at once; the thread ends when the server has stopped,
            // and with it the listening socket is closed.
            drop(running.handle.stop(false));
            let _ = running.thread.join();
            let placeholder = tokio::net::TcpSocket::new_v4().and_then(|socket| {
                socket.set_reuseaddr(true)?;
                socket.bind(self.addr)?;
                Ok(socket)
            });
            *self.placeholder.lock().unwrap() = placeholder.ok();
        }
    }

    /// Create/write of a `model` record whose `field` equals `value` raises a ValidationError.
    pub fn reject(&self, model: &str, field: &str, value: impl Into<Value>) {
        let field = field.to_owned();
        let value: Value = value.into();
        self.reject_if(model, move |rec| rec.get(&field) == Some(&value));
    }

    /// Create/write of a `model` record matching `predicate` (on all its stored fields) raises a
    /// ValidationError.
    pub fn reject_if(
        &self,
        model: &str,
        predicate: impl Fn(&Record) -> bool + Send + Sync + 'static,
    ) {
        self.shared.state().rejections.push(Rejection {
            model: model.to_owned(),
            predicate: Arc::new(predicate),
        });
    }

    /// Lifts every rejection.
    pub fn accept_all(&self) {
        self.shared.state().rejections.clear();
    }

    /// The next `count` `object` calls that pass `security.check` fail with a
    /// `psycopg2.errors.SerializationFailure` envelope and change nothing: what a client sees
    /// when Odoo's own five retries of a concurrent update all lost (API-NOTES §5.1).
    pub fn serialization_failures(&self, count: u32) {
        self.shared.state().serialization_failures = count;
    }

    /// The cooldown: `after` failures (0 disables) within `duration` per client.
    pub fn set_login_cooldown(&self, after: u32, duration: Duration) {
        let mut state = self.shared.state();
        state.cooldown_after = after;
        state.cooldown = duration;
    }

    /// The id the next `model` record gets (to reproduce API-NOTES examples exactly).
    pub fn set_next_id(&self, model: &str, id: i64) {
        self.shared.state().store.set_next_id(model, id);
    }

    /// The records clients created in `model`, all fields as stored (many2one as the bare id or
    /// false, x2many as id lists), by id. The database's own records are left out.
    pub fn records(&self, model: &str) -> Vec<Value> {
        self.snapshot(model, false)
    }

    /// Every record of `model`, the database's own included.
    pub fn all_records(&self, model: &str) -> Vec<Value> {
        self.snapshot(model, true)
    }

    /// One record as stored (see [`FakeOdoo::records`]).
    pub fn record(&self, model: &str, id: i64) -> Option<Value> {
        let state = self.shared.state();
        let def = state.store.schema.model(model)?;
        stored(&state.store, def.name, id)
    }

    fn snapshot(&self, model: &str, with_seeds: bool) -> Vec<Value> {
        let state = self.shared.state();
        let Some(def) = state.store.schema.model(model) else {
            return vec![];
        };
        let model_name = def.name;
        state
            .store
            .table(model_name)
            .rows
            .keys()
            .filter(|id| with_seeds || !state.seeded.contains(&(model_name, **id)))
            .filter_map(|&id| stored(&state.store, model_name, id))
            .collect()
    }

    /// The external ids clients created: (module, name, model, res_id), by id.
    pub fn xmlids(&self) -> Vec<(String, String, String, i64)> {
        self.records("ir.model.data")
            .into_iter()
            .map(|r| {
                (
                    r["module"].as_str().unwrap_or_default().to_owned(),
                    r["name"].as_str().unwrap_or_default().to_owned(),
                    r["model"].as_str().unwrap_or_default().to_owned(),
                    r["res_id"].as_i64().unwrap_or(0),
                )
            })
            .collect()
    }

    /// The calls received, in order (the last [`CALL_LOG`] of them).
    pub fn calls(&self) -> Vec<Call> {
        self.shared.state().calls.iter().cloned().collect()
    }

    /// How many `object` calls of `method` on `model` were received (failed ones included).
    pub fn count(&self, model: &str, method: &str) -> usize {
        self.shared
            .state()
            .counts
            .get(&(model.to_owned(), method.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// HTTP requests received on `/jsonrpc` (502s and transport errors included).
    pub fn requests(&self) -> u64 {
        *self.shared.requests.lock().unwrap()
    }

    /// Forgets the calls received so far (not the records).
    pub fn clear_calls(&self) {
        let mut state = self.shared.state();
        state.calls.clear();
        state.counts.clear();
    }
}

impl Drop for FakeOdoo {
    fn drop(&mut self) {
        let running = self.running.lock().map(|mut r| r.take()).ok().flatten();
        if let Some(running) = running {
            drop(running.handle.stop(false));
        }
    }
}

/// A row as stored, with its one2many and computed fields filled in.
fn stored(store: &Store, model: &'static str, id: i64) -> Option<Value> {
    let def = store.schema.model(model)?;
    let mut rec = store.get(model, id)?.clone();
    for (field, comodel, inverse) in store.one2manys(model) {
        rec.insert(field.into(), json!(store.children(comodel, inverse, id)));
    }
    // As `read` answers them: a computed value wins (`invoice_line_ids` leaves the receivable
    // line out, a line's residual follows its move).
    for field in &def.fields {
        if let Some(value) = business::computed(store, model, id, field.name) {
            rec.insert(field.name.into(), value);
        }
    }
    Some(Value::Object(rec))
}

fn serve(listener: TcpListener, shared: Arc<Shared>) -> Running {
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let state = web::Data::from(shared);
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(state.clone())
                    .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                    .route("/jsonrpc", web::route().to(jsonrpc))
            })
            .workers(2)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
            handle_tx.send(server.handle()).unwrap();
            let _ = server.await;
        });
    });
    let handle = handle_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    Running { handle, thread }
}

async fn jsonrpc(
    request: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    *shared.requests.lock().unwrap() += 1;
    let mode = *shared.mode.lock().unwrap();
    if mode == Mode::BadGateway {
        return HttpResponse::BadGateway().content_type("text/html").body(
            "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
        );
    }
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let peer = request.peer_addr().map(|a| a.ip());
    let response = rpc::handle(&shared, &content_type, &body, peer);
    if let Mode::Slow(delay) = mode {
        actix_web::rt::time::sleep(delay).await;
    }
    response
}
