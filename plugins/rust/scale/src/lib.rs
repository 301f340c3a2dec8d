//! `scale`: FP32 `INPUT` of any shape -> FP32 `OUTPUT` = `INPUT * factor`.
//!
//! `factor` is the model's config parameter `factor` (default 2.0), read
//! through the host's `get-parameter`; a request parameter `factor` (a number)
//! overrides it for that request. The input buffer is scaled in place
//! and returned as the output: no copy inside the plugin.
//!
//! ```text
//! parameters { key: "factor" value { string_value: "3.0" } }
//! ```

use std::sync::OnceLock;

use kiln_plugin::{config, Datatype, Error, Inputs, Metadata, Params, Plugin, Tensor, TensorSpec};

struct Scale;

/// The factor, read once per instance (config parameters never change
/// while a model version is loaded).
fn factor() -> Result<f32, Error> {
    static FACTOR: OnceLock<Result<f32, Error>> = OnceLock::new();
    FACTOR
        .get_or_init(|| config::get_or("factor", 2.0f32))
        .clone()
}

impl Plugin for Scale {
    fn metadata() -> Metadata {
        match factor() {
            Ok(f) => kiln_plugin::info!("scale: factor {f}"),
            Err(e) => kiln_plugin::error!("scale: {}", e.message),
        }
        Metadata::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
            .input(TensorSpec::new("INPUT", Datatype::Fp32, &[-1]))
            .output(TensorSpec::new("OUTPUT", Datatype::Fp32, &[-1]))
    }

    fn process(mut inputs: Inputs, params: &Params) -> Result<Vec<Tensor>, Error> {
        let factor = match params.get_f64("factor")? {
            Some(f) => f as f32,
            None => factor()?,
        };
        let mut t = inputs.take("INPUT")?;
        for x in t.as_f32_mut()? {
            *x *= factor;
        }
        Ok(vec![t.with_name("OUTPUT")])
    }
}

kiln_plugin::export_plugin!(Scale);
