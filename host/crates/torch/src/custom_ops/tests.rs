//! The dispatcher edge with native providers and TorchScript files made by
//! the project's Python (torch.library registers the ops for export, as an
//! op's author does). Every test uses its own op namespace: the dispatcher
//! is process-wide and the tests share a process.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::*;

/// The project venv's Python (scripts/setup.sh), which has torch.
fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    std::env::var_os("KILN_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"))
}

/// Scripts a module whose forward is `body` (over inputs `x`, `b`) after
/// defining `schema` with a composite implementation `py_impl` (a Python
/// function `impl`) in torch.library, and saves it to `dir/name.pt`.
fn script_model(dir: &Path, name: &str, schema: &str, py_impl: &str, body: &str) -> PathBuf {
    let out = dir.join(format!("{name}.pt"));
    let (ns, rest) = schema.split_once("::").unwrap();
    let op = &rest[..rest.find('(').unwrap()];
    let source = format!(
        r#"
import sys, torch
lib = torch.library.Library("{ns}", "DEF")
lib.define("{rest}")
{py_impl}
lib.impl("{op}", impl, "CompositeImplicitAutograd")
class M(torch.nn.Module):
    def forward(self, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return {body}
torch.jit.script(M()).save(sys.argv[1])
"#
    );
    // torch.jit.script reads the module's source: a file, not `-c`.
    let script = dir.join(format!("{name}.py"));
    std::fs::write(&script, source).unwrap();
    let status = std::process::Command::new(python())
        .arg(&script)
        .arg(&out)
        .status()
        .expect("the project venv's python (scripts/setup.sh) runs");
    assert!(status.success(), "python could not script {name}");
    out
}

/// A provider whose ops are Rust closures over the arena.
type OpFn = dyn Fn(&[OpValue], &mut dyn TensorArena) -> Result<Vec<TensorId>, String> + Send + Sync;

struct Native {
    name: String,
    decls: Vec<OpDecl>,
    run: Box<OpFn>,
}

impl OpProvider for Native {
    fn name(&self) -> &str {
        &self.name
    }
    fn ops(&self) -> &[OpDecl] {
        &self.decls
    }
    fn call(
        &self,
        _op: &str,
        args: &[OpValue],
        mut tensors: Box<dyn TensorArena + Send>,
    ) -> Result<Vec<TensorId>, String> {
        (self.run)(args, &mut *tensors)
    }
}

fn native(
    name: &str,
    schema: &str,
    output_like: Option<u32>,
    run: Box<OpFn>,
) -> Arc<dyn OpProvider> {
    Arc::new(Native {
        name: name.into(),
        decls: vec![OpDecl {
            schema: schema.into(),
            output_like,
        }],
        run,
    })
}

/// Op plugins by name, replaceable (a reload).
#[derive(Default)]
struct Plugins(Mutex<HashMap<String, Arc<dyn OpProvider>>>);

impl Plugins {
    fn with(self: Arc<Self>, provider: Arc<dyn OpProvider>) -> Arc<Self> {
        self.0
            .lock()
            .unwrap()
            .insert(provider.name().to_string(), provider);
        self
    }
}

impl OpResolver for Plugins {
    fn op_plugin(&self, name: &str) -> Result<Arc<dyn OpProvider>, String> {
        self.0
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .ok_or_else(|| format!("no op plugin '{name}' is loaded"))
    }
}

fn resolver(plugins: &Arc<Plugins>) -> Arc<dyn OpResolver> {
    plugins.clone()
}

fn tensor(args: &[OpValue], i: usize) -> Result<TensorId, String> {
    match args.get(i) {
        Some(OpValue::Tensor(t)) => Ok(*t),
        other => Err(format!("argument {i} is {other:?}")),
    }
}

fn float(args: &[OpValue], i: usize) -> Result<f64, String> {
    match args.get(i) {
        Some(OpValue::Float(v)) => Ok(*v),
        other => Err(format!("argument {i} is {other:?}")),
    }
}

/// `leaky_relu(x + b, slope) * scale` composed from host ops.
fn composed(args: &[OpValue], arena: &mut dyn TensorArena) -> Result<Vec<TensorId>, String> {
    let (x, b) = (tensor(args, 0)?, tensor(args, 1)?);
    let (slope, scale) = (float(args, 2)?, float(args, 3)?);
    let sum = arena.apply(&HostOp::Binary(Binary::Add, x, b))?;
    let leaky = arena.apply(&HostOp::Scalar(ScalarOp::LeakyRelu, sum, slope))?;
    arena.release(sum);
    Ok(vec![arena.apply(&HostOp::Scalar(
        ScalarOp::Mul,
        leaky,
        scale,
    ))?])
}

/// `x * scale` computed on the bytes (compute).
fn computed(args: &[OpValue], arena: &mut dyn TensorArena) -> Result<Vec<TensorId>, String> {
    let x = arena.read(tensor(args, 0)?)?;
    let scale = float(args, 3)? as f32;
    let data: Vec<u8> = x
        .data
        .chunks_exact(4)
        .flat_map(|c| (f32::from_le_bytes(c.try_into().unwrap()) * scale).to_le_bytes())
        .collect();
    let out = Tensor::new(String::new(), x.datatype, x.shape.clone(), data.into());
    Ok(vec![arena.create(&out)?])
}

fn forward(
    model: &tch::CModule,
    ops: Option<&Arc<ModelOps>>,
    x: &tch::Tensor,
    b: &tch::Tensor,
) -> Result<tch::Tensor, String> {
    running(ops, || tch::no_grad(|| model.forward_ts(&[x, b]))).map_err(|e| e.to_string())
}

const LEAKY: &str = "scaled_leaky(Tensor x, Tensor b, float slope=0.2, float scale=2.0) -> Tensor";
const PY_LEAKY: &str =
    "def impl(x, b, slope, scale):\n    return torch.nn.functional.leaky_relu(x + b, slope) * scale";

#[test]
fn two_models_call_one_op_and_each_gets_its_own_implementation() {
    let dir = tempfile::tempdir().unwrap();
    let schema = format!("kiln_test_two::{LEAKY}");
    let file = script_model(
        dir.path(),
        "m",
        &schema,
        PY_LEAKY,
        "torch.ops.kiln_test_two.scaled_leaky(x, b)",
    );
    let compose = Plugins::default().into();
    let compose = Plugins::with(
        compose,
        native("compose", &schema, Some(0), Box::new(composed)),
    );
    let compute = Plugins::default().into();
    let compute = Plugins::with(
        compute,
        native("compute", &schema, Some(0), Box::new(computed)),
    );
    let a = Arc::new(ModelOps::resolve("a", &["compose".into()], &resolver(&compose)).unwrap());
    let b_ops = Arc::new(ModelOps::resolve("b", &["compute".into()], &resolver(&compute)).unwrap());
    assert_eq!(
        a.ops(),
        vec![("kiln_test_two::scaled_leaky", "compose", schema.as_str())]
    );
    let model = tch::CModule::load(&file).unwrap();
    let x = tch::Tensor::from_slice(&[-1.0f32, 0.5, 2.0, -4.0]).reshape([1, 4]);
    let b = tch::Tensor::from_slice(&[0.5f32, 0.5, 0.5, 0.5]).reshape([1, 4]);
    // The defaults the saved call left out come from the schema.
    let want_a = (&x + &b).leaky_relu_with_slope(0.2) * 2.0;
    let got_a = forward(&model, Some(&a), &x, &b).unwrap();
    assert!(got_a.allclose(&want_a, 1e-6, 1e-6, false), "{got_a:?}");
    let got_b = forward(&model, Some(&b_ops), &x, &b).unwrap();
    assert!(got_b.allclose(&(&x * 2.0), 1e-6, 1e-6, false), "{got_b:?}");
    // Outside a model that named op plugins, the op fails its call.
    let e = forward(&model, None, &x, &b).unwrap_err();
    assert!(
        e.contains("kiln_test_two::scaled_leaky called where kiln runs no model"),
        "{e}"
    );
}

trait LeakyWithSlope {
    fn leaky_relu_with_slope(&self, slope: f64) -> tch::Tensor;
}

impl LeakyWithSlope for tch::Tensor {
    fn leaky_relu_with_slope(&self, slope: f64) -> tch::Tensor {
        self.relu() - (-self).relu() * slope
    }
}

#[test]
fn a_reloaded_plugin_serves_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    let schema = format!("kiln_test_reload::{LEAKY}");
    let file = script_model(
        dir.path(),
        "m",
        &schema,
        PY_LEAKY,
        "torch.ops.kiln_test_reload.scaled_leaky(x, b)",
    );
    let plugins = Plugins::with(
        Plugins::default().into(),
        native("p", &schema, None, Box::new(composed)),
    );
    let ops = Arc::new(ModelOps::resolve("m", &["p".into()], &resolver(&plugins)).unwrap());
    let model = tch::CModule::load(&file).unwrap();
    let x = tch::Tensor::from_slice(&[1.0f32, 2.0]);
    let b = tch::Tensor::from_slice(&[0.0f32, 0.0]);
    assert!(forward(&model, Some(&ops), &x, &b)
        .unwrap()
        .allclose(&(&x * 2.0), 0.0, 0.0, false));
    let plugins = plugins.with(native("p", &schema, None, Box::new(computed)));
    let _ = &plugins;
    // The same result by another route; a plugin whose new version dropped
    // the op, or changed its schema, fails the call naming what to do.
    assert!(forward(&model, Some(&ops), &x, &b)
        .unwrap()
        .allclose(&(&x * 2.0), 0.0, 0.0, false));
    let other = format!(
        "kiln_test_reload::{}",
        LEAKY.replace("float scale=2.0", "float scale=3.0")
    );
    let plugins = plugins.with(native("p", &other, None, Box::new(computed)));
    let e = forward(&model, Some(&ops), &x, &b).unwrap_err();
    assert!(
        e.contains("op plugin 'p' now declares") && e.contains("reload the model"),
        "{e}"
    );
    let plugins = plugins.with(native(
        "p",
        "kiln_test_reload::renamed(Tensor x) -> Tensor",
        None,
        Box::new(computed),
    ));
    let e = forward(&model, Some(&ops), &x, &b).unwrap_err();
    assert!(
        e.contains("no longer provides kiln_test_reload::scaled_leaky"),
        "{e}"
    );
    drop(plugins);
}

