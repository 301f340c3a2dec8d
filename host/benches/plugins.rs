//! Plugin host costs, in process (no network): the per-call overhead of an
//! empty plugin, and the cost of instantiating a plugin from its
//! pre-instantiation (what a trap or a fresh instance costs).
//!
//!     plugins/build.sh empty && cargo bench --bench plugins
//!
//! Figures are recorded in BENCHMARKS.md.

use std::path::PathBuf;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kiln::backend::wasm::WasmInstance;
use kiln::backend::{Backend, BackendRequest, ExecTimings};
use kiln::repository::config;
use kiln::tensor::{DataType, Tensor};

fn empty_plugin() -> (tempfile::TempDir, WasmInstance) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = root.join("target/plugins/empty.wasm");
    assert!(
        wasm.is_file(),
        "{} missing: run plugins/build.sh empty",
        wasm.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("empty");
    std::fs::create_dir_all(dir.join("1")).unwrap();
    std::fs::copy(&wasm, dir.join("1/model.wasm")).unwrap();
    std::fs::write(
        dir.join("config.pbtxt"),
        "backend: \"wasm\"\ninput [ { name: \"INPUT\" data_type: TYPE_FP32 dims: [ -1 ] } ]\noutput [ { name: \"OUTPUT\" data_type: TYPE_FP32 dims: [ -1 ] } ]\n",
    )
    .unwrap();
    let spec = config::validate(&dir, config::read_config(&dir).unwrap()).unwrap();
    let instance = WasmInstance::load(&spec, &dir.join("1/model.wasm")).unwrap();
    (tmp, instance)
}

fn request(floats: usize) -> BackendRequest {
    let data = Bytes::from(vec![0u8; floats * 4]);
    BackendRequest {
        inputs: vec![Some(Tensor::new(
            "INPUT",
            DataType::Fp32,
            vec![floats as i64],
            data,
        ))],
        parameters: vec![],
    }
}

fn bench(c: &mut Criterion) {
    let (_tmp, mut instance) = empty_plugin();
    let mut group = c.benchmark_group("empty_plugin_call");
    for floats in [1usize, 16 * 1024, 256 * 1024] {
        let req = request(floats);
        group.throughput(Throughput::Bytes((floats * 4) as u64));
        group.bench_function(format!("{floats}_fp32"), |b| {
            b.iter(|| instance.execute(&req, &mut ExecTimings::default()).unwrap());
        });
    }
    group.finish();
    c.bench_function("plugin_instantiate", |b| {
        b.iter(|| instance.instantiate().unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
