//! KServe v2 over HTTP/REST (axum), with Triton's binary tensor extension
//! (`Inference-Header-Content-Length`) in both directions, and the metrics
//! endpoint.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prost_reflect::{ReflectMessage, SerializeOptions};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::context::{Protocol, RequestContext, TENANT_HEADER};
use crate::error::{KilnError, Result};
use crate::inference::{self, InferRequest, InferResponse, ParamValue, RequestedOutput};
use crate::server::ServerState;
use crate::shared_memory::{Reference, SharedMemory};
use crate::tensor::{bytes_elements, element_count, encode_bytes_elements, DataType, Tensor};

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
        (
            self.0.http_status(),
            Json(json!({ "error": self.0.message() })),
        )
            .into_response()
    }
}

type HttpResult<T> = std::result::Result<T, HttpError>;

pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/v2/health/live", get(|| async { StatusCode::OK }))
        .route("/v2/health/ready", get(server_ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/stats", get(all_stats))
        .route("/v2/models/:model", get(model_metadata))
        .route("/v2/models/:model/versions/:version", get(model_metadata))
        .route("/v2/models/:model/ready", get(model_ready))
        .route(
            "/v2/models/:model/versions/:version/ready",
            get(model_ready),
        )
        .route("/v2/models/:model/config", get(model_config))
        .route(
            "/v2/models/:model/versions/:version/config",
            get(model_config),
        )
        .route("/v2/models/:model/stats", get(model_stats))
        .route(
            "/v2/models/:model/versions/:version/stats",
            get(model_stats),
        )
        .route("/v2/models/:model/infer", post(infer))
        .route("/v2/models/:model/versions/:version/infer", post(infer))
        .route(
            "/v2/repository/index",
            post(repository_index).get(repository_index),
        )
        .route("/v2/repository/models/:model/load", post(load))
        .route("/v2/repository/models/:model/unload", post(unload))
        .route("/v2/systemsharedmemory/status", get(shm_status))
        .route(
            "/v2/systemsharedmemory/region/:region/status",
            get(shm_status),
        )
        .route(
            "/v2/systemsharedmemory/region/:region/register",
            post(shm_register),
        )
        .route("/v2/systemsharedmemory/unregister", post(shm_unregister))
        .route(
            "/v2/systemsharedmemory/region/:region/unregister",
            post(shm_unregister),
        )
        .fallback(|uri: axum::http::Uri| async move { HttpError(unrouted(uri.path())) })
        // Tensors can be large (the gRPC side allows 2 GiB, so does this one).
        .layer(DefaultBodyLimit::max(i32::MAX as usize))
        // tritonclient's request_compression_algorithm (gzip / deflate).
        .layer(tower_http::decompression::RequestDecompressionLayer::new())
        .with_state(state)
}

pub fn metrics_router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): AppState| async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    s.metrics.render(),
                )
            }),
        )
        .with_state(state)
}

