//! Typed access to the ABI's `tensor` record.
//!
//! Numeric tensors keep their elements in `data`: little-endian, row-major,
//! `element_count * element_size` bytes. BOOL is one byte per element
//! (0 = false, anything else = true). BYTES tensors keep `data` empty and
//! hold one byte string per element in `elements`.

use std::borrow::Cow;

use bytemuck::{Pod, PodCastError};
use half::{bf16, f16};

use crate::{Datatype, Error, Metadata, Result, Tensor, TensorSpec};

mod sealed {
    pub trait Sealed {}
}

/// A Rust type that is the element of a numeric tensor datatype:
/// `u8`..`u64`, `i8`..`i64`, `f32`, `f64`, [`half::f16`] (FP16) and
/// [`half::bf16`] (BF16). Used by [`Tensor::view`], [`Tensor::view_mut`]
/// and [`Tensor::from_slice`].
pub trait Element: Pod + sealed::Sealed {
    /// The tensor datatype whose elements this type holds.
    const DATATYPE: Datatype;
}

macro_rules! elements {
    ($($t:ty => $dt:ident),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DATATYPE: Datatype = Datatype::$dt;
        }
    )*};
}

elements! {
    u8 => Uint8, u16 => Uint16, u32 => Uint32, u64 => Uint64,
    i8 => Int8, i16 => Int16, i32 => Int32, i64 => Int64,
    f16 => Fp16, f32 => Fp32, f64 => Fp64, bf16 => Bf16,
}

const ALL_DATATYPES: [Datatype; 14] = [
    Datatype::Bool,
    Datatype::Uint8,
    Datatype::Uint16,
    Datatype::Uint32,
    Datatype::Uint64,
    Datatype::Int8,
    Datatype::Int16,
    Datatype::Int32,
    Datatype::Int64,
    Datatype::Fp16,
    Datatype::Fp32,
    Datatype::Fp64,
    Datatype::Bf16,
    Datatype::Bytes,
];

impl Datatype {
    /// The KServe v2 / Triton name: `BOOL`, `UINT8`, ..., `FP32`, `BF16`, `BYTES`.
    pub fn name(self) -> &'static str {
        match self {
            Datatype::Bool => "BOOL",
            Datatype::Uint8 => "UINT8",
            Datatype::Uint16 => "UINT16",
            Datatype::Uint32 => "UINT32",
            Datatype::Uint64 => "UINT64",
            Datatype::Int8 => "INT8",
            Datatype::Int16 => "INT16",
            Datatype::Int32 => "INT32",
            Datatype::Int64 => "INT64",
            Datatype::Fp16 => "FP16",
            Datatype::Fp32 => "FP32",
            Datatype::Fp64 => "FP64",
            Datatype::Bf16 => "BF16",
            Datatype::Bytes => "BYTES",
        }
    }

    /// The datatype with the given KServe name (as [`Datatype::name`] writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        ALL_DATATYPES.into_iter().find(|d| d.name() == name)
    }

    /// Bytes per element in `data`; `None` for BYTES (which uses `elements`).
    pub fn byte_size(self) -> Option<usize> {
        Some(match self {
            Datatype::Bool | Datatype::Uint8 | Datatype::Int8 => 1,
            Datatype::Uint16 | Datatype::Int16 | Datatype::Fp16 | Datatype::Bf16 => 2,
            Datatype::Uint32 | Datatype::Int32 | Datatype::Fp32 => 4,
            Datatype::Uint64 | Datatype::Int64 | Datatype::Fp64 => 8,
            Datatype::Bytes => return None,
        })
    }
}

impl core::fmt::Display for Datatype {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// `bytes` as elements of `T`: borrowed when aligned, copied otherwise.
/// `bytes.len()` is a multiple of `size_of::<T>()` (checked by the caller).
fn cast_or_copy<T: Element>(bytes: &[u8]) -> Cow<'_, [T]> {
    match bytemuck::try_cast_slice::<u8, T>(bytes) {
        Ok(slice) => Cow::Borrowed(slice),
        Err(_) => Cow::Owned(
            bytes
                .chunks_exact(core::mem::size_of::<T>())
                .map(bytemuck::pod_read_unaligned)
                .collect(),
        ),
    }
}

