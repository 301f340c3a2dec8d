//! A pre-scan of a `ModelInferRequest`'s protobuf bytes that bounds what
//! decoding it would allocate, before prost allocates anything.
//!
//! Decoding multiplies size: an empty `InferInputTensor` is 2 bytes on the
//! wire and about 300 in memory, a one-byte `int64_contents` varint becomes 8
//! bytes, an empty `bytes_contents` entry a 32-byte handle. 16 million empty
//! inputs in a 32 MiB message would take 6 GiB. The scan walks the wire format
//! once, without allocating, counts what multiplies (inputs, outputs,
//! parameters, dims, typed elements) against [`RequestLimits`] and the decoded
//! size against the message limit, and refuses the request naming the limit.
//! It does not validate: anything it does not need it skips, and prost
//! decides whether the message is well-formed.

use crate::limits::RequestLimits;
use kiln_types::error::{KilnError, Result};

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

struct Reader<'a> {
    buf: &'a [u8],
}

fn malformed(what: &str) -> KilnError {
    KilnError::invalid(format!("malformed ModelInferRequest: {what}"))
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for (i, &b) in self.buf.iter().take(10).enumerate() {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        Err(malformed("truncated or overlong varint"))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.buf.len())
            .ok_or_else(|| malformed("a length runs past the end of the message"))?;
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// The next field's number and wire type; `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, u8)>> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        Ok(Some((key >> 3, (key & 7) as u8)))
    }

    fn len_delimited(&mut self) -> Result<&'a [u8]> {
        let n = self.varint()?;
        self.take(n)
    }

    fn skip(&mut self, wire: u8) -> Result<()> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.len_delimited().map(drop),
            FIXED32 => self.take(4).map(drop),
            _ => Err(malformed("groups are not used by this protocol")),
        }
    }
}

/// Varints in a packed field: one per byte without the continuation bit.
fn packed_varints(payload: &[u8]) -> u64 {
    payload.iter().filter(|&&b| b & 0x80 == 0).count() as u64
}

/// Running totals of one request.
struct Totals<'l> {
    limits: &'l RequestLimits,
    /// Bytes decoding will allocate for typed contents and handles.
    decoded: u64,
    max_decoded: u64,
}

impl Totals<'_> {
    fn add_decoded(&mut self, bytes: u64) -> Result<()> {
        self.decoded = self.decoded.saturating_add(bytes);
        if self.decoded > self.max_decoded {
            return Err(KilnError::invalid(format!(
                "the request's typed tensor contents decode to more than {} bytes (the message size limit); send tensors in raw_input_contents",
                self.max_decoded
            )));
        }
        Ok(())
    }
}

/// Counts one more entry of a repeated field; past `limit`, an error naming
/// the field and the flag that raises the limit.
fn count_up(
    count: &mut usize,
    limit: usize,
    flag: &str,
    what: impl FnOnce() -> String,
) -> Result<()> {
    *count += 1;
    if *count > limit {
        return Err(KilnError::invalid(format!(
            "{} has more than {limit} entries (--{flag})",
            what()
        )));
    }
    Ok(())
}