/// Protocol extensions kiln does not implement yet answer 501, not 404, so
/// clients can tell "not built" from "wrong URL".
fn unrouted(path: &str) -> KilnError {
    if path.starts_with("/v2/cudasharedmemory") {
        return super::cuda_shared_memory_unimplemented();
    }
    const LATER: [(&str, &str); 2] = [
        ("/v2/trace", "tracing (trace settings)"),
        ("/v2/logging", "runtime log settings (use RUST_LOG)"),
    ];
    let what = LATER
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map(|(_, what)| *what);
    match what {
        Some(what) => KilnError::unimplemented(format!("{what} is not implemented by kiln yet")),
        None if path.starts_with("/v2/models/") && path.ends_with("/trace/setting") => {
            KilnError::unimplemented("tracing (trace settings) is not implemented by kiln yet")
        }
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

async fn model_ready(State(s): AppState, Path(p): Path<HashMap<String, String>>) -> StatusCode {
    let (model, version) = path_parts(&p);
    ok_or_400(s.registry.is_ready(model, version))
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
    Path(p): Path<HashMap<String, String>>,
) -> HttpResult<Json<Value>> {
    let (model, version) = path_parts(&p);
    let m = super::model_metadata(&s, model, version)?;
    let tensors = |ts: &[crate::protocol::proto::model_metadata_response::TensorMetadata]| {
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
    Path(p): Path<HashMap<String, String>>,
) -> HttpResult<Json<Value>> {
    let (model, version) = path_parts(&p);
    let runner = s.registry.resolve(model, version)?;
    Ok(Json(proto_json(&runner.spec.config)))
}

async fn model_stats(
    State(s): AppState,
    Path(p): Path<HashMap<String, String>>,
) -> HttpResult<Json<Value>> {
    let (model, version) = path_parts(&p);
    Ok(Json(proto_json(&super::model_statistics(
        &s, model, version,
    )?)))
}

async fn all_stats(State(s): AppState) -> HttpResult<Json<Value>> {
    Ok(Json(proto_json(&super::model_statistics(&s, "", "")?)))
}

#[derive(Deserialize, Default)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

async fn repository_index(State(s): AppState, body: Bytes) -> HttpResult<Json<Value>> {
    let req: IndexRequest = if body.iter().all(u8::is_ascii_whitespace) {
        IndexRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| KilnError::invalid(format!("malformed repository index request: {e}")))?
    };
    let rows = s.registry.index(req.ready)?;
    Ok(Json(Value::Array(
        rows.into_iter()
            .map(|r| {
                let mut o = Map::new();
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
    parameters: Map<String, Value>,
}

fn parse_load_body(body: &[u8]) -> Result<LoadRequest> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(LoadRequest::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| KilnError::invalid(format!("malformed load/unload request: {e}")))
}

async fn load(
    State(s): AppState,
    Path(model): Path<String>,
    body: Bytes,
) -> HttpResult<StatusCode> {
    super::check_explicit(&s)?;
    if let Some(key) = parse_load_body(&body)?.parameters.keys().next() {
        return Err(KilnError::unimplemented(format!(
            "load parameter '{key}' (config override / inline files) is not supported yet"
        ))
        .into());
    }
    s.registry.load(&model).await?;
    Ok(StatusCode::OK)
}

async fn unload(
    State(s): AppState,
    Path(model): Path<String>,
    body: Bytes,
) -> HttpResult<StatusCode> {
    super::check_explicit(&s)?;
    parse_load_body(&body)?;
    s.registry.unload(&model).await?;
    Ok(StatusCode::OK)
}

fn caller(headers: &HeaderMap) -> RequestContext {
    let tenant = headers.get(TENANT_HEADER).and_then(|v| v.to_str().ok());
    RequestContext::new(Protocol::Http, tenant)
}

fn region_name(p: &HashMap<String, String>) -> &str {
    p.get("region").map_or("", String::as_str)
}

async fn shm_status(
    State(s): AppState,
    Path(p): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> HttpResult<Json<Value>> {
    let ctx = caller(&headers);
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
    headers: HeaderMap,
    body: Bytes,
) -> HttpResult<StatusCode> {
    let ctx = caller(&headers);
    let b: ShmRegisterBody = serde_json::from_slice(&body).map_err(|e| {
        KilnError::invalid(format!(
            "malformed system shared memory register request (expected key, offset, byte_size): {e}"
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
    headers: HeaderMap,
) -> HttpResult<StatusCode> {
    let ctx = caller(&headers);
    s.shared_memory.unregister(&ctx.identity, region_name(&p));
    Ok(StatusCode::OK)
}

/// A tensor's `shared_memory_*` parameters.
fn shared_memory_reference(name: &str, params: &Map<String, Value>) -> Result<Reference> {
    let count = |key: &str| -> Result<Option<u64>> {
        params
            .get(key)
            .map(|v| {
                v.as_u64().ok_or_else(|| {
                    KilnError::invalid(format!(
                        "tensor '{name}': parameter '{key}' must be a non-negative integer"
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
                    "tensor '{name}': parameter 'shared_memory_region' must be a string"
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

#[derive(Deserialize)]
struct JsonInferRequest {
    #[serde(default)]
    id: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<JsonInput>,
    #[serde(default)]
    outputs: Vec<JsonOutput>,
}

#[derive(Deserialize)]
struct JsonInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct JsonOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

async fn infer(
    State(s): AppState,
    Path(p): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> HttpResult<Response> {
    let (model, version) = path_parts(&p);
    let ctx = caller(&headers);
    let (request, binary_outputs) =
        parse_infer(&s.shared_memory, ctx, model, version, &headers, body)?;
    let response = inference::infer(&s.registry, request).await?;
    Ok(render_infer(response, &binary_outputs))
}

fn param_bool(params: &Map<String, Value>, key: &str) -> Option<bool> {
    params.get(key).and_then(Value::as_bool)
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
    let (json_part, mut binary) = match headers.get(HEADER_LENGTH) {
        Some(v) => {
            let n: usize = v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| {
                    KilnError::invalid(format!(
                        "header '{HEADER_LENGTH}' must be a byte count, got {v:?}"
                    ))
                })?;
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
    let req: JsonInferRequest = serde_json::from_slice(&json_part)
        .map_err(|e| KilnError::invalid(format!("malformed inference request JSON: {e}")))?;
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for input in req.inputs {
        let reference = shared_memory_reference(&input.name, &input.parameters)?;
        let datatype = DataType::from_kserve(&input.datatype).ok_or_else(|| {
            KilnError::invalid(format!(
                "input '{}': unknown datatype '{}'",
                input.name, input.datatype
            ))
        })?;
        let data = match input.parameters.get("binary_data_size") {
            _ if reference.is_used() => {
                if input.data.is_some() || input.parameters.contains_key("binary_data_size") {
                    return Err(KilnError::invalid(format!(
                        "input '{}' names a shared memory region and also carries data; send one",
                        input.name
                    )));
                }
                shared_memory.input(&ctx.identity, &input.name, &reference)?
            }
            Some(size) => {
                let size = size.as_u64().ok_or_else(|| {
                    KilnError::invalid(format!(
                        "input '{}': parameter 'binary_data_size' must be an integer",
                        input.name
                    ))
                })? as usize;
                if size > binary.len() {
                    return Err(KilnError::invalid(format!(
                        "input '{}': binary_data_size {size} exceeds the {} binary bytes left in the body",
                        input.name,
                        binary.len()
                    )));
                }
                binary.split_to(size)
            }
            None => {
                let data = input.data.as_ref().ok_or_else(|| {
                    KilnError::invalid(format!(
                        "input '{}' has neither 'data' nor a 'binary_data_size' parameter",
                        input.name
                    ))
                })?;
                json_to_bytes(&input.name, datatype, &input.shape, data)?
            }
        };
        inputs.push(Tensor::new(input.name, datatype, input.shape, data));
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
    let mut outputs = Vec::with_capacity(req.outputs.len());
    for o in req.outputs {
        let reference = shared_memory_reference(&o.name, &o.parameters)?;
        let shared_memory = shared_memory.output(&ctx.identity, &o.name, &reference)?;
        let class_count = match o.parameters.get("classification") {
            None => 0,
            Some(v) => v.as_u64().ok_or_else(|| {
                KilnError::invalid(format!(
                    "output '{}': parameter 'classification' must be a non-negative integer",
                    o.name
                ))
            })? as u32,
        };
        if let Some(b) = param_bool(&o.parameters, "binary_data") {
            encoding.per_output.insert(o.name.clone(), b);
        }
        outputs.push(RequestedOutput {
            name: o.name,
            class_count,
            shared_memory,
        });
    }
    let parameters = req
        .parameters
        .into_iter()
        .filter(|(k, _)| k != "binary_data_output")
        .filter_map(|(key, v)| {
            let value = match v {
                Value::Bool(b) => ParamValue::Bool(b),
                Value::Number(n) if n.is_i64() => ParamValue::Int(n.as_i64()?),
                Value::Number(n) => ParamValue::Double(n.as_f64()?),
                Value::String(t) => ParamValue::Text(t),
                _ => return None,
            };
            Some((key, value))
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
    };
    Ok((request, encoding))
}

struct OutputEncoding {
    default_binary: bool,
    per_output: HashMap<String, bool>,
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

fn json_to_bytes(name: &str, datatype: DataType, shape: &[i64], data: &Value) -> Result<Bytes> {
    let mut values = Vec::new();
    flatten(data, &mut values);
    let expected = element_count(shape)
        .ok_or_else(|| KilnError::invalid(format!("input '{name}': invalid shape {shape:?}")))?;
    if values.len() != expected {
        return Err(KilnError::invalid(format!(
            "input '{name}': shape {shape:?} needs {expected} elements, 'data' has {}",
            values.len()
        )));
    }
    let bad = |v: &Value| {
        KilnError::invalid(format!(
            "input '{name}': value {v} is not a valid {datatype}"
        ))
    };
    let mut out = Vec::with_capacity(values.len() * datatype.element_size().unwrap_or(8));
    macro_rules! ints {
        ($t:ty) => {
            for v in &values {
                let x = v
                    .as_i64()
                    .and_then(|x| <$t>::try_from(x).ok())
                    .or_else(|| v.as_u64().and_then(|x| <$t>::try_from(x).ok()))
                    .ok_or_else(|| bad(v))?;
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match datatype {
        DataType::Bool => {
            for v in &values {
                out.push(v.as_bool().ok_or_else(|| bad(v))? as u8);
            }
        }
        DataType::Uint8 => ints!(u8),
        DataType::Uint16 => ints!(u16),
        DataType::Uint32 => ints!(u32),
        DataType::Uint64 => ints!(u64),
        DataType::Int8 => ints!(i8),
        DataType::Int16 => ints!(i16),
        DataType::Int32 => ints!(i32),
        DataType::Int64 => ints!(i64),
        DataType::Fp16 | DataType::Bf16 | DataType::Fp32 | DataType::Fp64 => {
            for v in &values {
                let x = v.as_f64().ok_or_else(|| bad(v))?;
                match datatype {
                    DataType::Fp16 => out.extend_from_slice(&half::f16::from_f64(x).to_le_bytes()),
                    DataType::Bf16 => out.extend_from_slice(&half::bf16::from_f64(x).to_le_bytes()),
                    DataType::Fp32 => out.extend_from_slice(&(x as f32).to_le_bytes()),
                    _ => out.extend_from_slice(&x.to_le_bytes()),
                }
            }
        }
        DataType::Bytes => {
            let strings: Vec<&str> = values
                .iter()
                .map(|v| v.as_str().ok_or_else(|| bad(v)))
                .collect::<Result<_>>()?;
            out = encode_bytes_elements(strings.iter().map(|s| s.as_bytes()));
        }
    }
    Ok(Bytes::from(out))
}

fn bytes_to_json(t: &Tensor) -> Value {
    let d = &t.data;
    macro_rules! nums {
        ($t:ty, $n:expr) => {
            d.chunks_exact($n)
                .map(|c| json!(<$t>::from_le_bytes(c.try_into().unwrap())))
                .collect()
        };
    }
    let values: Vec<Value> = match t.datatype {
        DataType::Bool => d.iter().map(|&b| json!(b != 0)).collect(),
        DataType::Uint8 => nums!(u8, 1),
        DataType::Uint16 => nums!(u16, 2),
        DataType::Uint32 => nums!(u32, 4),
        DataType::Uint64 => nums!(u64, 8),
        DataType::Int8 => nums!(i8, 1),
        DataType::Int16 => nums!(i16, 2),
        DataType::Int32 => nums!(i32, 4),
        DataType::Int64 => nums!(i64, 8),
        DataType::Fp16 => d
            .chunks_exact(2)
            .map(|c| json!(half::f16::from_le_bytes([c[0], c[1]]).to_f32()))
            .collect(),
        DataType::Bf16 => d
            .chunks_exact(2)
            .map(|c| json!(half::bf16::from_le_bytes([c[0], c[1]]).to_f32()))
            .collect(),
        DataType::Fp32 => nums!(f32, 4),
        DataType::Fp64 => nums!(f64, 8),
        DataType::Bytes => bytes_elements(d)
            .unwrap_or_default()
            .into_iter()
            .map(|e| json!(String::from_utf8_lossy(e)))
            .collect(),
    };
    Value::Array(values)
}

fn render_infer(r: InferResponse, encoding: &OutputEncoding) -> Response {
    let mut outputs = Vec::with_capacity(r.outputs.len());
    let mut blobs: Vec<bytes::Bytes> = Vec::new();
    for output in r.outputs {
        let t = output.tensor;
        if output.in_shared_memory {
            outputs.push(
                json!({ "name": t.name, "datatype": t.datatype.kserve_name(), "shape": t.shape }),
            );
            continue;
        }
        let binary = encoding
            .per_output
            .get(&t.name)
            .copied()
            .unwrap_or(encoding.default_binary);
        let mut o =
            json!({ "name": t.name, "datatype": t.datatype.kserve_name(), "shape": t.shape });
        if binary {
            o["parameters"] = json!({ "binary_data_size": t.data.len() });
            blobs.push(t.data);
        } else {
            o["data"] = bytes_to_json(&t);
        }
        outputs.push(o);
    }
    let mut head =
        json!({ "model_name": r.model_name, "model_version": r.model_version, "outputs": outputs });
    if !r.id.is_empty() {
        head["id"] = json!(r.id);
    }
    let head = serde_json::to_vec(&head).expect("JSON values serialize");
    if blobs.is_empty() {
        return ([(header::CONTENT_TYPE, "application/json")], head).into_response();
    }
    let head_len = head.len();
    let mut parts = vec![bytes::Bytes::from(head)];
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
    fn json_data_accepts_nested_and_flat_arrays() {
        let b = json_to_bytes("x", DataType::Int32, &[2, 2], &json!([[1, 2], [3, -4]])).unwrap();
        assert_eq!(b.len(), 16);
        assert_eq!(i32::from_le_bytes(b[12..16].try_into().unwrap()), -4);
        let e = json_to_bytes("x", DataType::Int8, &[1], &json!([300])).unwrap_err();
        assert!(e.message().contains("'x'"));
        let e = json_to_bytes("x", DataType::Fp32, &[3], &json!([1.0])).unwrap_err();
        assert!(e.message().contains("3 elements"), "{e}");
    }

    #[test]
    fn bytes_round_trip_through_json() {
        let b = json_to_bytes("s", DataType::Bytes, &[2], &json!(["", "héllo"])).unwrap();
        let t = Tensor::new("s", DataType::Bytes, vec![2], b);
        assert_eq!(bytes_to_json(&t), json!(["", "héllo"]));
    }

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
}
