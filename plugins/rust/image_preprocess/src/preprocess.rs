//! The plugin's computation, for any target: decode a PNG or JPEG, convert,
//! resize and normalise into planar FP32. No kiln or WebAssembly types here,
//! so the same code also builds natively (the native side of
//! `bench/plugin_native_ratio.sh`); the plugin glue is in `plugin.rs`.

use std::io::Cursor;

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Resize {
    /// Box average over each output pixel's footprint (best for shrinking).
    Area,
    /// Two taps per axis, pixel centres aligned, edges clamped.
    Bilinear,
}

/// What to produce: the plugin reads these from its config parameters (see
/// the crate documentation for the meaning and the defaults).
#[derive(Clone, Debug)]
pub struct Settings {
    pub height: usize,
    pub width: usize,
    /// 1 (BT.601 luma) or 3 (RGB).
    pub channels: usize,
    /// One per channel.
    pub mean: Vec<f32>,
    /// One per channel, finite and non-zero.
    pub std: Vec<f32>,
    pub invert: bool,
    pub resize: Resize,
    /// Gray level in [0, 1] that transparent pixels are composited over.
    pub background: f32,
    pub max_pixels: usize,
}

impl Settings {
    /// Floats per image: `channels * height * width`.
    pub fn per_image(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// Decodes one PNG or JPEG file and renders it into `out`
/// ([`Settings::per_image`] floats, `[C, H, W]`): what the plugin does per
/// image.
pub fn preprocess(bytes: &[u8], s: &Settings, out: &mut [f32]) -> Result<(), String> {
    let img = decode(bytes, s.max_pixels)?;
    render(&img, s, out);
    Ok(())
}

// --- decoding -----------------------------------------------------------

/// A decoded image: `width * height` pixels of `samples` interleaved
/// samples each (gray, gray+alpha, RGB or RGBA), 8-bit or 16-bit.
pub struct Decoded {
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
            let v = if self.big_endian {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            };
            v as f32 * (1.0 / 65535.0)
        }
    }
}

/// The refusal of an image whose header declares more than `max` pixels.
/// Computed in u64: on wasm32, `usize` cannot hold 65535 x 65535.
fn too_large(w: u32, h: u32, max: usize) -> Option<String> {
    let pixels = u64::from(w) * u64::from(h);
    (pixels > max as u64)
        .then(|| format!("image declares {w}x{h} = {pixels} pixels, more than max_pixels ({max})"))
}

fn decode_png(bytes: &[u8], max_pixels: usize) -> Result<Decoded, String> {
    // The decoder's own allocations (row buffers, zlib window, text and ICC
    // chunks) are bounded by its limit; the image buffer is ours and bounded
    // by max_pixels.
    let mut decoder =
        png::Decoder::new_with_limits(Cursor::new(bytes), png::Limits { bytes: 64 << 20 });
    // The size check comes first, on the IHDR chunk alone: read_info also
    // reads every chunk up to the image data, and refuses (as "limits are
    // exceeded") sizes whose buffer would not fit a wasm32 usize.
    let (w, h) = decoder
        .read_header_info()
        .map_err(|e| format!("invalid PNG: {e}"))?
        .size();
    if let Some(msg) = too_large(w, h, max_pixels) {
        return Err(msg);
    }
    let (w, h) = (w as usize, h as usize);
    // Palettes, low bit depths and tRNS become plain 8-bit gray/RGB(+alpha).
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder
        .read_info()
        .map_err(|e| format!("invalid PNG: {e}"))?;
    let (color, depth) = reader.output_color_type();
    let size = reader.output_buffer_size().ok_or("PNG too large")?;
    let mut data = vec![0; size];
    let frame = reader
        .next_frame(&mut data)
        .map_err(|e| format!("invalid PNG: {e}"))?;
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
        other => {
            return Err(format!(
                "unexpected PNG bit depth {other:?} after expansion"
            ))
        }
    };
    let d = Decoded {
        width: w,
        height: h,
        samples,
        has_alpha,
        sample_bytes,
        big_endian: true,
        data,
    };
    if d.data.len() < d.row_bytes() * h {
        return Err("truncated PNG frame".into());
    }
    Ok(d)
}

