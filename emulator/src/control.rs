//! The HTTP control API for out-of-process users (`/_emulator/...`):
//!
//! | method | path | body | effect |
//! |---|---|---|---|
//! | GET | `/_emulator/truth` | – | [`crate::Truth`] as JSON |
//! | POST | `/_emulator/mutations` | JSON array of [`crate::Mutation`] | applied in order; 400 at the first failure (earlier ones stay applied) |
//! | POST | `/_emulator/faults` | JSON array of [`crate::FaultRule`] (or one rule) | appended |
//! | DELETE | `/_emulator/faults` | – | all rules removed |
//! | POST | `/_emulator/mode` | one [`crate::Mode`] or an array | applied in order |
//! | GET | `/_emulator/mode` | – | current [`crate::Modes`] |
//! | GET | `/_emulator/requests` | – | recorded requests (control requests are not recorded) |
//! | DELETE | `/_emulator/requests` | – | clears the recording |
//! | POST | `/_emulator/clock` | `{"advance_secs": N}` | moves the emulator clock forward |
//!
//! Enum encoding is serde's externally tagged form, see [`crate::types`].

use crate::server::Shared;
use crate::types::{FaultRule, Mode, Mutation};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn reply(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(body.to_string())
}

fn bad(message: &str) -> HttpResponse {
    reply(StatusCode::BAD_REQUEST, &json!({ "error": message }))
}

/// Parse either a JSON array of `T` or a single `T`.
fn one_or_many<T: DeserializeOwned>(body: &[u8]) -> Result<Vec<T>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    if v.is_array() {
        serde_json::from_value(v).map_err(|e| e.to_string())
    } else {
        serde_json::from_value(v)
            .map(|x| vec![x])
            .map_err(|e| e.to_string())
    }
}

pub(crate) fn handle(shared: &Shared, req: &HttpRequest, body: &[u8]) -> HttpResponse {
    let path = req.path().trim_end_matches('/');
    let method = req.method();
    match (method, path) {
        (&Method::GET, "/_emulator/truth") => {
            let truth = shared.dir().truth();
            reply(
                StatusCode::OK,
                &serde_json::to_value(truth).unwrap_or_default(),
            )
        }
        (&Method::POST, "/_emulator/mutations") => {
            let list: Vec<Mutation> = match one_or_many(body) {
                Ok(l) => l,
                Err(e) => return bad(&e),
            };
            let now = shared.now_secs();
            let mut dir = shared.dir_mut();
            for (i, m) in list.into_iter().enumerate() {
                if let Err(e) = dir.apply(m, now, crate::util::new_guid) {
                    return bad(&format!("mutation {i} failed: {e}"));
                }
            }
            reply(StatusCode::OK, &json!({ "version": dir.version }))
        }
        (&Method::POST, "/_emulator/faults") => match one_or_many::<FaultRule>(body) {
            Ok(rules) => {
                shared.faults().extend(rules.into_iter().map(|r| (r, 0)));
                HttpResponse::NoContent().finish()
            }
            Err(e) => bad(&e),
        },
        (&Method::DELETE, "/_emulator/faults") => {
            shared.faults().clear();
            HttpResponse::NoContent().finish()
        }
        (&Method::POST, "/_emulator/mode") => match one_or_many::<Mode>(body) {
            Ok(modes) => {
                let mut m = shared.modes_mut();
                for mode in modes {
                    m.apply(mode);
                }
                reply(
                    StatusCode::OK,
                    &serde_json::to_value(&*m).unwrap_or_default(),
                )
            }
            Err(e) => bad(&e),
        },
        (&Method::GET, "/_emulator/mode") => reply(
            StatusCode::OK,
            &serde_json::to_value(shared.modes()).unwrap_or_default(),
        ),
        (&Method::GET, "/_emulator/requests") => {
            let list = shared.requests().list.clone();
            reply(
                StatusCode::OK,
                &serde_json::to_value(list).unwrap_or_default(),
            )
        }
        (&Method::DELETE, "/_emulator/requests") => {
            shared.requests().clear();
            HttpResponse::NoContent().finish()
        }
        (&Method::POST, "/_emulator/clock") => {
            let v: Value = serde_json::from_slice(body).unwrap_or_default();
            match v.get("advance_secs").and_then(Value::as_u64) {
                Some(secs) => {
                    shared.advance_clock(secs);
                    reply(StatusCode::OK, &json!({ "now": shared.now_secs() }))
                }
                None => bad("expected {\"advance_secs\": N}"),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            &json!({ "error": format!("no control endpoint {method} {path}") }),
        ),
    }
}
