//! KServe datatypes and libtorch's scalar types (tch `Kind`), both ways.

use kiln_types::tensor::DataType;
use tch::Kind;

/// The libtorch type of a datatype; `None` for the unsigned types tch does
/// not name (see `torch_ffi`) and BYTES.
pub fn kind_of(d: DataType) -> Option<Kind> {
    Some(match d {
        DataType::Bool => Kind::Bool,
        DataType::Uint8 => Kind::Uint8,
        DataType::Int8 => Kind::Int8,
        DataType::Int16 => Kind::Int16,
        DataType::Int32 => Kind::Int,
        DataType::Int64 => Kind::Int64,
        DataType::Fp16 => Kind::Half,
        DataType::Fp32 => Kind::Float,
        DataType::Fp64 => Kind::Double,
        DataType::Bf16 => Kind::BFloat16,
        DataType::Uint16 | DataType::Uint32 | DataType::Uint64 | DataType::Bytes => return None,
    })
}

/// The datatype of a libtorch type kiln serves.
pub fn datatype_of(kind: Kind) -> Option<DataType> {
    DataType::ALL
        .into_iter()
        .find(|&d| kind_of(d) == Some(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_datatype_has_a_kind() {
        for d in DataType::ALL {
            if let Some(k) = kind_of(d) {
                assert_eq!(datatype_of(k), Some(d));
            }
        }
    }
}
