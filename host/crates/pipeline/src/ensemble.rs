//! Triton ensembles. Each step names a composing model, maps ensemble
//! tensors to the model's inputs (`input_map`: model input → ensemble tensor)
//! and the model's outputs to ensemble tensors (`output_map`: model output →
//! ensemble tensor). A step runs as soon as all its inputs exist; steps whose
//! inputs are ready together run concurrently. Intermediate tensors are
//! `Bytes` handed from one step to the next without copies. An error in a
//! step fails the request with a message naming the step.

use std::collections::BTreeMap;

use futures::future::join_all;

use std::future::Future;
use std::pin::Pin;

use crate::request::{InferRequest, InferResponse, RequestedOutput};
use crate::ModelResolver;
use kiln_model_config::proto::model_ensembling::Step;
use kiln_model_config::ModelSpec;
use kiln_types::error::{KilnError, Result};
use kiln_types::tensor::Tensor;

/// A step's answer, on its way.
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<InferResponse>> + Send + 'a>>;

/// Runs one step as a request of its own (the pipeline's `infer`).
pub type StepFn = for<'a> fn(&'a dyn ModelResolver, InferRequest) -> StepFuture<'a>;

/// Runs the ensemble for one request whose inputs were already checked
/// against the ensemble's config. Returns every ensemble output.
pub async fn run(
    models: &dyn ModelResolver,
    step_fn: StepFn,
    spec: &ModelSpec,
    request: &InferRequest,
    inputs: Vec<Tensor>,
) -> Result<Vec<Tensor>> {
    let steps = spec.ensemble_steps();
    let mut tensors: BTreeMap<String, Tensor> =
        inputs.into_iter().map(|t| (t.name.clone(), t)).collect();
    let mut done = vec![false; steps.len()];
    while spec.outputs.iter().any(|o| !tensors.contains_key(&o.name)) {
        let ready: Vec<usize> = (0..steps.len())
            .filter(|&i| !done[i] && steps[i].input_map.values().all(|t| tensors.contains_key(t)))
            .collect();
        if ready.is_empty() {
            // Only possible when an optional ensemble input was left out.
            let missing: Vec<&str> = spec
                .outputs
                .iter()
                .map(|o| o.name.as_str())
                .filter(|n| !tensors.contains_key(*n))
                .collect();
            return Err(KilnError::invalid(format!(
                "ensemble '{}' cannot produce {missing:?} from the inputs given",
                spec.name
            )));
        }
        let calls = ready
            .iter()
            .map(|&i| run_step(models, step_fn, spec, request, i, &steps[i], &tensors));
        for (i, produced) in ready.iter().zip(join_all(calls).await) {
            done[*i] = true;
            for t in produced? {
                tensors.insert(t.name.clone(), t);
            }
        }
    }
    Ok(spec
        .outputs
        .iter()
        .filter_map(|o| tensors.remove(&o.name))
        .collect())
}

async fn run_step(
    models: &dyn ModelResolver,
    step_fn: StepFn,
    spec: &ModelSpec,
    request: &InferRequest,
    index: usize,
    step: &Step,
    tensors: &BTreeMap<String, Tensor>,
) -> Result<Vec<Tensor>> {
    let inputs = step
        .input_map
        .iter()
        .map(|(model_input, tensor)| {
            let mut t = tensors[tensor].clone(); // clones the Bytes handle, not the data
            t.name = model_input.clone();
            t
        })
        .collect();
    // Each step's statistics start when the step starts, not the ensemble.
    let mut ctx = request.ctx.clone();
    ctx.received_at = std::time::Instant::now();
    let sub = InferRequest {
        ctx,
        model_name: step.model_name.clone(),
        model_version: if step.model_version < 0 {
            String::new()
        } else {
            step.model_version.to_string()
        },
        id: request.id.clone(),
        inputs,
        outputs: step
            .output_map
            .keys()
            .map(|name| RequestedOutput {
                name: name.clone(),
                class_count: 0,
                destination: None,
            })
            .collect(),
        parameters: request.parameters.clone(),
        // The ensemble's model trace made this its steps' parent.
        trace: request.trace.clone(),
    };
    let response = step_fn(models, sub).await.map_err(|e| {
        let msg = format!(
            "ensemble '{}' step {index} ('{}'): {}",
            spec.name,
            step.model_name,
            e.message()
        );
        match e {
            KilnError::InvalidArgument(_) => KilnError::InvalidArgument(msg),
            KilnError::NotFound(_) | KilnError::Unavailable(_) => KilnError::Unavailable(msg),
            KilnError::Unimplemented(_) => KilnError::Unimplemented(msg),
            KilnError::AlreadyExists(_) => KilnError::AlreadyExists(msg),
            KilnError::ResourceExhausted(_) => KilnError::ResourceExhausted(msg),
            KilnError::TooLarge(_) => KilnError::TooLarge(msg),
            KilnError::Internal(_) => KilnError::Internal(msg),
        }
    })?;
    Ok(response
        .outputs
        .into_iter()
        .map(|o| {
            let mut t = o.tensor;
            t.name = step.output_map[&t.name].clone();
            t
        })
        .collect())
}
