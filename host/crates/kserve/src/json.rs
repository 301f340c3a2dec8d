//! KServe v2 JSON: inference requests parsed without building a JSON tree,
//! and tensors written without one.
//!
//! A parsed `serde_json::Value` costs 32 bytes or more per number, and a
//! number costs 2 bytes of body (`0,`), so a 512 KiB gzipped body of zeros
//! could become gigabytes. Here a tensor's `data` stays a borrowed slice of
//! the body ([`RawValue`]) until its datatype and shape are known, then is
//! decoded straight into little-endian bytes, counting elements as it goes and
//! stopping at the first one past the shape. Lists (inputs, outputs,
//! parameters, dims) are counted against [`crate::limits`] while they are
//! read, and nesting is bounded, so a request costs at most about twice its
//! body. Numbers out of a datatype's range are errors, never infinities or
//! wrapped integers.
//!
//! Outputs are written the other way: floats with the shortest text that
//! reads back to the same value (`0.1` for FP32 0.1, not
//! `0.10000000149011612`), straight into the response buffer.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::limits;
use kiln_types::error::{KilnError, Result};
use kiln_types::tensor::{bytes_elements, DataType, Tensor};
use kiln_types::text::clip;

/// A list whose length is checked against a limit while it is read.
pub struct Bounded<T, L>(pub Vec<T>, PhantomData<L>);

/// Which limit a [`Bounded`] list is under.
pub trait ListLimit {
    const WHAT: &'static str;
    const FLAG: &'static str;
    fn max() -> usize;
}

pub struct InputsLimit;
impl ListLimit for InputsLimit {
    const WHAT: &'static str = "'inputs'";
    const FLAG: &'static str = "max-request-inputs";
    fn max() -> usize {
        limits::get().max_inputs
    }
}

pub struct OutputsLimit;
impl ListLimit for OutputsLimit {
    const WHAT: &'static str = "'outputs'";
    const FLAG: &'static str = "max-request-outputs";
    fn max() -> usize {
        limits::get().max_outputs
    }
}

pub struct DimsLimit;
impl ListLimit for DimsLimit {
    const WHAT: &'static str = "a 'shape'";
    const FLAG: &'static str = "max-tensor-dims";
    fn max() -> usize {
        limits::get().max_dims
    }
}

impl<T, L> Default for Bounded<T, L> {
    fn default() -> Self {
        Self(Vec::new(), PhantomData)
    }
}

