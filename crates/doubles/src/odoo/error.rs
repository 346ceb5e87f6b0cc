//! Odoo's exceptions and how each transport serializes them.

use serde_json::{Value, json};

/// The Python exception an Odoo call raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exc {
    UserError,
    ValidationError,
    AccessError,
    AccessDenied,
    MissingError,
    ValueError,
    TypeError,
    AttributeError,
    SerializationFailure,
    LockNotAvailable,
    SessionExpired,
}

impl Exc {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Exc::UserError => "odoo.exceptions.UserError",
            Exc::ValidationError => "odoo.exceptions.ValidationError",
            Exc::AccessError => "odoo.exceptions.AccessError",
            Exc::AccessDenied => "odoo.exceptions.AccessDenied",
            Exc::MissingError => "odoo.exceptions.MissingError",
            Exc::ValueError => "builtins.ValueError",
            Exc::TypeError => "builtins.TypeError",
            Exc::AttributeError => "builtins.AttributeError",
            Exc::SerializationFailure => "psycopg2.errors.SerializationFailure",
            Exc::LockNotAvailable => "psycopg2.errors.LockNotAvailable",
            Exc::SessionExpired => "odoo.http.SessionExpiredException",
        }
    }

    /// JSON-2 status: Odoo 19's `UserError.http_status` (422) and its subclasses'
    /// (`AccessDenied`/`AccessError` 403, `MissingError` 404); a `TypeError` from binding
    /// the arguments is turned into 422 by the JSON-2 controller; anything else is 500.
    pub(crate) fn json2_status(self) -> u16 {
        match self {
            Exc::UserError | Exc::ValidationError | Exc::TypeError => 422,
            Exc::AccessError | Exc::AccessDenied => 403,
            Exc::MissingError => 404,
            Exc::SessionExpired => 401,
            Exc::ValueError | Exc::AttributeError | Exc::SerializationFailure | Exc::LockNotAvailable => 500,
        }
    }
}

/// A raised exception with its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OdooError {
    pub(crate) exc: Exc,
    pub(crate) message: String,
}

pub(crate) type OResult<T> = std::result::Result<T, OdooError>;

impl OdooError {
    pub(crate) fn new(exc: Exc, message: impl Into<String>) -> Self {
        Self { exc, message: message.into() }
    }
    pub(crate) fn user(message: impl Into<String>) -> Self {
        Self::new(Exc::UserError, message)
    }
    pub(crate) fn validation(message: impl Into<String>) -> Self {
        Self::new(Exc::ValidationError, message)
    }
    pub(crate) fn value(message: impl Into<String>) -> Self {
        Self::new(Exc::ValueError, message)
    }
    pub(crate) fn type_error(message: impl Into<String>) -> Self {
        Self::new(Exc::TypeError, message)
    }
    pub(crate) fn missing(model: &str, ids: &[i64]) -> Self {
        let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        Self::new(
            Exc::MissingError,
            format!("Record does not exist or has been deleted.\n(Record: {model}({},), User: 2)", list.join(", ")),
        )
    }

    /// `odoo.http.serialize_exception`: `{name, message, arguments, context, debug}`.
    pub(crate) fn serialize(&self) -> Value {
        json!({
            "name": self.exc.name(),
            "message": self.message,
            "arguments": [self.message],
            "context": {},
            "debug": format!(
                "Traceback (most recent call last):\n  File \"/odoo/odoo/http.py\", line 1, in _call_function\n{}: {}\n",
                self.exc.name(),
                self.message
            ),
        })
    }

    /// The JSON-RPC `error` object; `code` is 200 up to 18.0 and 0 from saas-18.1 on,
    /// 100 for an expired session.
    pub(crate) fn jsonrpc_error(&self, legacy_code: bool) -> Value {
        let (code, message) = if self.exc == Exc::SessionExpired {
            (100, "Odoo Session Expired")
        } else if legacy_code {
            (200, "Odoo Server Error")
        } else {
            (0, "Odoo Server Error")
        };
        json!({"code": code, "message": message, "data": self.serialize()})
    }
}
