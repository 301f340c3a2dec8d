//! Plugin host costs, in process (no network): the per-call overhead of an
//! empty plugin, the cost of instantiating a plugin from its
//! pre-instantiation (what a trap or a fresh instance costs), and the glue of
//! an op plugin's call (host ops made free).
//!
//!     plugins/build.sh empty test_ops gfpgan_ops && cargo bench --bench plugins
//!
//! With the image_preprocess plugin and the images of
//! bench/plugin_native_ratio.sh, also that plugin on every case of
//! bench/plugin_native_ratio.cases (skipped when either is missing), the Wasm
//! side of the Wasm-vs-native ratio; `KILN_BENCH_SIMD128_WASM=FILE` adds the
//! same cases with another build of the plugin (the script's +simd128 one).
//!
//! Figures are recorded in BENCHMARKS.md.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kiln_backend::{Backend, BackendRequest, ExecTimings};
use kiln_types::tensor::{encode_bytes_elements, DataType, Tensor};
use kiln_wasm::{WasmFactory, WasmInstance};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// `wasm` served as model NAME with this config.pbtxt, the way kiln loads it.
fn load(name: &str, wasm: &Path, config_text: &str) -> (tempfile::TempDir, WasmInstance) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    std::fs::create_dir_all(dir.join("1")).unwrap();
    std::fs::copy(wasm, dir.join("1/model.wasm")).unwrap();
    std::fs::write(dir.join("config.pbtxt"), config_text).unwrap();
    let mut backends = kiln_backend::BackendRegistry::default();
    backends.register(WasmFactory);
    let spec = backends.read_spec(&dir, None).unwrap();
    let instance = WasmInstance::load(&spec, &dir.join("1/model.wasm")).unwrap();
    (tmp, instance)
}

fn empty_plugin() -> (tempfile::TempDir, WasmInstance) {
    let wasm = root().join("target/plugins/empty.wasm");
    assert!(
        wasm.is_file(),
        "{} missing: run plugins/build.sh empty",
        wasm.display()
    );
    load(
        "empty",
        &wasm,
        "backend: \"wasm\"\ninput [ { name: \"INPUT\" data_type: TYPE_FP32 dims: [ -1 ] } ]\noutput [ { name: \"OUTPUT\" data_type: TYPE_FP32 dims: [ -1 ] } ]\n",
    )
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

/// One case of bench/plugin_native_ratio.cases: NAME IMAGE KEY=VALUE...
struct ImageCase {
    name: String,
    image: PathBuf,
    parameters: Vec<(String, String)>,
}

fn image_cases() -> Vec<ImageCase> {
    let text = std::fs::read_to_string(root().join("bench/plugin_native_ratio.cases")).unwrap();
    let images = root().join("target/plugin-ratio/images");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next().unwrap().to_string();
            let image = images.join(words.next().unwrap());
            let parameters = words
                .map(|w| {
                    let (k, v) = w.split_once('=').expect("KEY=VALUE");
                    (k.to_string(), v.to_string())
                })
                .collect();
            ImageCase {
                name,
                image,
                parameters,
            }
        })
        .collect()
}