fn decode_jpeg(bytes: &[u8], max_pixels: usize) -> Result<Decoded, String> {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder
        .read_info()
        .map_err(|e| format!("invalid JPEG: {e}"))?;
    // read_info stops at the first scan: no pixel has been decoded yet.
    let info = decoder.info().ok_or("invalid JPEG: no frame header")?;
    if let Some(msg) = too_large(info.width.into(), info.height.into(), max_pixels) {
        return Err(msg);
    }
    let (w, h) = (info.width as usize, info.height as usize);
    let (samples, sample_bytes) = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => (1, 1),
        jpeg_decoder::PixelFormat::L16 => (1, 2),
        jpeg_decoder::PixelFormat::RGB24 => (3, 1),
        jpeg_decoder::PixelFormat::CMYK32 => {
            return Err("CMYK JPEG images are not supported (convert to RGB or grayscale)".into())
        }
    };
    // A second line of defence, though jpeg-decoder checks it only once the
    // scans are decoded, before its colour conversion.
    decoder.set_max_decoding_buffer_size(max_pixels.saturating_mul(4));
    let data = decoder.decode().map_err(|e| format!("invalid JPEG: {e}"))?;
    let d = Decoded {
        width: w,
        height: h,
        samples,
        has_alpha: false,
        sample_bytes,
        big_endian: false,
        data,
    };
    if w == 0 || h == 0 || d.data.len() < d.row_bytes() * h {
        return Err("invalid JPEG: truncated image data".into());
    }
    Ok(d)
}

/// Decodes a PNG or JPEG file (told apart by its signature). Images larger
/// than `max_pixels` (width x height) are refused before their pixels are
/// decoded. The error is a message for the client.
pub fn decode(bytes: &[u8], max_pixels: usize) -> Result<Decoded, String> {
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
            if head.is_empty() {
                "<empty>".into()
            } else {
                head
            }
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
pub fn render(img: &Decoded, s: &Settings, out: &mut [f32]) {
    let (c, oh, ow) = (s.channels, s.height, s.width);
    let xt = taps(img.width, ow, s.resize);
    let yt = taps(img.height, oh, s.resize);
    let color = img.samples >= 3;
    let bg = s.background;

    // Pass 1, per input row: samples -> `c` channels in [0, 1]; the
    // horizontal resize into `mid` (output columns x c); then the vertical
    // resize: `mid`, weighted, added into each output row of `acc` whose taps
    // include this input row. Each output sample gets the same products added
    // in the same order (its taps, top to bottom) as a sum over a whole
    // horizontally resized image would give, bit for bit, but the memory
    // needed is the output's, however tall the input (a 1 x 16777216 image is
    // within the default max_pixels).
    let mut row = vec![0f32; img.width * c];
    let mut mid = vec![0f32; ow * c];
    let mut acc = vec![0f32; oh * ow * c];
    // The first output row whose taps do not end above the current input row.
    let mut first_out = 0;
    let rb = img.row_bytes();
    for y in 0..img.height {
        // Output rows' taps start in input order (never decreasing).
        while first_out < oh && yt.start[first_out] + yt.weights[first_out].len() <= y {
            first_out += 1;
        }
        let taps_of = |i: usize| {
            y.checked_sub(yt.start[i])
                .and_then(|k| yt.weights[i].get(k))
        };
        // A row that no output row's taps reach (bilinear shrinking) is skipped.
        if !(first_out..oh)
            .take_while(|&i| yt.start[i] <= y)
            .any(|i| taps_of(i).is_some())
        {
            continue;
        }
        let src = &img.data[y * rb..(y + 1) * rb];
        for x in 0..img.width {
            let base = x * img.samples;
            let alpha = if img.has_alpha {
                img.sample(src, base + img.samples - 1)
            } else {
                1.0
            };
            let (r, g, b) = if color {
                (
                    img.sample(src, base),
                    img.sample(src, base + 1),
                    img.sample(src, base + 2),
                )
            } else {
                let v = img.sample(src, base);
                (v, v, v)
            };
            let over = |v: f32| v * alpha + bg * (1.0 - alpha);
            if c == 1 {
                let luma = if color {
                    0.299 * r + 0.587 * g + 0.114 * b
                } else {
                    r
                };
                row[x] = over(luma);
            } else {
                row[x * 3] = over(r);
                row[x * 3 + 1] = over(g);
                row[x * 3 + 2] = over(b);
            }
        }
        for (j, (&first, w)) in xt.start.iter().zip(&xt.weights).enumerate() {
            for ch in 0..c {
                let mut sum = 0f32;
                for (k, wk) in w.iter().enumerate() {
                    sum += wk * row[(first + k) * c + ch];
                }
                mid[j * c + ch] = sum;
            }
        }
        for i in (first_out..oh).take_while(|&i| yt.start[i] <= y) {
            let Some(&wk) = taps_of(i) else {
                continue;
            };
            let dst = &mut acc[i * ow * c..(i + 1) * ow * c];
            for (a, m) in dst.iter_mut().zip(&mid) {
                *a += wk * m;
            }
        }
    }

    // Pass 2: clamp, invert, normalise, write planar.
    for i in 0..oh {
        for j in 0..ow {
            for ch in 0..c {
                let v = acc[(i * ow + j) * c + ch].clamp(0.0, 1.0);
                let v = if s.invert { 1.0 - v } else { v };
                out[(ch * oh + i) * ow + j] = (v - s.mean[ch]) / s.std[ch];
            }
        }
    }
}
