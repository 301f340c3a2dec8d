//! One loaded copy of a model on one device, and what its executions report.

use std::time::Duration;

use kiln_types::Tensor;

use crate::batch;
use crate::request::BackendRequest;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The inputs are acceptable to the config but not to the model (e.g. the
    /// TorchScript forward rejects a shape): the caller's fault.
    #[error("{0}")]
    InvalidInput(String),
    /// The model misbehaved (wrong output count or type) or the runtime failed.
    #[error("{0}")]
    Execution(String),
    /// The backend cannot serve now but may later (a plugin said so).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Load(String),
}

/// Time spent in each phase of one execution; feeds the statistics
/// (compute_input / compute_infer / compute_output).
#[derive(Debug, Default, Clone, Copy)]
pub struct ExecTimings {
    pub input: Duration,
    pub infer: Duration,
    pub output: Duration,
}

/// Work a backend has queued on its device whose results are not read yet
/// ([`Backend::submit`]).
pub trait InFlight: Send {
    /// Waits for the device and reads the results: what `execute_batch`
    /// (or `execute`, for one request) would have returned. Fills
    /// `timings.infer` from the launch to the results' arrival (with
    /// overlap, that includes waiting for the batch launched before) and
    /// `timings.output`.
    fn finish(self: Box<Self>, timings: &mut ExecTimings) -> Result<Vec<Tensor>, BackendError>;
}

/// What [`Backend::submit`] did with the requests.
pub enum Submitted {
    /// Ran to the end on the calling thread.
    Done(Vec<Tensor>),
    /// Queued on the device; the caller may submit the next batch before
    /// finishing this one.
    InFlight(Box<dyn InFlight>),
}

impl Submitted {
    /// The results, waiting for the device if they are in flight.
    pub fn finish(self, timings: &mut ExecTimings) -> Result<Vec<Tensor>, BackendError> {
        match self {
            Submitted::Done(outputs) => Ok(outputs),
            Submitted::InFlight(work) => work.finish(timings),
        }
    }
}

/// One loaded copy of a model on one device.
pub trait Backend: Send + 'static {
    /// Runs the model. `inputs` is aligned with `ModelSpec::inputs` (`None`
    /// for an optional input that was not sent); the result is aligned with
    /// `ModelSpec::outputs`.
    fn execute(
        &mut self,
        request: &BackendRequest,
        timings: &mut ExecTimings,
    ) -> Result<Vec<Tensor>, BackendError>;

    /// Runs several compatible requests ([`batch::compatible`]) as
    /// one execution, concatenated along the batch dimension; the result is
    /// the batched outputs, which the scheduler splits back. By default the
    /// inputs are first merged into one host buffer; a backend that can put
    /// each request's slice straight where it executes (a GPU's pinned
    /// staging buffer) gathers them itself, here or in [`Self::submit`], which
    /// is what the scheduler calls (kiln-torch gathers in `submit`).
    fn execute_batch(
        &mut self,
        requests: &[&BackendRequest],
        timings: &mut ExecTimings,
    ) -> Result<Vec<Tensor>, BackendError> {
        self.execute(&batch::merge(requests), timings)
    }

    /// Starts one execution of one or more compatible requests (several:
    /// as [`Self::execute_batch`]). A backend whose device runs
    /// asynchronously (a GPU) returns it in flight, so that its scheduler
    /// gathers and copies in the next batch while this one computes, and
    /// finishes it from another thread; at most two are in flight per
    /// instance, and the instance outlives them. By default: runs it.
    fn submit(
        &mut self,
        requests: &[&BackendRequest],
        timings: &mut ExecTimings,
    ) -> Result<Submitted, BackendError> {
        match requests {
            [one] => self.execute(one, timings),
            many => self.execute_batch(many, timings),
        }
        .map(Submitted::Done)
    }

    /// Human-readable device name for logs and the index ("cpu", "cuda:0").
    fn device(&self) -> String;

    /// Another instance of the same model version that shares what instances
    /// can share (the compiled plugin, its checked metadata), so that a model
    /// with `count: N` reads, compiles and checks its binary once. `None`
    /// where every instance must load on its own, as a TorchScript module
    /// does on its device.
    fn replicate(&self) -> Option<Result<Box<dyn Backend>, BackendError>> {
        None
    }

    /// The ops it provides, when it is an op plugin (`backend: "wasm_ops"`):
    /// the registry keeps them with the loaded version for the models that
    /// name it in `custom_ops`.
    fn op_provider(&self) -> Option<std::sync::Arc<dyn kiln_ops::OpProvider>> {
        None
    }
}
