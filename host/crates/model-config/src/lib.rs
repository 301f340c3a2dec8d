//! config.pbtxt, as Triton reads it: the model-config schema
//! (`proto/model_config.proto`, Triton's field numbers), a real protobuf
//! text-format parser (prost-reflect) against it, and the checks every model
//! passes whatever its backend, which normalise a config into a
//! [`ModelSpec`], the typed view the server works from.
//!
//! What only one backend cares about (the datatypes libtorch holds, a
//! plugin's parameters, CUDA graph shapes) is checked by that backend's
//! factory (kiln-backend's `BackendFactory::validate`), after these checks.
#![forbid(unsafe_code)]

mod ceilings;
mod ensemble;
mod parse;
mod spec;

pub use ceilings::Ceilings;
pub use ensemble::check_steps;
pub use parse::{parse_text, read_config, ConfigError, CONFIG_FILE};
pub use spec::{
    datatype_of, ignored_optimization_settings, parse_bool, select_versions, validate, ModelSpec,
    Placement, TensorSpec, CUSTOM_OPS_PARAMETER, DISPATCH_WHEN_IDLE_PARAMETER, ENSEMBLE_BACKEND,
    ENSEMBLE_PLATFORM, OP_PLUGIN_BACKEND, PLATFORM_BACKENDS,
};

/// Types generated from `proto/model_config.proto` (package `inference`).
#[allow(clippy::all, clippy::pedantic)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/inference.rs"));

    /// Descriptors of the generated messages, for text-format (config.pbtxt)
    /// parsing and JSON rendering.
    pub static DESCRIPTOR_POOL: std::sync::LazyLock<prost_reflect::DescriptorPool> =
        std::sync::LazyLock::new(|| {
            prost_reflect::DescriptorPool::decode(
                include_bytes!(concat!(env!("OUT_DIR"), "/file_descriptor_set.bin")).as_ref(),
            )
            .expect("the build script writes a valid descriptor set")
        });
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::parse::colon_before_lists;
    use crate::proto::{model_version_policy::PolicyChoice, ModelVersionPolicy};
    use kiln_types::text::line_col;

    fn dir_with(name: &str, text: &str) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(CONFIG_FILE), text).unwrap();
        tmp
    }

    fn load(tmp: &tempfile::TempDir, name: &str) -> Result<ModelSpec, ConfigError> {
        let d = tmp.path().join(name);
        validate(&d, read_config(&d)?)
    }

    const RESNET: &str = r#"
name: "resnet50"
platform: "pytorch_libtorch"
max_batch_size: 8
input [
  {
    name: "INPUT__0"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, 224, 224 ]
  }
]
output [
  {
    name: "OUTPUT__0"
    data_type: TYPE_FP32
    dims: [ 1000 ]
    label_filename: "labels.txt"
  }
]
instance_group [ { count: 2, kind: KIND_GPU, gpus: [ 0, 1 ] } ]
dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 100 }
version_policy: { latest: { num_versions: 2 } }
parameters: { key: "INFERENCE_MODE" value: { string_value: "true" } }
model_warmup [
  {
    name: "zeros"
    batch_size: 1
    inputs { key: "INPUT__0" value: { data_type: TYPE_FP32 dims: [ 3, 224, 224 ] zero_data: true } }
  }
]
"#;

    #[test]
    fn triton_resnet_config_loads_unchanged() {
        let tmp = dir_with("resnet50", RESNET);
        std::fs::write(tmp.path().join("resnet50/labels.txt"), "tench\ngoldfish\n").unwrap();
        let spec = load(&tmp, "resnet50").unwrap();
        assert_eq!(spec.max_batch_size, 8);
        assert_eq!(spec.inputs[0].dims, vec![3, 224, 224]);
        assert_eq!(spec.outputs[0].labels.as_ref().unwrap()[1], "goldfish");
        assert_eq!(
            spec.instances,
            vec![
                Placement::Gpu(0),
                Placement::Gpu(0),
                Placement::Gpu(1),
                Placement::Gpu(1)
            ]
        );
        assert_eq!(spec.config.backend, "pytorch");
        assert_eq!(spec.select_versions(&[1, 3, 2]), vec![2, 3]);
        assert!(spec.warnings.is_empty(), "{:?}", spec.warnings);
    }

    #[test]
    fn bert_and_full_dims_configs_load() {
        let bert = r#"
name: "bert"
backend: "pytorch"
max_batch_size: 4
input [ { name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] },
        { name: "attention_mask" data_type: TYPE_INT64 dims: [ -1 ] } ]
output [ { name: "logits" data_type: TYPE_FP32 dims: [ -1, 2 ] } ]
"#;
        let tmp = dir_with("bert", bert);
        let spec = load(&tmp, "bert").unwrap();
        assert_eq!(spec.inputs.len(), 2);
        assert_eq!(spec.instances, vec![Placement::Auto]);

        let full = r#"
