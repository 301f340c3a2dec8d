//! KServe v2 over HTTP/REST (axum), with Triton's binary tensor extension
//! (`Inference-Header-Content-Length`) in both directions, and the metrics
//! endpoint.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Extension;
use axum::{Json, Router};
use prost_reflect::{ReflectMessage, SerializeOptions};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::shared_memory::{Reference, SharedMemory};
use crate::ServerState;
use crate::{json, off_the_runtime};
use kiln_pipeline::{self as inference, InferRequest, InferResponse, RequestedOutput};
use kiln_types::context::RequestContext;
use kiln_types::error::{KilnError, Result};
use kiln_types::tensor::{element_count, DataType, Tensor};
use kiln_types::text::clip;
use kiln_types::ParamValue;

pub const HEADER_LENGTH: &str = "inference-header-content-length";

type AppState = State<Arc<ServerState>>;

/// An error answered as `{"error": "..."}` with the matching status code.
pub struct HttpError(KilnError);

impl From<KilnError> for HttpError {
    fn from(e: KilnError) -> Self {
        Self(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = super::status::http_code(&self.0);
        (status, Json(json!({ "error": self.0.into_message() }))).into_response()
    }
}

/// The body of a request, or the error it gets: over
/// `--http-max-input-size` (after decompression) is 413, a body that cannot
/// be read or decompressed is 400, both as `{"error": ...}`.
fn body_or_error(body: std::result::Result<Bytes, BytesRejection>) -> Result<Bytes> {
    body.map_err(|rejection| {
        let limit = crate::limits::get().http_max_input_size;
        let too_large = matches!(&rejection, BytesRejection::FailedToBufferBody(f)
            if matches!(f, axum::extract::rejection::FailedToBufferBody::LengthLimitError(_)));
        if too_large {
            KilnError::too_large(format!(
                "request body is larger than the {limit} bytes this server accepts (--http-max-input-size)"
            ))
        } else {
            KilnError::invalid(format!("cannot read the request body: {}", clip(&rejection.body_text())))
        }
    })
}

type HttpResult<T> = std::result::Result<T, HttpError>;

pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/v2/health/live", get(|| async { StatusCode::OK }))
        .route("/v2/health/ready", get(server_ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/stats", get(all_stats))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/versions/{version}", get(model_metadata))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(model_ready),
        )
        .route("/v2/models/{model}/config", get(model_config))
        .route(
            "/v2/models/{model}/versions/{version}/config",
            get(model_config),
        )
        .route("/v2/models/{model}/stats", get(model_stats))
        .route(
            "/v2/models/{model}/versions/{version}/stats",
            get(model_stats),
        )
        .route("/v2/trace/setting", get(trace_setting).post(trace_setting))
        .route(
            "/v2/models/{model}/trace/setting",
            get(trace_setting).post(trace_setting),
        )
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer))
        .route(
            "/v2/repository/index",
            post(repository_index).get(repository_index),
        )
        .route("/v2/repository/models/{model}/load", post(load))
        .route("/v2/repository/models/{model}/unload", post(unload))
        .route("/v2/systemsharedmemory/status", get(shm_status))
        .route(
            "/v2/systemsharedmemory/region/{region}/status",
            get(shm_status),
        )
        .route(
            "/v2/systemsharedmemory/region/{region}/register",
            post(shm_register),
        )
        .route("/v2/systemsharedmemory/unregister", post(shm_unregister))
        .route(
            "/v2/systemsharedmemory/region/{region}/unregister",
            post(shm_unregister),
        )
        .fallback(|uri: axum::http::Uri| async move { HttpError(unrouted(uri.path())) })
        // After decompression: the limit applies to the inflated body.
        .layer(DefaultBodyLimit::max(
            crate::limits::get().http_max_input_size,
        ))
        // tritonclient's request_compression_algorithm (gzip / deflate).
        .layer(tower_http::decompression::RequestDecompressionLayer::new())
        .with_state(state)
}