/// Number of elements of `shape` (1 for a scalar, `[]`).
fn element_count(name: &str, shape: &[i64]) -> Result<usize> {
    shape.iter().try_fold(1usize, |n, &d| {
        let d = usize::try_from(d).map_err(|_| {
            Error::invalid(format!(
                "tensor '{name}': negative dimension in shape {shape:?}"
            ))
        })?;
        n.checked_mul(d)
            .ok_or_else(|| Error::invalid(format!("tensor '{name}': shape {shape:?} is too large")))
    })
}

macro_rules! typed_views {
    ($($t:ty, $as:ident, $as_mut:ident, $from:ident, $dt:literal;)*) => {$(
        #[doc = concat!("The elements of a ", $dt, " tensor: borrowed from `data` when it is aligned (it is in practice), copied otherwise.")]
        ///
        /// Fails (`invalid-argument`) when the datatype differs or `data`
        /// does not hold exactly the shape's number of elements.
        pub fn $as(&self) -> Result<Cow<'_, [$t]>> {
            self.view::<$t>()
        }

        #[doc = concat!("The elements of a ", $dt, " tensor, mutable in place (no copy): see [`Tensor::view_mut`].")]
        pub fn $as_mut(&mut self) -> Result<&mut [$t]> {
            self.view_mut::<$t>()
        }

        #[doc = concat!("A ", $dt, " tensor holding a copy of `values`, which should have the shape's number of elements (kiln checks outputs).")]
        pub fn $from(name: impl Into<String>, shape: &[i64], values: &[$t]) -> Tensor {
            Tensor::from_slice(name, shape, values)
        }
    )*};
}

impl Tensor {
    /// A tensor from raw parts: `data` is little-endian, row-major. For
    /// BYTES use [`Tensor::from_bytes`].
    pub fn new(
        name: impl Into<String>,
        datatype: Datatype,
        shape: &[i64],
        data: Vec<u8>,
    ) -> Tensor {
        Tensor {
            name: name.into(),
            datatype,
            shape: shape.to_vec(),
            data,
            elements: Vec::new(),
        }
    }

    /// A numeric tensor holding a copy of `values`; the datatype follows
    /// from `T` (`f32` gives FP32, [`half::f16`] gives FP16, ...).
    pub fn from_slice<T: Element>(name: impl Into<String>, shape: &[i64], values: &[T]) -> Tensor {
        Tensor::new(
            name,
            T::DATATYPE,
            shape,
            bytemuck::cast_slice::<T, u8>(values).to_vec(),
        )
    }

    /// A BOOL tensor (one byte per element, 0 or 1).
    pub fn from_bool(name: impl Into<String>, shape: &[i64], values: &[bool]) -> Tensor {
        Tensor::new(
            name,
            Datatype::Bool,
            shape,
            values.iter().map(|&b| u8::from(b)).collect(),
        )
    }

    /// A BYTES tensor: one byte string per element, row-major.
    pub fn from_bytes(name: impl Into<String>, shape: &[i64], elements: Vec<Vec<u8>>) -> Tensor {
        Tensor {
            name: name.into(),
            datatype: Datatype::Bytes,
            shape: shape.to_vec(),
            data: Vec::new(),
            elements,
        }
    }

    /// A BYTES tensor of UTF-8 strings.
    pub fn from_strings<S: AsRef<str>>(
        name: impl Into<String>,
        shape: &[i64],
        strings: &[S],
    ) -> Tensor {
        Tensor::from_bytes(
            name,
            shape,
            strings
                .iter()
                .map(|s| s.as_ref().as_bytes().to_vec())
                .collect(),
        )
    }

    /// The same tensor under another name (e.g. to return an input,
    /// modified in place, as an output without copying it).
    pub fn with_name(mut self, name: impl Into<String>) -> Tensor {
        self.name = name.into();
        self
    }

    /// The same tensor with another shape of the same element count
    /// (a reshape; checked by [`Tensor::check`], not here).
    pub fn with_shape(mut self, shape: &[i64]) -> Tensor {
        self.shape = shape.to_vec();
        self
    }

    /// Number of elements the shape holds (1 for a scalar); fails on a
    /// negative dimension or an overflow.
    pub fn element_count(&self) -> Result<usize> {
        element_count(&self.name, &self.shape)
    }

