//! The exceptions a call can raise, as `serialize_exception` puts them on the wire
//! (API-NOTES §1.4): `data.name` is the Python class path, `message` is `str(exc)` and
//! `arguments` is `exc.args`.

use serde_json::{Value, json};

/// One raised exception. Raising it inside a call rolls the call's changes back (one call is one
/// transaction, API-NOTES §5.1).
#[derive(Debug, Clone)]
pub struct Fault {
    pub name: String,
    pub message: String,
    pub arguments: Vec<Value>,
}

impl Fault {
    fn new(name: &str, message: impl Into<String>) -> Fault {
        let message = message.into();
        Fault {
            name: name.to_owned(),
            arguments: vec![Value::String(message.clone())],
            message,
        }
    }

    pub fn user(message: impl Into<String>) -> Fault {
        Fault::new("odoo.exceptions.UserError", message)
    }

    pub fn validation(message: impl Into<String>) -> Fault {
        Fault::new("odoo.exceptions.ValidationError", message)
    }

    /// `ValidationError` made of an `IntegrityError` by `_as_validation_error` (last branch and
    /// named `_sql_constraints`): the fixed prefix, then the constraint or PostgreSQL text.
    pub fn integrity(detail: impl AsRef<str>) -> Fault {
        Fault::validation(format!(
            "The operation cannot be completed: {}",
            detail.as_ref()
        ))
    }

    /// `AccessDenied()`: default message "Access Denied".
    pub fn access_denied() -> Fault {
        Fault::new("odoo.exceptions.AccessDenied", "Access Denied")
    }

    pub fn login_cooldown() -> Fault {
        Fault::new(
            "odoo.exceptions.AccessDenied",
            "Too many login failures, please wait a bit before trying again.",
        )
    }

    pub fn access(message: impl Into<String>) -> Fault {
        Fault::new("odoo.exceptions.AccessError", message)
    }

    pub fn missing(model: &str, ids: &[i64]) -> Fault {
        let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
        Fault::new(
            "odoo.exceptions.MissingError",
            format!(
                "Record does not exist or has been deleted.\n(Record: {model}({},), User: 2)",
                ids.join(", ")
            ),
        )
    }

    pub fn value_error(message: impl Into<String>) -> Fault {
        Fault::new("builtins.ValueError", message)
    }

    pub fn type_error(message: impl Into<String>) -> Fault {
        Fault::new("builtins.TypeError", message)
    }

    pub fn index_error() -> Fault {
        Fault::new("builtins.IndexError", "list index out of range")
    }

    pub fn attribute_error(message: impl Into<String>) -> Fault {
        Fault::new("builtins.AttributeError", message)
    }

    /// `KeyError('foo')`: `str()` is the repr of the key, `args` the key itself.
    pub fn key_error(key: &str) -> Fault {
        Fault {
            name: "builtins.KeyError".into(),
            message: format!("'{key}'"),
            arguments: vec![Value::String(key.into())],
        }
    }

    /// A bare `Exception(...)` (e.g. `common.dispatch`'s "Method not found").
    pub fn exception(message: impl Into<String>) -> Fault {
        Fault::new("builtins.Exception", message)
    }

    /// A concurrency failure still there after `retrying`'s last try (API-NOTES §5.1; the
    /// serialized name follows the `name` rule, UNVERIFIED against a live server).
    pub fn serialization_failure() -> Fault {
        Fault::new(
            "psycopg2.errors.SerializationFailure",
            "could not serialize access due to concurrent update\n",
        )
    }

    pub fn name_error(message: impl Into<String>) -> Fault {
        Fault::new("builtins.NameError", message)
    }

    /// The `error` member of the JSON-RPC envelope (code 200 in 17.0).
    pub fn to_error(&self) -> Value {
        json!({
            "code": 200,
            "message": "Odoo Server Error",
            "data": {
                "name": self.name,
                "debug": format!(
                    "Traceback (most recent call last):\n  File \"fake_odoo\", line 1, in dispatch\n{}: {}\n",
                    self.name, self.message
                ),
                "message": self.message,
                "arguments": self.arguments,
                "context": {},
            }
        })
    }
}

/// Python's `repr` of a string, as `%r` prints it in Odoo's messages.
pub fn py_repr(value: &Value) -> String {
    match value {
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(py_repr).collect();
            format!("[{}]", inner.join(", "))
        }
        other => other.to_string(),
    }
}
