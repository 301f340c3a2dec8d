//! Triton's trace extension, one core for both protocols: read or update
//! the server's trace settings or one model's (`GET/POST
//! /v2[/models/{m}]/trace/setting`, gRPC `TraceSetting`).

use kiln_trace::{Update, UpdateError};
use kiln_types::error::{KilnError, Result};
use kiln_types::RequestContext;

use crate::ServerState;

/// The settings after applying `update` (if any) to `model`'s settings or,
/// without a model, the server's. A model must be one the caller can see
/// and ready, as in Triton.
pub fn trace_setting(
    state: &ServerState,
    ctx: &RequestContext,
    model: Option<&str>,
    update: Option<Update>,
) -> Result<Vec<(&'static str, Vec<String>)>> {
    if let Some(name) = model {
        state.namespace(ctx).resolve(name, "")?;
    }
    if let Some(update) = update {
        state.tracing.update(model, &update).map_err(refused)?;
        tracing::info!(
            caller = ?ctx.identity,
            model = model.unwrap_or("(all)"),
            "trace settings updated"
        );
    }
    Ok(state.tracing.settings(model))
}

/// An update from a JSON body: strings, arrays of strings (levels), or null
/// to clear; anything else names the setting.
pub fn update_from_json(body: &[u8], mode: kiln_trace::Mode) -> Result<Update> {
    let value: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Object(Default::default())
    } else {
        serde_json::from_slice(body)
            .map_err(|e| KilnError::invalid(format!("trace settings: invalid JSON: {e}")))?
    };
    let serde_json::Value::Object(members) = value else {
        return Err(KilnError::invalid("trace settings must be a JSON object"));
    };
    let mut entries = Vec::with_capacity(members.len());
    for (name, v) in &members {
        let values = match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(vec![s.clone()]),
            serde_json::Value::Array(items) => Some(
                items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        KilnError::invalid(format!(
                            "trace setting '{}' must be a string or an array of strings",
                            kiln_types::text::clip(name)
                        ))
                    })?,
            ),
            _ => {
                return Err(KilnError::invalid(format!(
                    "trace setting '{}' must be a string, an array of strings or null",
                    kiln_types::text::clip(name)
                )))
            }
        };
        entries.push((name.as_str(), values));
    }
    Update::parse(entries, mode).map_err(refused)
}

/// Refused updates answer 400 / INVALID_ARGUMENT, what Triton's HTTP
/// endpoint answers for both kinds.
pub fn refused(e: UpdateError) -> KilnError {
    match e {
        UpdateError::Invalid(m) | UpdateError::Unsupported(m) => KilnError::invalid(m),
    }
}
