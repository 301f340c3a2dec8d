//! Tensors as they travel between the protocol layer and the backends:
//! a KServe datatype, a shape and little-endian bytes. Payloads are
//! `bytes::Bytes`, so the buffer a request arrived in is the buffer the
//! backend reads.

use bytes::Bytes;

use crate::error::{KilnError, Result};

/// KServe v2 tensor datatypes. `Bytes` is KServe's `BYTES` (Triton's
/// `TYPE_STRING`): each element is a 4-byte little-endian length and the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Fp32,
    Fp64,
    Bf16,
    Bytes,
}

impl DataType {
    pub const ALL: [DataType; 14] = [
        Self::Bool,
        Self::Uint8,
        Self::Uint16,
        Self::Uint32,
        Self::Uint64,
        Self::Int8,
        Self::Int16,
        Self::Int32,
        Self::Int64,
        Self::Fp16,
        Self::Fp32,
        Self::Fp64,
        Self::Bf16,
        Self::Bytes,
    ];

    /// The KServe wire name (`"FP32"`, `"BYTES"`, ...).
    pub fn kserve_name(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::Uint8 => "UINT8",
            Self::Uint16 => "UINT16",
            Self::Uint32 => "UINT32",
            Self::Uint64 => "UINT64",
            Self::Int8 => "INT8",
            Self::Int16 => "INT16",
            Self::Int32 => "INT32",
            Self::Int64 => "INT64",
            Self::Fp16 => "FP16",
            Self::Fp32 => "FP32",
            Self::Fp64 => "FP64",
            Self::Bf16 => "BF16",
            Self::Bytes => "BYTES",
        }
    }

    pub fn from_kserve(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.kserve_name() == name)
    }

    /// Bytes per element; `None` for variable-size `BYTES`.
    pub fn element_size(self) -> Option<usize> {
        Some(match self {
            Self::Bool | Self::Uint8 | Self::Int8 => 1,
            Self::Uint16 | Self::Int16 | Self::Fp16 | Self::Bf16 => 2,
            Self::Uint32 | Self::Int32 | Self::Fp32 => 4,
            Self::Uint64 | Self::Int64 | Self::Fp64 => 8,
            Self::Bytes => return None,
        })
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kserve_name())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
    /// Little-endian element bytes; for `BYTES`, the length-prefixed elements.
    pub data: Bytes,
}

/// Number of elements of `shape`, rejecting negative dims and overflow.
pub fn element_count(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        if d < 0 {
            None
        } else {
            acc.checked_mul(d as usize)
        }
    })
}

impl Tensor {
    pub fn new(name: impl Into<String>, datatype: DataType, shape: Vec<i64>, data: Bytes) -> Self {
        Self {
            name: name.into(),
            datatype,
            shape,
            data,
        }
    }

    pub fn element_count(&self) -> Result<usize> {
        element_count(&self.shape).ok_or_else(|| {
            KilnError::invalid(format!(
                "tensor '{}' has an invalid shape {:?}: dims must be non-negative",
                self.name, self.shape
            ))
        })
    }

    /// Checks that the payload holds exactly the elements the shape says.
    pub fn check_byte_size(&self) -> Result<()> {
        let count = self.element_count()?;
        match self.datatype.element_size() {
            Some(size) => {
                let expected = count.checked_mul(size).ok_or_else(|| {
                    KilnError::invalid(format!("tensor '{}' is too large", self.name))
                })?;
                if self.data.len() != expected {
                    return Err(KilnError::invalid(format!(
                        "tensor '{}': byte size mismatch: expected {expected} bytes for {count} {} elements of shape {:?}, got {}",
                        self.name,
                        self.datatype,
                        self.shape,
                        self.data.len()
                    )));
                }
            }
            None => {
                let found = bytes_elements(&self.data)
                    .map_err(|e| KilnError::invalid(format!("tensor '{}': {e}", self.name)))?
                    .len();
                if found != count {
                    return Err(KilnError::invalid(format!(
                        "tensor '{}': shape {:?} needs {count} BYTES elements, got {found}",
                        self.name, self.shape
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Splits a serialized BYTES tensor (4-byte LE length + bytes, repeated).
pub fn bytes_elements(mut data: &[u8]) -> std::result::Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.len() < 4 {
            return Err("BYTES payload ends inside an element's 4-byte length".into());
        }
        let len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
        data = &data[4..];
        if data.len() < len {
            return Err(format!(
                "BYTES element {} declares {len} bytes but only {} remain",
                out.len(),
                data.len()
            ));
        }
        out.push(&data[..len]);
        data = &data[len..];
    }
    Ok(out)
}

/// Serializes BYTES elements as 4-byte LE length + bytes each.
pub fn encode_bytes_elements<'a>(elements: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for e in elements {
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kserve_names_round_trip() {
        for d in DataType::ALL {
            assert_eq!(DataType::from_kserve(d.kserve_name()), Some(d));
        }
        assert_eq!(DataType::from_kserve("FLOAT"), None);
    }

    #[test]
    fn bytes_elements_round_trip_including_empty_and_zero_bytes() {
        let elems: Vec<&[u8]> = vec![b"", "héllo".as_bytes(), b"\0\0", b"x"];
        let enc = encode_bytes_elements(elems.iter().copied());
        assert_eq!(bytes_elements(&enc).unwrap(), elems);
    }

    #[test]
    fn truncated_bytes_are_rejected() {
        assert!(bytes_elements(&[1, 0, 0]).is_err());
        assert!(bytes_elements(&[5, 0, 0, 0, b'a']).is_err());
    }

    #[test]
    fn byte_size_is_checked_against_shape() {
        let t = Tensor::new(
            "INPUT0",
            DataType::Fp32,
            vec![2, 2],
            Bytes::from(vec![0u8; 16]),
        );
        assert!(t.check_byte_size().is_ok());
        let bad = Tensor::new(
            "INPUT0",
            DataType::Fp32,
            vec![2, 3],
            Bytes::from(vec![0u8; 16]),
        );
        let err = bad.check_byte_size().unwrap_err();
        assert!(err.message().contains("INPUT0"), "{err}");
        let neg = Tensor::new("X", DataType::Fp32, vec![-1], Bytes::new());
        assert!(neg.check_byte_size().is_err());
    }
}
