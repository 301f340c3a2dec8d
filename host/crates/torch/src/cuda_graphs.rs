//! `optimization { cuda { graphs: true } }`: the input shapes a GPU
//! TorchScript instance captures as CUDA graphs when it loads.
//!
//! Triton defines these fields for its TensorRT backend; kiln gives them the
//! same meaning for TorchScript. A captured forward pass replays every kernel
//! with one launch, so a batch no longer pays libtorch's per-operator CPU
//! dispatch (about 4 ms for ResNet-50 on an H100, whatever the batch size),
//! which is what bounds a half-precision model at moderate batch sizes.
//!
//! Which shapes:
//! - `graph_spec` entries, each a `batch_size` and, for inputs whose dims are
//!   variable (-1) in config.pbtxt, their `input` shape;
//! - without `graph_spec`, for a batching model, a ladder of batch sizes up
//!   to `max_batch_size` (`default_batch_sizes`); for a model without a batch
//!   dimension, the config's dims, which must then be fixed.
//!
//! A batch runs on the smallest captured graph whose batch size holds it and
//! whose other dims match; the rows past the batch are padding whose results
//! are dropped (the rows of a batch must be independent, as dynamic batching
//! already assumes). Anything else (a larger shape, an absent optional input)
//! runs eagerly. `graph_lower_bound` (TensorRT's shape ranges) has no
//! meaning for a captured libtorch graph and is refused.

use kiln_model_config::proto::ModelConfig;
use kiln_model_config::TensorSpec;

/// One shape to capture: `batch` rows (0 for a model without a batch
/// dimension) and the full shape of every input, in config order, as the
/// backend receives it (batch dimension first where there is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphShape {
    pub batch: usize,
    pub inputs: Vec<Vec<i64>>,
}

/// Input name → dims without the batch dimension, as a graph_spec gives them.
type NamedShapes = Vec<(String, Vec<i64>)>;

