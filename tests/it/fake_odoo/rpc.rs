//! `/jsonrpc` as 17.0's `JsonRPCDispatcher` and `dispatch_rpc` answer it (API-NOTES §1): the
//! transport 400s, the envelope, the `common` and `object` services, `security.check` with the
//! failed-login cooldown, and one transaction per `execute_kw`.

use std::net::IpAddr;
use std::time::Instant;

use actix_web::HttpResponse;
use chrono::Utc;
use serde_json::{Map, Value, json};

use super::fault::{Fault, py_repr};
use super::orm::{Args, Env, check_kwargs, python_type};
use super::{Call, DB, LOGIN, Shared, State, UID, business};

/// Answers one HTTP request body.
pub fn handle(
    shared: &Shared,
    content_type: &str,
    body: &[u8],
    peer: Option<IpAddr>,
) -> HttpResponse {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" && mime != "application/json-rpc" {
        return HttpResponse::BadRequest()
            .content_type("text/html; charset=utf-8")
            .body(
                "<!doctype html>\n<html lang=en>\n<title>400 Bad Request</title>\n<h1>Bad Request</h1>\n<p>Request inferred type is compatible with [&#39;http&#39;] but &#39;/jsonrpc&#39; is type=&#39;json&#39;.\n\nPlease verify the Content-Type request header and try again.</p>\n",
            );
    }
    let request: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(_) => return plain_400("Invalid JSON data"),
    };
    let Value::Object(mut request) = request else {
        return plain_400("Invalid JSON-RPC data");
    };
    let id = request.remove("id").unwrap_or(Value::Null);
    let outcome = dispatch(shared, request, peer);
    let id_text = id.to_string();
    let body = match outcome {
        Ok(Some(result)) => format!(r#"{{"jsonrpc":"2.0","id":{id_text},"result":{result}}}"#),
        Ok(None) => format!(r#"{{"jsonrpc":"2.0","id":{id_text}}}"#),
        Err(fault) => format!(
            r#"{{"jsonrpc":"2.0","id":{id_text},"error":{}}}"#,
            fault.to_error()
        ),
    };
    HttpResponse::Ok()
        .content_type("application/json; charset=utf-8")
        .body(body)
}

fn plain_400(text: &'static str) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("text/html; charset=utf-8")
        .body(text)
}

fn dispatch(
    shared: &Shared,
    mut request: Map<String, Value>,
    peer: Option<IpAddr>,
) -> Result<Option<Value>, Fault> {
    let mut params = match request.remove("params") {
        None => Map::new(),
        Some(Value::Object(params)) => params,
        Some(_) => {
            return Err(Fault::type_error(
                "cannot convert dictionary update sequence element #0 to a sequence",
            ));
        }
    };
    let missing = ["service", "method", "args"]
        .into_iter()
        .filter(|k| !params.contains_key(*k))
        .collect::<Vec<_>>();
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|m| format!("'{m}'")).collect();
        return Err(Fault::type_error(format!(
            "RPC.jsonrpc() missing {} required positional argument{}: {}",
            missing.len(),
            if missing.len() > 1 { "s" } else { "" },
            names.join(" and ")
        )));
    }
    let service = params["service"].as_str().unwrap_or_default().to_owned();
    let method = params["method"].as_str().unwrap_or_default().to_owned();
    let args = match params.remove("args").unwrap_or(Value::Null) {
        Value::Array(args) => args,
        Value::Null => vec![],
        other => {
            return Err(Fault::type_error(format!(
                "dispatch_rpc() argument after * must be an iterable, not {}",
                python_type(&other)
            )));
        }
    };
    let mut state = shared.state();
    let outcome = match service.as_str() {
        "common" => common(shared, &mut state, &method, &args, peer),
        "object" => object(shared, &mut state, &method, &args, peer),
        "db" => match method.as_str() {
            "list" => Ok(Some(json!([DB]))),
            "server_version" => Ok(Some(json!("17.0"))),
            _ => Err(Fault::exception(format!("Method not found: {method}"))),
        },
        _ => Err(Fault::key_error(&service)),
    };
    let (model, model_method, call_args, kwargs) = if service == "object" {
        (
            args.get(3).and_then(Value::as_str).map(str::to_owned),
            args.get(4).and_then(Value::as_str).map(str::to_owned),
            if method == "execute_kw" {
                args.get(5).cloned().unwrap_or(Value::Null)
            } else {
                json!(args.get(5..).unwrap_or_default())
            },
            args.get(6).cloned().unwrap_or(Value::Null),
        )
    } else {
        (None, None, json!(args), Value::Null)
    };
    if let (Some(model), Some(model_method)) = (&model, &model_method) {
        *state
            .counts
            .entry((model.clone(), model_method.clone()))
            .or_default() += 1;
    }
    if state.calls.len() >= super::CALL_LOG {
        state.calls.pop_front();
    }
    state.calls.push_back(Call {
        service,
        method,
        model,
        model_method,
        args: call_args,
        kwargs,
        ok: outcome.is_ok(),
    });
    outcome
}