#[test]
fn another_schema_for_a_defined_name_is_refused_naming_both() {
    let first = native(
        "first",
        "kiln_test_clash::op(Tensor x) -> Tensor",
        None,
        Box::new(computed),
    );
    let second = native(
        "second",
        "kiln_test_clash::op(Tensor x, int n) -> Tensor",
        None,
        Box::new(computed),
    );
    let plugins = Plugins::with(Plugins::default().into(), first).with(second);
    ModelOps::resolve("a", &["first".into()], &resolver(&plugins)).unwrap();
    // The same schema, spelled differently, is the same op.
    let same = native(
        "same",
        "kiln_test_clash::op(Tensor  x)->Tensor",
        None,
        Box::new(computed),
    );
    let plugins = plugins.with(same);
    ModelOps::resolve("b", &["same".into()], &resolver(&plugins)).unwrap();
    let e = ModelOps::resolve("c", &["second".into()], &resolver(&plugins))
        .err()
        .unwrap();
    assert!(
        e.contains("kiln_test_clash::op(Tensor x, int n) -> Tensor")
            && e.contains("kiln_test_clash::op(Tensor x) -> Tensor")
            && e.contains("'second'"),
        "{e}"
    );
}

#[test]
fn unsupported_schemas_and_missing_plugins_are_load_errors() {
    let cases = [
        ("kiln_test_bad::op(Tensor x) -> int", "returns a int"),
        ("kiln_test_bad::op2(str s) -> Tensor", "argument 's'"),
        (
            "kiln_test_bad::op3(Tensor(a!) x) -> Tensor",
            "writes to an argument",
        ),
        ("noname(Tensor x) -> Tensor", "needs a namespace"),
        ("kiln_test_bad::op4(Tensor x -> Tensor", "cannot parse"),
    ];
    for (schema, want) in cases {
        let plugins = Plugins::with(
            Plugins::default().into(),
            native("p", schema, None, Box::new(computed)),
        );
        let e = ModelOps::resolve("m", &["p".into()], &resolver(&plugins))
            .err()
            .unwrap();
        assert!(e.contains(want), "{schema}: {e}");
    }
    let e = ModelOps::resolve(
        "m",
        &["absent".into()],
        &resolver(&Arc::new(Plugins::default())),
    )
    .err()
    .unwrap();
    assert!(e.contains("no op plugin 'absent'"), "{e}");
}