/// The shapes `config` asks to capture, largest batch first (captures share
/// one memory pool, and a larger capture first leaves the smaller ones room
/// to reuse its blocks). Empty when graphs are off.
pub fn graph_shapes(
    config: &ModelConfig,
    inputs: &[TensorSpec],
) -> Result<Vec<GraphShape>, String> {
    let Some(cuda) = config.optimization.as_ref().and_then(|o| o.cuda.as_ref()) else {
        return Ok(vec![]);
    };
    if !cuda.graphs {
        return Ok(vec![]);
    }
    let max_batch = config.max_batch_size.max(0) as usize;
    // (batch size, input shapes named in graph_spec)
    let mut wanted: Vec<(usize, NamedShapes)> = Vec::new();
    if cuda.graph_spec.is_empty() {
        if max_batch == 0 {
            wanted.push((0, vec![]));
        } else {
            wanted.extend(
                default_batch_sizes(max_batch)
                    .into_iter()
                    .map(|b| (b, vec![])),
            );
        }
    }
    for (i, spec) in cuda.graph_spec.iter().enumerate() {
        let field = format!("optimization.cuda.graph_spec[{i}]");
        if spec.graph_lower_bound.is_some() {
            return Err(format!(
                "field '{field}.graph_lower_bound': kiln captures exact shapes; list each shape as its own graph_spec"
            ));
        }
        let batch = spec.batch_size;
        if max_batch == 0 && batch != 0 {
            return Err(format!(
                "field '{field}.batch_size': must be 0 (or left out) when max_batch_size is 0, got {batch}"
            ));
        }
        if max_batch > 0 && (batch < 1 || batch as usize > max_batch) {
            return Err(format!(
                "field '{field}.batch_size': must be between 1 and max_batch_size {max_batch}, got {batch}"
            ));
        }
        let mut named: Vec<(String, Vec<i64>)> = spec
            .input
            .iter()
            .map(|(name, shape)| (name.clone(), shape.dim.clone()))
            .collect();
        named.sort();
        if let Some((name, _)) = named
            .iter()
            .find(|(name, _)| !inputs.iter().any(|t| &t.name == name))
        {
            return Err(format!(
                "field 'optimization.cuda.graph_spec': input '{name}' is not an input of the model"
            ));
        }
        wanted.push((batch as usize, named));
    }
    if let Some(t) = inputs
        .iter()
        .find(|t| crate::kinds::kind_of(t.datatype).is_none())
    {
        return Err(format!(
            "field 'optimization.cuda.graphs': input '{}' is {}, which a captured graph cannot take",
            t.name, t.datatype
        ));
    }

    let mut shapes = Vec::new();
    for (batch, named) in wanted {
        let mut full = Vec::with_capacity(inputs.len());
        for t in inputs {
            let declared = t.reshape.as_ref().unwrap_or(&t.dims);
            let given = named.iter().find(|(n, _)| n == &t.name).map(|(_, d)| d);
            let dims = match given {
                Some(d) => {
                    if d.len() != declared.len()
                        || d.iter().zip(declared).any(|(&g, &c)| g < 1 || (c != -1 && g != c))
                    {
                        return Err(format!(
                            "field 'optimization.cuda.graph_spec': input '{}' shape {d:?} does not fit its dims {declared:?}",
                            t.name
                        ));
                    }
                    d.clone()
                }
                None if declared.iter().any(|&d| d < 0) => {
                    return Err(format!(
                        "field 'optimization.cuda.graphs': input '{}' has variable dims {declared:?}; give its shape in a graph_spec entry's 'input'",
                        t.name
                    ))
                }
                None => declared.clone(),
            };
            let mut shape = Vec::with_capacity(dims.len() + 1);
            if max_batch > 0 {
                shape.push(batch as i64);
            }
            shape.extend(dims);
            full.push(shape);
        }
        let shape = GraphShape {
            batch,
            inputs: full,
        };
        if !shapes.contains(&shape) {
            shapes.push(shape);
        }
    }
    shapes.sort_by_key(|s| std::cmp::Reverse(s.batch));
    Ok(shapes)
}

/// The batch sizes captured without `graph_spec`: powers of two up to a step
/// (8, or an eighth of `max_batch_size` rounded up to a power of two when
/// that is larger), then every multiple of the step, and `max_batch_size`: a
/// batch is padded by at most one step (ResNet-50's 64 gives 1, 2, 4, 8, 16, 24 … 64), which
/// bounds the compute spent on padding, while the graphs of an instance
/// share one memory pool, so more of them cost little memory.
fn default_batch_sizes(max_batch: usize) -> Vec<usize> {
    let step = (max_batch.next_power_of_two() / 8).max(8);
    let mut sizes: Vec<usize> = (0..)
        .map(|p| 1usize << p)
        .take_while(|&b| b < step)
        .chain((1..).map(|k| k * step))
        .take_while(|&b| b < max_batch)
        .collect();
    sizes.push(max_batch);
    sizes
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = r#"
platform: "pytorch_libtorch"
max_batch_size: 8
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 3, -1 ] },
        { name: "INPUT__1" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 2 ] } ]
