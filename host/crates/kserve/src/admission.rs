//! Admission: the one place every request of a KServe listener passes
//! before its handler, health checks included: each gRPC call and stream,
//! each HTTP route. Here, once per request,
//!
//! 1. the caller is identified: the [`RequestContext`] handlers read (an
//!    [`axum::Extension`] over HTTP, a request extension over gRPC) is made
//!    here and nowhere else. With a tenants file (kiln-tenancy) the caller
//!    is the tenant whose API key is sent as `Authorization: Bearer <key>`
//!    (HTTP header, gRPC metadata `authorization`); without one, anonymous
//!    (or the unverified `kiln-tenant` header's name);
//! 2. the request is authorized: the tenant's scopes (see [`required`]),
//!    its quotas (requests per second, requests in flight: the slot is held
//!    until the handler has answered), then the operator's restricted APIs (Triton's
//!    `--grpc-restricted-protocol` / `--http-restricted-api`, [`Restrictions`]);
//! 3. the request's tracing span opens; the handler, the pipeline and the
//!    scheduler job (to the backend thread) all run inside it.
//!
//! A refused request never reaches a handler: gRPC gets a trailers-only
//! status, HTTP a JSON error (see [`Refusal`]). Server health (live, ready,
//! grpc.health) stays open to everyone, so probes need no credentials.

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use kiln_tenancy::{InFlight, QuotaRefusal, RefusalObserver, Scope, TenantsWatch};
use kiln_types::context::{Identity, Protocol, RequestContext, Share, TENANT_HEADER};
use tracing::Instrument;

use crate::log_limit::RateLimitedLog;
use crate::restricted::{Api, Restrictions, Wire};

/// A listener's admission rules.
pub struct Admission {
    wire: Wire,
    restrictions: Restrictions,
    /// The tenants file in force, when kiln runs with one.
    tenants: Option<Arc<TenantsWatch>>,
    /// Authentication failures, logged at most once a second.
    failures: RateLimitedLog,
    /// Counts every refusal by tenant and reason.
    refusals: Arc<dyn RefusalObserver>,
}

/// What a route asks of a caller when tenants are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Server health: anyone.
    Open,
    /// A tenant with this scope.
    Scope(Scope),
    /// A route kiln does not serve: any tenant (the handler answers 404 /
    /// UNIMPLEMENTED, to authenticated callers only).
    Tenant,
}

/// The scope each route needs. Triton's API groups decide, with two
/// refinements: a model's readiness says whether it exists, so it is
/// `metadata` (and goes through the tenant's namespace) where server
/// readiness is open; the repository index is `metadata`, loading and
/// unloading `model-control`. `api` is the path's group ([`Api::of`]).
pub fn required(wire: Wire, path: &str, api: Option<Api>) -> Need {
    let method = path.rsplit('/').next().unwrap_or_default();
    match api {
        Some(Api::Health) => match wire {
            Wire::Grpc if method == "ModelReady" => Need::Scope(Scope::Metadata),
            Wire::Http if path.starts_with("/v2/models/") => Need::Scope(Scope::Metadata),
            _ => Need::Open,
        },
        Some(Api::Metadata | Api::ModelConfig) => Need::Scope(Scope::Metadata),
        Some(Api::Inference) => Need::Scope(Scope::Infer),
        Some(Api::SharedMemory) => Need::Scope(Scope::SharedMemory),
        Some(Api::ModelRepository) => match (wire, method) {
            (Wire::Grpc, "RepositoryIndex") | (Wire::Http, "index") => Need::Scope(Scope::Metadata),
            _ => Need::Scope(Scope::ModelControl),
        },
        Some(Api::Statistics) => Need::Scope(Scope::Statistics),
        Some(Api::Trace | Api::Logging) => Need::Scope(Scope::Admin),
        None => Need::Tenant,
    }
}

/// Why a request was refused, and how each protocol says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No credential, or one no tenant has: gRPC UNAUTHENTICATED, HTTP 401
    /// with `WWW-Authenticate: Bearer`.
    Unauthenticated(String),
    /// The tenant lacks the route's scope: PERMISSION_DENIED / 403.
    PermissionDenied(String),
    /// A restricted API without its header, answered as Triton does:
    /// UNAVAILABLE / 403.
    Restricted(String),
    /// Over a quota: RESOURCE_EXHAUSTED / 429, with `Retry-After` (whole
    /// seconds, rounded up) where the wait is known.
    Quota(QuotaRefusal),
}