#[test]
fn a_failing_panicking_or_misshapen_op_fails_only_its_call() {
    let dir = tempfile::tempdir().unwrap();
    let schema = format!("kiln_test_hostile::{LEAKY}");
    let file = script_model(
        dir.path(),
        "m",
        &schema,
        PY_LEAKY,
        "torch.ops.kiln_test_hostile.scaled_leaky(x, b)",
    );
    // Before its op is defined, the model does not load; the message names
    // the op (kiln-torch's load turns it into one naming the op plugins).
    let e = tch::CModule::load(&file).err().unwrap().to_string();
    assert!(
        e.contains("Unknown builtin op: kiln_test_hostile::scaled_leaky"),
        "{e}"
    );
    let plugins = Plugins::with(
        Plugins::default().into(),
        native("p", &schema, Some(0), Box::new(composed)),
    );
    ModelOps::resolve("m", &["p".into()], &resolver(&plugins)).unwrap();
    let model = tch::CModule::load(&file).unwrap();
    let x = tch::Tensor::from_slice(&[1.0f32, 2.0]);
    let b = tch::Tensor::from_slice(&[0.0f32, 0.0]);
    let cases: Vec<(Box<OpFn>, &str)> = vec![
        (Box::new(|_, _| Err("bad input".into())), "bad input"),
        (Box::new(|_, _| panic!("boom")), "panicked: boom"),
        (
            Box::new(|args, arena| {
                let x = tensor(args, 0)?;
                Ok(vec![arena.apply(&HostOp::Reshape(x, vec![2, 1]))?])
            }),
            "the op declares it like argument 0",
        ),
        (Box::new(|_, _| Ok(vec![])), "gave 0 results"),
        (
            Box::new(|_, _| Ok(vec![99])),
            "tensor handle 99 is not live",
        ),
        (
            Box::new(|args, arena| {
                let x = tensor(args, 0)?;
                Ok(vec![arena.apply(&HostOp::Reshape(x, vec![3]))?])
            }),
            "shape '[3]' is invalid",
        ),
    ];
    for (run, want) in cases {
        let plugins = Plugins::with(
            Plugins::default().into(),
            native("p", &schema, Some(0), run),
        );
        let ops = Arc::new(ModelOps::resolve("m", &["p".into()], &resolver(&plugins)).unwrap());
        let e = forward(&model, Some(&ops), &x, &b).unwrap_err();
        assert!(e.contains(want), "want {want}: {e}");
    }
    let plugins = Plugins::with(
        Plugins::default().into(),
        native("p", &schema, Some(0), Box::new(composed)),
    );
    let ops = Arc::new(ModelOps::resolve("m", &["p".into()], &resolver(&plugins)).unwrap());
    assert!(forward(&model, Some(&ops), &x, &b).is_ok());
}
