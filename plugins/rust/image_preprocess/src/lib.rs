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
//! | `max_pixels` | `16777216` | pixel budget per image (a positive integer): an image whose header (PNG IHDR, JPEG SOF) declares more than `max_pixels` pixels (width x height) is refused before any of it is decoded |
//!
//! Bad image bytes are an `invalid-argument` error naming the input and the
//! element; a bad config parameter is `unavailable`, naming the key. An image
//! over budget is `invalid-argument` too, e.g. `input 'IMAGE' element 3:
//! image declares 30000x30000 = 900000000 pixels, more than max_pixels
//! (16777216)`, so a decompression bomb costs a header read, not its pixels.
//! The memory needed is then bounded by `max_pixels` and the output size,
//! whatever the image's shape.
//!
//! The computation is in [`preprocess`], which builds for any target; the
//! plugin glue (`plugin.rs`, kiln-plugin SDK) is built for WebAssembly only,
//! so `cargo build` for the host target works too. `benches/native.rs` times
//! that same module natively, against the plugin through kiln
//! (`bench/plugin_native_ratio.sh`).

pub mod preprocess;

#[cfg(target_family = "wasm")]
mod plugin;