impl Refusal {
    fn message(&self) -> &str {
        match self {
            Refusal::Unauthenticated(m) | Refusal::PermissionDenied(m) | Refusal::Restricted(m) => {
                m
            }
            Refusal::Quota(q) => q.message(),
        }
    }

    fn into_response(self, wire: Wire) -> Response {
        match wire {
            Wire::Grpc => match self {
                Refusal::Unauthenticated(m) => tonic::Status::unauthenticated(m),
                Refusal::PermissionDenied(m) => tonic::Status::permission_denied(m),
                Refusal::Restricted(m) => tonic::Status::unavailable(m),
                Refusal::Quota(q) => {
                    let mut status = tonic::Status::resource_exhausted(q.message());
                    // gRPC's own "come back later" (honoured by retry policies).
                    if let Some(wait) = q.retry_after() {
                        if let Ok(ms) = wait.as_millis().max(1).to_string().parse() {
                            status.metadata_mut().insert("grpc-retry-pushback-ms", ms);
                        }
                    }
                    status
                }
            }
            .into_http(),
            Wire::Http => {
                let (status, challenge) = match &self {
                    // RFC 6750: an invalid token names the error.
                    Refusal::Unauthenticated(m) if m.starts_with(UNKNOWN_KEY) => (
                        http::StatusCode::UNAUTHORIZED,
                        Some(r#"Bearer realm="kiln", error="invalid_token""#),
                    ),
                    Refusal::Unauthenticated(_) => (
                        http::StatusCode::UNAUTHORIZED,
                        Some(r#"Bearer realm="kiln""#),
                    ),
                    Refusal::PermissionDenied(_) | Refusal::Restricted(_) => {
                        (http::StatusCode::FORBIDDEN, None)
                    }
                    Refusal::Quota(_) => (http::StatusCode::TOO_MANY_REQUESTS, None),
                };
                let retry_after = match &self {
                    Refusal::Quota(q) => q
                        .retry_after()
                        .map(|d| d.as_secs_f64().ceil().max(1.0) as u64),
                    _ => None,
                };
                let body = serde_json::json!({ "error": self.message() }).to_string();
                let mut response = http::Response::builder()
                    .status(status)
                    .header(http::header::CONTENT_TYPE, "application/json");
                if let Some(challenge) = challenge {
                    response = response.header(http::header::WWW_AUTHENTICATE, challenge);
                }
                if let Some(secs) = retry_after {
                    response = response.header(http::header::RETRY_AFTER, secs);
                }
                response
                    .body(axum::body::Body::from(body))
                    .expect("a valid response")
            }
        }
    }
}

const NO_KEY: &str = "no credentials: send 'Authorization: Bearer <API key>'";
const UNKNOWN_KEY: &str = "unknown credentials";

/// The token of an `Authorization: Bearer <token>` header (scheme
/// case-insensitive, RFC 6750).
fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl Admission {
    pub fn new(wire: Wire, restrictions: Restrictions, tenants: Option<Arc<TenantsWatch>>) -> Self {
        Self {
            wire,
            restrictions,
            tenants,
            failures: RateLimitedLog::default(),
            refusals: Arc::new(()),
        }
    }

    /// Tells `refusals` of every request refused for its credential, scope
    /// or quota.
    pub fn with_refusals(mut self, refusals: Arc<dyn RefusalObserver>) -> Self {
        self.refusals = refusals;
        self
    }

    fn protocol(&self) -> Protocol {
        match self.wire {
            Wire::Grpc => Protocol::Grpc,
            Wire::Http => Protocol::Http,
        }
    }

    /// Who is calling and whether they may make this request (to `path`,
    /// of group `api`); with a tenant, its in-flight slot.
    fn admit(
        &self,
        path: &str,
        api: Option<Api>,
        headers: &http::HeaderMap,
    ) -> Result<(RequestContext, Option<InFlight>), Refusal> {
        let (identity, share, slot) = match &self.tenants {
            None => match headers.get(TENANT_HEADER).and_then(|v| v.to_str().ok()) {
                Some(name) if !name.is_empty() => {
                    (Identity::Claimed(name.to_string()), Share::default(), None)
                }
                _ => (Identity::Anonymous, Share::default(), None),
            },
            Some(tenants) => match required(self.wire, path, api) {
                Need::Open => (Identity::Anonymous, Share::default(), None),
                need => {
                    let (name, share, slot) = self.authenticate(tenants, need, headers)?;
                    (Identity::Tenant(name), share, Some(slot))
                }
            },
        };
        self.restrictions
            .check(api, headers)
            .map_err(Refusal::Restricted)?;
        let mut ctx = RequestContext::new(self.protocol(), identity);
        ctx.share = share;
        ctx.trace_parent = kiln_trace::propagation::remote_span(headers);
        ctx.admitted_at = std::time::Instant::now();
        Ok((ctx, slot))
    }

    /// The tenant the request's API key belongs to, if it may do `need`
    /// and is within its quotas.
    fn authenticate(
        &self,
        tenants: &TenantsWatch,
        need: Need,
        headers: &http::HeaderMap,
    ) -> Result<(Arc<str>, Share, InFlight), Refusal> {
        let what = match self.wire {
            Wire::Grpc => "grpc admission",
            Wire::Http => "http admission",
        };
        let Some(key) = bearer(headers) else {
            self.failures
                .warn(what, format_args!("authentication failed: {NO_KEY}"));
            self.refusals.refused(None, "unauthenticated");
            return Err(Refusal::Unauthenticated(NO_KEY.into()));
        };
        let current = tenants.current();
        let token_verifier = current.jwt().filter(|_| kiln_tenancy::looks_like_jwt(key));
        let found = match token_verifier {
            Some(jwt) => match jwt.verify(key) {
                Ok(name) => current
                    .by_name(&name)
                    .ok_or_else(|| "the token's tenant is not in the tenants file".to_string()),
                Err(why) => Err(why),
            },
            _ => current.by_api_key(key).ok_or_else(|| {
                format!(
                    "an API key no tenant has ({:?})",
                    kiln_tenancy::KeyDigest::of_key(key)
                )
            }),
        };
        let tenant = match found {
            Ok(tenant) => tenant,
            Err(why) => {
                self.failures
                    .warn(what, format_args!("authentication failed: {why}"));
                self.refusals.refused(None, "unauthenticated");
                // The client learns that its credential was refused, and
                // for a token why (expired, wrong audience): what the
                // token's holder can read in it anyway.
                let detail = if token_verifier.is_some() {
                    why
                } else {
                    "the API key belongs to no tenant".to_string()
                };
                return Err(Refusal::Unauthenticated(format!("{UNKNOWN_KEY}: {detail}")));
            }
        };
        if let Need::Scope(scope) = need {
            if !tenant.scopes.contains(scope) {
                self.refusals
                    .refused(Some(&tenant.name), "permission_denied");
                return Err(Refusal::PermissionDenied(format!(
                    "tenant '{}' lacks the scope '{scope}' this API needs",
                    tenant.name
                )));
            }
        }
        let slot = tenants.meters().admit(tenant).map_err(|q| {
            self.refusals.refused(Some(&tenant.name), q.quota());
            Refusal::Quota(q)
        })?;
        let share = Share {
            weight: tenant.weight,
            max_queued_per_model: tenant.quotas.max_queued_per_model.map(|n| n.get()),
        };
        Ok((tenant.name.clone(), share, slot))
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
    let path = request.uri().path();
    let api = Api::of(admission.wire, path);
    let span = tracing::info_span!(
        "request",
        protocol = ?admission.protocol(),
        api = api.map_or("unknown", Api::name),
        caller = tracing::field::Empty,
    );
    let (ctx, _in_flight) = match admission.admit(path, api, request.headers()) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            span.in_scope(|| tracing::debug!("refused: {}", refusal.message()));
            return refusal.into_response(admission.wire);
        }
    };
    span.record("caller", tracing::field::debug(&ctx.identity));
    request.extensions_mut().insert(ctx);
    next.run(request).instrument(span).await
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
        router_with(wire, restricted, None, ran)
    }

