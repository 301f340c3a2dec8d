//! What a traced request records on its way: one [`ModelRecord`] per model
//! it runs (the model asked for, and each step of an ensemble), with the
//! phase times Triton reports. Nothing here is exported until the request
//! is done: the last handle dropped hands the whole trace to its scope's
//! exporter (a Triton trace file or OTLP), so the request path only takes
//! `Instant`s and, at level TENSORS, a bounded copy of its tensors as text.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_types::context::{Protocol, RemoteSpan};
use kiln_types::tensor::{DataType, Tensor};
use parking_lot::Mutex;

use crate::settings::Level;

/// At most this many elements of one tensor go into a TENSORS trace, so a
/// trace file cannot grow by a whole 600 MB input per request.
pub const MAX_TRACED_ELEMENTS: usize = 4096;

/// One model's execution within a request, in Triton's terms.
#[derive(Debug, Clone)]
pub struct ModelRecord {
    /// Triton's trace id (one per model execution, counted per process).
    pub id: u64,
    /// The id of the ensemble this ran as a step of.
    pub parent_id: Option<u64>,
    pub span_id: u64,
    /// The request's root span, or the ensemble's model span.
    pub parent_span: u64,
    pub model: String,
    pub version: String,
    pub request_id: String,
    /// The model's backend ("pytorch", "wasm", "ensemble"...).
    pub backend: String,
    pub request_start: Instant,
    pub queue_start: Option<Instant>,
    pub compute: Option<ComputeTimes>,
    pub request_end: Instant,
    /// The error's message, if the execution failed.
    pub error: Option<String>,
    /// `TENSOR_QUEUE_INPUT` and `TENSOR_BACKEND_OUTPUT` activities, at level
    /// TENSORS.
    pub tensors: Vec<(&'static str, TracedTensor)>,
}

/// When a model's compute phases started and ended.
#[derive(Debug, Clone, Copy)]
pub struct ComputeTimes {
    pub start: Instant,
    pub input_end: Instant,
    pub output_start: Instant,
    pub end: Instant,
}

impl ComputeTimes {
    /// The phases run back to back from `start` (as the scheduler measures
    /// them: input, infer, output).
    pub fn from_durations(
        start: Instant,
        input: Duration,
        infer: Duration,
        output: Duration,
    ) -> Self {
        let input_end = start + input;
        let output_start = input_end + infer;
        Self {
            start,
            input_end,
            output_start,
            end: output_start + output,
        }
    }
}

/// A tensor as Triton's trace files show it: values as text.
#[derive(Debug, Clone)]
pub struct TracedTensor {
    pub name: String,
    pub datatype: &'static str,
    pub shape: String,
    /// Comma-separated values, the first [`MAX_TRACED_ELEMENTS`].
    pub data: String,
    pub truncated: bool,
}

impl TracedTensor {
    pub fn of(tensor: &Tensor) -> Self {
        let (data, truncated) = values_text(tensor);
        Self {
            name: tensor.name.clone(),
            datatype: tensor.datatype.kserve_name(),
            shape: tensor
                .shape
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(","),
            data,
            truncated,
        }
    }
}

fn values_text(tensor: &Tensor) -> (String, bool) {
    use std::fmt::Write;
    let bytes = &tensor.data[..];
    let mut out = String::new();
    let mut count = 0usize;
    let mut push = |out: &mut String, v: &dyn std::fmt::Display| {
        if count > 0 {
            out.push(',');
        }
        let _ = write!(out, "{v}");
        count += 1;
    };
    macro_rules! each {
        ($t:ty, $n:expr, $conv:expr) => {
            for chunk in bytes.chunks_exact($n).take(MAX_TRACED_ELEMENTS) {
                let v: $t = <$t>::from_le_bytes(chunk.try_into().expect("chunk size"));
                push(&mut out, &$conv(v));
            }
        };
    }
    let total = match tensor.datatype {
        DataType::Bytes => {
            let elements = kiln_types::tensor::bytes_elements(bytes).unwrap_or_default();
            for e in elements.iter().take(MAX_TRACED_ELEMENTS) {
                push(&mut out, &String::from_utf8_lossy(e).escape_default());
            }
            elements.len()
        }
        DataType::Bool => {
            for b in bytes.iter().take(MAX_TRACED_ELEMENTS) {
                push(&mut out, &(*b != 0));
            }
            bytes.len()
        }
        DataType::Uint8 => {
            each!(u8, 1, |v| v);
            bytes.len()
        }
        DataType::Int8 => {
            each!(i8, 1, |v| v);
            bytes.len()
        }
        DataType::Uint16 => {
            each!(u16, 2, |v| v);
            bytes.len() / 2
        }
        DataType::Int16 => {
            each!(i16, 2, |v| v);
            bytes.len() / 2
        }
        DataType::Fp16 => {
            each!(u16, 2, half::f16::from_bits);
            bytes.len() / 2
        }
        DataType::Bf16 => {
            each!(u16, 2, half::bf16::from_bits);
            bytes.len() / 2
        }
        DataType::Uint32 => {
            each!(u32, 4, |v| v);
            bytes.len() / 4
        }
        DataType::Int32 => {
            each!(i32, 4, |v| v);
            bytes.len() / 4
        }
        DataType::Fp32 => {
            each!(f32, 4, |v| v);
            bytes.len() / 4
        }
        DataType::Uint64 => {
            each!(u64, 8, |v| v);
            bytes.len() / 8
        }
        DataType::Int64 => {
            each!(i64, 8, |v| v);
            bytes.len() / 8
        }
        DataType::Fp64 => {
            each!(f64, 8, |v| v);
            bytes.len() / 8
        }
    };
    (out, total > MAX_TRACED_ELEMENTS)
}

/// Where a finished request's trace goes: the settings scope that sampled
/// it.
pub(crate) trait Sink: Send + Sync {
    fn level(&self) -> Level;
    /// Triton's next trace id (one per model execution).
    fn next_trace_id(&self) -> u64;
    fn export(&self, request: &Shared, records: Vec<ModelRecord>, end: Instant);
}

/// The part of a traced request every handle shares; exported when the last
/// handle goes.
pub(crate) struct Shared {
    pub sink: Arc<dyn Sink>,
    pub trace_id: u128,
    pub root_span: u64,
    pub remote: Option<RemoteSpan>,
    pub protocol: Protocol,
    pub tenant: Option<Arc<str>>,
    pub received_at: Instant,
    pub admitted_at: Instant,
    pub records: Mutex<Vec<ModelRecord>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let records = std::mem::take(self.records.get_mut());
        let sink = self.sink.clone();
        sink.export(self, records, Instant::now());
    }
}

