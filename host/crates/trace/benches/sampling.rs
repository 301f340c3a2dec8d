//! What tracing costs a request that is not traced: the sampling decision
//! with tracing off (Triton's default), and with tracing on at rate 1000
//! (999 of 1000 requests pass through the sampler untraced).
use criterion::{criterion_group, criterion_main, Criterion};
use kiln_trace::{TraceConfig, TraceManager};
use kiln_types::context::{Identity, Protocol, RequestContext};

fn sampling(c: &mut Criterion) {
    let ctx = RequestContext::new(Protocol::Grpc, Identity::Anonymous);
    let off = TraceManager::off();
    c.bench_function("sample/off", |b| {
        b.iter(|| std::hint::black_box(off.sample(std::hint::black_box("resnet50"), &ctx)))
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trace.json");
    let on = TraceManager::new(
        &TraceConfig::parse(&[
            "level=TIMESTAMPS".to_string(),
            "rate=1000000000".to_string(),
            format!("triton,file={}", file.display()),
        ])
        .unwrap(),
    )
    .unwrap();
    c.bench_function("sample/on_not_taken", |b| {
        b.iter(|| std::hint::black_box(on.sample(std::hint::black_box("resnet50"), &ctx)))
    });
}

criterion_group!(benches, sampling);
criterion_main!(benches);