    fn router_with(
        wire: Wire,
        restricted: &[&str],
        tenants: Option<Arc<TenantsWatch>>,
        ran: Arc<AtomicUsize>,
    ) -> Router {
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
            .route("/v2/repository/models/m/load", get(echo.clone()))
            .route("/v2/models/m/ready", get(echo.clone()))
            .route("/v2/models/m/infer", get(echo.clone()))
            .route(
                "/inference.GRPCInferenceService/ServerLive",
                get(echo.clone()),
            )
            .route("/inference.GRPCInferenceService/ModelInfer", get(echo));
        let flags: Vec<String> = restricted.iter().map(|s| s.to_string()).collect();
        apply(
            router,
            Admission::new(wire, Restrictions::parse(wire, &flags).unwrap(), tenants),
        )
    }

    /// The response to a GET of `path` with `headers`.
    async fn send(router: &Router, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = http::Request::get(path);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    /// A gRPC response's status code (None: OK, the handler answered).
    async fn grpc_status(router: &Router, path: &str, headers: &[(&str, &str)]) -> Option<String> {
        let response = send(router, path, headers).await;
        assert_eq!(response.status().as_u16(), 200, "gRPC answers HTTP 200");
        response
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_string())
    }

    async fn call(router: &Router, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let response = send(router, path, headers).await;
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
            format!("Http {:?}", Identity::Claimed("team-a".into()))
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
        let infer = "/inference.GRPCInferenceService/ModelInfer";
        assert_eq!(grpc_status(&r, infer, &[]).await.as_deref(), Some("14")); // UNAVAILABLE
        assert_eq!(ran.load(SeqCst), 0);
        let (_, body) = call(
            &r,
            "/inference.GRPCInferenceService/ModelInfer",
            &[("triton-grpc-protocol-k", "v")],
        )
        .await;
        assert_eq!(body, "Grpc Anonymous");
    }

