//! `normalize`: FP32 `INPUT` of any shape -> FP32 `OUTPUT` = `(INPUT - mean) / std`.
//!
//! `mean` and `std` are the model's config parameters (defaults 0 and 1),
//! read through the host's `get-parameter`. A `std` of 0, or a value that is
//! not a finite decimal number, fails every request with `invalid-argument`
//! naming the parameter; so does a request without `INPUT`.
//!
//! The same plugin exists in JavaScript, Python and Zig (plugins/js,
//! plugins/python, plugins/zig); tests/test_plugin_conformance.py holds them
//! all to the same behaviour.
//!
//! ```text
//! parameters { key: "mean" value { string_value: "0.5" } }
//! parameters { key: "std"  value { string_value: "0.25" } }
//! ```

use std::sync::OnceLock;

use kiln_plugin::{config, Datatype, Error, Inputs, Metadata, Params, Plugin, Tensor, TensorSpec};

struct Normalize;

/// A decimal number: optional sign, digits with an optional fraction, an
/// optional exponent; finite. (Rust's `f64::from_str` alone would also take
/// `inf` and `NaN`.)
fn parse_number(text: &str) -> Option<f64> {
    let ok_chars = text.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
    let value: f64 = if ok_chars { text.parse().ok()? } else { return None };
    value.is_finite().then_some(value)
}

fn param(key: &str, default: f64) -> Result<f64, Error> {
    match config::get(key) {
        None => Ok(default),
        Some(raw) => parse_number(raw.trim()).ok_or_else(|| {
            Error::invalid(format!("config parameter '{key}' must be a finite number, got '{raw}'"))
        }),
    }
}

/// `(mean, std)`, read once per instance (config parameters never change
/// while a model version is loaded); a bad value fails every request.
fn settings() -> Result<(f32, f32), Error> {
    static SETTINGS: OnceLock<Result<(f32, f32), Error>> = OnceLock::new();
    SETTINGS
        .get_or_init(|| {
            let mean = param("mean", 0.0)? as f32;
            let std = param("std", 1.0)? as f32;
            if std == 0.0 {
                return Err(Error::invalid("config parameter 'std' must not be 0"));
            }
            Ok((mean, std))
        })
        .clone()
}

impl Plugin for Normalize {
    fn metadata() -> Metadata {
        Metadata::new("normalize-rust", env!("CARGO_PKG_VERSION"))
            .input(TensorSpec::new("INPUT", Datatype::Fp32, &[-1]))
            .output(TensorSpec::new("OUTPUT", Datatype::Fp32, &[-1]))
    }

    fn process(mut inputs: Inputs, _params: &Params) -> Result<Vec<Tensor>, Error> {
        let (mean, std) = settings()?;
        let mut t = inputs.take("INPUT")?; // error: "missing input tensor 'INPUT' ..."
        for x in t.as_f32_mut()? {
            *x = (*x - mean) / std;
        }
        Ok(vec![t.with_name("OUTPUT")])
    }
}

kiln_plugin::export_plugin!(Normalize);
