//! Triton ensembles. Each step names a composing model, maps ensemble
//! tensors to the model's inputs (`input_map`: model input → ensemble tensor)
//! and the model's outputs to ensemble tensors (`output_map`: model output →
//! ensemble tensor). A step runs as soon as all its inputs exist; steps whose
//! inputs are ready together run concurrently. Intermediate tensors are
//! `Bytes` handed from one step to the next without copies. An error in a
//! step fails the request with a message naming the step.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::future::join_all;

use crate::inference::{InferRequest, RequestedOutput};
use crate::protocol::proto::model_ensembling::Step;
use crate::repository::config::ModelSpec;
use crate::repository::ModelRegistry;
use kiln_types::error::{KilnError, Result};
use kiln_types::tensor::Tensor;

/// Checks the step graph when the ensemble's config is loaded: every step
/// input is an ensemble input or some step's output, no tensor is produced
/// twice, every ensemble output is produced, and no step waits on itself.
pub fn validate(
    name: &str,
    inputs: &[String],
    outputs: &[String],
    steps: &[Step],
) -> std::result::Result<(), String> {
    if steps.is_empty() {
        return Err("field 'ensemble_scheduling': at least one step is required".into());
    }
    let mut available: HashSet<&str> = inputs.iter().map(String::as_str).collect();
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        if step.model_name.is_empty() {
            return Err(format!(
                "ensemble_scheduling step[{i}]: field 'model_name' is required"
            ));
        }
        if step.model_name == name {
            return Err(format!(
                "ensemble_scheduling step[{i}]: an ensemble cannot call itself"
            ));
        }
        if step.output_map.is_empty() {
            return Err(format!(
                "ensemble_scheduling step[{i}] ('{}'): field 'output_map' is empty",
                step.model_name
            ));
        }
        for tensor in step.output_map.values() {
            if inputs.contains(tensor) {
                return Err(format!("ensemble_scheduling step[{i}] ('{}'): output_map writes '{tensor}', which is an ensemble input", step.model_name));
            }
            if let Some(other) = producer.insert(tensor, i) {
                return Err(format!("ensemble_scheduling: tensor '{tensor}' is produced by step[{other}] and step[{i}]"));
            }
        }
    }
    // Resolve in dataflow order to find unreachable steps (missing inputs or cycles).
    let mut done = vec![false; steps.len()];
    loop {
        let ready: Vec<usize> = (0..steps.len())
            .filter(|&i| {
                !done[i]
                    && steps[i]
                        .input_map
                        .values()
                        .all(|t| available.contains(t.as_str()))
            })
            .collect();
        if ready.is_empty() {
            break;
        }
        for i in ready {
            done[i] = true;
            available.extend(steps[i].output_map.values().map(String::as_str));
        }
    }
    if let Some(i) = done.iter().position(|d| !d) {
        let missing: Vec<&str> = steps[i]
            .input_map
            .values()
            .map(String::as_str)
            .filter(|t| !available.contains(t))
            .collect();
        return Err(format!(
            "ensemble_scheduling step[{i}] ('{}') can never run: no step or ensemble input provides {}",
            steps[i].model_name,
            missing.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ")
        ));
    }
    for out in outputs {
        if !available.contains(out.as_str()) {
            return Err(format!(
                "ensemble output '{out}' is not produced by any step's output_map"
            ));
        }
    }
    Ok(())
}

fn steps(spec: &ModelSpec) -> &[Step] {
    use crate::protocol::proto::model_config::SchedulingChoice;
    match &spec.config.scheduling_choice {
        Some(SchedulingChoice::EnsembleScheduling(e)) => &e.step,
        _ => &[],
    }
}

/// Runs the ensemble for one request whose inputs were already checked
/// against the ensemble's config. Returns every ensemble output.
pub async fn run(
    registry: &ModelRegistry,
    spec: &ModelSpec,
    request: &InferRequest,
    inputs: Vec<Tensor>,
) -> Result<Vec<Tensor>> {
    let steps = steps(spec);
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
            .map(|&i| run_step(registry, spec, request, i, &steps[i], &tensors));
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
    registry: &ModelRegistry,
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
                shared_memory: None,
            })
            .collect(),
        parameters: request.parameters.clone(),
    };
    let response = Box::pin(crate::inference::infer(registry, sub))
        .await
        .map_err(|e| {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn step(model: &str, inputs: &[(&str, &str)], outputs: &[(&str, &str)]) -> Step {
        Step {
            model_name: model.into(),
            model_version: -1,
            input_map: inputs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            output_map: outputs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_chain_validates() {
        let steps = [
            step("pre", &[("IMAGE", "png")], &[("PIXELS", "pixels")]),
            step("digits", &[("pixels", "pixels")], &[("logits", "logits")]),
            step("post", &[("LOGITS", "logits")], &[("LABEL", "label")]),
        ];
        validate("e", &["png".into()], &["label".into()], &steps).unwrap();
    }

    #[test]
    fn broken_graphs_are_named() {
        let missing = [step("a", &[("X", "nowhere")], &[("Y", "out")])];
        assert!(validate("e", &["in".into()], &["out".into()], &missing)
            .unwrap_err()
            .contains("'nowhere'"));
        let twice = [
            step("a", &[("X", "in")], &[("Y", "out")]),
            step("b", &[("X", "in")], &[("Y", "out")]),
        ];
        assert!(validate("e", &["in".into()], &["out".into()], &twice)
            .unwrap_err()
            .contains("produced by step[0] and step[1]"));
        let cycle = [
            step("a", &[("X", "t2")], &[("Y", "t1")]),
            step("b", &[("X", "t1")], &[("Y", "t2")]),
        ];
        assert!(validate("e", &["in".into()], &["t1".into()], &cycle)
            .unwrap_err()
            .contains("can never run"));
        let unproduced = [step("a", &[("X", "in")], &[("Y", "t")])];
        assert!(validate("e", &["in".into()], &["out".into()], &unproduced)
            .unwrap_err()
            .contains("'out'"));
        let selfcall = [step("e", &[("X", "in")], &[("Y", "out")])];
        assert!(validate("e", &["in".into()], &["out".into()], &selfcall).is_err());
    }
}