/// The image_preprocess plugin (`wasm`) on every case whose image exists, as
/// criterion group `group`; each case's output goes to
/// target/plugin-ratio/out/NAME.LABEL.f32 for the script's bit-for-bit check
/// against the native side.
fn bench_image_preprocess(c: &mut Criterion, group: &str, label: &str, wasm: &Path) {
    if !wasm.is_file() {
        eprintln!("skipping {group}: {} missing", wasm.display());
        return;
    }
    let out_dir = root().join("target/plugin-ratio/out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut g = c.benchmark_group(group);
    for case in image_cases() {
        let Ok(image) = std::fs::read(&case.image) else {
            eprintln!(
                "skipping {group}/{}: {} missing (bench/plugin_native_ratio.sh makes it)",
                case.name,
                case.image.display()
            );
            continue;
        };
        let get = |key: &str| {
            let (_, v) = case.parameters.iter().find(|(k, _)| k == key).unwrap();
            v.as_str()
        };
        let dims = format!("{}, {}, {}", get("channels"), get("height"), get("width"));
        let mut config_text = format!(
            "backend: \"wasm\"\n\
             input [ {{ name: \"IMAGE\" data_type: TYPE_STRING dims: [ 1 ] }} ]\n\
             output [ {{ name: \"PIXELS\" data_type: TYPE_FP32 dims: [ {dims} ] }} ]\n"
        );
        for (k, v) in &case.parameters {
            config_text +=
                &format!("parameters {{ key: \"{k}\" value: {{ string_value: \"{v}\" }} }}\n");
        }
        let (_tmp, mut instance) = load("image_preprocess", wasm, &config_text);
        let req = BackendRequest {
            inputs: vec![Some(Tensor::new(
                "IMAGE",
                DataType::Bytes,
                vec![1],
                Bytes::from(encode_bytes_elements([image.as_slice()])),
            ))],
            parameters: vec![],
        };
        let out = instance
            .execute(&req, &mut ExecTimings::default())
            .unwrap_or_else(|e| panic!("{group}/{}: {e}", case.name));
        std::fs::write(
            out_dir.join(format!("{}.{label}.f32", case.name)),
            &out[0].data,
        )
        .unwrap();
        g.bench_function(&case.name, |b| {
            b.iter(|| instance.execute(&req, &mut ExecTimings::default()).unwrap());
        });
    }
    g.finish();
}

/// The same component under a plain wasmtime engine: kiln's pooling
/// allocator and memory slot size, but without fuel metering (`fuel`
/// false) and/or epoch interruption (`epoch` false), which kiln's engine
/// always compiles in. Only `process` is timed here, with the host side of
/// kiln left out; what those two checks cost shows against kiln's own call.
mod bare {
    use std::collections::BTreeMap;

    use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
    use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
    use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

    wasmtime::component::bindgen!({ path: "../../../sdk/wit", world: "plugin" });
    use self::kiln::plugin::host::LogLevel;
    pub use self::kiln::plugin::types as wit;

    pub struct State {
        wasi: WasiCtx,
        table: ResourceTable,
        parameters: BTreeMap<String, String>,
    }

    impl WasiView for State {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView {
                ctx: &mut self.wasi,
                table: &mut self.table,
            }
        }
    }

    impl self::kiln::plugin::types::Host for State {}

    impl self::kiln::plugin::host::Host for State {
        fn log(&mut self, _: LogLevel, _: String, _: Vec<(String, String)>) {}
        fn log_enabled(&mut self, _: LogLevel) -> bool {
            false
        }
        fn get_parameter(&mut self, key: String) -> Option<String> {
            self.parameters.get(&key).cloned()
        }
        fn parameters(&mut self) -> Vec<(String, String)> {
            self.parameters.clone().into_iter().collect()
        }
        fn monotonic_now(&mut self) -> u64 {
            0
        }
    }

    /// What kiln does before every call: fuel unlimited, a far deadline.
    fn arm(store: &mut Store<State>, fuel: bool, epoch: bool) {
        if fuel {
            store.set_fuel(u64::MAX).unwrap();
        }
        if epoch {
            store.set_epoch_deadline(u64::MAX / 2);
        }
    }

    pub struct Instance {
        store: Store<State>,
        plugin: Plugin,
        fuel: bool,
        epoch: bool,
    }

    impl Instance {
        pub fn new(
            wasm: &std::path::Path,
            parameters: BTreeMap<String, String>,
            fuel: bool,
            epoch: bool,
        ) -> Instance {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(4)
                .total_core_instances(8)
                .total_memories(4)
                .total_tables(8)
                .max_memory_size(4096 << 20); // kiln's MAX_MEMORY_MB
            let mut config = Config::new();
            config
                .wasm_component_model(true)
                .epoch_interruption(epoch)
                .consume_fuel(fuel)
                .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
            let engine = Engine::new(&config).unwrap();
            let component = Component::from_file(&engine, wasm).unwrap();
            let mut linker = Linker::new(&engine);
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
            Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).unwrap();
            let state = State {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
                parameters,
            };
            let mut store = Store::new(&engine, state);
            arm(&mut store, fuel, epoch);
            let plugin = Plugin::instantiate(&mut store, &component, &linker).unwrap();
            Instance {
                store,
                plugin,
                fuel,
                epoch,
            }
        }

        /// One `process` call on one BYTES element; the output's data.
        pub fn process(&mut self, input: &wit::Tensor) -> Vec<u8> {
            arm(&mut self.store, self.fuel, self.epoch);
            let mut outputs = self
                .plugin
                .kiln_plugin_processor()
                .call_process(&mut self.store, std::slice::from_ref(input), &[])
                .unwrap()
                .unwrap_or_else(|e| panic!("plugin error: {}", e.message));
            outputs.swap_remove(0).data
        }
    }
}

/// image_preprocess (the committed build settings) on every case under a
/// plain wasmtime engine: epoch checks without fuel, and neither.
fn bench_image_preprocess_bare(c: &mut Criterion, wasm: &Path) {
    if !wasm.is_file() {
        return;
    }
    for (group, fuel, epoch) in [
        ("image_preprocess_wasmtime_epoch_only", false, true),
        ("image_preprocess_wasmtime_no_fuel_no_epoch", false, false),
    ] {
        let mut g = c.benchmark_group(group);
        for case in image_cases() {
            let Ok(image) = std::fs::read(&case.image) else {
                continue;
            };
            let mut instance =
                bare::Instance::new(wasm, case.parameters.into_iter().collect(), fuel, epoch);
            let input = bare::wit::Tensor {
                name: "IMAGE".into(),
                datatype: bare::wit::Datatype::Bytes,
                shape: vec![1],
                data: vec![],
                elements: vec![image],
            };
            instance.process(&input);
            g.bench_function(&case.name, |b| b.iter(|| instance.process(&input)));
        }
        g.finish();
    }
}