/// A sampled request's trace. Held by the protocol layer until the answer
/// is encoded (the root span ends when the last handle is dropped) and
/// passed down with the request; an ensemble hands each step a
/// [`ModelTrace::step`].
#[derive(Clone)]
pub struct RequestTrace {
    pub(crate) shared: Arc<Shared>,
    /// The span the next model runs under and, for an ensemble's step, the
    /// ensemble's Triton id.
    parent_span: u64,
    parent_id: Option<u64>,
}

impl std::fmt::Debug for RequestTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestTrace({:032x})", self.shared.trace_id)
    }
}

impl RequestTrace {
    pub(crate) fn new(shared: Shared) -> Self {
        let parent_span = shared.root_span;
        Self {
            shared: Arc::new(shared),
            parent_span,
            parent_id: None,
        }
    }

    pub fn level(&self) -> Level {
        self.shared.sink.level()
    }

    /// The W3C trace id (hex) the request's spans carry.
    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.shared.trace_id)
    }

    /// A model starts running for this request (`REQUEST_START` now).
    pub fn start_model(&self) -> ModelTrace {
        ModelTrace {
            shared: self.shared.clone(),
            record: ModelRecord {
                id: self.shared.sink.next_trace_id(),
                parent_id: self.parent_id,
                span_id: crate::clock::new_span_id(),
                parent_span: self.parent_span,
                model: String::new(),
                version: String::new(),
                request_id: String::new(),
                backend: String::new(),
                request_start: Instant::now(),
                queue_start: None,
                compute: None,
                request_end: Instant::now(),
                error: None,
                tensors: Vec::new(),
            },
        }
    }
}

/// One model's part of a traced request, filled in as it runs.
pub struct ModelTrace {
    shared: Arc<Shared>,
    record: ModelRecord,
}

impl ModelTrace {
    /// The trace an ensemble's step runs under: its spans are children of
    /// this model's, its Triton record names this one as parent.
    pub fn step(&self) -> RequestTrace {
        RequestTrace {
            shared: self.shared.clone(),
            parent_span: self.record.span_id,
            parent_id: Some(self.record.id),
        }
    }

    /// The request enters the model's queue (`QUEUE_START` now).
    pub fn queue_started(&mut self) {
        self.record.queue_start = Some(Instant::now());
    }

    pub fn queue_start(&self) -> Option<Instant> {
        self.record.queue_start
    }

    pub fn compute(&mut self, times: ComputeTimes) {
        self.record.compute = Some(times);
    }

    /// Records `tensors` as `activity` when the level asks for tensors.
    pub fn tensors<'a>(
        &mut self,
        activity: &'static str,
        tensors: impl IntoIterator<Item = &'a Tensor>,
    ) {
        if self.shared.sink.level().contains(Level::TENSORS) {
            self.record
                .tensors
                .extend(tensors.into_iter().map(|t| (activity, TracedTensor::of(t))));
        }
    }

    /// The model is done (`REQUEST_END` now): the record joins the request's.
    pub fn finish(
        mut self,
        model: &str,
        version: &str,
        request_id: &str,
        backend: &str,
        error: Option<String>,
    ) {
        self.record.model = model.to_string();
        self.record.version = version.to_string();
        self.record.request_id = request_id.to_string();
        self.record.backend = backend.to_string();
        self.record.error = error;
        self.record.request_end = Instant::now();
        self.shared.records.lock().push(self.record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn tensors_become_text_and_are_bounded() {
        let t = Tensor::new(
            "x",
            DataType::Fp32,
            vec![1, 3],
            Bytes::from(
                [1.5f32, -2.0, 0.25]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<_>>(),
            ),
        );
        let traced = TracedTensor::of(&t);
        assert_eq!(
            (traced.data.as_str(), traced.shape.as_str(), traced.datatype),
            ("1.5,-2,0.25", "1,3", "FP32")
        );
        assert!(!traced.truncated);
        let big = Tensor::new(
            "big",
            DataType::Uint8,
            vec![10_000],
            Bytes::from(vec![7u8; 10_000]),
        );
        let traced = TracedTensor::of(&big);
        assert!(traced.truncated);
        assert_eq!(traced.data.split(',').count(), MAX_TRACED_ELEMENTS);
        let words = Tensor::new(
            "w",
            DataType::Bytes,
            vec![2],
            Bytes::from(kiln_types::tensor::encode_bytes_elements([
                &b"a\"b"[..],
                b"c",
            ])),
        );
        assert_eq!(TracedTensor::of(&words).data, "a\\\"b,c");
    }
}