    // printf %s alpha | sha256sum ; printf %s beta | sha256sum
    const ALPHA: &str = "sha256:8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8";
    const BETA: &str = "sha256:f44e64e75f3948e9f73f8dfa94721c4ce8cbb4f265c4790c702b2d41cfbf2753";

    fn tenants(dir: &std::path::Path) -> Arc<TenantsWatch> {
        let file = dir.join("tenants.toml");
        std::fs::write(
            &file,
            format!(
                "[[tenant]]\nname = \"a\"\napi_keys = [\"{ALPHA}\"]\nscopes = [\"infer\", \"metadata\"]\n\
                 [[tenant]]\nname = \"b\"\napi_keys = [\"{BETA}\"]\nscopes = [\"model-control\"]\n"
            ),
        )
        .unwrap();
        Arc::new(TenantsWatch::open(&file).unwrap())
    }

    #[tokio::test]
    async fn with_tenants_a_key_names_the_caller_and_its_scopes_decide() {
        let dir = tempfile::tempdir().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = router_with(Wire::Http, &[], Some(tenants(dir.path())), ran.clone());
        let alpha = [("authorization", "Bearer alpha")];
        // Health needs nothing; a model's readiness needs `metadata`.
        assert_eq!(
            call(&r, "/v2/health/live", &[]).await,
            (200, "Http Anonymous".into())
        );
        let (status, body) = call(&r, "/v2/models/m/ready", &alpha).await;
        assert_eq!(
            (status, body),
            (200, format!("Http {:?}", Identity::Tenant("a".into())))
        );
        assert_eq!(
            call(
                &r,
                "/v2/models/m/infer",
                &[("authorization", "bearer alpha")]
            )
            .await
            .0,
            200
        );
        // The unverified header is ignored once tenants are configured.
        let (_, body) = call(
            &r,
            "/v2/repository/index",
            &[("authorization", "Bearer alpha"), (TENANT_HEADER, "b")],
        )
        .await;
        assert_eq!(body, format!("Http {:?}", Identity::Tenant("a".into())));
        assert_eq!(ran.load(SeqCst), 4);

        let (status, body) = call(&r, "/v2/repository/models/m/load", &alpha).await;
        assert_eq!(status, 403);
        assert!(
            body.contains("tenant 'a' lacks the scope 'model-control'"),
            "{body}"
        );
        let (status, _) = call(
            &r,
            "/v2/repository/models/m/load",
            &[("authorization", "Bearer beta")],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            call(
                &r,
                "/v2/models/m/infer",
                &[("authorization", "Bearer beta")]
            )
            .await
            .0,
            403
        );
        assert_eq!(ran.load(SeqCst), 5);
    }

