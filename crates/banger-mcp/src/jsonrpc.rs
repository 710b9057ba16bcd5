//! JSON-RPC 2.0 as MCP's stdio transport uses it: one message per line,
//! no batches (MCP 2025-06-18 removed them).
//!
//! [`parse`] classifies a line. Anything that is not a valid request,
//! notification or response becomes [`Incoming::Invalid`] carrying the
//! error response to send, so a garbage line, a wrong `jsonrpc` version or
//! a missing method is answered and the server reads on.

use serde_json::{Map, Value, json};

/// Invalid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// Valid JSON that is not a valid request.
pub const INVALID_REQUEST: i64 = -32600;
/// No such method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// The method's parameters are wrong.
pub const INVALID_PARAMS: i64 = -32602;

/// One classified input line.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A call to answer.
    Request {
        /// The caller's id (a string or a number), echoed in the answer.
        id: Value,
        /// The method.
        method: String,
        /// `params`, an object or array when present.
        params: Option<Value>,
    },
    /// A message not to answer.
    Notification {
        /// The method.
        method: String,
    },
    /// A response from the client; this server sends no requests, so it is
    /// ignored.
    Response,
    /// Not valid JSON-RPC: the error response to send.
    Invalid(Value),
}

/// Classifies one line (without its newline).
pub fn parse(line: &[u8]) -> Incoming {
    let value: Value = match serde_json::from_slice(line) {
        Ok(value) => value,
        Err(error) => {
            return Incoming::Invalid(error_response(
                Value::Null,
                PARSE_ERROR,
                &format!("Parse error: {error}"),
            ));
        }
    };
    let Value::Object(message) = value else {
        let what = if value.is_array() {
            "batches are not supported"
        } else {
            "a message must be a JSON object"
        };
        return Incoming::Invalid(error_response(
            Value::Null,
            INVALID_REQUEST,
            &format!("Invalid Request: {what}"),
        ));
    };
    classify(message)
}

fn classify(message: Map<String, Value>) -> Incoming {
    let id = match message.get("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_))) => Some(id.clone()),
        Some(_) => {
            return invalid(Value::Null, "id must be a string or a number");
        }
    };
    let reply_id = || id.clone().unwrap_or(Value::Null);
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid(reply_id(), "jsonrpc must be \"2.0\"");
    }
    let method = match message.get("method") {
        Some(Value::String(method)) => method.clone(),
        Some(_) => return invalid(reply_id(), "method must be a string"),
        None if id.is_some()
            && (message.contains_key("result") || message.contains_key("error")) =>
        {
            return Incoming::Response;
        }
        None => return invalid(reply_id(), "method is missing"),
    };
    let params = match message.get("params") {
        None => None,
        Some(params @ (Value::Object(_) | Value::Array(_))) => Some(params.clone()),
        Some(_) => return invalid(reply_id(), "params must be an object or an array"),
    };
    match id {
        Some(id) => Incoming::Request { id, method, params },
        None => Incoming::Notification { method },
    }
}

fn invalid(id: Value, why: &str) -> Incoming {
    Incoming::Invalid(error_response(
        id,
        INVALID_REQUEST,
        &format!("Invalid Request: {why}"),
    ))
}

/// A success response.
pub fn result_response(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error response.
pub fn error_response(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(incoming: Incoming) -> (Value, i64) {
        match incoming {
            Incoming::Invalid(response) => (
                response["id"].clone(),
                response["error"]["code"].as_i64().unwrap(),
            ),
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn requests_notifications_and_responses() {
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#),
            Incoming::Request {
                id: json!(7),
                method: "ping".into(),
                params: None
            }
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Incoming::Notification {
                method: "notifications/initialized".into()
            }
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#),
            Incoming::Response
        );
    }

    #[test]
    fn malformed_messages_get_the_right_error() {
        assert_eq!(error_of(parse(b"not json")), (Value::Null, PARSE_ERROR));
        assert_eq!(error_of(parse(b"[]")), (Value::Null, INVALID_REQUEST));
        assert_eq!(error_of(parse(b"42")), (Value::Null, INVALID_REQUEST));
        assert_eq!(
            error_of(parse(br#"{"jsonrpc":"1.0","id":3,"method":"ping"}"#)),
            (json!(3), INVALID_REQUEST)
        );
        assert_eq!(
            error_of(parse(br#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#)),
            (Value::Null, INVALID_REQUEST)
        );
        assert_eq!(
            error_of(parse(br#"{"jsonrpc":"2.0","id":4}"#)),
            (json!(4), INVALID_REQUEST)
        );
        assert_eq!(
            error_of(parse(
                br#"{"jsonrpc":"2.0","id":5,"method":"x","params":1}"#
            )),
            (json!(5), INVALID_REQUEST)
        );
    }
}
