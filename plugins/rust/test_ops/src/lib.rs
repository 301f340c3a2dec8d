//! `test_ops`: one op, `kiln_test::scale(Tensor x, float factor=2.0) -> Tensor`,
//! implemented as the config parameter `mode` says, so that tests can serve
//! several op plugins from one binary:
//!
//! | mode | what `scale` does |
//! |---|---|
//! | `compose` (default) | `x * factor`, one host operation |
//! | `compute` | `x * (factor + offset)` on the bytes (FP32; `offset`: parameter, default 0) |
//! | `error` | fails with an error message |
//! | `trap` | panics (a trap) |
//! | `loop` | never returns (the deadline stops it) |
//! | `wrong_shape` | returns `x` with a leading dim of 1 (the op declares its result like `x`) |
//! | `leak` | `x * factor`, after making 100 tensors whose handles it never drops |
//! | `mismatch` | declares `kiln_test::scale(Tensor x, int factor) -> Tensor` instead |

use kiln_plugin::config;
use kiln_plugin::ops::{self, DeviceTensor, OpArgs, OpDecl, OpPlugin, ScalarOp};

const SCALE: &str = "kiln_test::scale(Tensor x, float factor=2.0) -> Tensor";
const MISMATCHED: &str = "kiln_test::scale(Tensor x, int factor) -> Tensor";

fn mode() -> String {
    config::get("mode").unwrap_or_else(|| "compose".into())
}

struct TestOps;

impl OpPlugin for TestOps {
    fn declare() -> Vec<OpDecl> {
        let schema = if mode() == "mismatch" { MISMATCHED } else { SCALE };
        vec![OpDecl::new(schema).output_like(0)]
    }

    fn call(op: &str, args: OpArgs) -> Result<Vec<DeviceTensor>, String> {
        if op != "kiln_test::scale" {
            return Err(format!("test_ops does not provide {op}"));
        }
        let x = args.tensor(0)?;
        let factor = args.f64(1)?;
        match mode().as_str() {
            "compose" | "mismatch" => Ok(vec![ops::scalar(ScalarOp::Mul, x, factor)?]),
            "compute" => {
                let offset: f64 = config::get_or("offset", 0.0).map_err(|e| e.message)?;
                let mut t = x.read()?;
                let by = (factor + offset) as f32;
                for chunk in t.data.chunks_exact_mut(4) {
                    let v = f32::from_le_bytes(chunk.try_into().expect("4 bytes")) * by;
                    chunk.copy_from_slice(&v.to_le_bytes());
                }
                Ok(vec![ops::create(&t)?])
            }
            "error" => Err("refused by test_ops (mode error)".into()),
            "trap" => panic!("test_ops traps (mode trap)"),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "wrong_shape" => Ok(vec![ops::reshape(x, &[1, -1])?]),
            "leak" => {
                // Handles the guest never drops: they pile up in the
                // instance's handle table until kiln replaces it.
                for _ in 0..100 {
                    std::mem::forget(ops::scalar(ScalarOp::Mul, x, 1.0)?);
                }
                Ok(vec![ops::scalar(ScalarOp::Mul, x, factor)?])
            }
            other => Err(format!("unknown mode '{other}'")),
        }
    }
}

kiln_plugin::export_op_plugin!(TestOps);
