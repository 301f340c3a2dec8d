//! `inference.GRPCInferenceService` (tonic), wire-identical to Triton's, plus
//! `grpc.health.v1.Health`.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::cuda_shared_memory_unimplemented;
use super::proto::{
    self, grpc_inference_service_server::GrpcInferenceService, infer_parameter::ParameterChoice,
};
use super::status::grpc_status;
use crate::shared_memory::{Reference, SharedMemory};
use crate::ServerState;
use kiln_pipeline::{self as inference, InferRequest, InferResponse, RequestedOutput};
use kiln_types::context::RequestContext;
use kiln_types::error::{KilnError, Result};
use kiln_types::tensor::{encode_bytes_elements, DataType, Tensor};
use kiln_types::text::clip;
use kiln_types::ParamValue;

pub struct GrpcService {
    state: Arc<ServerState>,
}

pub fn service(
    state: Arc<ServerState>,
) -> proto::grpc_inference_service_server::GrpcInferenceServiceServer<GrpcService> {
    let limits = crate::limits::get();
    proto::grpc_inference_service_server::GrpcInferenceServiceServer::new(GrpcService { state })
        // After decompression (tonic >= 0.14.3 checks the inflated size).
        .max_decoding_message_size(limits.grpc_max_input_size)
        // Clients (tritonclient, perf_analyzer) accept up to INT32_MAX.
        // Compressed requests (tritonclient's compression_algorithm) are
        // inflated before they get here (grpc_compression.rs); replies stay
        // uncompressed (Triton's default): grpc clients advertise gzip on
        // every call, and compressing every tensor would cost CPU on the hot
        // path.
        .max_encoding_message_size(i32::MAX as usize)
}

fn unimplemented<T>(what: &str) -> std::result::Result<Response<T>, Status> {
    Err(Status::unimplemented(format!(
        "{what} is not implemented by kiln yet"
    )))
}

/// Converts typed `contents` to little-endian bytes for `datatype`.
fn typed_contents(name: &str, datatype: DataType, c: proto::InferTensorContents) -> Result<Bytes> {
    fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Bytes {
        Bytes::from(v.iter().flat_map(|&x| f(x)).collect::<Vec<u8>>())
    }
    let field = match datatype {
        DataType::Bool => "bool_contents",
        DataType::Int8 | DataType::Int16 | DataType::Int32 => "int_contents",
        DataType::Int64 => "int64_contents",
        DataType::Uint8 | DataType::Uint16 | DataType::Uint32 => "uint_contents",
        DataType::Uint64 => "uint64_contents",
        DataType::Fp32 => "fp32_contents",
        DataType::Fp64 => "fp64_contents",
        DataType::Bytes => "bytes_contents",
        DataType::Fp16 | DataType::Bf16 => {
            return Err(KilnError::invalid(format!(
                "input '{}': {datatype} has no typed contents field; send it in raw_input_contents",
                clip(name)
            )))
        }
    };
    let used = [
        ("bool_contents", c.bool_contents.len()),
        ("int_contents", c.int_contents.len()),
        ("int64_contents", c.int64_contents.len()),
        ("uint_contents", c.uint_contents.len()),
        ("uint64_contents", c.uint64_contents.len()),
        ("fp32_contents", c.fp32_contents.len()),
        ("fp64_contents", c.fp64_contents.len()),
        ("bytes_contents", c.bytes_contents.len()),
    ];
    if let Some((wrong, _)) = used.iter().find(|(f, n)| *n > 0 && *f != field) {
        return Err(KilnError::invalid(format!(
            "input '{}' of datatype {datatype} must use '{field}', not '{wrong}'",
            clip(name)
        )));
    }
    Ok(match datatype {
        DataType::Bool => le(&c.bool_contents, |b| [b as u8]),
        DataType::Int8 => le(&c.int_contents, |v| (v as i8).to_le_bytes()),
        DataType::Int16 => le(&c.int_contents, |v| (v as i16).to_le_bytes()),
        DataType::Int32 => le(&c.int_contents, i32::to_le_bytes),
        DataType::Int64 => le(&c.int64_contents, i64::to_le_bytes),
        DataType::Uint8 => le(&c.uint_contents, |v| (v as u8).to_le_bytes()),
        DataType::Uint16 => le(&c.uint_contents, |v| (v as u16).to_le_bytes()),
        DataType::Uint32 => le(&c.uint_contents, u32::to_le_bytes),
        DataType::Uint64 => le(&c.uint64_contents, u64::to_le_bytes),
        DataType::Fp32 => le(&c.fp32_contents, f32::to_le_bytes),
        DataType::Fp64 => le(&c.fp64_contents, f64::to_le_bytes),
        DataType::Bytes => Bytes::from(encode_bytes_elements(
            c.bytes_contents.iter().map(|b| b.as_ref()),
        )),
        DataType::Fp16 | DataType::Bf16 => unreachable!("rejected above"),
    })
}