impl<'de, T: Deserialize<'de>, L: ListLimit> Deserialize<'de> for Bounded<T, L> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<T, L>(PhantomData<(T, L)>);
        impl<'de, T: Deserialize<'de>, L: ListLimit> Visitor<'de> for V<T, L> {
            type Value = Bounded<T, L>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a list of at most {} entries", L::max())
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let max = L::max();
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(max).min(64));
                while let Some(item) = seq.next_element()? {
                    if out.len() == max {
                        return Err(de::Error::custom(format!(
                            "{} has more than {max} entries (--{})",
                            L::WHAT,
                            L::FLAG
                        )));
                    }
                    out.push(item);
                }
                Ok(Bounded(out, PhantomData))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// A KServe parameter value as JSON carries it: a scalar.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Double(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean, a number or a string")
            }
            fn visit_bool<E>(self, v: bool) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> std::result::Result<Scalar, E> {
                Ok(i64::try_from(v).map_or(Scalar::Uint(v), Scalar::Int))
            }
            fn visit_f64<E>(self, v: f64) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Double(v))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Text(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Text(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl Scalar {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Scalar::Int(i) => u64::try_from(i).ok(),
            Scalar::Uint(u) => Some(u),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Scalar::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// A `parameters` object: scalar values, at most `max_parameters` of them,
/// in the order sent. Arrays and objects are refused (with the key) before
/// they are parsed.
#[derive(Debug, Default)]
pub struct Parameters(pub Vec<(String, Scalar)>);

impl Parameters {
    pub fn get(&self, key: &str) -> Option<&Scalar> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl<'de> Deserialize<'de> for Parameters {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Parameters;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of parameters")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Parameters, A::Error> {
                let max = limits::get().max_parameters;
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if out.len() == max {
                        return Err(de::Error::custom(format!(
                            "'parameters' has more than {max} entries (--max-request-parameters)"
                        )));
                    }
                    let value = map.next_value::<Scalar>().map_err(|e| {
                        de::Error::custom(format!("parameter '{}': {e}", clip(&key)))
                    })?;
                    out.push((key, value));
                }
                Ok(Parameters(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
pub struct InferRequestJson<'a> {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub parameters: Parameters,
    #[serde(borrow)]
    pub inputs: Bounded<InputJson<'a>, InputsLimit>,
    #[serde(default)]
    pub outputs: Bounded<OutputJson, OutputsLimit>,
}

#[derive(Deserialize)]
pub struct InputJson<'a> {
    pub name: String,
    pub shape: Bounded<i64, DimsLimit>,
    pub datatype: String,
    #[serde(default)]
    pub parameters: Parameters,
    /// Left unparsed until the datatype and shape are known.
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub struct OutputJson {
    pub name: String,
    #[serde(default)]
    pub parameters: Parameters,
}

/// Parses the JSON part of an inference request.
pub fn parse_request(json: &[u8]) -> Result<InferRequestJson<'_>> {
    serde_json::from_slice(json).map_err(|e| {
        KilnError::invalid(format!(
            "malformed inference request JSON: {}",
            clip_json_error(&e)
        ))
    })
}

/// serde_json's messages quote the offending input (a key, a string): keep
/// them bounded too.
fn clip_json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let mut out = clip(&text).into_owned();
    if out.len() < text.len() {
        // The position is what locates the problem; keep it.
        out.push_str(&format!(" at line {} column {}", e.line(), e.column()));
    }
    out
}

/// Decodes a tensor's JSON `data` into little-endian bytes for `datatype`,
/// expecting exactly `expected` elements (nested arrays in any shape, or
/// flat).
pub fn decode_data(
    name: &str,
    datatype: DataType,
    expected: usize,
    data: &RawValue,
) -> Result<Vec<u8>> {
    let limits = limits::get();
    if expected as u64 > limits.max_tensor_elements {
        return Err(KilnError::invalid(format!(
            "input '{}': {expected} elements is more than the limit of {} (--max-tensor-elements)",
            clip(name),
            limits.max_tensor_elements
        )));
    }
    // Never more than the body could hold (two bytes per number at least),
    // whatever the shape claims.
    let capacity = expected.min(data.get().len() / 2 + 1);
    let mut sink = Sink {
        name,
        datatype,
        expected,
        count: 0,
        out: Vec::with_capacity(capacity.saturating_mul(datatype.element_size().unwrap_or(8))),
        max_depth: limits.max_json_depth,
        error: None,
    };
    let mut de = serde_json::Deserializer::from_str(data.get());
    let parsed = Element {
        sink: &mut sink,
        depth: 0,
    }
    .deserialize(&mut de);
    if let Some(e) = sink.error.take() {
        return Err(e);
    }
    parsed.map_err(|e| {
        KilnError::invalid(format!(
            "input '{}': malformed 'data': {}",
            clip(name),
            clip_json_error(&e)
        ))
    })?;
    if sink.count != expected {
        return Err(KilnError::invalid(format!(
            "input '{}': its shape needs {expected} elements, 'data' has {}",
            clip(name),
            sink.count
        )));
    }
    Ok(sink.out)
}

/// Where decoded elements go; the first domain error is kept here (serde's
/// error type would lose its kind).
struct Sink<'n> {
    name: &'n str,
    datatype: DataType,
    expected: usize,
    count: usize,
    out: Vec<u8>,
    max_depth: usize,
    error: Option<KilnError>,
}

impl Sink<'_> {
    fn fail<E: de::Error>(&mut self, e: KilnError) -> E {
        let message = e.message().to_string();
        self.error = Some(e);
        E::custom(message)
    }

    fn next<E: de::Error>(&mut self) -> std::result::Result<(), E> {
        if self.count == self.expected {
            let e = KilnError::invalid(format!(
                "input '{}': 'data' has more than the {} elements its shape needs",
                clip(self.name),
                self.expected
            ));
            return Err(self.fail(e));
        }
        self.count += 1;
        Ok(())
    }

    fn bad<E: de::Error>(&mut self, value: &dyn fmt::Display) -> E {
        let shown = value.to_string();
        let e = KilnError::invalid(format!(
            "input '{}': value {} is not a valid {}",
            clip(self.name),
            clip(&shown),
            self.datatype
        ));
        self.fail(e)
    }

    fn integer<E: de::Error>(&mut self, v: i128) -> std::result::Result<(), E> {
        macro_rules! put {
            ($t:ty) => {
                match <$t>::try_from(v) {
                    Ok(x) => self.out.extend_from_slice(&x.to_le_bytes()),
                    Err(_) => return Err(self.bad(&v)),
                }
            };
        }
        match self.datatype {
            DataType::Uint8 => put!(u8),
            DataType::Uint16 => put!(u16),
            DataType::Uint32 => put!(u32),
            DataType::Uint64 => put!(u64),
            DataType::Int8 => put!(i8),
            DataType::Int16 => put!(i16),
            DataType::Int32 => put!(i32),
            DataType::Int64 => put!(i64),
            DataType::Fp16 | DataType::Bf16 | DataType::Fp32 | DataType::Fp64 => {
                return self.float(v as f64, &v);
            }
            DataType::Bool | DataType::Bytes => return Err(self.bad(&v)),
        }
        Ok(())
    }

    fn float<E: de::Error>(
        &mut self,
        x: f64,
        shown: &dyn fmt::Display,
    ) -> std::result::Result<(), E> {
        // A finite number that does not fit the type is the client's error,
        // not an infinity.
        let fits = |max: f64| x.is_finite() && x.abs() <= max;
        match self.datatype {
            DataType::Fp16 if fits(f64::from(half::f16::MAX)) => self
                .out
                .extend_from_slice(&half::f16::from_f64(x).to_le_bytes()),
            DataType::Bf16 if fits(f64::from(half::bf16::MAX)) => self
                .out
                .extend_from_slice(&half::bf16::from_f64(x).to_le_bytes()),
            DataType::Fp32 if fits(f64::from(f32::MAX)) => {
                self.out.extend_from_slice(&(x as f32).to_le_bytes())
            }
            DataType::Fp64 => self.out.extend_from_slice(&x.to_le_bytes()),
            _ => return Err(self.bad(shown)),
        }
        Ok(())
    }
}

/// One element of `data`: a nested array or a scalar.
struct Element<'s, 'n> {
    sink: &'s mut Sink<'n>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Element<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Element<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} values, in arrays", self.sink.datatype)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        if self.depth >= self.sink.max_depth {
            let e = KilnError::invalid(format!(
                "input '{}': 'data' nests arrays deeper than {} (--max-json-depth)",
                clip(self.sink.name),
                self.sink.max_depth
            ));
            return Err(self.sink.fail(e));
        }
        let depth = self.depth + 1;
        while seq
            .next_element_seed(Element {
                sink: &mut *self.sink,
                depth,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<(), E> {
        self.sink.next()?;
        if self.sink.datatype != DataType::Bool {
            return Err(self.sink.bad(&v));
        }
        self.sink.out.push(v as u8);
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<(), E> {
        self.sink.next()?;
        self.sink.integer(i128::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<(), E> {
        self.sink.next()?;
        self.sink.integer(i128::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<(), E> {
        self.sink.next()?;
        self.sink.float(v, &v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<(), E> {
        self.sink.next()?;
        if self.sink.datatype != DataType::Bytes {
            return Err(self.sink.bad(&format_args!("\"{v}\"")));
        }
        let len = u32::try_from(v.len()).map_err(|_| self.sink.bad(&"a string over 4 GiB"))?;
        self.sink.out.extend_from_slice(&len.to_le_bytes());
        self.sink.out.extend_from_slice(v.as_bytes());
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> std::result::Result<(), E> {
        self.sink.next()?;
        Err(self.sink.bad(&"null"))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> std::result::Result<(), A::Error> {
        self.sink.next()?;
        Err(self.sink.bad(&"an object"))
    }
}

/// A tensor's elements as a JSON array (flat, row-major), written without an
/// intermediate tree; floats in their shortest round-trip form.
pub struct DataJson<'a>(pub &'a Tensor);

impl Serialize for DataJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let t = self.0;
        let d = &t.data[..];
        macro_rules! nums {
            ($t:ty, $n:expr, $map:expr) => {{
                let mut seq = s.serialize_seq(Some(d.len() / $n))?;
                for c in d.chunks_exact($n) {
                    let v = <$t>::from_le_bytes(c.try_into().expect("chunk of N"));
                    seq.serialize_element(&$map(v))?;
                }
                seq.end()
            }};
        }
        match t.datatype {
            DataType::Bool => nums!(u8, 1, |b: u8| b != 0),
            DataType::Uint8 => nums!(u8, 1, |v| v),
            DataType::Uint16 => nums!(u16, 2, |v| v),
            DataType::Uint32 => nums!(u32, 4, |v| v),
            DataType::Uint64 => nums!(u64, 8, |v| v),
            DataType::Int8 => nums!(i8, 1, |v| v),
            DataType::Int16 => nums!(i16, 2, |v| v),
            DataType::Int32 => nums!(i32, 4, |v| v),
            DataType::Int64 => nums!(i64, 8, |v| v),
            DataType::Fp16 => nums!(u16, 2, |v| half::f16::from_bits(v).to_f32()),
            DataType::Bf16 => nums!(u16, 2, |v| half::bf16::from_bits(v).to_f32()),
            DataType::Fp32 => nums!(f32, 4, |v| v),
            DataType::Fp64 => nums!(f64, 8, |v| v),
            DataType::Bytes => {
                let elements = bytes_elements(d).unwrap_or_default();
                let mut seq = s.serialize_seq(Some(elements.len()))?;
                for e in elements {
                    seq.serialize_element(&String::from_utf8_lossy(e))?;
                }
                seq.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    fn decode(datatype: DataType, expected: usize, json: &str) -> Result<Vec<u8>> {
        decode_data("x", datatype, expected, &raw(json))
    }

    #[test]
    fn nested_and_flat_arrays_decode_alike() {
        let a = decode(DataType::Int32, 4, "[[1, 2], [3, -4]]").unwrap();
        let b = decode(DataType::Int32, 4, "[1, 2, 3, -4]").unwrap();
        assert_eq!(a, b);
        assert_eq!(i32::from_le_bytes(a[12..16].try_into().unwrap()), -4);
        let s = decode(DataType::Bytes, 2, r#"["", "héllo"]"#).unwrap();
        assert_eq!(
            bytes_elements(&s).unwrap(),
            vec![&b""[..], "héllo".as_bytes()]
        );
    }

    #[test]
    fn out_of_range_values_are_errors_naming_the_tensor() {
        for (datatype, json) in [
            (DataType::Fp32, "[1e39]"),
            (DataType::Fp16, "[70000]"),
            (DataType::Int8, "[300]"),
            (DataType::Uint8, "[-1]"),
            (DataType::Int64, "[9223372036854775808]"),
            (DataType::Fp32, r#"["1"]"#),
            (DataType::Bool, "[1]"),
            (DataType::Fp32, "[null]"),
        ] {
            let e = decode(datatype, 1, json).unwrap_err();
            assert!(
                e.message().contains("'x'") && e.message().contains("not a valid"),
                "{json}: {e}"
            );
        }
        assert!(decode(DataType::Fp64, 1, "[1e300]").is_ok());
        assert!(decode(DataType::Fp32, 1, "[3.4e38]").is_ok());
    }

    #[test]
    fn counts_and_depth_are_bounded_while_reading() {
        let e = decode(DataType::Fp32, 3, "[1.0]").unwrap_err();
        assert!(
            e.message().contains("needs 3 elements, 'data' has 1"),
            "{e}"
        );
        let e = decode(DataType::Fp32, 1, "[1, 2, 3]").unwrap_err();
        assert!(e.message().contains("more than the 1 elements"), "{e}");
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let e = decode(DataType::Fp32, 1, &deep).unwrap_err();
        assert!(e.message().contains("deeper than"), "{e}");
    }

    #[test]
    fn lists_and_parameters_are_bounded() {
        let many = format!(
            r#"{{"inputs":[{}]}}"#,
            vec![r#"{"name":"a","shape":[1],"datatype":"FP32"}"#; 2000].join(",")
        );
        let e = parse_request(many.as_bytes()).err().unwrap();
        assert!(e.message().contains("more than 1024 entries"), "{e}");
        let nested = r#"{"inputs":[],"parameters":{"p":[[[1]]]}}"#;
        let e = parse_request(nested.as_bytes()).err().unwrap();
        assert!(e.message().contains("parameter 'p'"), "{e}");
        let ok = parse_request(br#"{"inputs":[],"parameters":{"a":1,"b":"x","c":true,"d":0.5}}"#)
            .unwrap();
        assert_eq!(ok.parameters.get("b"), Some(&Scalar::Text("x".into())));
    }

    #[test]
    fn floats_render_in_their_shortest_round_trip_form() {
        let data: Vec<u8> = [0.1f32, 1e-8, f32::MAX]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let t = Tensor::new("y", DataType::Fp32, vec![3], Bytes::from(data));
        let s = serde_json::to_string(&DataJson(&t)).unwrap();
        assert_eq!(s, "[0.1,1e-8,3.4028235e+38]");
        let h = Tensor::new(
            "h",
            DataType::Fp16,
            vec![1],
            Bytes::from(half::f16::from_f32(0.5).to_le_bytes().to_vec()),
        );
        assert_eq!(serde_json::to_string(&DataJson(&h)).unwrap(), "[0.5]");
    }
}
