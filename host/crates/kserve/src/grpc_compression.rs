//! Compressed gRPC requests (`grpc-encoding: gzip` or `deflate`), inflated
//! here instead of in tonic, for two reasons:
//!
//! - **Where:** inflating up to the 2 GiB message limit takes seconds. tonic
//!   does it inside a task's poll, on an async worker; a bomb then stalls
//!   whatever else that worker holds (measured: a liveness check waited
//!   1.9 s behind one 2 GiB gzip bomb). Here it runs under `block_in_place`.
//! - **How much:** the inflated size is checked against the limit as it
//!   grows, and the buffer grows toward the limit, never past it.
//!
//! The body of a compressed request is rewritten frame by frame: each
//! compressed message becomes the same message uncompressed (flag 0), and the
//! `grpc-encoding` header is removed, so tonic sees an uncompressed stream.
//! Errors travel as a `tonic::Status` in the body, which tonic answers as is.

use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::{Body, Frame};
use tonic::Status;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A compression kiln inflates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gzip,
    /// gRPC's `deflate` is zlib-wrapped deflate (RFC 1950).
    Deflate,
}

impl Encoding {
    pub fn from_header(value: &[u8]) -> Option<Self> {
        match value {
            b"gzip" => Some(Self::Gzip),
            b"deflate" => Some(Self::Deflate),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
        }
    }
}

/// Compressed messages at least this large inflate off the async worker;
/// smaller ones inflate to at most ~1,000 times their size, a few ms.
const BLOCKING_THRESHOLD: usize = 64 << 10;

/// Inflates a message, refusing it once it passes `limit` bytes.
pub fn inflate(data: &[u8], encoding: Encoding, limit: usize) -> Result<Vec<u8>, Status> {
    let mut reader: Box<dyn Read + '_> = match encoding {
        Encoding::Gzip => Box::new(flate2::read::GzDecoder::new(data)),
        Encoding::Deflate => Box::new(flate2::read::ZlibDecoder::new(data)),
    };
    let mut out: Vec<u8> = Vec::with_capacity(data.len().saturating_mul(4).min(limit) + 1);
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = reader.read(&mut chunk).map_err(|e| {
            Status::invalid_argument(format!(
                "cannot decompress the request message ({}): {e}",
                encoding.name()
            ))
        })?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > limit {
            return Err(Status::resource_exhausted(format!(
                "the request message is larger than {limit} bytes once decompressed (--grpc-max-input-size)"
            )));
        }
        if out.capacity() - out.len() < n {
            // Doubling, but never past the limit.
            let target = (out.capacity() * 2).clamp(out.len() + n, limit);
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// A compressed request's body, delivered uncompressed message by message.
pub struct Inflating<B> {
    inner: B,
    encoding: Encoding,
    limit: usize,
    buf: BytesMut,
    inner_done: bool,
}

impl<B> Inflating<B> {
    pub fn new(inner: B, encoding: Encoding, limit: usize) -> Self {
        Self {
            inner,
            encoding,
            limit,
            buf: BytesMut::new(),
            inner_done: false,
        }
    }

    /// The next whole message in `buf`, uncompressed and framed, if there is
    /// one.
    fn next_message(&mut self) -> Result<Option<Bytes>, Status> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let compressed = self.buf[0] == 1;
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > self.limit {
            return Err(Status::resource_exhausted(format!(
                "a request message of {len} bytes is larger than the {} this server accepts (--grpc-max-input-size)",
                self.limit
            )));
        }
        if self.buf.len() < 5 + len {
            self.buf.reserve(5 + len - self.buf.len());
            return Ok(None);
        }
        let mut frame = self.buf.split_to(5 + len);
        if !compressed {
            return Ok(Some(frame.freeze()));
        }
        frame.advance(5);
        let (encoding, limit) = (self.encoding, self.limit);
        let work = || inflate(&frame, encoding, limit);
        let message = if len >= BLOCKING_THRESHOLD {
            super::off_the_runtime(usize::MAX, work)?
        } else {
            work()?
        };
        let mut out = BytesMut::with_capacity(5 + message.len());
        out.put_u8(0);
        out.put_u32(message.len() as u32);
        out.extend_from_slice(&message);
        Ok(Some(out.freeze()))
    }
}

impl<B> Body for Inflating<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            match self.next_message() {
                Ok(Some(message)) => return Poll::Ready(Some(Ok(Frame::data(message)))),
                Ok(None) => {}
                Err(status) => return Poll::Ready(Some(Err(Box::new(status)))),
            }
            if self.inner_done {
                // A partial message left at the end is tonic's to refuse.
                return Poll::Ready((!self.buf.is_empty()).then(|| {
                    let rest = self.buf.split().freeze();
                    Ok(Frame::data(rest))
                }));
            }
            match std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buf.extend_from_slice(&data),
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => self.inner_done = true,
            }
        }
    }
}

/// Middleware: inflates compressed request bodies before tonic sees them.
pub async fn inflate_requests(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let encoding = request
        .headers()
        .get("grpc-encoding")
        .and_then(|v| Encoding::from_header(v.as_bytes()));
    if let Some(encoding) = encoding {
        request.headers_mut().remove("grpc-encoding");
        let limit = crate::limits::get().grpc_max_input_size;
        request = request.map(|body| axum::body::Body::new(Inflating::new(body, encoding, limit)));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn inflates_within_the_limit_and_refuses_past_it() {
        let data = vec![7u8; 1 << 20];
        assert_eq!(
            inflate(&gzip(&data), Encoding::Gzip, 1 << 20).unwrap(),
            data
        );
        let e = inflate(&gzip(&data), Encoding::Gzip, (1 << 20) - 1).unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        let e = inflate(b"not gzip", Encoding::Gzip, 1 << 20).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(b"hello").unwrap();
        assert_eq!(
            inflate(&z.finish().unwrap(), Encoding::Deflate, 16).unwrap(),
            b"hello"
        );
    }

    #[test]
    fn frames_are_rewritten_uncompressed() {
        let payload = gzip(b"abc");
        let mut wire = BytesMut::new();
        wire.put_u8(1);
        wire.put_u32(payload.len() as u32);
        wire.extend_from_slice(&payload);
        wire.extend_from_slice(&[0, 0, 0, 0, 2, b'x', b'y']);
        let body = http_body_util::Full::new(wire.freeze());
        let mut inflating = Inflating::new(body, Encoding::Gzip, 1024);
        assert_eq!(
            inflating.next_message().unwrap(),
            None,
            "nothing buffered yet"
        );
        let collected = futures::executor::block_on(http_body_util::BodyExt::collect(inflating))
            .unwrap()
            .to_bytes();
        assert_eq!(
            &collected[..],
            &[0, 0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0, 2, b'x', b'y']
        );
    }
}
