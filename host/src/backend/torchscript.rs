//! TorchScript models on libtorch (tch). One `CModule` per instance, loaded
//! onto the instance's device.
//!
//! Argument order: when every input is named `<name>__<index>` (Triton's
//! PyTorch convention, e.g. `INPUT__0`), the index is the forward argument
//! position; otherwise inputs are passed in config order. Outputs map the
//! same way onto the returned tensor, tuple or list.

use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use tch::{CModule, Device, IValue, Kind};

use super::{torch_ffi, Backend, BackendError, BackendRequest, ExecTimings};
use crate::repository::config::{ModelSpec, Placement, TensorSpec};
use crate::tensor::{DataType, Tensor};

pub struct TorchScriptInstance {
    module: CModule,
    device: Device,
    /// `arg_position[i]` = forward position of spec input `i`.
    arg_position: Vec<usize>,
    /// `output_position[i]` = index in the model's result of spec output `i`.
    output_position: Vec<usize>,
    outputs: Vec<TensorSpec>,
}

/// Whether libtorch can see a CUDA device (false on CPU-only builds).
pub fn cuda_device_count() -> i64 {
    if tch::Cuda::is_available() {
        tch::Cuda::device_count()
    } else {
        0
    }
}

pub fn resolve_device(placement: Placement) -> Result<Device, BackendError> {
    let gpus = cuda_device_count();
    match placement {
        Placement::Cpu => Ok(Device::Cpu),
        Placement::Auto => Ok(if gpus > 0 {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }),
        Placement::Gpu(id) if (id as i64) < gpus => Ok(Device::Cuda(id as usize)),
        Placement::Gpu(id) => Err(BackendError::Load(format!(
            "instance_group asks for GPU {id} but {gpus} CUDA device(s) are visible to libtorch{}",
            if cfg!(feature = "cuda") {
                ""
            } else {
                " (this kiln was built without the `cuda` feature)"
            }
        ))),
    }
}

/// The `__<index>` suffix of Triton's naming convention, if all names have one.
fn convention_positions(names: &[&str]) -> Option<Vec<usize>> {
    let positions: Option<Vec<usize>> = names
        .iter()
        .map(|n| n.rsplit_once("__").and_then(|(_, i)| i.parse().ok()))
        .collect();
    let positions = positions?;
    let mut sorted = positions.clone();
    sorted.sort_unstable();
    sorted.dedup();
    (sorted.len() == positions.len()).then_some(positions)
}

fn positions(specs: &[TensorSpec]) -> Vec<usize> {
    let names: Vec<&str> = specs.iter().map(|t| t.name.as_str()).collect();
    convention_positions(&names).unwrap_or_else(|| (0..specs.len()).collect())
}

pub fn kind_of(d: DataType) -> Option<Kind> {
    Some(match d {
        DataType::Bool => Kind::Bool,
        DataType::Uint8 => Kind::Uint8,
        DataType::Int8 => Kind::Int8,
        DataType::Int16 => Kind::Int16,
        DataType::Int32 => Kind::Int,
        DataType::Int64 => Kind::Int64,
        DataType::Fp16 => Kind::Half,
        DataType::Fp32 => Kind::Float,
        DataType::Fp64 => Kind::Double,
        DataType::Bf16 => Kind::BFloat16,
        DataType::Uint16 | DataType::Uint32 | DataType::Uint64 | DataType::Bytes => return None,
    })
}

impl TorchScriptInstance {
    pub fn load(spec: &ModelSpec, path: &Path, placement: Placement) -> Result<Self, BackendError> {
        let device = resolve_device(placement)?;
        if !path.is_file() {
            return Err(BackendError::Load(format!(
                "model file {} not found",
                path.display()
            )));
        }
        let mut module = CModule::load_on_device(path, device).map_err(|e| {
            BackendError::Load(format!(
                "cannot load TorchScript {}: {}",
                path.display(),
                first_line(&e.to_string())
            ))
        })?;
        module.set_eval();
        let arg_position = positions(&spec.inputs);
        if let Some(max) = arg_position.iter().max() {
            if *max >= spec.inputs.len() {
                return Err(BackendError::Load(format!(
                    "input names use the __<index> convention but index {max} leaves a gap among {} inputs",
                    spec.inputs.len()
                )));
            }
        }
        Ok(Self {
            module,
            device,
            arg_position,
            output_position: positions(&spec.outputs),
            outputs: spec.outputs.clone(),
        })
    }

    fn to_torch(&self, t: &Tensor) -> Result<tch::Tensor, BackendError> {
        let shape = &t.shape;
        let Some(kind) = kind_of(t.datatype) else {
            let cpu = torch_ffi::unsigned_tensor(&t.data, shape, t.datatype)
                .map_err(|e| BackendError::InvalidInput(format!("tensor '{}': {e}", t.name)))?;
            return self.on_device(cpu);
        };
        let numel = crate::tensor::element_count(shape).unwrap_or(usize::MAX);
        // tch does not check the length itself; the protocol layer already did,
        // this keeps an invariant violation from reading out of bounds.
        if numel.checked_mul(kind.elt_size_in_bytes()) != Some(t.data.len()) {
            return Err(BackendError::InvalidInput(format!(
                "tensor '{}': {} bytes do not match shape {shape:?}",
                t.name,
                t.data.len()
            )));
        }
        if let Device::Cuda(_) = self.device {
            // Straight from the request buffer to the GPU: no zero-filled
            // staging tensor, no host-side copy.
            return torch_ffi::copy_to_device(&t.data, shape, kind, self.device)
                .map_err(|e| BackendError::Execution(format!("tensor '{}': {e}", t.name)));
        }
        // The CPU model gets its own copy: a model may write into its inputs,
        // and the request buffer can be shared (ensembles, batching).
        tch::Tensor::f_from_data_size(&t.data, shape, kind)
            .map_err(|e| BackendError::Execution(e.to_string()))
    }

