//! Command protocol 1 (sdk/ABI.md, "Command protocol 1"): the framing of a
//! call on a command module's stdin and of its answer on stdout. The
//! decoder trusts nothing: every length is checked against what is left, so
//! a hostile answer costs at most its own size.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::contract::PluginMetadata;
use kiln_types::tensor::{DataType, Tensor};
use kiln_types::ParamValue;

const REQUEST_MAGIC: &[u8; 4] = b"KLNQ";
const RESPONSE_MAGIC: &[u8; 4] = b"KLNR";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Metadata = 0,
    Process = 1,
}

/// The error kinds of the ABI, in WIT order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    Unavailable,
    Internal,
}

#[derive(Debug)]
pub enum Answer {
    Metadata(PluginMetadata),
    Outputs(Vec<Tensor>),
    Error(ErrorKind, String),
}

/// The datatype's code: its case number in the WIT enum (same order as
/// `DataType::ALL`).
fn datatype_code(d: DataType) -> u8 {
    DataType::ALL.iter().position(|&k| k == d).expect("listed") as u8
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn count(&mut self, n: usize) {
        self.u32(u32::try_from(n).expect("fewer than 2^32 items"));
    }
    fn string(&mut self, s: &str) {
        self.count(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn tensor(&mut self, t: &Tensor) {
        self.string(&t.name);
        self.u8(datatype_code(t.datatype));
        self.count(t.shape.len());
        for d in &t.shape {
            self.0.extend_from_slice(&d.to_le_bytes());
        }
        self.0
            .extend_from_slice(&(t.data.len() as u64).to_le_bytes());
        self.0.extend_from_slice(&t.data);
    }
}

/// Frames one call. `inputs` and `parameters` are empty for metadata.
pub fn encode_request(
    call: Call,
    config: &BTreeMap<String, String>,
    inputs: &[&Tensor],
    parameters: &[(String, ParamValue)],
) -> Vec<u8> {
    let size = inputs.iter().map(|t| t.data.len() + 64).sum::<usize>() + 256;
    let mut w = Writer(Vec::with_capacity(size));
    w.0.extend_from_slice(REQUEST_MAGIC);
    w.u32(VERSION);
    w.u8(call as u8);
    w.count(config.len());
    for (k, v) in config {
        w.string(k);
        w.string(v);
    }
    w.count(inputs.len());
    for t in inputs {
        w.tensor(t);
    }
    w.count(parameters.len());
    for (key, value) in parameters {
        w.string(key);
        match value {
            ParamValue::Bool(b) => {
                w.u8(0);
                w.u8(*b as u8);
            }
            ParamValue::Int(i) => {
                w.u8(1);
                w.0.extend_from_slice(&i.to_le_bytes());
            }
            ParamValue::Double(d) => {
                w.u8(2);
                w.0.extend_from_slice(&d.to_le_bytes());
            }
            ParamValue::Text(t) => {
                w.u8(3);
                w.string(t);
            }
        }
    }
    w.0
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err(format!(
                "answer ends inside {what} (needs {n} bytes, {} left)",
                self.rest.len()
            ));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        Ok(self.take(N, what)?.try_into().expect("N bytes"))
    }
    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    /// A count of items each at least `min_size` bytes long, checked
    /// against what is left so that it cannot make us allocate.
    fn count(&mut self, what: &str, min_size: usize) -> Result<usize, String> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_size) > self.rest.len() {
            return Err(format!("{what} ({n}) is more than the answer can hold"));
        }
        Ok(n)
    }
    fn string(&mut self, what: &str) -> Result<String, String> {
        let n = self.u32(what)? as usize;
        let raw = self.take(n, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }
    fn datatype(&mut self, what: &str) -> Result<DataType, String> {
        let code = self.u8(what)?;
        DataType::ALL
            .get(code as usize)
            .copied()
            .ok_or_else(|| format!("{what}: unknown datatype code {code}"))
    }
    fn dims(&mut self, what: &str) -> Result<Vec<i64>, String> {
        let rank = self.count(what, 8)?;
        (0..rank)
            .map(|_| Ok(i64::from_le_bytes(self.array(what)?)))
            .collect()
    }
    fn tensor(&mut self) -> Result<Tensor, String> {
        let name = self.string("an output name")?;
        let what = format!("output '{name}'");
        let datatype = self.datatype(&what)?;
        let shape = self.dims(&what)?;
        let len = u64::from_le_bytes(self.array(&what)?);
        let len = usize::try_from(len).map_err(|_| format!("{what}: data too long"))?;
        let data = Bytes::copy_from_slice(self.take(len, &what)?);
        Ok(Tensor::new(name, datatype, shape, data))
    }
    fn specs(&mut self, what: &str) -> Result<Vec<(String, DataType, Vec<i64>)>, String> {
        let n = self.count(what, 9)?;
        (0..n)
            .map(|_| {
                let name = self.string(what)?;
                let datatype = self.datatype(what)?;
                let dims = self.dims(what)?;
                Ok((name, datatype, dims))
            })
            .collect()
    }
}