/// A tensor's `shared_memory_*` parameters.
fn shared_memory_reference(
    name: &str,
    params: &std::collections::HashMap<String, proto::InferParameter>,
) -> Result<Reference> {
    let count = |key: &str, p: &proto::InferParameter| match p.parameter_choice {
        Some(ParameterChoice::Int64Param(n)) if n >= 0 => Ok(n as u64),
        Some(ParameterChoice::Uint64Param(n)) => Ok(n),
        _ => Err(KilnError::invalid(format!(
            "tensor '{}': parameter '{key}' must be a non-negative integer",
            clip(name)
        ))),
    };
    let mut r = Reference::default();
    for (key, p) in params {
        match key.as_str() {
            "shared_memory_region" => match &p.parameter_choice {
                Some(ParameterChoice::StringParam(region)) => r.region = Some(region.clone()),
                _ => {
                    return Err(KilnError::invalid(format!(
                        "tensor '{}': parameter 'shared_memory_region' must be a string",
                        clip(name)
                    )))
                }
            },
            "shared_memory_byte_size" => r.byte_size = Some(count(key, p)?),
            "shared_memory_offset" => r.offset = Some(count(key, p)?),
            _ => {}
        }
    }
    Ok(r)
}

/// Roughly the bytes `to_infer_request` copies: typed contents become new
/// buffers, shared-memory windows are read (raw contents are not copied).
fn conversion_cost(req: &proto::ModelInferRequest) -> usize {
    req.inputs
        .iter()
        .map(|i| {
            let typed = i.contents.as_ref().map_or(0, |c| {
                c.bool_contents.len()
                    + 4 * (c.int_contents.len() + c.uint_contents.len() + c.fp32_contents.len())
                    + 8 * (c.int64_contents.len() + c.uint64_contents.len() + c.fp64_contents.len())
                    + c.bytes_contents.iter().map(|b| b.len() + 4).sum::<usize>()
            });
            let shared = match i.parameters.get("shared_memory_byte_size") {
                Some(proto::InferParameter {
                    parameter_choice: Some(ParameterChoice::Int64Param(n)),
                }) => usize::try_from(*n).unwrap_or(0),
                Some(proto::InferParameter {
                    parameter_choice: Some(ParameterChoice::Uint64Param(n)),
                }) => usize::try_from(*n).unwrap_or(0),
                _ => 0,
            };
            typed + shared
        })
        .sum()
}