    /// Checks that `data` (or `elements`, for BYTES) holds exactly the
    /// shape's number of elements, as kiln will when it gets this tensor
    /// back.
    pub fn check(&self) -> Result<()> {
        let count = self.element_count()?;
        match self.datatype.byte_size() {
            Some(size) => {
                if !self.elements.is_empty() {
                    return Err(Error::invalid(format!(
                        "tensor '{}' is {} but has BYTES elements",
                        self.name, self.datatype
                    )));
                }
                let want = count.checked_mul(size).ok_or_else(|| {
                    Error::invalid(format!(
                        "tensor '{}': shape {:?} is too large",
                        self.name, self.shape
                    ))
                })?;
                if self.data.len() != want {
                    return Err(Error::invalid(format!(
                        "tensor '{}': shape {:?} of {} needs {want} bytes, data has {}",
                        self.name,
                        self.shape,
                        self.datatype,
                        self.data.len()
                    )));
                }
            }
            None => {
                if !self.data.is_empty() {
                    return Err(Error::invalid(format!(
                        "tensor '{}' is BYTES but has raw data (BYTES uses elements)",
                        self.name
                    )));
                }
                if self.elements.len() != count {
                    return Err(Error::invalid(format!(
                        "tensor '{}': shape {:?} needs {count} BYTES elements, it has {}",
                        self.name,
                        self.shape,
                        self.elements.len()
                    )));
                }
            }
        }
        Ok(())
    }

    fn expect(&self, datatype: Datatype) -> Result<()> {
        if self.datatype != datatype {
            return Err(Error::invalid(format!(
                "tensor '{}' is {}, expected {datatype}",
                self.name, self.datatype
            )));
        }
        self.check()
    }

    /// The elements of a tensor of `T`'s datatype, borrowed from `data`
    /// when it is aligned for `T` (it is in practice: kiln's buffers come
    /// from the guest allocator), copied otherwise.
    ///
    /// Fails (`invalid-argument`) when the datatype is not `T`'s or `data`
    /// does not hold exactly the shape's number of elements.
    pub fn view<T: Element>(&self) -> Result<Cow<'_, [T]>> {
        self.expect(T::DATATYPE)?;
        Ok(cast_or_copy(&self.data))
    }

    /// The elements of a tensor of `T`'s datatype, mutable in place: the
    /// cheapest way to turn an input into an output (see
    /// [`Tensor::with_name`]). Same checks as [`Tensor::view`]; if `data`
    /// is not aligned for `T` it is first moved to a new buffer.
    pub fn view_mut<T: Element>(&mut self) -> Result<&mut [T]> {
        self.expect(T::DATATYPE)?;
        if self.data.is_empty() {
            // An empty list's pointer is dangling (1 for list<u8>), so not
            // aligned for T: there is nothing to view anyway.
            return Ok(&mut []);
        }
        if let Err(PodCastError::TargetAlignmentGreaterAndInputNotAligned) =
            bytemuck::try_cast_slice::<u8, T>(&self.data)
        {
            self.data = self.data.clone();
        }
        let name = &self.name;
        bytemuck::try_cast_slice_mut::<u8, T>(&mut self.data).map_err(|e| {
            Error::internal(format!(
                "tensor '{name}': cannot view data as {}: {e}",
                T::DATATYPE
            ))
        })
    }

    typed_views! {
        u8, as_u8, as_u8_mut, from_u8, "UINT8";
        u16, as_u16, as_u16_mut, from_u16, "UINT16";
        u32, as_u32, as_u32_mut, from_u32, "UINT32";
        u64, as_u64, as_u64_mut, from_u64, "UINT64";
        i8, as_i8, as_i8_mut, from_i8, "INT8";
        i16, as_i16, as_i16_mut, from_i16, "INT16";
        i32, as_i32, as_i32_mut, from_i32, "INT32";
        i64, as_i64, as_i64_mut, from_i64, "INT64";
        f16, as_f16, as_f16_mut, from_f16, "FP16";
        f32, as_f32, as_f32_mut, from_f32, "FP32";
        f64, as_f64, as_f64_mut, from_f64, "FP64";
        bf16, as_bf16, as_bf16_mut, from_bf16, "BF16";
    }

    /// The elements of a BOOL tensor (a nonzero byte is `true`).
    pub fn as_bool(&self) -> Result<Vec<bool>> {
        self.expect(Datatype::Bool)?;
        Ok(self.data.iter().map(|&b| b != 0).collect())
    }

    /// The elements of a BYTES tensor, one byte string each, row-major.
    pub fn as_elements(&self) -> Result<&[Vec<u8>]> {
        self.expect(Datatype::Bytes)?;
        Ok(&self.elements)
    }

    /// The elements of a BYTES tensor as UTF-8 strings; fails
    /// (`invalid-argument`) on an element that is not UTF-8.
    pub fn as_strs(&self) -> Result<Vec<&str>> {
        self.as_elements()?
            .iter()
            .enumerate()
            .map(|(i, e)| {
                core::str::from_utf8(e).map_err(|err| {
                    Error::invalid(format!(
                        "tensor '{}': element {i} is not UTF-8: {err}",
                        self.name
                    ))
                })
            })
            .collect()
    }

    /// Any numeric (or BOOL) tensor converted to `f32` elements, rounding
    /// where `f32` cannot hold the value exactly (64-bit integers, FP64).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        Ok(match self.datatype {
            Datatype::Fp32 => self.as_f32()?.into_owned(),
            Datatype::Fp16 => self.as_f16()?.iter().map(|x| x.to_f32()).collect(),
            Datatype::Bf16 => self.as_bf16()?.iter().map(|x| x.to_f32()).collect(),
            _ => self.to_f64_vec()?.into_iter().map(|x| x as f32).collect(),
        })
    }

    /// Any numeric (or BOOL) tensor converted to `f64` elements, rounding
    /// 64-bit integers beyond 2^53.
    pub fn to_f64_vec(&self) -> Result<Vec<f64>> {
        fn conv<T: Copy>(v: &[T], f: impl Fn(T) -> f64) -> Vec<f64> {
            v.iter().map(|&x| f(x)).collect()
        }
        Ok(match self.datatype {
            Datatype::Bool => conv(&self.as_bool()?, |b| f64::from(u8::from(b))),
            Datatype::Uint8 => conv(&self.as_u8()?, f64::from),
            Datatype::Uint16 => conv(&self.as_u16()?, f64::from),
            Datatype::Uint32 => conv(&self.as_u32()?, f64::from),
            Datatype::Uint64 => conv(&self.as_u64()?, |x| x as f64),
            Datatype::Int8 => conv(&self.as_i8()?, f64::from),
            Datatype::Int16 => conv(&self.as_i16()?, f64::from),
            Datatype::Int32 => conv(&self.as_i32()?, f64::from),
            Datatype::Int64 => conv(&self.as_i64()?, |x| x as f64),
            Datatype::Fp16 => conv(&self.as_f16()?, f64::from),
            Datatype::Fp32 => conv(&self.as_f32()?, f64::from),
            Datatype::Fp64 => self.as_f64()?.into_owned(),
            Datatype::Bf16 => conv(&self.as_bf16()?, f64::from),
            Datatype::Bytes => {
                return Err(Error::invalid(format!(
                    "tensor '{}' is BYTES, not numeric",
                    self.name
                )))
            }
        })
    }
}

