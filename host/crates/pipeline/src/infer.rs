//! The protocol-independent request path: resolve the model version, check
//! the request against its config, execute, shape the response.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;

use crate::request::{InferRequest, InferResponse, RequestedOutput, ResponseOutput};
use crate::{ModelResolver, OutputDestination};
use kiln_model_config::ModelSpec;
use kiln_scheduler::stats::RequestTiming;
use kiln_scheduler::ModelRunner;
use kiln_trace::{ComputeTimes, ModelTrace, RequestTrace};
use kiln_types::error::{KilnError, Result};
use kiln_types::tensor::{encode_bytes_elements, DataType, Tensor};
use kiln_types::text::clip;

/// Runs one request end to end. Failures after the model is resolved count
/// in its statistics (`fail`, `nv_inference_request_failure`).
pub async fn infer(models: &dyn ModelResolver, request: InferRequest) -> Result<InferResponse> {
    let (runner, owner) = models.resolve(&request.model_name, &request.model_version)?;
    let ctx = request.ctx.clone();
    let mut trace = request.trace.as_ref().map(RequestTrace::start_model);
    let request_id = trace.as_ref().map(|_| request.id.clone());
    let result = run(owner, &runner, request, trace.as_mut()).await;
    if let (Some(trace), Some(request_id)) = (trace, request_id) {
        let spec = &runner.spec;
        let backend = if spec.is_ensemble() {
            "ensemble"
        } else {
            &spec.backend
        };
        let error = result.as_ref().err().map(|e| e.message().to_string());
        trace.finish(
            &spec.name,
            &runner.version.to_string(),
            &request_id,
            backend,
            error,
        );
    }
    match result {
        Ok((response, timing)) => {
            // One line per answered request at debug level (off by default;
            // `RUST_LOG=kiln::request=debug`): where a request's time went,
            // from admission (headers in) to the answer: `total` less queue
            // and compute is the body, its decode and the conversions.
            tracing::debug!(
                target: "kiln::request",
                model = %runner.spec.name,
                tenant = ctx.tenant().map_or("", |t| &**t),
                total_us = timing.total.as_micros() as u64,
                queue_us = timing.queue.as_micros() as u64,
                compute_us = (timing.exec.input + timing.exec.infer + timing.exec.output).as_micros() as u64,
                "answered"
            );
            runner.stats.record_success(&ctx, &timing);
            Ok(response)
        }
        Err(e) => {
            runner.stats.record_failure(&ctx, ctx.received_at.elapsed());
            Err(e)
        }
    }
}

/// [`infer`] as an ensemble runs each of its steps.
fn infer_step(
    models: &dyn ModelResolver,
    request: InferRequest,
) -> crate::ensemble::StepFuture<'_> {
    Box::pin(infer(models, request))
}