fn common(
    shared: &Shared,
    state: &mut State,
    method: &str,
    args: &[Value],
    peer: Option<IpAddr>,
) -> Result<Option<Value>, Fault> {
    match method {
        "version" => Ok(Some(json!({
            "server_version": "17.0",
            "server_version_info": [17, 0, 0, "final", 0, ""],
            "server_serie": "17.0",
            "protocol_version": 1,
        }))),
        "login" | "authenticate" => {
            let wanted = if method == "login" { 3 } else { 4 };
            if args.len() < wanted {
                return Err(Fault::type_error(format!(
                    "exp_{method}() missing {} required positional argument(s)",
                    wanted - args.len()
                )));
            }
            check_db(&args[0])?;
            let login = args[1].as_str().unwrap_or_default();
            let password = args[2].as_str().unwrap_or_default();
            // `_login`: an empty password is refused before the cooldown guard.
            if password.is_empty() {
                return Ok(Some(json!(false)));
            }
            let ok = guarded(state, peer, || login == LOGIN && password == shared.api_key);
            Ok(Some(if ok.is_ok() { json!(UID) } else { json!(false) }))
        }
        "about" => Ok(Some(json!("See http://openerp.com"))),
        _ => Err(Fault::exception(format!("Method not found: {method}"))),
    }
}

fn check_db(db: &Value) -> Result<(), Fault> {
    let name = db.as_str().unwrap_or_default();
    if name == DB {
        return Ok(());
    }
    Err(Fault {
        name: "psycopg2.OperationalError".into(),
        message: format!(
            "connection to server on socket \"/var/run/postgresql/.s.PGSQL.5432\" failed: FATAL:  database \"{name}\" does not exist\n"
        ),
        arguments: vec![json!(format!(
            "connection to server on socket \"/var/run/postgresql/.s.PGSQL.5432\" failed: FATAL:  database \"{name}\" does not exist\n"
        ))],
    })
}

/// `_assert_can_auth`: refuses during a cooldown, counts a failure, clears on success.
fn guarded(
    state: &mut State,
    peer: Option<IpAddr>,
    check: impl FnOnce() -> bool,
) -> Result<(), Fault> {
    if let Some(&(failures, previous)) = state.failures.get(&peer)
        && state.cooldown_after > 0
        && failures >= state.cooldown_after
        && previous.elapsed() < state.cooldown
    {
        return Err(Fault::login_cooldown());
    }
    if check() {
        state.failures.remove(&peer);
        Ok(())
    } else {
        let entry = state.failures.entry(peer).or_insert((0, Instant::now()));
        *entry = (entry.0 + 1, Instant::now());
        Err(Fault::access_denied())
    }
}

