//! Admission: the one place every request of a KServe listener passes
//! before its handler, health checks included: each gRPC call and stream,
//! each HTTP route. Here, once per request,
//!
//! 1. the caller is identified: the [`RequestContext`] handlers read (an
//!    [`axum::Extension`] over HTTP, a request extension over gRPC) is made
//!    here and nowhere else;
//! 2. the request is authorized: today the operator's restricted APIs
//!    (Triton's `--grpc-restricted-protocol` / `--http-restricted-api`,
//!    [`Restrictions`]); tenancy's credentials and scopes join this step;
//! 3. admission quotas (tenancy) will be taken;
//! 4. the request's tracing span opens; the handler, the pipeline and the
//!    scheduler job (to the backend thread) all run inside it.
//!
//! A refused request never reaches a handler: gRPC gets a trailers-only
//! status, HTTP a JSON error (see [`refusal`]).

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use kiln_types::context::{Protocol, RequestContext, TENANT_HEADER};
use tracing::Instrument;

use super::restricted::{Api, Restrictions, Wire};

/// A listener's admission rules.
#[derive(Debug)]
pub struct Admission {
    wire: Wire,
    restrictions: Restrictions,
}

impl Admission {
    pub fn new(wire: Wire, restrictions: Restrictions) -> Self {
        Self { wire, restrictions }
    }

    /// The API group a request path belongs to.
    fn api(&self, path: &str) -> Option<Api> {
        match self.wire {
            Wire::Grpc => Api::of_grpc_path(path),
            Wire::Http => Api::of_http_path(path),
        }
    }

    /// Who is calling, from what the request carries.
    fn identify(&self, headers: &http::HeaderMap) -> RequestContext {
        let tenant = headers.get(TENANT_HEADER).and_then(|v| v.to_str().ok());
        let protocol = match self.wire {
            Wire::Grpc => Protocol::Grpc,
            Wire::Http => Protocol::Http,
        };
        RequestContext::new(protocol, tenant)
    }

    /// Whether the caller may use `api`; the refusal's message if not.
    fn authorize(&self, api: Option<Api>, headers: &http::HeaderMap) -> Result<(), String> {
        self.restrictions.check(api, headers)
    }
}

/// Puts [`admit`] in front of every route of `router`.
pub fn apply(router: axum::Router, admission: Admission) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(
        Arc::new(admission),
        admit,
    ))
}

async fn admit(
    axum::extract::State(admission): axum::extract::State<Arc<Admission>>,
    mut request: Request,
    next: Next,
) -> Response {
    let api = admission.api(request.uri().path());
    let ctx = admission.identify(request.headers());
    let span = tracing::info_span!(
        "request",
        protocol = ?ctx.protocol,
        api = api.map_or("unknown", Api::name),
        caller = ?ctx.identity,
    );
    if let Err(message) = admission.authorize(api, request.headers()) {
        span.in_scope(|| tracing::debug!("refused: {message}"));
        return refusal(admission.wire, message);
    }
    request.extensions_mut().insert(ctx);
    next.run(request).instrument(span).await
}

/// gRPC: a trailers-only UNAVAILABLE answer (Triton's code for a restricted
/// protocol); HTTP: 403 with `{"error": ...}`.
fn refusal(wire: Wire, message: String) -> Response {
    match wire {
        Wire::Grpc => tonic::Status::unavailable(message).into_http(),
        Wire::Http => {
            let body = serde_json::json!({ "error": message }).to_string();
            http::Response::builder()
                .status(http::StatusCode::FORBIDDEN)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(body))
                .expect("a valid response")
        }
    }
}

/// The context admission gave a gRPC request. Every listener is built with
/// [`apply`], so a request without one is a wiring bug, answered INTERNAL
/// rather than served as nobody.
pub fn grpc_context<T>(request: &tonic::Request<T>) -> Result<RequestContext, tonic::Status> {
    request
        .extensions()
        .get::<RequestContext>()
        .cloned()
        .ok_or_else(|| tonic::Status::internal("the request did not pass admission"))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    use axum::body::Body;
    use axum::routing::get;
    use axum::{Extension, Router};
    use kiln_types::context::Identity;
    use tower::ServiceExt;

    use super::*;

    /// A router whose handlers answer with the caller admission saw, and
    /// count how often a handler ran.
    fn router(wire: Wire, restricted: &[&str], ran: Arc<AtomicUsize>) -> Router {
        let echo = move |Extension(ctx): Extension<RequestContext>| {
            let ran = ran.clone();
            async move {
                ran.fetch_add(1, SeqCst);
                format!("{:?} {:?}", ctx.protocol, ctx.identity)
            }
        };
        let router = Router::new()
            .route("/v2/health/live", get(echo.clone()))
            .route("/v2/repository/index", get(echo.clone()))
            .route("/inference.GRPCInferenceService/ModelInfer", get(echo));
        let flags: Vec<String> = restricted.iter().map(|s| s.to_string()).collect();
        apply(
            router,
            Admission::new(wire, Restrictions::parse(wire, &flags).unwrap()),
        )
    }

    async fn call(router: &Router, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut request = http::Request::get(path);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn every_route_gets_the_caller_admission_identified() {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = router(Wire::Http, &[], ran.clone());
        let (status, body) = call(&r, "/v2/health/live", &[]).await;
        assert_eq!((status, body.as_str()), (200, "Http Anonymous"));
        let (_, body) = call(&r, "/v2/repository/index", &[(TENANT_HEADER, "team-a")]).await;
        assert_eq!(
            body,
            format!("Http {:?}", Identity::Tenant("team-a".into()))
        );
        assert_eq!(ran.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn a_restricted_api_is_refused_before_its_handler_runs() {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = router(
            Wire::Http,
            &["model-repository:admin-key=s3cret"],
            ran.clone(),
        );
        let (status, body) = call(&r, "/v2/repository/index", &[]).await;
        assert_eq!(status, 403);
        assert!(body.contains("expecting header 'admin-key'"), "{body}");
        assert_eq!(ran.load(SeqCst), 0);
        let (status, _) = call(&r, "/v2/repository/index", &[("admin-key", "s3cret")]).await;
        assert_eq!(status, 200);
        // Health is another group: open.
        assert_eq!(call(&r, "/v2/health/live", &[]).await.0, 200);
        assert_eq!(ran.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn grpc_refusals_are_grpc_statuses() {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = router(Wire::Grpc, &["inference:k=v"], ran.clone());
        let response = r
            .clone()
            .oneshot(
                http::Request::get("/inference.GRPCInferenceService/ModelInfer")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers()["grpc-status"], "14"); // UNAVAILABLE
        assert_eq!(ran.load(SeqCst), 0);
        let (_, body) = call(
            &r,
            "/inference.GRPCInferenceService/ModelInfer",
            &[("triton-grpc-protocol-k", "v")],
        )
        .await;
        assert_eq!(body, "Grpc Anonymous");
    }
}