/// Protocol extensions kiln does not implement yet answer 501, not 404, so
/// clients can tell "not built" from "wrong URL".
fn unrouted(path: &str) -> KilnError {
    if path.starts_with("/v2/cudasharedmemory") {
        return super::cuda_shared_memory_unimplemented();
    }
    const LATER: [(&str, &str); 1] = [("/v2/logging", "runtime log settings (use RUST_LOG)")];
    let what = LATER
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map(|(_, what)| *what);
    match what {
        Some(what) => KilnError::unimplemented(format!("{what} is not implemented by kiln yet")),
        None => KilnError::not_found(format!("no route for {path}")),
    }
}

fn path_parts(p: &HashMap<String, String>) -> (&str, &str) {
    (
        p.get("model").map_or("", String::as_str),
        p.get("version").map_or("", String::as_str),
    )
}

fn ok_or_400(ready: bool) -> StatusCode {
    if ready {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    }
}

async fn server_ready(State(s): AppState) -> StatusCode {
    ok_or_400(s.is_ready())
}

async fn server_metadata() -> Json<Value> {
    Json(
        json!({ "name": super::SERVER_NAME, "version": env!("CARGO_PKG_VERSION"), "extensions": super::EXTENSIONS }),
    )
}

/// 200 when ready; otherwise 400 with `{"error": ...}` saying why (unknown,
/// unloaded, failed, loading), as Triton answers.
async fn model_ready(
    State(s): AppState,
    Extension(ctx): Extension<RequestContext>,
    Path(p): Path<HashMap<String, String>>,
) -> HttpResult<StatusCode> {
    let (model, version) = path_parts(&p);
    match s.namespace(&ctx).resolve(model, version) {
        Ok(_) => Ok(StatusCode::OK),
        Err(e) => Err(KilnError::invalid(e.into_message()).into()),
    }
}

/// Renders a generated message as Triton's JSON: proto field names, 64-bit
/// integers as numbers, defaults included.
fn proto_json<M: ReflectMessage>(m: &M) -> Value {
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .skip_default_fields(false);
    m.transcode_to_dynamic()
        .serialize_with_options(serde_json::value::Serializer, &options)
        .unwrap_or(Value::Null)
}

async fn model_metadata(
    State(s): AppState,
    Extension(ctx): Extension<RequestContext>,
    Path(p): Path<HashMap<String, String>>,
) -> HttpResult<Json<Value>> {
    let (model, version) = path_parts(&p);
    let m = super::model_metadata(&s.namespace(&ctx), model, version)?;
    let tensors = |ts: &[crate::proto::model_metadata_response::TensorMetadata]| {
        ts.iter()
            .map(|t| json!({ "name": t.name, "datatype": t.datatype, "shape": t.shape }))
            .collect::<Vec<_>>()
    };
    Ok(Json(
        json!({ "name": m.name, "versions": m.versions, "platform": m.platform, "inputs": tensors(&m.inputs), "outputs": tensors(&m.outputs) }),
    ))
}

async fn model_config(
    State(s): AppState,
    Extension(ctx): Extension<RequestContext>,
    Path(p): Path<HashMap<String, String>>,
) -> HttpResult<Json<Value>> {
    let (model, version) = path_parts(&p);
    let runner = s.namespace(&ctx).resolve(model, version)?;
    Ok(Json(proto_json(&runner.spec.config)))
}

async fn model_stats(
    State(s): AppState,
    Extension(ctx): Extension<RequestContext>,
    Path(p): Path<HashMap<String, String>>,
) -> HttpResult<Json<Value>> {
    let (model, version) = path_parts(&p);
    Ok(Json(proto_json(&super::model_statistics(
        &s.namespace(&ctx),
        model,
        version,
    )?)))
}

async fn all_stats(
    State(s): AppState,
    Extension(ctx): Extension<RequestContext>,
) -> HttpResult<Json<Value>> {
    Ok(Json(proto_json(&super::model_statistics(
        &s.namespace(&ctx),
        "",
        "",
    )?)))
}

#[derive(Deserialize, Default)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

/// A small JSON request body (the control-plane routes): empty means
/// defaults; serde's message is clipped, it can quote the body.
fn parse_small_body<T: serde::de::DeserializeOwned + Default>(
    body: std::result::Result<Bytes, BytesRejection>,
    what: &str,
) -> Result<T> {
    let body = body_or_error(body)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&body).map_err(|e| {
        KilnError::invalid(format!(
            "malformed {what} request: {}",
            clip(&e.to_string())
        ))
    })
}