    #[tokio::test]
    async fn missing_or_unknown_keys_are_401_with_a_bearer_challenge() {
        let dir = tempfile::tempdir().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = router_with(Wire::Http, &[], Some(tenants(dir.path())), ran.clone());
        for (headers, challenge) in [
            (&[][..], r#"Bearer realm="kiln""#),
            (
                &[("authorization", "Basic YWxwaGE=")][..],
                r#"Bearer realm="kiln""#,
            ),
            (
                &[("authorization", "Bearer gamma")][..],
                r#"Bearer realm="kiln", error="invalid_token""#,
            ),
        ] {
            let response = send(&r, "/v2/models/m/infer", headers).await;
            assert_eq!(response.status().as_u16(), 401);
            assert_eq!(response.headers()["www-authenticate"], challenge);
        }
        assert_eq!(ran.load(SeqCst), 0);
    }

    #[tokio::test]
    async fn grpc_tenant_refusals_are_unauthenticated_and_permission_denied() {
        let dir = tempfile::tempdir().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = router_with(Wire::Grpc, &[], Some(tenants(dir.path())), ran.clone());
        let infer = "/inference.GRPCInferenceService/ModelInfer";
        assert_eq!(grpc_status(&r, infer, &[]).await.as_deref(), Some("16"));
        let beta = [("authorization", "Bearer beta")];
        assert_eq!(grpc_status(&r, infer, &beta).await.as_deref(), Some("7"));
        let alpha = [("authorization", "Bearer alpha")];
        assert_eq!(grpc_status(&r, infer, &alpha).await, None);
        let live = "/inference.GRPCInferenceService/ServerLive";
        assert_eq!(grpc_status(&r, live, &[]).await, None);
        assert_eq!(ran.load(SeqCst), 2);
    }

    #[test]
    fn every_route_maps_to_the_scope_it_needs() {
        use Need::*;
        let cases = [
            (Wire::Http, "/v2/health/ready", Open),
            (Wire::Http, "/v2", Scope(kiln_tenancy::Scope::Metadata)),
            (
                Wire::Http,
                "/v2/models/m/versions/1/ready",
                Scope(kiln_tenancy::Scope::Metadata),
            ),
            (
                Wire::Http,
                "/v2/models/m/config",
                Scope(kiln_tenancy::Scope::Metadata),
            ),
            (
                Wire::Http,
                "/v2/models/m/infer",
                Scope(kiln_tenancy::Scope::Infer),
            ),
            (
                Wire::Http,
                "/v2/models/stats",
                Scope(kiln_tenancy::Scope::Statistics),
            ),
            (
                Wire::Http,
                "/v2/repository/index",
                Scope(kiln_tenancy::Scope::Metadata),
            ),
            (
                Wire::Http,
                "/v2/repository/models/m/unload",
                Scope(kiln_tenancy::Scope::ModelControl),
            ),
            (
                Wire::Http,
                "/v2/systemsharedmemory/status",
                Scope(kiln_tenancy::Scope::SharedMemory),
            ),
            (Wire::Http, "/v2/logging", Scope(kiln_tenancy::Scope::Admin)),
            (Wire::Http, "/nowhere", Tenant),
            (Wire::Grpc, "/grpc.health.v1.Health/Check", Open),
            (
                Wire::Grpc,
                "/inference.GRPCInferenceService/ServerReady",
                Open,
            ),
            (
                Wire::Grpc,
                "/inference.GRPCInferenceService/ModelReady",
                Scope(kiln_tenancy::Scope::Metadata),
            ),
            (
                Wire::Grpc,
                "/inference.GRPCInferenceService/RepositoryIndex",
                Scope(kiln_tenancy::Scope::Metadata),
            ),
            (
                Wire::Grpc,
                "/inference.GRPCInferenceService/RepositoryModelLoad",
                Scope(kiln_tenancy::Scope::ModelControl),
            ),
            (
                Wire::Grpc,
                "/inference.GRPCInferenceService/ModelStreamInfer",
                Scope(kiln_tenancy::Scope::Infer),
            ),
            (
                Wire::Grpc,
                "/inference.GRPCInferenceService/TraceSetting",
                Scope(kiln_tenancy::Scope::Admin),
            ),
        ];
        for (wire, path, need) in cases {
            assert_eq!(required(wire, path, Api::of(wire, path)), need, "{path}");
        }
    }
}
