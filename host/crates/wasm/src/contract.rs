//! What config.pbtxt promises about a plugin, checked the same way for
//! every kind of plugin binary: at load, the plugin's declared tensors must
//! cover the config's; per call, its outputs must match the config
//! (sdk/ABI.md, "Errors"): each config output exactly once, with its
//! datatype, dims and size; an output the plugin declared in `metadata()`
//! but the config does not use is dropped; a name the plugin never declared,
//! or one returned twice, fails the call.

use std::collections::HashSet;

use kiln_model_config::{ModelSpec, TensorSpec};
use kiln_types::tensor::{DataType, Tensor};
use kiln_types::text::clip;

use kiln_backend::BackendError;

/// A plugin's own description of itself (`processor.metadata()`).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginMetadata {
    pub name: String,
    pub version: String,
    /// (name, datatype, dims without the batch dimension)
    pub inputs: Vec<(String, DataType, Vec<i64>)>,
    pub outputs: Vec<(String, DataType, Vec<i64>)>,
}

/// The plugin must declare every tensor config.pbtxt declares, same types.
/// Returns what each of its answers will be checked against.
pub fn check_metadata(
    spec: &ModelSpec,
    meta: &PluginMetadata,
) -> Result<OutputContract, BackendError> {
    let check = |kind: &str,
                 declared: &[TensorSpec],
                 offered: &[(String, DataType, Vec<i64>)]|
     -> Result<(), BackendError> {
        for t in declared {
            let (_, datatype, _) = offered
                .iter()
                .find(|(name, _, _)| *name == t.name)
                .ok_or_else(|| {
                    BackendError::Load(format!(
                        "config.pbtxt declares {kind} '{}' but plugin '{}' does not (it has: {})",
                        t.name,
                        meta.name,
                        offered
                            .iter()
                            .map(|(name, _, _)| name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            if *datatype != t.datatype {
                return Err(BackendError::Load(format!(
                    "{kind} '{}' is {} in config.pbtxt but {datatype} in plugin '{}'",
                    t.name, t.datatype, meta.name
                )));
            }
        }
        Ok(())
    };
    check("input", &spec.inputs, &meta.inputs)?;
    check("output", &spec.outputs, &meta.outputs)?;
    Ok(OutputContract {
        outputs: spec.outputs.clone(),
        declared: meta.outputs.iter().map(|(n, _, _)| n.clone()).collect(),
        batched: spec.batched(),
    })
}

/// The outputs config.pbtxt declares, which every answer must match, and
/// the names the plugin itself declared.
#[derive(Clone, Default)]
pub struct OutputContract {
    outputs: Vec<TensorSpec>,
    declared: HashSet<String>,
    batched: bool,
}

impl OutputContract {
    /// Orders a plugin's outputs as config.pbtxt declares them (see the
    /// module docs for what is refused).
    pub fn collect(
        &self,
        produced: impl IntoIterator<Item = Tensor>,
    ) -> Result<Vec<Tensor>, BackendError> {
        let mut outputs: Vec<Option<Tensor>> = vec![None; self.outputs.len()];
        let mut seen = HashSet::new();
        for t in produced {
            if !self.declared.contains(&t.name) {
                return Err(BackendError::Execution(format!(
                    "plugin returned output '{}', which its metadata does not declare",
                    clip(&t.name)
                )));
            }
            if !seen.insert(t.name.clone()) {
                return Err(BackendError::Execution(format!(
                    "plugin returned output '{}' more than once",
                    clip(&t.name)
                )));
            }
            let Some(index) = self.outputs.iter().position(|o| o.name == t.name) else {
                continue; // declared by the plugin, not used by the config
            };
            self.check(&t, &self.outputs[index])
                .map_err(BackendError::Execution)?;
            outputs[index] = Some(t);
        }
        outputs
            .into_iter()
            .zip(&self.outputs)
            .map(|(t, spec)| {
                t.ok_or_else(|| {
                    BackendError::Execution(format!("plugin did not return output '{}'", spec.name))
                })
            })
            .collect()
    }

    fn check(&self, t: &Tensor, spec: &TensorSpec) -> Result<(), String> {
        if t.datatype != spec.datatype {
            return Err(format!(
                "plugin returned output '{}' as {} but config.pbtxt declares {}",
                t.name, t.datatype, spec.datatype
            ));
        }
        let item = if self.batched {
            t.shape.get(1..).unwrap_or(&[])
        } else {
            &t.shape[..]
        };
        let fits = item.len() == spec.dims.len()
            && item
                .iter()
                .zip(&spec.dims)
                .all(|(&a, &e)| e == -1 || a == e);
        if !fits || (self.batched && t.shape.is_empty()) {
            return Err(format!("plugin returned output '{}' with shape {:?}, which does not match dims {:?} in config.pbtxt", t.name, t.shape, spec.dims));
        }
        t.check_byte_size()
            .map_err(|e| format!("plugin returned a malformed output: {e}"))
    }
}