async fn run(
    models: &dyn ModelResolver,
    runner: &Arc<ModelRunner>,
    mut request: InferRequest,
    mut trace: Option<&mut ModelTrace>,
) -> Result<(InferResponse, RequestTiming)> {
    let spec = &runner.spec;
    if spec.is_op_plugin() {
        return Err(KilnError::invalid(format!(
            "model '{}' is an op plugin: it provides custom ops to the TorchScript models that name it in 'custom_ops' and takes no inference requests",
            spec.name
        )));
    }
    let requested = check_requested_outputs(spec, std::mem::take(&mut request.outputs))?;
    let (inputs, batch_size) = arrange_inputs(spec, std::mem::take(&mut request.inputs))?;
    if let Some(t) = trace.as_deref_mut() {
        t.tensors("TENSOR_QUEUE_INPUT", inputs.iter().flatten());
        t.queue_started();
    }
    let outcome = if spec.is_ensemble() {
        // Its steps run under this model's trace.
        request.trace = trace.as_deref().map(ModelTrace::step);
        let started = std::time::Instant::now();
        let outputs = crate::ensemble::run(
            models,
            infer_step,
            spec,
            &request,
            inputs.into_iter().flatten().collect(),
        )
        .await?;
        let timings = kiln_backend::ExecTimings {
            infer: started.elapsed(),
            ..Default::default()
        };
        // The ensemble's own execution (its steps count in their models).
        runner.stats.record_execution(batch_size, &timings);
        kiln_scheduler::ExecOutcome {
            outputs,
            timings,
            queue: std::time::Duration::ZERO,
            // Its steps are charged in their own models.
            compute_share: std::time::Duration::ZERO,
        }
    } else {
        runner
            .execute(
                &request.ctx,
                kiln_backend::BackendRequest {
                    inputs,
                    parameters: std::mem::take(&mut request.parameters),
                },
            )
            .await?
    };
    if let Some(t) = trace {
        if !spec.is_ensemble() {
            let t_exec = &outcome.timings;
            let queued = t.queue_start().unwrap_or_else(std::time::Instant::now);
            t.compute(ComputeTimes::from_durations(
                queued + outcome.queue,
                t_exec.input,
                t_exec.infer,
                t_exec.output,
            ));
        }
        t.tensors("TENSOR_BACKEND_OUTPUT", &outcome.outputs);
    }
    let mut outputs = Vec::with_capacity(requested.len());
    let mut produced: Vec<Option<Tensor>> = outcome.outputs.into_iter().map(Some).collect();
    for (index, class_count, placement) in requested {
        let mut tensor = produced[index].take().ok_or_else(|| {
            KilnError::invalid(format!(
                "output '{}' requested twice",
                spec.outputs[index].name
            ))
        })?;
        restore_output_shape(spec, index, &mut tensor);
        if class_count > 0 {
            tensor = classify(spec, index, &tensor, class_count)?;
        }
        let in_shared_memory = match placement {
            Some(placement) => {
                placement.write(&tensor.name, &tensor.data)?;
                tensor.data = Bytes::new();
                true
            }
            None => false,
        };
        outputs.push(ResponseOutput {
            tensor,
            in_shared_memory,
        });
    }
    let timing = RequestTiming {
        total: request.ctx.received_at.elapsed(),
        queue: outcome.queue,
        exec: outcome.timings,
        compute_share: outcome.compute_share,
    };
    let response = InferResponse {
        model_name: spec.name.clone(),
        model_version: runner.version.to_string(),
        id: request.id,
        outputs,
    };
    Ok((response, timing))
}

/// An output to return: its index in `spec.outputs`, class count and
/// destination.
type SelectedOutput = (usize, u64, Option<Arc<dyn OutputDestination>>);

/// The outputs to return, with their class counts and destinations.
fn check_requested_outputs(
    spec: &ModelSpec,
    requested: Vec<RequestedOutput>,
) -> Result<Vec<SelectedOutput>> {
    if requested.is_empty() {
        return Ok((0..spec.outputs.len()).map(|i| (i, 0, None)).collect());
    }
    let mut seen = HashSet::new();
    requested
        .into_iter()
        .map(|r| {
            let (index, _) = spec.output(&r.name).ok_or_else(|| {
                KilnError::invalid(format!(
                    "unexpected inference output '{}' for model '{}'; the model's outputs are [{}]",
                    clip(&r.name),
                    spec.name,
                    names(&spec.outputs)
                ))
            })?;
            if !seen.insert(index) {
                return Err(KilnError::invalid(format!(
                    "output '{}' is requested more than once",
                    clip(&r.name)
                )));
            }
            Ok((index, r.class_count, r.destination))
        })
        .collect()
}

