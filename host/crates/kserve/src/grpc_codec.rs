//! The gRPC codec of `inference.GRPCInferenceService`: prost, plus what a
//! server facing hostile clients needs before it decodes a message.
//!
//! - An inference request is pre-scanned ([`super::grpc_wire`]) so that no
//!   count in it can make decoding allocate more than its limits allow.
//! - Every other message is control plane and small: one larger than
//!   `max_control_message_bytes` is refused before it is decoded.
//! - Decoding or encoding a large message runs under `block_in_place`
//!   (`super::off_the_runtime`), so health checks never wait behind a 2 GiB
//!   tensor.
//!
//! The generated server uses it through `codec_path` (build.rs).

use std::marker::PhantomData;

use bytes::Buf;
use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

use super::{off_the_runtime, proto};
use crate::limits;

/// Messages decoded through [`KilnCodec`], with the check each gets first.
pub trait Checked: Message + Default + Send + 'static {
    /// Inspects the encoded message before it is decoded.
    fn check(encoded: &[u8]) -> Result<(), Status> {
        let max = limits::get().max_control_message_bytes;
        if encoded.len() > max {
            return Err(Status::resource_exhausted(format!(
                "a {} message of {} bytes is larger than the {max} bytes control-plane messages may have",
                std::any::type_name::<Self>().rsplit("::").next().unwrap_or("request"),
                encoded.len()
            )));
        }
        Ok(())
    }
}

impl Checked for proto::ModelInferRequest {
    fn check(encoded: &[u8]) -> Result<(), Status> {
        let limits = limits::get();
        super::grpc_wire::check_infer_request(encoded, limits, limits.grpc_max_input_size as u64)
            .map_err(super::status::grpc_status)
    }
}

macro_rules! control_plane {
    ($($message:ident),* $(,)?) => { $(impl Checked for proto::$message {})* };
}

control_plane!(
    ServerLiveRequest,
    ServerReadyRequest,
    ModelReadyRequest,
    ServerMetadataRequest,
    ModelMetadataRequest,
    ModelConfigRequest,
    ModelStatisticsRequest,
    RepositoryIndexRequest,
    RepositoryModelLoadRequest,
    RepositoryModelUnloadRequest,
    SystemSharedMemoryStatusRequest,
    SystemSharedMemoryRegisterRequest,
    SystemSharedMemoryUnregisterRequest,
    CudaSharedMemoryStatusRequest,
    CudaSharedMemoryRegisterRequest,
    CudaSharedMemoryUnregisterRequest,
    TraceSettingRequest,
    LogSettingsRequest,
);

/// prost encoding; checked decoding (see the module docs).
pub struct KilnCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for KilnCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for KilnCodec<T, U>
where
    T: Message + Send + 'static,
    U: Checked,
{
    type Encode = T;
    type Decode = U;
    type Encoder = OffloadedEncoder<T>;
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        OffloadedEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder(PhantomData)
    }
}

/// prost encoding, off the async worker for large messages.
pub struct OffloadedEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for OffloadedEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        let len = item.encoded_len();
        off_the_runtime(len, || {
            buf.reserve(len);
            item.encode(buf)
                .map_err(|e| Status::internal(format!("cannot encode the response: {e}")))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

pub struct CheckedDecoder<U>(PhantomData<U>);

impl<U: Checked> Decoder for CheckedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let len = buf.remaining();
        let decode = |buf: &mut DecodeBuf<'_>| {
            // A DecodeBuf is one contiguous message (tonic buffers it whole).
            if buf.chunk().len() != buf.remaining() {
                return Err(Status::internal("a gRPC message arrived in pieces"));
            }
            U::check(buf.chunk())?;
            // The caller sent bytes that are not the message: its error
            // (tonic's own codec would answer INTERNAL).
            U::decode(&mut *buf).map(Some).map_err(|e| {
                Status::invalid_argument(format!(
                    "the request is not a valid protobuf message: {e}"
                ))
            })
        };
        off_the_runtime(len, || decode(buf))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
