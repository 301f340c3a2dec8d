//! `image_preprocess`: encoded images in, model-ready pixels out.
//!
//! Input `IMAGE` (BYTES): one element per image, each the bytes of a PNG or
//! JPEG file. Its last dimension must be 1: `[1]` unbatched, `[N, 1]` when
//! the model is batched (`max_batch_size > 0`).
//!
//! Output `PIXELS` (FP32): `[C, H, W]` per image (NCHW without the batch
//! dimension), so `[C, H, W]` or `[N, C, H, W]`.
//!
//! Per image: decode; convert to `channels` (1: BT.601 luma, 3: RGB; alpha is
//! composited over `background`); scale to [0, 1]; resize to
//! `height` x `width` (`area` average or `bilinear`); `invert` (x -> 1 - x);
//! normalise per channel, `(x - mean) / std`.
//!
//! Config parameters (config.pbtxt `parameters`, string values):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `height`, `width` | required | output size in pixels (1 to 16384) |
//! | `channels` | `3` | `1` (grayscale) or `3` (RGB) |
//! | `mean`, `std` | `0`, `1` | comma lists, one value or one per channel |
//! | `invert` | `false` | `true` for dark-on-light images (ink becomes 1) |
//! | `resize` | `area` | `area` (box average, best for shrinking) or `bilinear` |
//! | `background` | `0`, `1` with `invert` | gray level in [0, 1] that transparent pixels are composited over (before `invert`), so transparency reads as empty by default |
//! | `max_pixels` | `16777216` | largest accepted image (width x height); larger ones are refused before decoding |
//!
//! Bad image bytes are an `invalid-argument` error naming the input and the
//! element; a bad config parameter is `unavailable`, naming the key.

use std::io::Cursor;
use std::sync::OnceLock;

use kiln_plugin::{config, Datatype, Error, Inputs, Metadata, Params, Plugin, Tensor, TensorSpec};

const INPUT: &str = "IMAGE";
const OUTPUT: &str = "PIXELS";
const MAX_SIDE: usize = 16384;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Resize {
    Area,
    Bilinear,
}

#[derive(Clone, Debug)]
struct Settings {
    height: usize,
    width: usize,
    channels: usize,
    mean: Vec<f32>,
    std: Vec<f32>,
    invert: bool,
    resize: Resize,
    background: f32,
    max_pixels: usize,
}

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
        return Err(Error::unavailable("config parameter 'mean': values must be finite"));
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
    let max_pixels: usize = config::get_or("max_pixels", 1 << 24)?;
    Ok(Settings { height, width, channels, mean, std, invert, resize, background, max_pixels })
}

/// Read once per instance: config parameters are fixed while a version is loaded.
fn cached_settings() -> Result<Settings, Error> {
    static SETTINGS: OnceLock<Result<Settings, Error>> = OnceLock::new();
    SETTINGS.get_or_init(settings).clone()
}

// --- decoding -----------------------------------------------------------

/// A decoded image: `width * height` pixels of `samples` interleaved
/// samples each (gray, gray+alpha, RGB or RGBA), 8-bit or 16-bit.
struct Decoded {
    width: usize,
    height: usize,
    samples: usize,
    has_alpha: bool,
    sample_bytes: usize,
    big_endian: bool,
    data: Vec<u8>,
}

impl Decoded {
    fn row_bytes(&self) -> usize {
        self.width * self.samples * self.sample_bytes
    }

    /// Sample `i` of a row, in [0, 1].
    #[inline]
    fn sample(&self, row: &[u8], i: usize) -> f32 {
        if self.sample_bytes == 1 {
            row[i] as f32 * (1.0 / 255.0)
        } else {
            let b = [row[2 * i], row[2 * i + 1]];
            let v = if self.big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) };
            v as f32 * (1.0 / 65535.0)
        }
    }
}

fn too_large(w: usize, h: usize, max: usize) -> Option<String> {
    (w.saturating_mul(h) > max).then(|| {
        format!("image is {w}x{h} pixels, more than max_pixels ({max})")
    })
}