    fn on_device(&self, cpu: tch::Tensor) -> Result<tch::Tensor, BackendError> {
        if self.device == Device::Cpu {
            Ok(cpu)
        } else {
            cpu.f_to_device(self.device)
                .map_err(|e| BackendError::Execution(e.to_string()))
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn flatten_result(value: IValue, out: &mut Vec<tch::Tensor>) -> Result<(), BackendError> {
    match value {
        IValue::Tensor(t) => out.push(t),
        IValue::TensorList(ts) => out.extend(ts),
        IValue::Tuple(vs) | IValue::GenericList(vs) => {
            for v in vs {
                flatten_result(v, out)?;
            }
        }
        other => {
            return Err(BackendError::Execution(format!(
                "model returned a value that is not a tensor, tuple or list of tensors: {other:?}"
            )))
        }
    }
    Ok(())
}

fn datatype_of(kind: Kind) -> Option<DataType> {
    DataType::ALL
        .into_iter()
        .find(|&d| kind_of(d) == Some(kind))
}

impl Backend for TorchScriptInstance {
    fn execute(
        &mut self,
        request: &BackendRequest,
        timings: &mut ExecTimings,
    ) -> Result<Vec<Tensor>, BackendError> {
        let inputs = &request.inputs;
        let start = Instant::now();
        let mut args: Vec<Option<IValue>> = (0..inputs.len()).map(|_| None).collect();
        for (i, input) in inputs.iter().enumerate() {
            let value = match input {
                Some(t) => IValue::Tensor(self.to_torch(t)?),
                None => IValue::None,
            };
            args[self.arg_position[i]] = Some(value);
        }
        let args: Vec<IValue> = args
            .into_iter()
            .map(|a| a.unwrap_or(IValue::None))
            .collect();
        let infer_start = Instant::now();
        timings.input = infer_start - start;

        let result = tch::no_grad(|| self.module.forward_is(&args)).map_err(|e| {
            BackendError::InvalidInput(format!(
                "model execution failed: {}",
                first_line(&e.to_string())
            ))
        })?;
        let mut produced = Vec::new();
        flatten_result(result, &mut produced)?;
        if self.device != Device::Cpu {
            tch::Cuda::synchronize(match self.device {
                Device::Cuda(i) => i as i64,
                _ => 0,
            });
        }
        let output_start = Instant::now();
        timings.infer = output_start - infer_start;

        let mut outputs = Vec::with_capacity(self.outputs.len());
        for (spec, &pos) in self.outputs.iter().zip(&self.output_position) {
            let t = produced.get(pos).ok_or_else(|| {
                BackendError::Execution(format!(
                    "output '{}' is result #{pos} but the model returned {} tensor(s)",
                    spec.name,
                    produced.len()
                ))
            })?;
            let t = t
                .f_to_device(Device::Cpu)
                .and_then(|t| t.f_contiguous())
                .map_err(|e| BackendError::Execution(e.to_string()))?;
            let unsupported = || {
                BackendError::Execution(format!(
                    "output '{}' has a tensor type kiln cannot return",
                    spec.name
                ))
            };
            let (datatype, kind) = match t.f_kind() {
                Ok(kind) => (datatype_of(kind).ok_or_else(unsupported)?, Some(kind)),
                Err(_) => (
                    torch_ffi::unsigned_datatype(&t).ok_or_else(unsupported)?,
                    None,
                ),
            };
            if datatype != spec.datatype {
                return Err(BackendError::Execution(format!(
                    "output '{}' is declared {} in config.pbtxt but the model produced {datatype}",
                    spec.name, spec.datatype
                )));
            }
            let buf = match kind {
                Some(kind) => {
                    let numel = t.numel();
                    let mut buf = vec![0u8; numel * kind.elt_size_in_bytes()];
                    t.f_copy_data_u8(&mut buf, numel)
                        .map_err(|e| BackendError::Execution(e.to_string()))?;
                    buf
                }
                None => torch_ffi::unsigned_bytes(&t, datatype).map_err(BackendError::Execution)?,
            };
            outputs.push(Tensor::new(
                spec.name.clone(),
                datatype,
                t.size(),
                Bytes::from(buf),
            ));
        }
        timings.output = output_start.elapsed();
        Ok(outputs)
    }

    fn device(&self) -> String {
        match self.device {
            Device::Cuda(i) => format!("cuda:{i}"),
            _ => "cpu".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naming_convention_orders_arguments() {
        assert_eq!(
            convention_positions(&["INPUT__1", "INPUT__0"]),
            Some(vec![1, 0])
        );
        assert_eq!(convention_positions(&["INPUT0", "INPUT1"]), None);
        assert_eq!(convention_positions(&["A__0", "B__0"]), None);
    }

    #[test]
    fn every_supported_datatype_has_a_kind() {
        for d in DataType::ALL {
            if let Some(k) = kind_of(d) {
                assert_eq!(datatype_of(k), Some(d));
            }
        }
    }
}