/// Triton's trace extension: GET reads, POST updates then reads.
async fn trace_setting(
    State(s): AppState,
    Path(p): Path<HashMap<String, String>>,
    Extension(ctx): Extension<RequestContext>,
    method: axum::http::Method,
    body: std::result::Result<Bytes, BytesRejection>,
) -> HttpResult<Json<Value>> {
    let model = p.get("model").map(String::as_str);
    let update = if method == axum::http::Method::POST {
        let body = body_or_error(body)?;
        Some(crate::trace_setting::update_from_json(
            &body,
            s.tracing.mode(),
        )?)
    } else {
        None
    };
    let settings = crate::trace_setting::trace_setting(&s, &ctx, model, update)?;
    let mut o = serde_json::Map::new();
    for (name, values) in settings {
        // Levels are an array; every other setting one string.
        let value = if name == "trace_level" {
            Value::from(values)
        } else {
            Value::from(values.into_iter().next().unwrap_or_default())
        };
        o.insert(name.into(), value);
    }
    Ok(Json(Value::Object(o)))
}

async fn repository_index(
    State(s): AppState,
    Extension(ctx): Extension<RequestContext>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> HttpResult<Json<Value>> {
    let req: IndexRequest = parse_small_body(body, "repository index")?;
    let rows = s.namespace(&ctx).index(req.ready)?;
    Ok(Json(Value::Array(
        rows.into_iter()
            .map(|r| {
                let mut o = serde_json::Map::new();
                o.insert("name".into(), r.name.into());
                for (k, v) in [
                    ("version", r.version),
                    ("state", r.state),
                    ("reason", r.reason),
                ] {
                    if !v.is_empty() {
                        o.insert(k.into(), v.into());
                    }
                }
                Value::Object(o)
            })
            .collect(),
    )))
}

#[derive(Deserialize, Default)]
struct LoadRequest {
    #[serde(default)]
    parameters: json::Parameters,
}

async fn load(
    State(s): AppState,
    Extension(ctx): Extension<RequestContext>,
    Path(model): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> HttpResult<StatusCode> {
    let req: LoadRequest = parse_small_body(body, "load")?;
    if let Some((key, _)) = req.parameters.0.first() {
        return Err(KilnError::unimplemented(format!(
            "load parameter '{}' (config override / inline files) is not supported yet",
            clip(key)
        ))
        .into());
    }
    super::model_control(&s, &ctx, super::Control::Load, &model).await?;
    Ok(StatusCode::OK)
}

async fn unload(
    State(s): AppState,
    Extension(ctx): Extension<RequestContext>,
    Path(model): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> HttpResult<StatusCode> {
    let _: LoadRequest = parse_small_body(body, "unload")?;
    super::model_control(&s, &ctx, super::Control::Unload, &model).await?;
    Ok(StatusCode::OK)
}

fn region_name(p: &HashMap<String, String>) -> &str {
    p.get("region").map_or("", String::as_str)
}

async fn shm_status(
    State(s): AppState,
    Path(p): Path<HashMap<String, String>>,
    Extension(ctx): Extension<RequestContext>,
) -> HttpResult<Json<Value>> {
    let regions = s.shared_memory.status(&ctx.identity, region_name(&p))?;
    Ok(Json(Value::Array(
        regions
            .iter()
            .map(|r| json!({ "name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size }))
            .collect(),
    )))
}

#[derive(Deserialize)]
struct ShmRegisterBody {
    key: String,
    #[serde(default)]
    offset: u64,
    byte_size: u64,
}

async fn shm_register(
    State(s): AppState,
    Path(p): Path<HashMap<String, String>>,
    Extension(ctx): Extension<RequestContext>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> HttpResult<StatusCode> {
    let body = body_or_error(body)?;
    let b: ShmRegisterBody = serde_json::from_slice(&body).map_err(|e| {
        KilnError::invalid(format!(
            "malformed system shared memory register request (expected key, offset, byte_size): {}",
            clip(&e.to_string())
        ))
    })?;
    s.shared_memory.register(
        &ctx.identity,
        region_name(&p),
        &b.key,
        b.offset,
        b.byte_size,
    )?;
    Ok(StatusCode::OK)
}

async fn shm_unregister(
    State(s): AppState,
    Path(p): Path<HashMap<String, String>>,
    Extension(ctx): Extension<RequestContext>,
) -> HttpResult<StatusCode> {
    s.shared_memory.unregister(&ctx.identity, region_name(&p));
    Ok(StatusCode::OK)
}

/// A tensor's `shared_memory_*` parameters.
fn shared_memory_reference(name: &str, params: &json::Parameters) -> Result<Reference> {
    let count = |key: &str| -> Result<Option<u64>> {
        params
            .get(key)
            .map(|v| {
                v.as_u64().ok_or_else(|| {
                    KilnError::invalid(format!(
                        "tensor '{}': parameter '{key}' must be a non-negative integer",
                        clip(name)
                    ))
                })
            })
            .transpose()
    };
    let region = params
        .get("shared_memory_region")
        .map(|v| {
            v.as_str().map(str::to_string).ok_or_else(|| {
                KilnError::invalid(format!(
                    "tensor '{}': parameter 'shared_memory_region' must be a string",
                    clip(name)
                ))
            })
        })
        .transpose()?;
    Ok(Reference {
        region,
        byte_size: count("shared_memory_byte_size")?,
        offset: count("shared_memory_offset")?,
    })
}

async fn infer(
    State(s): AppState,
    Path(p): Path<HashMap<String, String>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> HttpResult<Response> {
    let body = body_or_error(body)?;
    let (model, version) = path_parts(&p);
    let namespace = s.namespace(&ctx);
    let (mut request, binary_outputs) = off_the_runtime(body.len(), || {
        parse_infer(&s.shared_memory, ctx, model, version, &headers, body)
    })?;
    let trace = s.sample_trace(&mut request);
    let response = inference::infer(namespace.as_ref(), request).await?;
    let answer = off_the_runtime(response_size(&response), || {
        render_infer(response, &binary_outputs)
    });
    // The request's root span ends once the answer is encoded.
    drop(trace);
    Ok(answer)
}

fn response_size(r: &InferResponse) -> usize {
    r.outputs.iter().map(|o| o.tensor.data.len()).sum()
}

/// Parses a JSON or JSON+binary inference request. Returns the request and,
/// per requested output name, whether to answer it in binary.
fn parse_infer(
    shared_memory: &SharedMemory,
    ctx: RequestContext,
    model: &str,
    version: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(InferRequest, OutputEncoding)> {
    let header_length = headers
        .get(HEADER_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| {
                    KilnError::invalid(format!(
                        "header '{HEADER_LENGTH}' must be a byte count, got {:?}",
                        clip(&String::from_utf8_lossy(v.as_bytes()))
                    ))
                })
        })
        .transpose()?;
    parse_body(shared_memory, ctx, model, version, header_length, body)
}

/// The body of an inference request with its JSON head's length (the
/// `Inference-Header-Content-Length` header), for the fuzz targets.
pub fn parse_infer_body(
    shared_memory: &SharedMemory,
    ctx: RequestContext,
    header_length: Option<usize>,
    body: Bytes,
) -> Result<InferRequest> {
    parse_body(shared_memory, ctx, "", "", header_length, body).map(|(r, _)| r)
}

fn parse_body(
    shared_memory: &SharedMemory,
    ctx: RequestContext,
    model: &str,
    version: &str,
    header_length: Option<usize>,
    body: Bytes,
) -> Result<(InferRequest, OutputEncoding)> {
    let (json_part, mut binary) = match header_length {
        Some(n) => {
            if n > body.len() {
                return Err(KilnError::invalid(format!(
                    "header '{HEADER_LENGTH}' is {n} but the body has only {} bytes",
                    body.len()
                )));
            }
            (body.slice(..n), body.slice(n..))
        }
        None => (body.clone(), Bytes::new()),
    };
    let req = json::parse_request(&json_part)?;
    let mut inputs = Vec::with_capacity(req.inputs.0.len());
    for input in req.inputs.0 {
        let name = input.name;
        let reference = shared_memory_reference(&name, &input.parameters)?;
        let datatype = DataType::from_kserve(&input.datatype).ok_or_else(|| {
            KilnError::invalid(format!(
                "input '{}': unknown datatype '{}'",
                clip(&name),
                clip(&input.datatype)
            ))
        })?;
        let shape = input.shape.0;
        let data = match input.parameters.get("binary_data_size") {
            _ if reference.is_used() => {
                if input.data.is_some() || input.parameters.get("binary_data_size").is_some() {
                    return Err(KilnError::invalid(format!(
                        "input '{}' names a shared memory region and also carries data; send one",
                        clip(&name)
                    )));
                }
                let max = crate::limits::get().http_max_input_size;
                shared_memory.input(&ctx.identity, &name, &reference, max)?
            }
            Some(size) => {
                let size = size.as_u64().ok_or_else(|| {
                    KilnError::invalid(format!(
                        "input '{}': parameter 'binary_data_size' must be a non-negative integer",
                        clip(&name)
                    ))
                })?;
                if size > binary.len() as u64 {
                    return Err(KilnError::invalid(format!(
                        "input '{}': binary_data_size {size} exceeds the {} binary bytes left in the body",
                        clip(&name),
                        binary.len()
                    )));
                }
                binary.split_to(size as usize)
            }
            None => {
                let data = input.data.ok_or_else(|| {
                    KilnError::invalid(format!(
                        "input '{}' has neither 'data' nor a 'binary_data_size' parameter",
                        clip(&name)
                    ))
                })?;
                let expected = element_count(&shape).ok_or_else(|| {
                    KilnError::invalid(format!(
                        "input '{}': invalid shape {shape:?}: dims must be non-negative and their product must fit in 64 bits",
                        clip(&name)
                    ))
                })?;
                Bytes::from(json::decode_data(&name, datatype, expected, data)?)
            }
        };
        inputs.push(Tensor::new(name, datatype, shape, data));
    }
    if !binary.is_empty() {
        return Err(KilnError::invalid(format!(
            "{} binary bytes in the body are not claimed by any input's binary_data_size",
            binary.len()
        )));
    }
    let all_binary = param_bool(&req.parameters, "binary_data_output").unwrap_or(false);
    let mut encoding = OutputEncoding {
        default_binary: all_binary,
        per_output: HashMap::new(),
    };
    let mut outputs = Vec::with_capacity(req.outputs.0.len());
    for o in req.outputs.0 {
        let reference = shared_memory_reference(&o.name, &o.parameters)?;
        let shared_memory = shared_memory.output(&ctx.identity, &o.name, &reference)?;
        let class_count = match o.parameters.get("classification") {
            None => 0,
            Some(v) => v.as_u64().ok_or_else(|| {
                KilnError::invalid(format!(
                    "output '{}': parameter 'classification' must be a non-negative integer",
                    clip(&o.name)
                ))
            })?,
        };
        if let Some(b) = param_bool(&o.parameters, "binary_data") {
            encoding.per_output.insert(o.name.clone(), b);
        }
        outputs.push(RequestedOutput {
            name: o.name,
            class_count,
            destination: shared_memory,
        });
    }
    let parameters = req
        .parameters
        .0
        .into_iter()
        .filter(|(k, _)| k != "binary_data_output")
        .map(|(key, v)| {
            let value = match v {
                json::Scalar::Bool(b) => ParamValue::Bool(b),
                json::Scalar::Int(i) => ParamValue::Int(i),
                json::Scalar::Uint(u) => ParamValue::Int(i64::try_from(u).unwrap_or(i64::MAX)),
                json::Scalar::Double(d) => ParamValue::Double(d),
                json::Scalar::Text(t) => ParamValue::Text(t),
            };
            (key, value)
        })
        .collect();
    let request = InferRequest {
        ctx,
        model_name: model.to_string(),
        model_version: version.to_string(),
        id: req.id,
        inputs,
        outputs,
        parameters,
        trace: None,
    };
    Ok((request, encoding))
}

fn param_bool(params: &json::Parameters, key: &str) -> Option<bool> {
    params.get(key).and_then(json::Scalar::as_bool)
}

struct OutputEncoding {
    default_binary: bool,
    per_output: HashMap<String, bool>,
}

/// The JSON head of an inference response.
#[derive(serde::Serialize)]
struct ResponseHead<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'a str,
    outputs: Vec<OutputHead<'a>>,
}

#[derive(serde::Serialize)]
struct OutputHead<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<json::DataJson<'a>>,
}

#[derive(serde::Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

fn render_infer(r: InferResponse, encoding: &OutputEncoding) -> Response {
    let mut blobs: Vec<Bytes> = Vec::new();
    let mut heads = Vec::with_capacity(r.outputs.len());
    for output in &r.outputs {
        let t = &output.tensor;
        let binary = !output.in_shared_memory
            && encoding
                .per_output
                .get(&t.name)
                .copied()
                .unwrap_or(encoding.default_binary);
        if binary {
            blobs.push(t.data.clone());
        }
        heads.push(OutputHead {
            name: &t.name,
            datatype: t.datatype.kserve_name(),
            shape: &t.shape,
            parameters: binary.then(|| BinarySize {
                binary_data_size: t.data.len(),
            }),
            data: (!binary && !output.in_shared_memory).then_some(json::DataJson(t)),
        });
    }
    let head = ResponseHead {
        model_name: &r.model_name,
        model_version: &r.model_version,
        id: &r.id,
        outputs: heads,
    };
    let head = serde_json::to_vec(&head).expect("a response head serializes");
    if blobs.is_empty() {
        return ([(header::CONTENT_TYPE, "application/json")], head).into_response();
    }
    let head_len = head.len();
    let mut parts = vec![Bytes::from(head)];
    parts.extend(blobs);
    let stream = futures::stream::iter(parts.into_iter().map(Ok::<_, std::convert::Infallible>));
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(HEADER_LENGTH, HeaderValue::from(head_len));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_inputs_are_sliced_from_the_body() {
        let head = br#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}],"outputs":[{"name":"o","parameters":{"binary_data":true}}]}"#;
        let mut body = head.to_vec();
        body.extend_from_slice(&[0u8; 8]);
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_LENGTH, HeaderValue::from(head.len()));
        let shm = SharedMemory::default();
        let (req, enc) = parse_infer(
            &shm,
            RequestContext::internal(),
            "m",
            "",
            &headers,
            Bytes::from(body.clone()),
        )
        .unwrap();
        assert_eq!(req.inputs[0].data.len(), 8);
        assert_eq!(enc.per_output.get("o"), Some(&true));
        body.push(1);
        assert!(parse_infer(
            &shm,
            RequestContext::internal(),
            "m",
            "",
            &headers,
            Bytes::from(body)
        )
        .is_err());
    }

    #[test]
    fn json_inputs_and_outputs_round_trip() {
        let body = br#"{"id":"7","inputs":[{"name":"s","shape":[2],"datatype":"BYTES","data":["","h\u00e9llo"]},{"name":"f","shape":[1,2],"datatype":"FP32","data":[[0.1,2]]}]}"#;
        let (req, enc) = parse_infer(
            &SharedMemory::default(),
            RequestContext::internal(),
            "m",
            "",
            &HeaderMap::new(),
            Bytes::from_static(body),
        )
        .unwrap();
        let outputs = req
            .inputs
            .into_iter()
            .map(|tensor| inference::ResponseOutput {
                tensor,
                in_shared_memory: false,
            })
            .collect();
        let response = InferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: req.id,
            outputs,
        };
        let rendered = render_infer(response, &enc);
        assert_eq!(rendered.status(), StatusCode::OK);
        let body = futures::executor::block_on(axum::body::to_bytes(rendered.into_body(), 1 << 20))
            .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], "7");
        assert_eq!(v["outputs"][0]["data"], json!(["", "héllo"]));
        assert_eq!(v["outputs"][1]["data"], json!([0.1, 2.0]));
        assert!(std::str::from_utf8(&body).unwrap().contains("[0.1,2.0]"));
    }
}