pub fn to_infer_request(
    shared_memory: &SharedMemory,
    ctx: RequestContext,
    req: proto::ModelInferRequest,
) -> Result<InferRequest> {
    // Inputs in shared memory have no raw_input_contents entry (tritonclient
    // sends none), so the raw entries belong to the other inputs, in order.
    let mut references = Vec::with_capacity(req.inputs.len());
    for input in &req.inputs {
        references.push(shared_memory_reference(&input.name, &input.parameters)?);
    }
    let in_band = references.iter().filter(|r| !r.is_used()).count();
    let raw = req.raw_input_contents;
    if !raw.is_empty() {
        if let Some(typed) = req.inputs.iter().find(|i| i.contents.is_some()) {
            return Err(KilnError::invalid(format!(
                "contents field must not be specified when using raw_input_contents for input '{}'",
                clip(&typed.name)
            )));
        }
        if raw.len() != in_band {
            return Err(KilnError::invalid(format!(
                "raw_input_contents has {} entries but the request has {in_band} inputs not in shared memory",
                raw.len(),
            )));
        }
    }
    let mut raw = raw.into_iter();
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for (input, reference) in req.inputs.into_iter().zip(references) {
        let datatype = DataType::from_kserve(&input.datatype).ok_or_else(|| {
            KilnError::invalid(format!(
                "input '{}': unknown datatype '{}'",
                clip(&input.name),
                clip(&input.datatype)
            ))
        })?;
        let data = if reference.is_used() {
            if input.contents.is_some() {
                return Err(KilnError::invalid(format!(
                    "input '{}' names a shared memory region and also carries contents; send one",
                    clip(&input.name)
                )));
            }
            let max = crate::limits::get().grpc_max_input_size;
            shared_memory.input(&ctx.identity, &input.name, &reference, max)?
        } else {
            match (raw.next(), input.contents) {
                (Some(bytes), _) => bytes,
                (None, Some(contents)) => typed_contents(&input.name, datatype, contents)?,
                (None, None) => {
                    return Err(KilnError::invalid(format!(
                        "input '{}' has no data: set raw_input_contents, contents or a shared memory region",
                        clip(&input.name)
                    )))
                }
            }
        };
        inputs.push(Tensor::new(input.name, datatype, input.shape, data));
    }
    let outputs = req
        .outputs
        .into_iter()
        .map(|o| {
            let reference = shared_memory_reference(&o.name, &o.parameters)?;
            let shared_memory = shared_memory.output(&ctx.identity, &o.name, &reference)?;
            let class_count = match o
                .parameters
                .get("classification")
                .and_then(|p| p.parameter_choice.as_ref())
            {
                None => 0,
                Some(ParameterChoice::Int64Param(n)) if *n >= 0 => *n as u64,
                Some(ParameterChoice::Uint64Param(n)) => *n,
                Some(_) => {
                    return Err(KilnError::invalid(format!(
                        "output '{}': parameter 'classification' must be a non-negative integer",
                        clip(&o.name)
                    )))
                }
            };
            Ok(RequestedOutput {
                name: o.name,
                class_count,
                destination: shared_memory,
            })
        })
        .collect::<Result<_>>()?;
    let parameters = req
        .parameters
        .into_iter()
        .filter_map(|(key, p)| {
            let value = match p.parameter_choice? {
                ParameterChoice::BoolParam(b) => ParamValue::Bool(b),
                ParameterChoice::Int64Param(i) => ParamValue::Int(i),
                ParameterChoice::Uint64Param(u) => {
                    ParamValue::Int(i64::try_from(u).unwrap_or(i64::MAX))
                }
                ParameterChoice::DoubleParam(d) => ParamValue::Double(d),
                ParameterChoice::StringParam(t) => ParamValue::Text(t),
            };
            Some((key, value))
        })
        .collect();
    Ok(InferRequest {
        ctx,
        model_name: req.model_name,
        model_version: req.model_version,
        id: req.id,
        inputs,
        outputs,
        parameters,
        trace: None,
    })
}

pub fn to_infer_response(r: InferResponse) -> proto::ModelInferResponse {
    let mut outputs = Vec::with_capacity(r.outputs.len());
    let mut raw = Vec::with_capacity(r.outputs.len());
    for o in r.outputs {
        let t = o.tensor;
        outputs.push(proto::model_infer_response::InferOutputTensor {
            name: t.name,
            datatype: t.datatype.kserve_name().into(),
            shape: t.shape,
            ..Default::default()
        });
        // Outputs in shared memory keep their slot, empty, so that the
        // entries stay aligned with `outputs` (what Triton sends).
        raw.push(t.data);
    }
    proto::ModelInferResponse {
        model_name: r.model_name,
        model_version: r.model_version,
        id: r.id,
        parameters: Default::default(),
        outputs,
        raw_output_contents: raw,
    }
}

type InferStream = Pin<
    Box<dyn Stream<Item = std::result::Result<proto::ModelStreamInferResponse, Status>> + Send>,
>;

/// How many requests of one stream run at once; answers keep request order.
const STREAM_CONCURRENCY: usize = 64;

