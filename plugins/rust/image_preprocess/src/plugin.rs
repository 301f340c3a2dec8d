//! The kiln plugin: config parameters -> [`Settings`], the `IMAGE` tensor ->
//! [`decode`] and [`render`] per element -> the `PIXELS` tensor. Built for
//! WebAssembly only (the kiln-plugin SDK's bindings need a component host).

use std::sync::OnceLock;

use kiln_plugin::{config, Datatype, Error, Inputs, Metadata, Params, Plugin, Tensor, TensorSpec};

use crate::preprocess::{decode, render, Resize, Settings};

const INPUT: &str = "IMAGE";
const OUTPUT: &str = "PIXELS";
const MAX_SIDE: usize = 16384;
/// Default `max_pixels`: 4096 x 4096.
const DEFAULT_MAX_PIXELS: usize = 4096 * 4096;

fn required(key: &str) -> Result<usize, Error> {
    let v: usize = config::parse(key)?
        .ok_or_else(|| Error::unavailable(format!("config parameter '{key}' is required")))?;
    if v == 0 || v > MAX_SIDE {
        return Err(Error::unavailable(format!(
            "config parameter '{key}': {v} is out of range (1 to {MAX_SIDE})"
        )));
    }
    Ok(v)
}

/// A comma list of 1 or `channels` numbers, widened to `channels`.
fn per_channel(key: &str, default: f32, channels: usize) -> Result<Vec<f32>, Error> {
    let Some(text) = config::get(key) else {
        return Ok(vec![default; channels]);
    };
    let values = text
        .split(',')
        .map(|s| s.trim().parse::<f32>())
        .collect::<Result<Vec<f32>, _>>()
        .map_err(|e| {
            Error::unavailable(format!(
                "config parameter '{key}': cannot parse '{text}' as a comma list of numbers: {e}"
            ))
        })?;
    match values.len() {
        1 => Ok(vec![values[0]; channels]),
        n if n == channels => Ok(values),
        n => Err(Error::unavailable(format!(
            "config parameter '{key}': {n} values for {channels} channel(s) (give 1 or {channels})"
        ))),
    }
}

fn settings() -> Result<Settings, Error> {
    let height = required("height")?;
    let width = required("width")?;
    let channels: usize = config::get_or("channels", 3)?;
    if channels != 1 && channels != 3 {
        return Err(Error::unavailable(format!(
            "config parameter 'channels': {channels} is not supported (1 or 3)"
        )));
    }
    let mean = per_channel("mean", 0.0, channels)?;
    let std = per_channel("std", 1.0, channels)?;
    if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s != 0.0)) {
        return Err(Error::unavailable(format!(
            "config parameter 'std': {s} is not a usable divisor"
        )));
    }
    if mean.iter().any(|m| !m.is_finite()) {
        return Err(Error::unavailable(
            "config parameter 'mean': values must be finite",
        ));
    }
    let invert: bool = config::get_or("invert", false)?;
    let resize = match config::get("resize").as_deref().map(str::trim) {
        None | Some("area") => Resize::Area,
        Some("bilinear") => Resize::Bilinear,
        Some(other) => {
            return Err(Error::unavailable(format!(
                "config parameter 'resize': '{other}' is not supported (area or bilinear)"
            )))
        }
    };
    let background: f32 = config::get_or("background", if invert { 1.0 } else { 0.0 })?;
    if !(0.0..=1.0).contains(&background) {
        return Err(Error::unavailable(format!(
            "config parameter 'background': {background} is outside [0, 1]"
        )));
    }
    let max_pixels: usize = config::get_or("max_pixels", DEFAULT_MAX_PIXELS)?;
    if max_pixels == 0 {
        return Err(Error::unavailable(
            "config parameter 'max_pixels': 0 is not a positive integer",
        ));
    }
    Ok(Settings {
        height,
        width,
        channels,
        mean,
        std,
        invert,
        resize,
        background,
        max_pixels,
    })
}

/// Read once per instance: config parameters are fixed while a version is loaded.
fn cached_settings() -> Result<Settings, Error> {
    static SETTINGS: OnceLock<Result<Settings, Error>> = OnceLock::new();
    SETTINGS.get_or_init(settings).clone()
}

// --- the plugin ---------------------------------------------------------

struct ImagePreprocess;

impl Plugin for ImagePreprocess {
    fn metadata() -> Metadata {
        match cached_settings() {
            Ok(s) => kiln_plugin::debug!(
                "image_preprocess: {}x{}x{} ({:?}, invert {})",
                s.channels,
                s.height,
                s.width,
                s.resize,
                s.invert
            ),
            Err(e) => kiln_plugin::error!("image_preprocess: {}", e.message),
        }
        Metadata::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
            .input(TensorSpec::new(INPUT, Datatype::Bytes, &[1]))
            .output(TensorSpec::new(OUTPUT, Datatype::Fp32, &[-1, -1, -1]))
    }

    fn process(inputs: Inputs, _params: &Params) -> Result<Vec<Tensor>, Error> {
        let s = cached_settings()?;
        let t = inputs.get(INPUT)?;
        let images = t.as_elements()?;
        // One image per row: the last dimension (if any) must be 1.
        let mut shape: Vec<i64> = t.shape.clone();
        match shape.last() {
            None => {}
            Some(1) => {
                shape.pop();
            }
            Some(_) => {
                return Err(Error::invalid(format!(
                    "input '{INPUT}' has shape {:?}: expected one image per batch item (last dimension 1)",
                    t.shape
                )))
            }
        }
        let per_image = s.channels * s.height * s.width;
        let mut out = vec![0f32; images.len() * per_image];
        for (n, bytes) in images.iter().enumerate() {
            let img = decode(bytes, s.max_pixels).map_err(|msg| {
                let at = if images.len() == 1 {
                    String::new()
                } else {
                    format!(" element {n}")
                };
                Error::invalid(format!("input '{INPUT}'{at}: {msg}"))
            })?;
            render(&img, &s, &mut out[n * per_image..(n + 1) * per_image]);
        }
        shape.extend([s.channels as i64, s.height as i64, s.width as i64]);
        Ok(vec![Tensor::from_f32(OUTPUT, &shape, &out)])
    }
}

kiln_plugin::export_plugin!(ImagePreprocess);
