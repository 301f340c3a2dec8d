//! The image_preprocess plugin's computation, built natively: decode,
//! convert, resize and normalise one image per call, for every case of
//! bench/plugin_native_ratio.cases. host/benches/plugins.rs runs the same
//! cases through kiln's Wasm backend; bench/plugin_native_ratio.sh runs both
//! and prints the ratio.
//!
//!     bash bench/plugin_native_ratio.sh   # makes the images, runs both sides
//!
//! Each case's output is written to target/plugin-ratio/out/NAME.native.f32
//! (NAME.native_scalar.f32 with the `platform_independent` feature, which
//! turns off jpeg-decoder's SSSE3 code) so that the script can check it
//! against the plugin's, bit for bit.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};

// The plugin's own source, not a copy: the crate is a cdylib only (an rlib
// beside it would turn off LTO for the plugin), so it is included as a module.
#[path = "../src/preprocess.rs"]
mod preprocess;

use preprocess::{Resize, Settings};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// Settings from a case's KEY=VALUE list. Every key is required: the defaults
/// live in the plugin's config code, which is not built natively.
fn settings(case: &str, params: &[(String, String)]) -> Settings {
    let get = |key: &str| -> &str {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("case {case}: parameter '{key}' missing"))
    };
    let num = |key: &str| -> usize {
        get(key)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("case {case}: {key}: {e}"))
    };
    let list = |key: &str, channels: usize| -> Vec<f32> {
        let v: Vec<f32> = get(key)
            .split(',')
            .map(|s| s.trim().parse::<f32>().unwrap())
            .collect();
        if v.len() == 1 {
            vec![v[0]; channels]
        } else {
            assert_eq!(v.len(), channels, "case {case}: {key}");
            v
        }
    };
    let channels = num("channels");
    assert!(channels == 1 || channels == 3, "case {case}: channels");
    Settings {
        height: num("height"),
        width: num("width"),
        channels,
        mean: list("mean", channels),
        std: list("std", channels),
        invert: get("invert").trim().parse().unwrap(),
        resize: match get("resize").trim() {
            "area" => Resize::Area,
            "bilinear" => Resize::Bilinear,
            other => panic!("case {case}: resize '{other}'"),
        },
        background: get("background").trim().parse().unwrap(),
        max_pixels: num("max_pixels"),
    }
}

struct Case {
    name: String,
    image: Vec<u8>,
    settings: Settings,
}

fn cases() -> Vec<Case> {
    let file = root().join("bench/plugin_native_ratio.cases");
    let images = root().join("target/plugin-ratio/images");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut cases = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let name = words.next().unwrap().to_string();
        let image = images.join(words.next().unwrap());
        let params: Vec<(String, String)> = words
            .map(|w| {
                let (k, v) = w.split_once('=').expect("KEY=VALUE");
                (k.to_string(), v.to_string())
            })
            .collect();
        let Ok(bytes) = std::fs::read(&image) else {
            eprintln!(
                "skipping {name}: {} missing (bench/plugin_native_ratio.sh makes it)",
                image.display()
            );
            continue;
        };
        let settings = settings(&name, &params);
        cases.push(Case {
            name,
            image: bytes,
            settings,
        });
    }
    cases
}

fn bench(c: &mut Criterion) {
    // With the feature, jpeg-decoder's scalar code, as in the Wasm build.
    let label = if cfg!(feature = "platform_independent") {
        "native_scalar"
    } else {
        "native"
    };
    let out_dir = root().join("target/plugin-ratio/out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut group = c.benchmark_group(format!("image_preprocess_{label}"));
    for case in cases() {
        let s = &case.settings;
        let mut out = vec![0f32; s.per_image()];
        preprocess::preprocess(&case.image, s, &mut out).unwrap();
        let bytes: Vec<u8> = out.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(out_dir.join(format!("{}.{label}.f32", case.name)), bytes).unwrap();
        group.bench_function(&case.name, |b| {
            b.iter(|| preprocess::preprocess(black_box(&case.image), s, &mut out).unwrap());
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