"#;

    /// The graph shapes of BASE (or `base`) with `optimization` appended.
    fn shapes_of(base: &str, optimization: &str) -> Result<Vec<GraphShape>, String> {
        let text = format!("{base}\noptimization {{ {optimization} }}");
        let config = kiln_model_config::parse_text(Path::new("config.pbtxt"), &text)
            .map_err(|e| e.to_string())?;
        let inputs: Vec<TensorSpec> = config
            .input
            .iter()
            .map(|t| TensorSpec {
                name: t.name.clone(),
                datatype: kiln_model_config::datatype_of(t.data_type()).unwrap(),
                dims: t.dims.clone(),
                reshape: t.reshape.as_ref().map(|r| r.shape.clone()),
                optional: false,
                labels: None,
            })
            .collect();
        graph_shapes(&config, &inputs)
    }

    #[test]
    fn graph_spec_shapes_fill_variable_dims_and_sort_largest_first() {
        let shapes = shapes_of(
            BASE,
            r#"cuda { graphs: true
                graph_spec [ { batch_size: 2 input { key: "INPUT__0" value { dim: [ 3, 5 ] } } },
                             { batch_size: 8 input { key: "INPUT__0" value { dim: [ 3, 7 ] } } } ] }"#,
        )
        .unwrap();
        assert_eq!(
            shapes,
            vec![
                GraphShape {
                    batch: 8,
                    inputs: vec![vec![8, 3, 7], vec![8, 4]]
                },
                GraphShape {
                    batch: 2,
                    inputs: vec![vec![2, 3, 5], vec![2, 4]]
                },
            ]
        );
    }

    #[test]
    fn default_batch_sizes_pad_by_at_most_one_step() {
        assert_eq!(
            default_batch_sizes(64),
            vec![1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64]
        );
        assert_eq!(default_batch_sizes(8), vec![1, 2, 4, 8]);
        assert_eq!(default_batch_sizes(1), vec![1]);
        assert_eq!(default_batch_sizes(3), vec![1, 2, 3]);
        let big = default_batch_sizes(256);
        assert_eq!(&big[..7], &[1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(big.last(), Some(&256));
    }

    #[test]
    fn default_shapes_follow_the_config() {
        let fixed = BASE
            .replace("dims: [ 3, -1 ]", "dims: [ 3, 6 ]")
            .replace("max_batch_size: 8", "max_batch_size: 12");
        let batches: Vec<usize> = shapes_of(&fixed, "cuda { graphs: true }")
            .unwrap()
            .iter()
            .map(|s| s.batch)
            .collect();
        assert_eq!(batches, vec![12, 8, 4, 2, 1]);
        let unbatched = fixed.replace("max_batch_size: 12", "max_batch_size: 0");
        assert_eq!(
            shapes_of(&unbatched, "cuda { graphs: true }").unwrap(),
            vec![GraphShape {
                batch: 0,
                inputs: vec![vec![3, 6], vec![4]]
            }]
        );
    }

    #[test]
    fn graphs_off_or_absent_capture_nothing() {
        assert_eq!(shapes_of(BASE, "cuda { graphs: false }").unwrap(), vec![]);
        assert_eq!(shapes_of(BASE, "").unwrap(), vec![]);
    }

    #[test]
    fn bad_graph_specs_name_the_field() {
        let cases = [
            (
                "cuda { graphs: true }",
                "input 'INPUT__0' has variable dims [3, -1]",
            ),
            (
                r#"cuda { graphs: true graph_spec [ { batch_size: 9 input { key: "INPUT__0" value { dim: [ 3, 5 ] } } } ] }"#,
                "graph_spec[0].batch_size': must be between 1 and max_batch_size 8, got 9",
            ),
            (
                r#"cuda { graphs: true graph_spec [ { batch_size: 2 input { key: "INPUT__0" value { dim: [ 4, 5 ] } } } ] }"#,
                "input 'INPUT__0' shape [4, 5] does not fit its dims [3, -1]",
            ),
            (
                r#"cuda { graphs: true graph_spec [ { batch_size: 2 input { key: "nope" value { dim: [ 1 ] } } } ] }"#,
                "input 'nope' is not an input of the model",
            ),
            (
                r#"cuda { graphs: true graph_spec [ { batch_size: 2 graph_lower_bound { batch_size: 1 } } ] }"#,
                "graph_spec[0].graph_lower_bound': kiln captures exact shapes",
            ),
        ];
        for (optimization, want) in cases {
            let got = shapes_of(BASE, optimization).unwrap_err();
            assert!(got.contains(want), "{optimization}: {got}");
        }
    }
}