platform: "pytorch_libtorch"
max_batch_size: 0
input [ { name: "image" data_type: TYPE_FP32 dims: [ 1, 3, 256, 256 ] } ]
output [ { name: "mask" data_type: TYPE_FP32 dims: [ 1, 1, 256, 256 ] } ]
instance_group [ { kind: KIND_CPU } ]
"#;
        let tmp = dir_with("seg", full);
        let spec = load(&tmp, "seg").unwrap();
        assert_eq!(spec.name, "seg");
        assert!(!spec.batched());
        assert_eq!(spec.instances, vec![Placement::Cpu]);
    }

    #[test]
    fn an_error_inside_a_multibyte_character_is_located_not_a_panic() {
        // Found by host/fuzz (config_pbtxt): the error offset, taken from
        // the normalized text, fell inside U+031C.
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/corpus/config_pbtxt/crash-offset-inside-char"
        ))
        .unwrap();
        let e = parse_text(Path::new("config.pbtxt"), &text).unwrap_err();
        assert!(e.0.starts_with("config.pbtxt:"), "{e}");
        assert_eq!(line_col("aé", 2), (1, 2));
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let tmp = dir_with(
            "m",
            "name: \"m\"\nplatform: \"pytorch_libtorch\"\nmax_batch_sise: 8\n",
        );
        let e = load(&tmp, "m").unwrap_err().0;
        assert!(e.contains("config.pbtxt:3:1"), "{e}");
        assert!(e.contains("max_batch_sise"), "{e}");
    }

    #[test]
    fn dispatch_when_idle_defaults_on_and_a_bad_value_names_the_parameter() {
        let tmp = dir_with("resnet50", RESNET);
        std::fs::write(tmp.path().join("resnet50/labels.txt"), "a\n").unwrap();
        assert!(load(&tmp, "resnet50").unwrap().dispatch_when_idle());
        let with = |value: &str| {
            let text = format!(
                "{RESNET}parameters: {{ key: \"dispatch_when_idle\" value: {{ string_value: \"{value}\" }} }}\n"
            );
            std::fs::write(tmp.path().join("resnet50/config.pbtxt"), text).unwrap();
            load(&tmp, "resnet50")
        };
        assert!(!with("false").unwrap().dispatch_when_idle());
        assert!(with("TRUE").unwrap().dispatch_when_idle());
        let e = with("sometimes").unwrap_err().0;
        assert!(
            e.contains("parameter 'dispatch_when_idle'") && e.contains("\"sometimes\""),
            "{e}"
        );
    }

    #[test]
    fn bad_enum_value_is_reported() {
        let tmp = dir_with("m", "platform: \"pytorch_libtorch\"\ninput [ { name: \"x\" data_type: TYPE_FLOAT dims: [1] } ]\n");
        let e = load(&tmp, "m").unwrap_err().0;
        assert!(e.contains(":2:") && e.contains("TYPE_FLOAT"), "{e}");
    }

    #[test]
    fn list_syntax_without_colon_keeps_offsets() {
        let text = "input [ { name: \"a [b\" } ] # x [y\noutput[{}]\ndims: [ 1 ]";
        let fixed = colon_before_lists(text);
        assert_eq!(
            fixed,
            "input:[ { name: \"a [b\" } ] # x [y\noutput:[{}]\ndims: [ 1 ]"
        );
    }

    #[test]
    fn version_policies() {
        use crate::proto::model_version_policy::{All, Latest, Specific};
        let pol = |c| ModelVersionPolicy {
            policy_choice: Some(c),
        };
        assert_eq!(select_versions(None, &[1, 2, 3]), vec![3]);
        assert_eq!(
            select_versions(Some(&pol(PolicyChoice::All(All {}))), &[3, 1]),
            vec![1, 3]
        );
        assert_eq!(
            select_versions(
                Some(&pol(PolicyChoice::Latest(Latest { num_versions: 5 }))),
                &[1, 2]
            ),
            vec![1, 2]
        );
        assert_eq!(
            select_versions(
                Some(&pol(PolicyChoice::Specific(Specific {
                    versions: vec![1, 4]
                }))),
                &[1, 2, 3]
            ),
            vec![1]
        );
        assert!(select_versions(None, &[]).is_empty());
    }

    #[test]
    fn settings_kiln_does_not_act_on_are_listed() {
        let config = crate::parse_text(
            Path::new("config.pbtxt"),
            "optimization { priority: PRIORITY_MAX cuda { busy_wait_events: true graph_spec [ { batch_size: 1 } ] } }",
        )
        .unwrap();
        assert_eq!(
            ignored_optimization_settings(&config),
            vec![
                "priority",
                "cuda.busy_wait_events",
                "cuda.graph_spec (without cuda.graphs: true)"
            ]
        );
    }
}