impl TensorSpec {
    /// A declared tensor; `-1` in `dims` is a variable dimension.
    pub fn new(name: impl Into<String>, datatype: Datatype, dims: &[i64]) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            datatype,
            dims: dims.to_vec(),
        }
    }
}

impl Metadata {
    /// Metadata with no tensors yet; typically
    /// `Metadata::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))`.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Metadata {
        Metadata {
            name: name.into(),
            version: version.into(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// Adds a declared input.
    pub fn input(mut self, spec: TensorSpec) -> Metadata {
        self.inputs.push(spec);
        self
    }

    /// Adds a declared output.
    pub fn output(mut self, spec: TensorSpec) -> Metadata {
        self.outputs.push(spec);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn round_trips_every_numeric_type() {
        let t = Tensor::from_f32("X", &[2, 2], &[1.0, -2.5, 3.0, 4.0]);
        assert_eq!(t.datatype, Datatype::Fp32);
        assert_eq!(t.data.len(), 16);
        assert_eq!(&t.data[4..8], &(-2.5f32).to_le_bytes());
        assert_eq!(&*t.as_f32().unwrap(), &[1.0, -2.5, 3.0, 4.0]);
        assert_eq!(
            &*Tensor::from_i64("X", &[3], &[1, -2, i64::MAX])
                .as_i64()
                .unwrap(),
            &[1, -2, i64::MAX]
        );
        assert_eq!(
            &*Tensor::from_u16("X", &[1], &[65535]).as_u16().unwrap(),
            &[65535]
        );
        assert_eq!(
            Tensor::from_f16("X", &[1], &[f16::from_f32(1.5)])
                .to_f32_vec()
                .unwrap(),
            vec![1.5]
        );
        assert_eq!(
            Tensor::from_bf16("X", &[1], &[bf16::from_f32(-2.0)])
                .to_f64_vec()
                .unwrap(),
            vec![-2.0]
        );
        assert_eq!(
            Tensor::from_bool("X", &[3], &[true, false, true])
                .as_bool()
                .unwrap(),
            vec![true, false, true]
        );
        assert_eq!(
            Tensor::from_i8("X", &[2], &[-1, 1]).to_f32_vec().unwrap(),
            vec![-1.0, 1.0]
        );
    }

    #[test]
    fn scalars_have_one_element() {
        let t = Tensor::from_f64("S", &[], &[7.0]);
        assert_eq!(t.element_count().unwrap(), 1);
        assert_eq!(&*t.as_f64().unwrap(), &[7.0]);
    }

    #[test]
    fn wrong_datatype_and_length_are_invalid_argument() {
        let t = Tensor::from_i32("IN", &[2], &[1, 2]);
        let e = t.as_f32().unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert_eq!(e.message, "tensor 'IN' is INT32, expected FP32");
        let short = Tensor::new("IN", Datatype::Fp32, &[3], vec![0; 8]);
        assert!(short
            .as_f32()
            .unwrap_err()
            .message
            .contains("needs 12 bytes, data has 8"));
        let neg = Tensor::new("IN", Datatype::Fp32, &[-1], vec![]);
        assert!(neg
            .check()
            .unwrap_err()
            .message
            .contains("negative dimension"));
    }

    #[test]
    fn unaligned_data_is_copied() {
        let mut bytes = vec![0u8; 1];
        bytes.extend_from_slice(&1.5f32.to_le_bytes());
        bytes.extend_from_slice(&(-3.0f32).to_le_bytes());
        let view = cast_or_copy::<f32>(&bytes[1..]);
        assert!(matches!(view, Cow::Owned(_)));
        assert_eq!(&*view, &[1.5, -3.0]);
        let aligned = Tensor::new("A", Datatype::Fp32, &[2], bytes[1..].to_vec());
        assert!(matches!(aligned.as_f32().unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn empty_tensor_views_in_place() {
        // Vec::new()'s pointer is 1, like an empty list<u8> from the host.
        let mut t = Tensor::new("IN", Datatype::Fp32, &[2, 0], Vec::new());
        assert!(t.as_f32_mut().unwrap().is_empty());
        assert!(t.as_f32().unwrap().is_empty());
    }

    #[test]
    fn in_place_view_modifies_data() {
        let mut t = Tensor::from_f32("IN", &[3], &[1.0, 2.0, 3.0]);
        t.as_f32_mut().unwrap().iter_mut().for_each(|x| *x *= 2.0);
        let t = t.with_name("OUT");
        assert_eq!(t.name, "OUT");
        assert_eq!(&*t.as_f32().unwrap(), &[2.0, 4.0, 6.0]);
    }

    #[test]
    fn bytes_tensors() {
        let t = Tensor::from_strings("S", &[2], &["héllo", ""]);
        assert_eq!(t.as_strs().unwrap(), vec!["héllo", ""]);
        assert_eq!(t.as_elements().unwrap()[0], "héllo".as_bytes());
        assert!(t.to_f32_vec().is_err());
        let bad = Tensor::from_bytes("B", &[1], vec![vec![0xff]]);
        assert!(bad
            .as_strs()
            .unwrap_err()
            .message
            .contains("element 0 is not UTF-8"));
        let wrong = Tensor::from_bytes("B", &[3], vec![vec![1]]);
        assert!(wrong
            .check()
            .unwrap_err()
            .message
            .contains("needs 3 BYTES elements, it has 1"));
    }

    #[test]
    fn datatype_names() {
        for d in ALL_DATATYPES {
            assert_eq!(Datatype::from_name(d.name()), Some(d));
        }
        assert_eq!(Datatype::Fp32.to_string(), "FP32");
        assert_eq!(Datatype::Bytes.byte_size(), None);
        assert_eq!(Datatype::Bf16.byte_size(), Some(2));
    }

    #[test]
    fn metadata_builder() {
        let m = Metadata::new("m", "1")
            .input(TensorSpec::new("A", Datatype::Fp32, &[-1, 3]))
            .output(TensorSpec::new("B", Datatype::Int64, &[1]));
        assert_eq!(m.inputs[0].dims, vec![-1, 3]);
        assert_eq!(m.outputs[0].datatype, Datatype::Int64);
    }
}