#[tonic::async_trait]
impl GrpcInferenceService for GrpcService {
    async fn server_live(
        &self,
        _: Request<proto::ServerLiveRequest>,
    ) -> std::result::Result<Response<proto::ServerLiveResponse>, Status> {
        Ok(Response::new(proto::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<proto::ServerReadyRequest>,
    ) -> std::result::Result<Response<proto::ServerReadyResponse>, Status> {
        Ok(Response::new(proto::ServerReadyResponse {
            ready: self.state.is_ready(),
        }))
    }

    async fn model_ready(
        &self,
        r: Request<proto::ModelReadyRequest>,
    ) -> std::result::Result<Response<proto::ModelReadyResponse>, Status> {
        let ctx = super::admission::grpc_context(&r)?;
        let r = r.into_inner();
        Ok(Response::new(proto::ModelReadyResponse {
            ready: self.state.namespace(&ctx).is_ready(&r.name, &r.version),
        }))
    }

    async fn server_metadata(
        &self,
        _: Request<proto::ServerMetadataRequest>,
    ) -> std::result::Result<Response<proto::ServerMetadataResponse>, Status> {
        Ok(Response::new(proto::ServerMetadataResponse {
            name: super::SERVER_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: super::EXTENSIONS.iter().map(|s| s.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        r: Request<proto::ModelMetadataRequest>,
    ) -> std::result::Result<Response<proto::ModelMetadataResponse>, Status> {
        let ctx = super::admission::grpc_context(&r)?;
        let r = r.into_inner();
        let namespace = self.state.namespace(&ctx);
        Ok(Response::new(
            super::model_metadata(&namespace, &r.name, &r.version).map_err(grpc_status)?,
        ))
    }

    async fn model_infer(
        &self,
        r: Request<proto::ModelInferRequest>,
    ) -> std::result::Result<Response<proto::ModelInferResponse>, Status> {
        let ctx = super::admission::grpc_context(&r)?;
        let namespace = self.state.namespace(&ctx);
        let req = r.into_inner();
        let mut request = super::off_the_runtime(conversion_cost(&req), || {
            to_infer_request(&self.state.shared_memory, ctx, req)
        })
        .map_err(grpc_status)?;
        let _trace = self.state.sample_trace(&mut request);
        let response = inference::infer(namespace.as_ref(), request)
            .await
            .map_err(grpc_status)?;
        Ok(Response::new(to_infer_response(response)))
    }

    type ModelStreamInferStream = InferStream;

    async fn model_stream_infer(
        &self,
        r: Request<Streaming<proto::ModelInferRequest>>,
    ) -> std::result::Result<Response<InferStream>, Status> {
        let ctx = super::admission::grpc_context(&r)?;
        // The namespace of the caller as the stream opened: a stream is one
        // admission, like one request.
        let namespace = self.state.namespace(&ctx);
        let state = self.state.clone();
        // At shutdown the stream stops taking requests; those already read
        // are answered, then it ends, so an idle stream does not hold the
        // server's exit.
        let stopping = self.state.stopping();
        let answers = r
            .into_inner()
            .take_until(stopping)
            .map(move |msg| {
                let state = state.clone();
                let namespace = namespace.clone();
                let mut ctx = ctx.clone();
                ctx.received_at = std::time::Instant::now();
                ctx.admitted_at = ctx.received_at;
                async move {
                    let req = msg?;
                    // Errors travel in-band so one bad request does not end
                    // the stream; like Triton's, they carry the request's id
                    // (and nothing else) so that a client can match them.
                    let echo = proto::ModelInferResponse {
                        id: req.id.clone(),
                        ..Default::default()
                    };
                    let cost = conversion_cost(&req);
                    let converted = super::off_the_runtime(cost, || {
                        to_infer_request(&state.shared_memory, ctx, req)
                    });
                    let result = match converted {
                        Ok(mut request) => {
                            let _trace = state.sample_trace(&mut request);
                            inference::infer(namespace.as_ref(), request)
                                .await
                                .map(to_infer_response)
                        }
                        Err(e) => Err(e),
                    };
                    Ok(match result {
                        Ok(resp) => proto::ModelStreamInferResponse {
                            error_message: String::new(),
                            infer_response: Some(resp),
                        },
                        Err(e) => proto::ModelStreamInferResponse {
                            error_message: e.into_message(),
                            infer_response: Some(echo),
                        },
                    })
                }
            })
            .buffered(STREAM_CONCURRENCY);
        Ok(Response::new(Box::pin(answers)))
    }

    async fn model_config(
        &self,
        r: Request<proto::ModelConfigRequest>,
    ) -> std::result::Result<Response<proto::ModelConfigResponse>, Status> {
        let ctx = super::admission::grpc_context(&r)?;
        let r = r.into_inner();
        let runner = self
            .state
            .namespace(&ctx)
            .resolve(&r.name, &r.version)
            .map_err(grpc_status)?;
        Ok(Response::new(proto::ModelConfigResponse {
            config: Some(runner.spec.config.clone()),
        }))
    }

    async fn model_statistics(
        &self,
        r: Request<proto::ModelStatisticsRequest>,
    ) -> std::result::Result<Response<proto::ModelStatisticsResponse>, Status> {
        let ctx = super::admission::grpc_context(&r)?;
        let r = r.into_inner();
        let namespace = self.state.namespace(&ctx);
        Ok(Response::new(
            super::model_statistics(&namespace, &r.name, &r.version).map_err(grpc_status)?,
        ))
    }

    async fn repository_index(
        &self,
        r: Request<proto::RepositoryIndexRequest>,
    ) -> std::result::Result<Response<proto::RepositoryIndexResponse>, Status> {
        let ctx = super::admission::grpc_context(&r)?;
        let r = r.into_inner();
        let models = self
            .state
            .namespace(&ctx)
            .index(r.ready)
            .map_err(grpc_status)?
            .into_iter()
            .map(|e| proto::repository_index_response::ModelIndex {
                name: e.name,
                version: e.version,
                state: e.state,
                reason: e.reason,
            })
            .collect();
        Ok(Response::new(proto::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        r: Request<proto::RepositoryModelLoadRequest>,
    ) -> std::result::Result<Response<proto::RepositoryModelLoadResponse>, Status> {
        let ctx = super::admission::grpc_context(&r)?;
        let r = r.into_inner();
        if let Some(key) = r.parameters.keys().next() {
            return Err(grpc_status(KilnError::unimplemented(format!(
                "load parameter '{}' (config override / inline files) is not supported yet",
                kiln_types::text::clip(key)
            ))));
        }
        super::model_control(&self.state, &ctx, super::Control::Load, &r.model_name)
            .await
            .map_err(grpc_status)?;
        Ok(Response::new(proto::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        r: Request<proto::RepositoryModelUnloadRequest>,
    ) -> std::result::Result<Response<proto::RepositoryModelUnloadResponse>, Status> {
        let ctx = super::admission::grpc_context(&r)?;
        let r = r.into_inner();
        super::model_control(&self.state, &ctx, super::Control::Unload, &r.model_name)
            .await
            .map_err(grpc_status)?;
        Ok(Response::new(proto::RepositoryModelUnloadResponse {}))
    }

    async fn system_shared_memory_status(
        &self,
        r: Request<proto::SystemSharedMemoryStatusRequest>,
    ) -> std::result::Result<Response<proto::SystemSharedMemoryStatusResponse>, Status> {
        use proto::system_shared_memory_status_response::RegionStatus;
        let ctx = super::admission::grpc_context(&r)?;
        let regions = self
            .state
            .shared_memory
            .status(&ctx.identity, &r.get_ref().name)
            .map_err(grpc_status)?
            .into_iter()
            .map(|region| {
                let status = RegionStatus {
                    name: region.name.clone(),
                    key: region.key.clone(),
                    offset: region.offset,
                    byte_size: region.byte_size,
                };
                (region.name.clone(), status)
            })
            .collect();
        Ok(Response::new(proto::SystemSharedMemoryStatusResponse {
            regions,
        }))
    }
    async fn system_shared_memory_register(
        &self,
        r: Request<proto::SystemSharedMemoryRegisterRequest>,
    ) -> std::result::Result<Response<proto::SystemSharedMemoryRegisterResponse>, Status> {
        let ctx = super::admission::grpc_context(&r)?;
        let r = r.into_inner();
        self.state
            .shared_memory
            .register(&ctx.identity, &r.name, &r.key, r.offset, r.byte_size)
            .map_err(grpc_status)?;
        Ok(Response::new(proto::SystemSharedMemoryRegisterResponse {}))
    }
    async fn system_shared_memory_unregister(
        &self,
        r: Request<proto::SystemSharedMemoryUnregisterRequest>,
    ) -> std::result::Result<Response<proto::SystemSharedMemoryUnregisterResponse>, Status> {
        let ctx = super::admission::grpc_context(&r)?;
        self.state
            .shared_memory
            .unregister(&ctx.identity, &r.get_ref().name);
        Ok(Response::new(
            proto::SystemSharedMemoryUnregisterResponse {},
        ))
    }
    async fn cuda_shared_memory_status(
        &self,
        _: Request<proto::CudaSharedMemoryStatusRequest>,
    ) -> std::result::Result<Response<proto::CudaSharedMemoryStatusResponse>, Status> {
        Err(grpc_status(cuda_shared_memory_unimplemented()))
    }
    async fn cuda_shared_memory_register(
        &self,
        _: Request<proto::CudaSharedMemoryRegisterRequest>,
    ) -> std::result::Result<Response<proto::CudaSharedMemoryRegisterResponse>, Status> {
        Err(grpc_status(cuda_shared_memory_unimplemented()))
    }
    async fn cuda_shared_memory_unregister(
        &self,
        _: Request<proto::CudaSharedMemoryUnregisterRequest>,
    ) -> std::result::Result<Response<proto::CudaSharedMemoryUnregisterResponse>, Status> {
        Err(grpc_status(cuda_shared_memory_unimplemented()))
    }
    async fn trace_setting(
        &self,
        r: Request<proto::TraceSettingRequest>,
    ) -> std::result::Result<Response<proto::TraceSettingResponse>, Status> {
        let ctx = super::admission::grpc_context(&r)?;
        let req = r.into_inner();
        // An empty value list clears a setting (back to the global one).
        let update = (!req.settings.is_empty())
            .then(|| {
                kiln_trace::Update::parse(
                    req.settings
                        .iter()
                        .map(|(k, v)| (k.as_str(), (!v.value.is_empty()).then(|| v.value.clone()))),
                    self.state.tracing.mode(),
                )
            })
            .transpose()
            .map_err(|e| grpc_status(super::trace_setting::refused(e)))?;
        let model = (!req.model_name.is_empty()).then_some(req.model_name.as_str());
        let settings = super::trace_setting::trace_setting(&self.state, &ctx, model, update)
            .map_err(grpc_status)?;
        Ok(Response::new(proto::TraceSettingResponse {
            settings: settings
                .into_iter()
                .map(|(k, value)| {
                    (
                        k.to_string(),
                        proto::trace_setting_response::SettingValue { value },
                    )
                })
                .collect(),
        }))
    }
    async fn log_settings(
        &self,
        _: Request<proto::LogSettingsRequest>,
    ) -> std::result::Result<Response<proto::LogSettingsResponse>, Status> {
        unimplemented("runtime log settings (use RUST_LOG)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::model_infer_request::InferInputTensor;

    fn input(
        name: &str,
        datatype: &str,
        contents: Option<proto::InferTensorContents>,
    ) -> InferInputTensor {
        InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: vec![2],
            parameters: Default::default(),
            contents,
        }
    }

    #[test]
    fn raw_and_typed_contents_together_are_rejected() {
        let req = proto::ModelInferRequest {
            inputs: vec![input(
                "A",
                "FP32",
                Some(proto::InferTensorContents {
                    fp32_contents: vec![1.0, 2.0],
                    ..Default::default()
                }),
            )],
            raw_input_contents: vec![Bytes::from(vec![0u8; 8])],
            ..Default::default()
        };
        let e = to_infer_request(&SharedMemory::default(), RequestContext::internal(), req)
            .unwrap_err();
        assert!(
            matches!(e, KilnError::InvalidArgument(_)) && e.message().contains("'A'"),
            "{e}"
        );
    }

    #[test]
    fn typed_contents_become_little_endian_bytes() {
        let req = proto::ModelInferRequest {
            inputs: vec![
                input(
                    "A",
                    "INT16",
                    Some(proto::InferTensorContents {
                        int_contents: vec![1, -2],
                        ..Default::default()
                    }),
                ),
                input(
                    "B",
                    "BYTES",
                    Some(proto::InferTensorContents {
                        bytes_contents: vec![Bytes::from_static(b""), Bytes::from_static(b"ab")],
                        ..Default::default()
                    }),
                ),
            ],
            ..Default::default()
        };
        let r =
            to_infer_request(&SharedMemory::default(), RequestContext::internal(), req).unwrap();
        assert_eq!(&r.inputs[0].data[..], &[1, 0, 0xfe, 0xff]);
        assert_eq!(&r.inputs[1].data[..], &[0, 0, 0, 0, 2, 0, 0, 0, b'a', b'b']);
    }

    #[test]
    fn wrong_typed_field_names_the_expected_one() {
        let req = proto::ModelInferRequest {
            inputs: vec![input(
                "A",
                "FP32",
                Some(proto::InferTensorContents {
                    int_contents: vec![1, 2],
                    ..Default::default()
                }),
            )],
            ..Default::default()
        };
        let e = to_infer_request(&SharedMemory::default(), RequestContext::internal(), req)
            .unwrap_err();
        assert!(e.message().contains("fp32_contents"), "{e}");
    }
}