/// Decodes the whole of a command's stdout as the answer to `call`.
pub fn decode_answer(bytes: &[u8], call: Call) -> Result<Answer, String> {
    let mut r = Reader { rest: bytes };
    if bytes.is_empty() {
        return Err("the plugin wrote no answer to stdout".into());
    }
    if &r.array::<4>("the magic")? != RESPONSE_MAGIC {
        return Err(
            "stdout does not start with the answer magic 'KLNR' (did the plugin print to stdout?)"
                .into(),
        );
    }
    let version = r.u32("the version")?;
    if version != VERSION {
        return Err(format!(
            "the answer is command protocol {version}; kiln speaks {VERSION}"
        ));
    }
    let answer = match r.u8("the status")? {
        0 => match call {
            Call::Metadata => {
                let name = r.string("the plugin name")?;
                let version = r.string("the plugin version")?;
                let inputs = r.specs("the input specs")?;
                let outputs = r.specs("the output specs")?;
                Answer::Metadata(PluginMetadata {
                    name,
                    version,
                    inputs,
                    outputs,
                })
            }
            Call::Process => {
                let n = r.count("the output count", 17)?;
                Answer::Outputs((0..n).map(|_| r.tensor()).collect::<Result<_, _>>()?)
            }
        },
        1 => {
            let kind = match r.u8("the error kind")? {
                0 => ErrorKind::InvalidArgument,
                1 => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            };
            Answer::Error(kind, r.string("the error message")?)
        }
        other => return Err(format!("unknown answer status {other}")),
    };
    if !r.rest.is_empty() {
        return Err(format!(
            "{} bytes follow the answer on stdout (did the plugin print to stdout?)",
            r.rest.len()
        ));
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_header(status: u8) -> Vec<u8> {
        let mut w = Writer(RESPONSE_MAGIC.to_vec());
        w.u32(VERSION);
        w.u8(status);
        w.0
    }

    #[test]
    fn request_framing_matches_the_spec() {
        let t = Tensor::new(
            "IN",
            DataType::Fp32,
            vec![1, 2],
            Bytes::from_static(&[0, 0, 128, 63, 0, 0, 0, 64]),
        );
        let config = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let params = vec![("p".to_string(), ParamValue::Int(-2))];
        let req = encode_request(Call::Process, &config, &[&t], &params);
        let mut expected = b"KLNQ\x01\0\0\0\x01".to_vec();
        expected.extend_from_slice(b"\x01\0\0\0\x01\0\0\0k\x01\0\0\0v");
        expected.extend_from_slice(b"\x01\0\0\0\x02\0\0\0IN\x0a\x02\0\0\0");
        expected.extend_from_slice(&1i64.to_le_bytes());
        expected.extend_from_slice(&2i64.to_le_bytes());
        expected.extend_from_slice(&8u64.to_le_bytes());
        expected.extend_from_slice(&[0, 0, 128, 63, 0, 0, 0, 64]);
        expected.extend_from_slice(b"\x01\0\0\0\x01\0\0\0p\x01");
        expected.extend_from_slice(&(-2i64).to_le_bytes());
        assert_eq!(req, expected);
    }

    #[test]
    fn outputs_and_errors_decode() {
        let mut w = Writer(answer_header(0));
        w.u32(1);
        w.tensor(&Tensor::new(
            "OUT",
            DataType::Bytes,
            vec![1],
            Bytes::from_static(b"\x02\0\0\0hi"),
        ));
        match decode_answer(&w.0, Call::Process).unwrap() {
            Answer::Outputs(t) => {
                assert_eq!(t[0].name, "OUT");
                assert_eq!(t[0].datatype, DataType::Bytes);
                assert_eq!(&t[0].data[..], b"\x02\0\0\0hi");
            }
            other => panic!("{other:?}"),
        }
        let mut w = Writer(answer_header(1));
        w.u8(0);
        w.string("bad INPUT");
        assert!(matches!(
            decode_answer(&w.0, Call::Process).unwrap(),
            Answer::Error(ErrorKind::InvalidArgument, m) if m == "bad INPUT"
        ));
    }

    #[test]
    fn malformed_answers_are_errors_not_allocations() {
        assert!(decode_answer(b"", Call::Process)
            .unwrap_err()
            .contains("no answer"));
        assert!(decode_answer(b"hello world", Call::Process)
            .unwrap_err()
            .contains("magic"));
        let mut huge = answer_header(0);
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_answer(&huge, Call::Process)
            .unwrap_err()
            .contains("more than the answer can hold"));
        let mut trailing = answer_header(0);
        trailing.extend_from_slice(&0u32.to_le_bytes());
        trailing.push(b'\n');
        assert!(decode_answer(&trailing, Call::Process)
            .unwrap_err()
            .contains("1 bytes follow"));
        let mut cut = Writer(answer_header(0));
        cut.u32(1);
        cut.string("OUT");
        cut.u8(10);
        cut.u32(0);
        cut.0.extend_from_slice(&100u64.to_le_bytes());
        cut.0.extend_from_slice(b"abc");
        assert!(decode_answer(&cut.0, Call::Process)
            .unwrap_err()
            .contains("ends inside"));
    }
}
