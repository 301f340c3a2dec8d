//! What admission costs a request: the same trivial route called through
//! `admission::apply` without tenants, and with a tenants file of 1,000
//! tenants (key digest lookup, the route's scope, a token bucket and an
//! in-flight slot). The difference is admission's cost with tenancy; the
//! target (issue 12) is at most 5 µs per request.
//!
//!     cargo bench -p kiln-kserve --bench admission
//!
//! Figures are recorded in BENCHMARKS.md.

use std::sync::Arc;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use kiln_kserve::admission::{apply, Admission};
use kiln_kserve::restricted::{Restrictions, Wire};
use kiln_tenancy::TenantsWatch;
use sha2::{Digest, Sha256};
use tower::ServiceExt;

const TENANTS: usize = 1000;

fn tenants_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut text = String::new();
    for i in 0..TENANTS {
        let digest = hex::encode(Sha256::digest(format!("key-{i}").as_bytes()));
        text.push_str(&format!(
            "[[tenant]]\nname = \"t{i}\"\napi_keys = [\"sha256:{digest}\"]\nscopes = [\"infer\", \"metadata\"]\n\
             shared_models = [\"*\"]\n[tenant.quotas]\nrequests_per_second = 1000000000\nmax_in_flight = 1000\n"
        ));
    }
    let file = dir.join("tenants.toml");
    std::fs::write(&file, text).unwrap();
    file
}

fn router(tenants: Option<Arc<TenantsWatch>>) -> Router {
    let routes = Router::new().route("/v2/models/m/infer", get(|| async { "ok" }));
    apply(
        routes,
        Admission::new(Wire::Http, Restrictions::default(), tenants),
    )
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let watch = Arc::new(TenantsWatch::open(&tenants_file(dir.path())).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let open = router(None);
    let with_tenants = router(Some(watch));
    let key = format!("Bearer key-{}", TENANTS / 2);
    let mut group = c.benchmark_group("admission");
    group.bench_function("no_tenants", |b| {
        b.to_async(&runtime).iter(|| async {
            let request = http::Request::get("/v2/models/m/infer")
                .body(Body::empty())
                .unwrap();
            let response = open.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), 200);
        })
    });
    group.bench_function("tenant_key_scope_quotas_1000_tenants", |b| {
        b.to_async(&runtime).iter(|| async {
            let request = http::Request::get("/v2/models/m/infer")
                .header("authorization", key.as_str())
                .body(Body::empty())
                .unwrap();
            let response = with_tenants.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), 200);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