/// The tensors of one op call without a tensor library: shapes only, every
/// host op makes a new handle at once. What remains is the op plugin's glue.
#[derive(Default)]
struct ShapesOnly(Vec<Vec<i64>>);

impl kiln_ops::TensorArena for ShapesOnly {
    fn shape(&self, t: kiln_ops::TensorId) -> Result<Vec<i64>, String> {
        self.0
            .get(t as usize)
            .cloned()
            .ok_or_else(|| "no such tensor".into())
    }
    fn datatype(&self, _: kiln_ops::TensorId) -> Result<DataType, String> {
        Ok(DataType::Fp32)
    }
    fn apply(&mut self, _: &kiln_ops::HostOp) -> Result<kiln_ops::TensorId, String> {
        self.0.push(vec![1, 1, 4, 4]);
        Ok((self.0.len() - 1) as kiln_ops::TensorId)
    }
    fn read(&mut self, _: kiln_ops::TensorId) -> Result<Tensor, String> {
        Err("shapes only".into())
    }
    fn create(&mut self, _: &Tensor) -> Result<kiln_ops::TensorId, String> {
        Err("shapes only".into())
    }
    fn release(&mut self, _: kiln_ops::TensorId) {}
}

/// One op call of test_ops (`kiln_test::scale`, composed: one host op) and
/// one of gfpgan_ops' upfirdn2d (ten host ops and three shape queries),
/// with the host ops free: the cost of the glue a custom op adds to a
/// model's forward pass.
fn bench_op_calls(c: &mut Criterion) {
    let cases = [
        (
            "test_ops",
            "kiln_test::scale",
            vec![kiln_ops::OpValue::Tensor(0), kiln_ops::OpValue::Float(2.0)],
        ),
        (
            "gfpgan_ops",
            "kiln_gfpgan::upfirdn2d",
            [
                vec![kiln_ops::OpValue::Tensor(0), kiln_ops::OpValue::Tensor(1)],
                [2, 2, 1, 1, 2, 1, 2, 1]
                    .map(kiln_ops::OpValue::Int)
                    .to_vec(),
            ]
            .concat(),
        ),
    ];
    let mut g = c.benchmark_group("op_plugin_call");
    for (plugin, op, args) in cases {
        let wasm = root().join(format!("target/plugins/{plugin}.wasm"));
        if !wasm.is_file() {
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(plugin);
        std::fs::create_dir_all(dir.join("1")).unwrap();
        std::fs::copy(&wasm, dir.join("1/model.wasm")).unwrap();
        std::fs::write(
            dir.join("config.pbtxt"),
            format!("name: \"{plugin}\"\nbackend: \"wasm_ops\"\n"),
        )
        .unwrap();
        let mut backends = kiln_backend::BackendRegistry::default();
        backends.register(kiln_wasm::WasmOpsFactory);
        let spec = backends.read_spec(&dir, None).unwrap();
        let none: std::sync::Arc<dyn kiln_ops::OpResolver> =
            std::sync::Arc::new(kiln_ops::NoOpPlugins);
        let instance = backends
            .load_instance(&spec, 1, kiln_model_config::Placement::Cpu, &none)
            .unwrap();
        let ops = instance.op_provider().unwrap();
        let arena = || {
            Box::new(ShapesOnly(vec![vec![1, 32, 256, 256], vec![4, 4]]))
                as Box<dyn kiln_ops::TensorArena + Send>
        };
        ops.call(op, &args, arena()).unwrap();
        g.bench_function(op, |b| b.iter(|| ops.call(op, &args, arena()).unwrap()));
    }
    g.finish();
}

fn bench(c: &mut Criterion) {
    bench_op_calls(c);
    let (_tmp, mut instance) = empty_plugin();
    let mut group = c.benchmark_group("empty_plugin_call");
    // 150,528 = 3 x 224 x 224: image_preprocess's output in the ratio cases.
    for floats in [1usize, 16 * 1024, 3 * 224 * 224, 256 * 1024] {
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
    bench_image_preprocess(
        c,
        "image_preprocess_wasm",
        "wasm",
        &root().join("target/plugins/image_preprocess.wasm"),
    );
    bench_image_preprocess_bare(c, &root().join("target/plugins/image_preprocess.wasm"));
    if let Some(wasm) = std::env::var_os("KILN_BENCH_SIMD128_WASM") {
        bench_image_preprocess(
            c,
            "image_preprocess_wasm_simd128",
            "wasm_simd128",
            Path::new(&wasm),
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