/// Checks a `ModelInferRequest` before it is decoded. `max_decoded` is the
/// message size limit: typed contents may not decode to more than it.
pub fn check_infer_request(buf: &[u8], limits: &RequestLimits, max_decoded: u64) -> Result<()> {
    let mut totals = Totals {
        limits,
        decoded: 0,
        max_decoded,
    };
    let mut r = Reader { buf };
    let (mut inputs, mut outputs, mut raw, mut parameters) = (0usize, 0usize, 0usize, 0usize);
    while let Some((field, wire)) = r.field()? {
        match (field, wire) {
            (4, LEN) => {
                count_up(
                    &mut parameters,
                    limits.max_parameters,
                    "max-request-parameters",
                    || "the request's 'parameters'".into(),
                )?;
                r.len_delimited()?;
            }
            (5, LEN) => {
                count_up(&mut inputs, limits.max_inputs, "max-request-inputs", || {
                    "'inputs'".into()
                })?;
                let input = r.len_delimited()?;
                check_input(input, inputs - 1, &mut totals)?;
            }
            (6, LEN) => {
                count_up(
                    &mut outputs,
                    limits.max_outputs,
                    "max-request-outputs",
                    || "'outputs'".into(),
                )?;
                let output = r.len_delimited()?;
                check_output(output, outputs - 1, limits)?;
            }
            (7, LEN) => {
                count_up(&mut raw, limits.max_inputs, "max-request-inputs", || {
                    "'raw_input_contents'".into()
                })?;
                r.len_delimited()?;
            }
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(())
}

fn check_input(buf: &[u8], index: usize, totals: &mut Totals<'_>) -> Result<()> {
    let limits = totals.limits;
    let mut r = Reader { buf };
    let (mut dims, mut parameters, mut elements) = (0u64, 0usize, 0u64);
    while let Some((field, wire)) = r.field()? {
        match (field, wire) {
            (3, VARINT) => {
                r.varint()?;
                dims += 1;
            }
            (3, LEN) => dims += packed_varints(r.len_delimited()?),
            (4, LEN) => {
                count_up(
                    &mut parameters,
                    limits.max_parameters,
                    "max-request-parameters",
                    || format!("inputs[{index}].parameters"),
                )?;
                r.len_delimited()?;
            }
            (5, LEN) => elements += count_contents(r.len_delimited()?, totals)?,
            (_, wire) => r.skip(wire)?,
        }
    }
    if dims > limits.max_dims as u64 {
        return Err(KilnError::invalid(format!(
            "inputs[{index}] has {dims} dimensions, more than the limit of {} (--max-tensor-dims)",
            limits.max_dims
        )));
    }
    if elements > limits.max_tensor_elements {
        return Err(KilnError::invalid(format!(
            "inputs[{index}] carries {elements} typed elements, more than the limit of {} (--max-tensor-elements)",
            limits.max_tensor_elements
        )));
    }
    Ok(())
}

fn check_output(buf: &[u8], index: usize, limits: &RequestLimits) -> Result<()> {
    let mut r = Reader { buf };
    let mut parameters = 0usize;
    while let Some((field, wire)) = r.field()? {
        match (field, wire) {
            (2, LEN) => {
                count_up(
                    &mut parameters,
                    limits.max_parameters,
                    "max-request-parameters",
                    || format!("outputs[{index}].parameters"),
                )?;
                r.len_delimited()?;
            }
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(())
}

/// Counts the elements of an `InferTensorContents` and adds what decoding
/// them allocates to the totals.
fn count_contents(buf: &[u8], totals: &mut Totals<'_>) -> Result<u64> {
    let mut r = Reader { buf };
    let mut elements = 0u64;
    while let Some((field, wire)) = r.field()? {
        // (elements, bytes each in memory)
        let (n, size) = match (field, wire) {
            // bool, int32, int64, uint32, uint64
            (1..=5, VARINT) => {
                r.varint()?;
                (1, varint_size(field))
            }
            (1..=5, LEN) => (packed_varints(r.len_delimited()?), varint_size(field)),
            (6, FIXED32) => {
                r.take(4)?;
                (1, 4)
            }
            (6, LEN) => (r.len_delimited()?.len() as u64 / 4, 4),
            (7, FIXED64) => {
                r.take(8)?;
                (1, 8)
            }
            (7, LEN) => (r.len_delimited()?.len() as u64 / 8, 8),
            // A `Bytes` handle per element (the payload is not copied), and
            // the 4-byte length it gets when framed as a BYTES tensor.
            (8, LEN) => {
                let element = r.len_delimited()?;
                (1, 32 + 4 + element.len() as u64)
            }
            (_, wire) => {
                r.skip(wire)?;
                (0, 0)
            }
        };
        elements += n;
        totals.add_decoded(n.saturating_mul(size))?;
    }
    Ok(elements)
}

fn varint_size(field: u64) -> u64 {
    match field {
        1 => 1,
        2 | 4 => 4,
        _ => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;
    use prost::Message;

    fn limits() -> RequestLimits {
        RequestLimits {
            max_inputs: 4,
            max_outputs: 2,
            max_parameters: 3,
            max_dims: 4,
            max_tensor_elements: 100,
            ..Default::default()
        }
    }

    fn input(name: &str, shape: Vec<i64>) -> proto::model_infer_request::InferInputTensor {
        proto::model_infer_request::InferInputTensor {
            name: name.into(),
            datatype: "INT64".into(),
            shape,
            ..Default::default()
        }
    }

    fn check(req: &proto::ModelInferRequest) -> Result<()> {
        check_infer_request(&req.encode_to_vec(), &limits(), 1 << 20)
    }

    #[test]
    fn a_normal_request_passes() {
        let mut req = proto::ModelInferRequest {
            model_name: "m".into(),
            inputs: vec![input("a", vec![2, 3]), input("b", vec![6])],
            raw_input_contents: vec![vec![0u8; 48].into(), vec![0u8; 48].into()],
            ..Default::default()
        };
        req.inputs[0].contents = Some(proto::InferTensorContents {
            int64_contents: vec![1, 2, 3, 4, 5, 6],
            ..Default::default()
        });
        check(&req).unwrap();
    }

    #[test]
    fn counts_over_the_limits_are_refused_naming_the_field() {
        let many = proto::ModelInferRequest {
            inputs: (0..5).map(|i| input(&i.to_string(), vec![1])).collect(),
            ..Default::default()
        };
        assert!(check(&many).unwrap_err().message().contains("'inputs'"));
        let deep = proto::ModelInferRequest {
            inputs: vec![input("a", vec![1; 5])],
            ..Default::default()
        };
        assert!(check(&deep).unwrap_err().message().contains("5 dimensions"));
        let mut elements = proto::ModelInferRequest {
            inputs: vec![input("a", vec![101])],
            ..Default::default()
        };
        elements.inputs[0].contents = Some(proto::InferTensorContents {
            int64_contents: vec![0; 101],
            ..Default::default()
        });
        assert!(check(&elements)
            .unwrap_err()
            .message()
            .contains("101 typed elements"));
        let mut params = proto::ModelInferRequest::default();
        for k in 0..4 {
            params
                .parameters
                .insert(k.to_string(), proto::InferParameter::default());
        }
        assert!(check(&params).unwrap_err().message().contains("parameters"));
    }

    #[test]
    fn typed_contents_may_not_decode_past_the_message_limit() {
        let mut req = proto::ModelInferRequest {
            inputs: vec![input("a", vec![90])],
            ..Default::default()
        };
        req.inputs[0].contents = Some(proto::InferTensorContents {
            int64_contents: vec![0; 90],
            ..Default::default()
        });
        // 90 one-byte varints decode to 720 bytes.
        let bytes = req.encode_to_vec();
        assert!(check_infer_request(&bytes, &limits(), 719).is_err());
        assert!(check_infer_request(&bytes, &limits(), 720).is_ok());
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let bytes = proto::ModelInferRequest {
            inputs: vec![input("a", vec![1, 2])],
            ..Default::default()
        }
        .encode_to_vec();
        for end in 0..bytes.len() {
            let _ = check_infer_request(&bytes[..end], &limits(), 1 << 20);
        }
        assert!(check_infer_request(&[0x2a, 0xff], &limits(), 1 << 20).is_err());
    }
}