fn decode_png(bytes: &[u8], max_pixels: usize) -> Result<Decoded, String> {
    // The decoder's own allocations (row buffers, zlib window) are small; the
    // image buffer is ours and bounded by max_pixels.
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), png::Limits { bytes: 64 << 20 });
    // Palettes, low bit depths and tRNS become plain 8-bit gray/RGB(+alpha).
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| format!("invalid PNG: {e}"))?;
    let (w, h) = reader.info().size();
    let (w, h) = (w as usize, h as usize);
    if let Some(msg) = too_large(w, h, max_pixels) {
        return Err(msg);
    }
    let (color, depth) = reader.output_color_type();
    let size = reader.output_buffer_size().ok_or("PNG too large")?;
    let mut data = vec![0; size];
    let frame = reader.next_frame(&mut data).map_err(|e| format!("invalid PNG: {e}"))?;
    data.truncate(frame.buffer_size());
    let (samples, has_alpha) = match color {
        png::ColorType::Grayscale => (1, false),
        png::ColorType::GrayscaleAlpha => (2, true),
        png::ColorType::Rgb => (3, false),
        png::ColorType::Rgba => (4, true),
        png::ColorType::Indexed => return Err("unexpanded palette PNG".into()),
    };
    let sample_bytes = match depth {
        png::BitDepth::Eight => 1,
        png::BitDepth::Sixteen => 2,
        other => return Err(format!("unexpected PNG bit depth {other:?} after expansion")),
    };
    let d = Decoded { width: w, height: h, samples, has_alpha, sample_bytes, big_endian: true, data };
    if d.data.len() < d.row_bytes() * h {
        return Err("truncated PNG frame".into());
    }
    Ok(d)
}

fn decode_jpeg(bytes: &[u8], max_pixels: usize) -> Result<Decoded, String> {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.read_info().map_err(|e| format!("invalid JPEG: {e}"))?;
    let info = decoder.info().ok_or("invalid JPEG: no frame header")?;
    let (w, h) = (info.width as usize, info.height as usize);
    if let Some(msg) = too_large(w, h, max_pixels) {
        return Err(msg);
    }
    let (samples, sample_bytes) = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => (1, 1),
        jpeg_decoder::PixelFormat::L16 => (1, 2),
        jpeg_decoder::PixelFormat::RGB24 => (3, 1),
        jpeg_decoder::PixelFormat::CMYK32 => {
            return Err("CMYK JPEG images are not supported (convert to RGB or grayscale)".into())
        }
    };
    decoder.set_max_decoding_buffer_size(max_pixels.saturating_mul(4));
    let data = decoder.decode().map_err(|e| format!("invalid JPEG: {e}"))?;
    let d = Decoded { width: w, height: h, samples, has_alpha: false, sample_bytes, big_endian: false, data };
    if w == 0 || h == 0 || d.data.len() < d.row_bytes() * h {
        return Err("invalid JPEG: truncated image data".into());
    }
    Ok(d)
}

fn decode(bytes: &[u8], max_pixels: usize) -> Result<Decoded, String> {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    let d = if bytes.starts_with(PNG) {
        decode_png(bytes, max_pixels)?
    } else if bytes.starts_with(b"\xff\xd8\xff") {
        decode_jpeg(bytes, max_pixels)?
    } else {
        let head: String = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        return Err(format!(
            "not a PNG or JPEG image ({} bytes, starting {})",
            bytes.len(),
            if head.is_empty() { "<empty>".into() } else { head }
        ));
    };
    if d.width == 0 || d.height == 0 {
        return Err("image has no pixels".into());
    }
    Ok(d)
}

// --- resampling ---------------------------------------------------------

/// For each output position along one axis: the first input index and the
/// weights of the consecutive input samples from there (summing to 1).
struct Taps {
    start: Vec<usize>,
    weights: Vec<Vec<f32>>,
}

