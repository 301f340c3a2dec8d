//! `model_warmup`: requests run on every instance before a version is marked
//! READY, so the first real request does not pay for lazy initialisation
//! (CUDA context, kernel selection, allocator growth).

use bytes::Bytes;
use rand::Rng;

use kiln_backend::{Backend, BackendRequest, ExecTimings};
use kiln_model_config::proto::model_warmup::input::InputDataType;
use kiln_model_config::ModelSpec;
use kiln_pipeline::arrange_inputs;
use kiln_types::tensor::{element_count, DataType, Tensor};

/// Runs every warm-up sample `count` times (at least once) on `instance`.
pub fn warm_up(spec: &ModelSpec, instance: &mut dyn Backend) -> Result<(), String> {
    for warmup in &spec.config.model_warmup {
        let inputs = warmup_inputs(spec, warmup)?;
        let (inputs, _) = arrange_inputs(spec, inputs)
            .map_err(|e| format!("model_warmup '{}': {e}", warmup.name))?;
        let request = BackendRequest {
            inputs,
            parameters: Vec::new(),
        };
        for _ in 0..warmup.count.max(1) {
            instance
                .execute(&request, &mut ExecTimings::default())
                .map_err(|e| {
                    format!(
                        "model_warmup '{}' failed on {}: {e}",
                        warmup.name,
                        instance.device()
                    )
                })?;
        }
    }
    Ok(())
}

fn warmup_inputs(
    spec: &ModelSpec,
    warmup: &kiln_model_config::proto::ModelWarmup,
) -> Result<Vec<Tensor>, String> {
    let mut tensors = Vec::new();
    for (name, input) in &warmup.inputs {
        let datatype = kiln_model_config::datatype_of(input.data_type()).ok_or_else(|| {
            format!(
                "model_warmup '{}' input '{name}': data_type is required",
                warmup.name
            )
        })?;
        let mut shape = if spec.batched() {
            vec![warmup.batch_size.max(1) as i64]
        } else {
            vec![]
        };
        shape.extend_from_slice(&input.dims);
        let count = element_count(&shape).ok_or_else(|| {
            format!(
                "model_warmup '{}' input '{name}': invalid dims {:?}",
                warmup.name, input.dims
            )
        })?;
        let size = datatype.element_size().ok_or_else(|| {
            format!(
                "model_warmup '{}' input '{name}': BYTES warm-up data is not supported",
                warmup.name
            )
        })?;
        let data = match &input.input_data_type {
            Some(InputDataType::InputDataFile(file)) => {
                let path = spec.model_dir.join("warmup").join(file);
                let one = std::fs::read(&path).map_err(|e| {
                    format!(
                        "model_warmup '{}': cannot read {}: {e}",
                        warmup.name,
                        path.display()
                    )
                })?;
                one.repeat(if spec.batched() {
                    warmup.batch_size.max(1) as usize
                } else {
                    1
                })
            }
            Some(InputDataType::RandomData(true)) => random_values(datatype, count),
            _ => vec![0u8; count * size],
        };
        tensors.push(Tensor::new(
            name.clone(),
            datatype,
            shape,
            Bytes::from(data),
        ));
    }
    Ok(tensors)
}

/// Random but finite values (uniform in [0, 1) for floats, 0..=100 for
/// integers): random bit patterns would include NaNs.
fn random_values(datatype: DataType, count: usize) -> Vec<u8> {
    let mut rng = rand::thread_rng();
    let mut out = Vec::with_capacity(count * datatype.element_size().unwrap_or(1));
    for _ in 0..count {
        let f: f32 = rng.gen();
        let i: u8 = rng.gen_range(0..=100);
        match datatype {
            DataType::Fp32 => out.extend_from_slice(&f.to_le_bytes()),
            DataType::Fp64 => out.extend_from_slice(&(f as f64).to_le_bytes()),
            DataType::Fp16 | DataType::Bf16 => out.extend_from_slice(&[0, 0x3c]), // 1.0 (fp16) / ~0.0 (bf16)
            DataType::Bool => out.push(i & 1),
            other => {
                let mut v = vec![0u8; other.element_size().unwrap_or(1)];
                v[0] = i;
                out.extend_from_slice(&v);
            }
        }
    }
    out
}