fn object(
    shared: &Shared,
    state: &mut State,
    method: &str,
    args: &[Value],
    peer: Option<IpAddr>,
) -> Result<Option<Value>, Fault> {
    if args.len() < 3 {
        return Err(Fault::index_error());
    }
    let uid = match &args[1] {
        Value::Number(n) => n.as_f64().map(|f| f as i64).unwrap_or(0),
        Value::String(s) => s.trim().parse::<i64>().map_err(|_| {
            Fault::value_error(format!(
                "invalid literal for int() with base 10: {}",
                py_repr(&args[1])
            ))
        })?,
        Value::Bool(b) => i64::from(*b),
        other => {
            return Err(Fault::type_error(format!(
                "int() argument must be a string, a bytes-like object or a real number, not '{}'",
                python_type(other)
            )));
        }
    };
    check_db(&args[0])?;
    let password = args[2].as_str().unwrap_or_default();
    if password.is_empty() {
        return Err(Fault::access_denied());
    }
    guarded(state, peer, || uid == UID && password == shared.api_key)?;
    let rest = &args[3..];
    let (model, model_method, call_args) = match method {
        "execute_kw" => {
            if rest.len() < 3 {
                let names = ["obj", "method", "args"];
                let missing: Vec<String> = names[rest.len()..]
                    .iter()
                    .map(|n| format!("'{n}'"))
                    .collect();
                return Err(Fault::type_error(format!(
                    "execute_kw() missing {} required positional argument{}: {}",
                    missing.len(),
                    if missing.len() > 1 { "s" } else { "" },
                    missing.join(" and ")
                )));
            }
            let pos = match &rest[2] {
                Value::Array(pos) => pos.clone(),
                other => {
                    return Err(Fault::type_error(format!(
                        "odoo.service.model.execute() argument after * must be an iterable, not {}",
                        python_type(other)
                    )));
                }
            };
            let kw = match rest.get(3) {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(kw)) => kw.clone(),
                Some(other) => {
                    return Err(Fault::type_error(format!(
                        "odoo.service.model.execute() argument after ** must be a mapping, not {}",
                        python_type(other)
                    )));
                }
            };
            (&rest[0], &rest[1], Args { pos, kw })
        }
        "execute" => {
            if rest.len() < 2 {
                return Err(Fault::type_error(
                    "execute() missing required positional arguments: 'obj' and 'method'",
                ));
            }
            let pos = rest[2..].to_vec();
            (
                &rest[0],
                &rest[1],
                Args {
                    pos,
                    kw: Map::new(),
                },
            )
        }
        _ => return Err(Fault::name_error(format!("Method not available {method}"))),
    };
    let model = model.as_str().unwrap_or_default();
    let model_method = model_method.as_str().unwrap_or_default();
    if model_method.starts_with('_') || model_method == "init" {
        return Err(Fault::access(format!(
            "Private methods (such as {model_method}) cannot be called remotely."
        )));
    }
    execute(state, model, model_method, call_args)
}

/// One `execute_kw`: a transaction over the store.
fn execute(
    state: &mut State,
    model: &str,
    method: &str,
    mut args: Args,
) -> Result<Option<Value>, Fault> {
    if state.store.schema.model(model).is_none() {
        return Err(Fault::user(format!("Object {model} doesn't exist")));
    }
    let context = match args.kw.remove("context") {
        Some(Value::Object(context)) => context,
        _ => Map::new(),
    };
    check_kwargs(method, &args.kw)?;
    if state.serialization_failures > 0 {
        state.serialization_failures -= 1;
        return Err(Fault::serialization_failure());
    }
    let now = Utc::now();
    let State {
        store, rejections, ..
    } = state;
    let mut env = Env {
        store,
        context,
        today: now.format("%Y-%m-%d").to_string(),
        now: now.format("%Y-%m-%d %H:%M:%S").to_string(),
        rejections,
    };
    let outcome = match business::call(&mut env, model, method, &args) {
        Some(outcome) => outcome,
        None => match env.call_generic(model, method, &args) {
            Some(outcome) => outcome,
            None => Err(Fault::attribute_error(format!(
                "type object '{model}' has no attribute '{method}'"
            ))),
        },
    };
    match &outcome {
        Ok(_) => env.store.commit(),
        Err(_) => env.store.rollback(),
    }
    outcome
}