fn taps(input: usize, output: usize, mode: Resize) -> Taps {
    let scale = input as f64 / output as f64;
    let mut start = Vec::with_capacity(output);
    let mut weights = Vec::with_capacity(output);
    for j in 0..output {
        match mode {
            Resize::Area => {
                // Output sample j covers [j*scale, (j+1)*scale) of the input:
                // each input sample counts with its overlap.
                let lo = j as f64 * scale;
                let hi = ((j + 1) as f64 * scale).min(input as f64);
                let first = (lo.floor() as usize).min(input - 1);
                let last = ((hi.ceil() as usize).max(first + 1)).min(input);
                let mut w: Vec<f32> = (first..last)
                    .map(|i| ((hi.min(i as f64 + 1.0) - lo.max(i as f64)).max(0.0)) as f32)
                    .collect();
                let sum: f32 = w.iter().sum();
                w.iter_mut().for_each(|x| *x /= sum);
                start.push(first);
                weights.push(w);
            }
            Resize::Bilinear => {
                // Pixel centres aligned (half-pixel offsets), edges clamped.
                let x = ((j as f64 + 0.5) * scale - 0.5).clamp(0.0, (input - 1) as f64);
                let i0 = x.floor() as usize;
                let f = (x - i0 as f64) as f32;
                if i0 + 1 < input && f > 0.0 {
                    start.push(i0);
                    weights.push(vec![1.0 - f, f]);
                } else {
                    start.push(i0);
                    weights.push(vec![1.0]);
                }
            }
        }
    }
    Taps { start, weights }
}

/// Converts, resizes and normalises one decoded image into `out`
/// (`channels * height * width` floats, planar).
fn render(img: &Decoded, s: &Settings, out: &mut [f32]) {
    let (c, oh, ow) = (s.channels, s.height, s.width);
    let xt = taps(img.width, ow, s.resize);
    let yt = taps(img.height, oh, s.resize);
    let color = img.samples >= 3;
    let bg = s.background;

    // Pass 1, per input row: samples -> `c` channels in [0, 1], then the
    // horizontal resize into `mid` (input rows x output columns x c).
    let mut row = vec![0f32; img.width * c];
    let mut mid = vec![0f32; img.height * ow * c];
    let rb = img.row_bytes();
    for y in 0..img.height {
        let src = &img.data[y * rb..(y + 1) * rb];
        for x in 0..img.width {
            let base = x * img.samples;
            let alpha = if img.has_alpha { img.sample(src, base + img.samples - 1) } else { 1.0 };
            let (r, g, b) = if color {
                (img.sample(src, base), img.sample(src, base + 1), img.sample(src, base + 2))
            } else {
                let v = img.sample(src, base);
                (v, v, v)
            };
            let over = |v: f32| v * alpha + bg * (1.0 - alpha);
            if c == 1 {
                let luma = if color { 0.299 * r + 0.587 * g + 0.114 * b } else { r };
                row[x] = over(luma);
            } else {
                row[x * 3] = over(r);
                row[x * 3 + 1] = over(g);
                row[x * 3 + 2] = over(b);
            }
        }
        let dst = &mut mid[y * ow * c..(y + 1) * ow * c];
        for (j, (&first, w)) in xt.start.iter().zip(&xt.weights).enumerate() {
            for ch in 0..c {
                let mut acc = 0f32;
                for (k, wk) in w.iter().enumerate() {
                    acc += wk * row[(first + k) * c + ch];
                }
                dst[j * c + ch] = acc;
            }
        }
    }

    // Pass 2: vertical resize, invert, normalise, write planar.
    for (i, (&first, w)) in yt.start.iter().zip(&yt.weights).enumerate() {
        for j in 0..ow {
            for ch in 0..c {
                let mut v = 0f32;
                for (k, wk) in w.iter().enumerate() {
                    v += wk * mid[((first + k) * ow + j) * c + ch];
                }
                let v = v.clamp(0.0, 1.0);
                let v = if s.invert { 1.0 - v } else { v };
                out[(ch * oh + i) * ow + j] = (v - s.mean[ch]) / s.std[ch];
            }
        }
    }
}

// --- the plugin ---------------------------------------------------------

struct ImagePreprocess;

impl Plugin for ImagePreprocess {
    fn metadata() -> Metadata {
        match cached_settings() {
            Ok(s) => kiln_plugin::debug!(
                "image_preprocess: {}x{}x{} ({:?}, invert {})",
                s.channels, s.height, s.width, s.resize, s.invert
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
                let at = if images.len() == 1 { String::new() } else { format!(" element {n}") };
                Error::invalid(format!("input '{INPUT}'{at}: {msg}"))
            })?;
            render(&img, &s, &mut out[n * per_image..(n + 1) * per_image]);
        }
        shape.extend([s.channels as i64, s.height as i64, s.width as i64]);
        Ok(vec![Tensor::from_f32(OUTPUT, &shape, &out)])
    }
}

kiln_plugin::export_plugin!(ImagePreprocess);
