//! Triton's trace files: a JSON array of entries per file. With
//! `log_frequency` N, every N traces go to `<trace_file>.<index>`; with 0,
//! they go to `<trace_file>` at exit. kiln also writes an indexed file once
//! [`MAX_BUFFERED_TRACES`] wait, where Triton would keep them all in memory
//! until exit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::clock::Clock;
use crate::record::{ModelRecord, Shared};
use crate::settings::{Level, Values};

/// Traces held for a file at most; then they are written (indexed).
pub const MAX_BUFFERED_TRACES: usize = 10_000;

/// What every scope writing a trace file shares (Triton's `TraceFile`): the
/// file's next index, and what the unindexed file holds so far (a scope
/// replaced by an update writes its traces there, and so does the next one
/// at exit: the file gets both, not the last only).
#[derive(Default)]
pub(crate) struct TraceFiles {
    files: Arc<Mutex<HashMap<String, FileState>>>,
}

#[derive(Default)]
struct FileState {
    next_index: u32,
    unindexed: Vec<String>,
}

impl TraceFiles {
    pub fn stream(&self, values: &Values) -> TraceStream {
        TraceStream {
            file: values.file.clone(),
            files: self.files.clone(),
            traces: Mutex::new(Vec::new()),
        }
    }
}

/// The traces of one scope waiting for their file; each is its entries,
/// rendered.
pub(crate) struct TraceStream {
    file: String,
    files: Arc<Mutex<HashMap<String, FileState>>>,
    traces: Mutex<Vec<String>>,
}

impl TraceStream {
    pub fn push(
        &self,
        clock: &Clock,
        values: &Values,
        request: &Shared,
        records: &[ModelRecord],
        exhausted: bool,
    ) {
        let entries = render(clock, values.level, request, records);
        let batch = {
            let mut traces = self.traces.lock();
            traces.push(entries);
            let frequency = values.log_frequency as usize;
            let due = exhausted
                || (frequency != 0 && traces.len() >= frequency)
                || traces.len() >= MAX_BUFFERED_TRACES;
            if !due {
                return;
            }
            std::mem::take(&mut *traces)
        };
        self.write(&batch, true);
    }

    /// What is left, at exit or when the scope is replaced: to the indexed
    /// files with a log frequency, else to the file itself.
    pub fn flush_rest(&self, values: &Values) {
        let batch = std::mem::take(&mut *self.traces.lock());
        if !batch.is_empty() {
            self.write(&batch, values.log_frequency != 0);
        }
    }

    fn write(&self, traces: &[String], indexed: bool) {
        let (path, body) = {
            let mut files = self.files.lock();
            let file = files.entry(self.file.clone()).or_default();
            if indexed {
                let path = format!("{}.{}", self.file, file.next_index);
                file.next_index += 1;
                (path, format!("[{}]", traces.join(",")))
            } else {
                file.unindexed.extend_from_slice(traces);
                (self.file.clone(), format!("[{}]", file.unindexed.join(",")))
            }
        };
        // Written whole under a temporary name, then renamed: a reader never
        // sees half a file.
        let tmp = PathBuf::from(format!("{path}.tmp"));
        let result = std::fs::write(&tmp, body).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = result {
            tracing::warn!(file = %path, "cannot write trace file: {e}");
        }
    }
}

/// One request's entries in Triton's format: per model execution, its
/// identity, then one entry per timestamp, then its tensors.
fn render(clock: &Clock, level: Level, request: &Shared, records: &[ModelRecord]) -> String {
    let mut entries: Vec<Value> = Vec::new();
    for r in records {
        let mut head = json!({
            "id": r.id,
            "model_name": r.model,
            "model_version": r.version.parse::<i64>().unwrap_or(-1),
            "request_id": r.request_id,
        });
        if let Some(parent) = r.parent_id {
            head["parent_id"] = json!(parent);
        }
        entries.push(head);
        if level.contains(Level::TIMESTAMPS) {
            for (name, at) in timestamps(r, request) {
                entries.push(json!({
                    "id": r.id,
                    "timestamps": [{"name": name, "ns": clock.ns(at)}],
                }));
            }
        }
        if level.contains(Level::TENSORS) {
            for (activity, t) in &r.tensors {
                let mut tensor = json!({
                    "name": t.name,
                    "data": t.data,
                    "shape": t.shape,
                    "dtype": t.datatype,
                });
                if t.truncated {
                    tensor["truncated"] = json!(true);
                }
                entries.push(json!({"id": r.id, "activity": activity, "tensor": tensor}));
            }
        }
    }
    entries
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A model execution's timestamps by Triton's names, in order. The model
/// the caller asked for also carries when the request arrived and was
/// admitted (kiln's names, after Triton's `HTTP_RECV_START` /
/// `GRPC_WAITREAD_START`).
pub(crate) fn timestamps(r: &ModelRecord, request: &Shared) -> Vec<(&'static str, Instant)> {
    let mut out = Vec::with_capacity(9);
    if r.parent_id.is_none() {
        out.push(("RECV_START", request.received_at));
        out.push(("ADMITTED", request.admitted_at));
    }
    out.push(("REQUEST_START", r.request_start));
    if let Some(q) = r.queue_start {
        out.push(("QUEUE_START", q));
    }
    if let Some(c) = r.compute {
        out.push(("COMPUTE_START", c.start));
        out.push(("COMPUTE_INPUT_END", c.input_end));
        out.push(("COMPUTE_OUTPUT_START", c.output_start));
        out.push(("COMPUTE_END", c.end));
    }
    out.push(("REQUEST_END", r.request_end));
    out
}