fn names(specs: &[kiln_model_config::TensorSpec]) -> String {
    specs
        .iter()
        .map(|t| format!("'{}'", t.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn dims_match(expected: &[i64], actual: &[i64]) -> bool {
    expected.len() == actual.len()
        && expected
            .iter()
            .zip(actual)
            .all(|(&e, &a)| e == -1 || e == a)
}

fn show(dims: &[i64]) -> String {
    format!(
        "[{}]",
        dims.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// Checks every input against the config and orders them as the backend
/// expects. Returns the inputs aligned with `spec.inputs` and the batch size.
pub fn arrange_inputs(spec: &ModelSpec, inputs: Vec<Tensor>) -> Result<(Vec<Option<Tensor>>, u64)> {
    let mut arranged: Vec<Option<Tensor>> = vec![None; spec.inputs.len()];
    let mut batch: Option<i64> = None;
    for mut tensor in inputs {
        let (index, expected) = spec.input(&tensor.name).ok_or_else(|| {
            KilnError::invalid(format!(
                "unexpected inference input '{}' for model '{}'; the model's inputs are [{}]",
                clip(&tensor.name),
                spec.name,
                names(&spec.inputs)
            ))
        })?;
        if arranged[index].is_some() {
            return Err(KilnError::invalid(format!(
                "input '{}' is given more than once",
                tensor.name
            )));
        }
        if tensor.datatype != expected.datatype {
            return Err(KilnError::invalid(format!(
                "inference input '{}' data-type is '{}', but model '{}' expects '{}'",
                tensor.name, tensor.datatype, spec.name, expected.datatype
            )));
        }
        let item_shape = if spec.batched() {
            let Some((&b, rest)) = tensor.shape.split_first() else {
                return Err(KilnError::invalid(format!(
                    "input '{}' for model '{}' must have a batch dimension: expected shape [-1,{}], got []",
                    tensor.name,
                    spec.name,
                    show(&expected.dims).trim_matches(['[', ']'])
                )));
            };
            if b < 1 || b as usize > spec.max_batch_size {
                return Err(KilnError::invalid(format!(
                    "input '{}': batch size {b} is outside 1..={} (max_batch_size of model '{}')",
                    tensor.name, spec.max_batch_size, spec.name
                )));
            }
            if let Some(prev) = batch.filter(|&p| p != b) {
                return Err(KilnError::invalid(format!(
                    "input '{}' has batch size {b} but other inputs have {prev}; all inputs must share the batch size",
                    tensor.name
                )));
            }
            batch = Some(b);
            rest.to_vec()
        } else {
            tensor.shape.clone()
        };
        if !dims_match(&expected.dims, &item_shape) {
            let full = if spec.batched() {
                [&[-1][..], &expected.dims].concat()
            } else {
                expected.dims.clone()
            };
            return Err(KilnError::invalid(format!(
                "unexpected shape for input '{}' for model '{}'. Expected {}, got {}",
                tensor.name,
                spec.name,
                show(&full),
                show(&tensor.shape)
            )));
        }
        tensor.check_byte_size()?;
        if let Some(reshape) = &expected.reshape {
            tensor.shape = reshaped(spec, batch, reshape, tensor.element_count()?);
        }
        arranged[index] = Some(tensor);
    }
    for (slot, expected) in arranged.iter().zip(&spec.inputs) {
        if slot.is_none() && !expected.optional {
            return Err(KilnError::invalid(format!(
                "missing input '{}' for model '{}' (expected inputs: [{}])",
                expected.name,
                spec.name,
                names(&spec.inputs)
            )));
        }
    }
    Ok((arranged, batch.unwrap_or(1) as u64))
}

/// `[batch] + reshape`, resolving one -1 from the element count.
fn reshaped(spec: &ModelSpec, batch: Option<i64>, reshape: &[i64], elements: usize) -> Vec<i64> {
    let mut shape: Vec<i64> = if spec.batched() {
        vec![batch.unwrap_or(1)]
    } else {
        vec![]
    };
    shape.extend_from_slice(reshape);
    let known: i64 = shape.iter().filter(|&&d| d >= 0).product();
    if let Some(slot) = shape.iter_mut().find(|d| **d < 0) {
        *slot = if known > 0 {
            elements as i64 / known
        } else {
            0
        };
    }
    shape
}

/// Outputs with `reshape` are reported with the config's dims.
fn restore_output_shape(spec: &ModelSpec, index: usize, tensor: &mut Tensor) {
    let out = &spec.outputs[index];
    if out.reshape.is_none() || out.dims.iter().any(|&d| d < 0) {
        return;
    }
    let mut shape = if spec.batched() {
        vec![tensor.shape.first().copied().unwrap_or(1)]
    } else {
        vec![]
    };
    shape.extend_from_slice(&out.dims);
    if kiln_types::tensor::element_count(&shape) == tensor.element_count().ok() {
        tensor.shape = shape;
    }
}

fn as_f64(t: &Tensor) -> Result<Vec<f64>> {
    let d = &t.data;
    Ok(match t.datatype {
        DataType::Fp32 => d
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        DataType::Fp64 => d
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        DataType::Int32 => d
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        DataType::Int64 => d
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        other => {
            return Err(KilnError::invalid(format!(
            "classification of output '{}' needs FP32, FP64, INT32 or INT64 values, not {other}",
            t.name
        )))
        }
    })
}

/// Triton's classification extension: top `k` of each batch item as
/// `"score:index:label"` strings (label omitted without `label_filename`).
fn classify(spec: &ModelSpec, index: usize, tensor: &Tensor, k: u64) -> Result<Tensor> {
    let values = as_f64(tensor)?;
    let (rows, leading) = if spec.batched() && !tensor.shape.is_empty() {
        (tensor.shape[0].max(1) as usize, vec![tensor.shape[0]])
    } else {
        (1, vec![])
    };
    let per_row = values.len() / rows.max(1);
    let k = usize::try_from(k).unwrap_or(usize::MAX).min(per_row);
    let labels = spec.outputs[index].labels.as_deref();
    let mut strings = Vec::with_capacity(rows * k);
    for row in values.chunks(per_row.max(1)).take(rows) {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        for &i in order.iter().take(k) {
            let value = match tensor.datatype {
                DataType::Int32 | DataType::Int64 => format!("{}", row[i] as i64),
                _ => format!("{:.6}", row[i]),
            };
            strings.push(match labels.and_then(|l| l.get(i)) {
                Some(label) => format!("{value}:{i}:{label}"),
                None => format!("{value}:{i}"),
            });
        }
    }
    let mut shape = leading;
    shape.push(k as i64);
    let data = encode_bytes_elements(strings.iter().map(|s| s.as_bytes()));
    Ok(Tensor::new(
        tensor.name.clone(),
        DataType::Bytes,
        shape,
        Bytes::from(data),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_model_config::{Placement, TensorSpec};

    fn spec(max_batch: usize) -> ModelSpec {
        let t = |n: &str, dims: Vec<i64>| TensorSpec {
            name: n.into(),
            datatype: DataType::Fp32,
            dims,
            reshape: None,
            optional: false,
            labels: None,
        };
        ModelSpec {
            name: "add_sub".into(),
            config: Default::default(),
            backend: "pytorch".into(),
            max_batch_size: max_batch,
            inputs: vec![t("INPUT0", vec![16]), t("INPUT1", vec![16])],
            outputs: vec![
                t("OUTPUT0", vec![16]),
                TensorSpec {
                    labels: Some(Arc::new(vec!["a".into(), "b".into(), "c".into()])),
                    ..t("OUTPUT1", vec![3])
                },
            ],
            instances: vec![Placement::Cpu],
            model_filename: "model.pt".into(),
            model_dir: "/nonexistent".into(),
            warnings: vec![],
            ceilings: None,
        }
    }

    fn fp32(name: &str, shape: Vec<i64>) -> Tensor {
        let n = kiln_types::tensor::element_count(&shape).unwrap();
        Tensor::new(name, DataType::Fp32, shape, Bytes::from(vec![0u8; n * 4]))
    }

    #[test]
    fn inputs_are_arranged_in_config_order() {
        let (inputs, batch) = arrange_inputs(
            &spec(8),
            vec![fp32("INPUT1", vec![2, 16]), fp32("INPUT0", vec![2, 16])],
        )
        .unwrap();
        assert_eq!(batch, 2);
        assert_eq!(inputs[0].as_ref().unwrap().name, "INPUT0");
    }

    #[test]
    fn every_input_error_names_the_tensor() {
        let s = spec(8);
        let cases: Vec<(Vec<Tensor>, &str)> = vec![
            (
                vec![fp32("INPUT0", vec![1, 16]), fp32("BOGUS", vec![1, 16])],
                "BOGUS",
            ),
            (vec![fp32("INPUT0", vec![1, 16])], "missing input 'INPUT1'"),
            (
                vec![fp32("INPUT0", vec![1, 15]), fp32("INPUT1", vec![1, 16])],
                "Expected [-1,16], got [1,15]",
            ),
            (
                vec![fp32("INPUT0", vec![9, 16]), fp32("INPUT1", vec![9, 16])],
                "batch size 9",
            ),
            (
                vec![fp32("INPUT0", vec![1, 16]), fp32("INPUT1", vec![2, 16])],
                "INPUT1",
            ),
            (
                vec![
                    Tensor::new(
                        "INPUT0",
                        DataType::Int32,
                        vec![1, 16],
                        Bytes::from(vec![0u8; 64]),
                    ),
                    fp32("INPUT1", vec![1, 16]),
                ],
                "data-type is 'INT32'",
            ),
            (
                vec![
                    Tensor::new(
                        "INPUT0",
                        DataType::Fp32,
                        vec![1, 16],
                        Bytes::from(vec![0u8; 63]),
                    ),
                    fp32("INPUT1", vec![1, 16]),
                ],
                "INPUT0",
            ),
        ];
        for (inputs, needle) in cases {
            let e = arrange_inputs(&s, inputs).unwrap_err();
            assert!(matches!(e, KilnError::InvalidArgument(_)));
            assert!(e.message().contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn unbatched_models_take_full_dims() {
        let mut s = spec(0);
        s.inputs[0].dims = vec![1, 16];
        s.inputs[1].dims = vec![1, 16];
        assert!(arrange_inputs(
            &s,
            vec![fp32("INPUT0", vec![1, 16]), fp32("INPUT1", vec![1, 16])]
        )
        .is_ok());
        assert!(arrange_inputs(
            &s,
            vec![fp32("INPUT0", vec![16]), fp32("INPUT1", vec![1, 16])]
        )
        .is_err());
    }

    #[test]
    fn classification_returns_top_k_with_labels() {
        let s = spec(8);
        let vals: Vec<u8> = [0.1f32, 0.7, 0.2, 0.5, 0.3, 0.9]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let t = Tensor::new("OUTPUT1", DataType::Fp32, vec![2, 3], Bytes::from(vals));
        let c = classify(&s, 1, &t, 2).unwrap();
        assert_eq!(c.shape, vec![2, 2]);
        let elems = kiln_types::tensor::bytes_elements(&c.data).unwrap();
        assert_eq!(elems[0], b"0.700000:1:b");
        assert_eq!(elems[1], b"0.200000:2:c");
        assert_eq!(elems[2], b"0.900000:2:c");
    }

    #[test]
    fn unknown_or_duplicate_outputs_are_rejected() {
        let s = spec(8);
        let r = |n: &str| RequestedOutput {
            name: n.into(),
            class_count: 0,
            destination: None,
        };
        assert!(check_requested_outputs(&s, vec![r("NOPE")])
            .unwrap_err()
            .message()
            .contains("NOPE"));
        assert!(check_requested_outputs(&s, vec![r("OUTPUT0"), r("OUTPUT0")]).is_err());
        let checked = check_requested_outputs(&s, vec![r("OUTPUT1")]).unwrap();
        assert_eq!(checked.len(), 1);
        assert!(matches!(checked[0], (1, 0, None)));
    }
}
