//! The backends this build of kiln serves, registered in one place
//! ([`registry`]). The trait they implement and the registry itself are
//! kiln-backend's; each backend is its own crate.

use kiln_backend::BackendRegistry;

/// Every backend kiln serves. A new backend is one more `register` line.
pub fn registry() -> BackendRegistry {
    let mut backends = BackendRegistry::default();
    backends
        .register(kiln_torch::TorchScriptFactory)
        .register(kiln_wasm::WasmFactory)
        .register(kiln_wasm::WasmOpsFactory);
    backends
}

#[cfg(test)]
mod tests {
    fn dir_with(name: &str, text: &str) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(kiln_model_config::CONFIG_FILE), text).unwrap();
        tmp
    }

    fn load(
        tmp: &tempfile::TempDir,
        name: &str,
    ) -> Result<kiln_model_config::ModelSpec, kiln_model_config::ConfigError> {
        super::registry().read_spec(&tmp.path().join(name), None)
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let cases = [
            ("name: \"other\"\nplatform: \"pytorch_libtorch\"", "name"),
            ("platform: \"onnxruntime_onnx\"\ninput [ { name: \"x\" data_type: TYPE_FP32 dims: [1] } ]\noutput [ { name: \"y\" data_type: TYPE_FP32 dims: [1] } ]", "onnxruntime_onnx"),
            ("platform: \"pytorch_libtorch\"\nmax_batch_size: 1\ninput [ { name: \"x\" data_type: TYPE_STRING dims: [1] } ]\noutput [ { name: \"y\" data_type: TYPE_FP32 dims: [1] } ]", "BYTES"),
            ("platform: \"pytorch_libtorch\"\nmax_batch_size: 1\ninput [ { name: \"x\" data_type: TYPE_FP32 dims: [-2] } ]\noutput [ { name: \"y\" data_type: TYPE_FP32 dims: [1] } ]", "dims"),
            ("platform: \"pytorch_libtorch\"\nmax_batch_size: 1\ninput [ { name: \"x\" data_type: TYPE_FP32 dims: [1] } ]\noutput [ { name: \"y\" data_type: TYPE_FP32 dims: [1] label_filename: \"nope.txt\" } ]", "label_filename"),
        ];
        for (text, needle) in cases {
            let tmp = dir_with("m", text);
            let e = load(&tmp, "m").unwrap_err().0;
            assert!(
                e.contains(needle) && e.contains("config.pbtxt"),
                "{needle}: {e}"
            );
        }
    }

    #[test]
    fn only_torchscript_models_take_graphs() {
        let tmp = dir_with(
            "m",
            "backend: \"wasm\"\ninput [ { name: \"x\" data_type: TYPE_FP32 dims: [1] } ]\noutput [ { name: \"y\" data_type: TYPE_FP32 dims: [1] } ]\noptimization { cuda { graphs: true } }",
        );
        let err = load(&tmp, "m").unwrap_err().0;
        assert!(err.contains("only TorchScript models"), "{err}");
    }

    #[test]
    fn cpu_only_backends_refuse_gpus_and_run_auto_instances_on_the_cpu() {
        let wasm = "backend: \"wasm\"\ninput [ { name: \"x\" data_type: TYPE_FP32 dims: [1] } ]\noutput [ { name: \"y\" data_type: TYPE_FP32 dims: [1] } ]\n";
        let tmp = dir_with(
            "m",
            &format!("{wasm}instance_group [ {{ kind: KIND_GPU }} ]"),
        );
        let err = load(&tmp, "m").unwrap_err().0;
        assert!(
            err.contains("instance_group[0]") && err.contains("KIND_CPU"),
            "{err}"
        );
        let tmp = dir_with("m", &format!("{wasm}instance_group [ {{ count: 2 }} ]"));
        let spec = load(&tmp, "m").unwrap();
        assert_eq!(spec.instances, vec![kiln_model_config::Placement::Cpu; 2]);
        assert_eq!(spec.model_filename, "model.wasm");
    }
}
