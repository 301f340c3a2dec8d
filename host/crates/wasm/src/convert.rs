//! Tensors, datatypes and parameters between kiln's types and the WIT ones.

use bytes::Bytes;

use crate::bindings::wit;
use kiln_backend::BackendError;
use kiln_types::tensor::{bytes_elements, encode_bytes_elements, DataType, Tensor};
use kiln_types::text::clip;
use kiln_types::ParamValue;

pub(crate) fn wit_datatype(d: DataType) -> wit::Datatype {
    use wit::Datatype as W;
    match d {
        DataType::Bool => W::Bool,
        DataType::Uint8 => W::Uint8,
        DataType::Uint16 => W::Uint16,
        DataType::Uint32 => W::Uint32,
        DataType::Uint64 => W::Uint64,
        DataType::Int8 => W::Int8,
        DataType::Int16 => W::Int16,
        DataType::Int32 => W::Int32,
        DataType::Int64 => W::Int64,
        DataType::Fp16 => W::Fp16,
        DataType::Fp32 => W::Fp32,
        DataType::Fp64 => W::Fp64,
        DataType::Bf16 => W::Bf16,
        DataType::Bytes => W::Bytes,
    }
}

pub(crate) fn from_wit_datatype(d: wit::Datatype) -> DataType {
    DataType::ALL
        .into_iter()
        .find(|&k| wit_datatype(k) == d)
        .expect("every WIT datatype has a KServe datatype")
}

pub(crate) fn to_wit(t: &Tensor) -> wit::Tensor {
    let (data, elements) = if t.datatype == DataType::Bytes {
        (
            Vec::new(),
            bytes_elements(&t.data)
                .unwrap_or_default()
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect(),
        )
    } else {
        (t.data.to_vec(), Vec::new())
    };
    wit::Tensor {
        name: t.name.clone(),
        datatype: wit_datatype(t.datatype),
        shape: t.shape.clone(),
        data,
        elements,
    }
}

/// A plugin's output as a tensor; `data` and `elements` must be used as the
/// datatype says (sdk/ABI.md, "tensor"), never both.
pub(crate) fn from_wit(t: wit::Tensor) -> Result<Tensor, BackendError> {
    let datatype = from_wit_datatype(t.datatype);
    let misused = if datatype == DataType::Bytes {
        (!t.data.is_empty()).then_some("a BYTES output must leave 'data' empty and use 'elements'")
    } else {
        (!t.elements.is_empty()).then_some("only BYTES outputs may use 'elements'")
    };
    if let Some(rule) = misused {
        return Err(BackendError::Execution(format!(
            "plugin returned output '{}' as {datatype} with {} bytes of 'data' and {} 'elements': {rule}",
            clip(&t.name),
            t.data.len(),
            t.elements.len()
        )));
    }
    let data = if datatype == DataType::Bytes {
        Bytes::from(encode_bytes_elements(t.elements.iter().map(Vec::as_slice)))
    } else {
        Bytes::from(t.data)
    };
    Ok(Tensor::new(t.name, datatype, t.shape, data))
}

pub(crate) fn to_wit_parameter((key, value): &(String, ParamValue)) -> wit::Parameter {
    let value = match value {
        ParamValue::Bool(b) => wit::ParameterValue::Bool(*b),
        ParamValue::Int(i) => wit::ParameterValue::Int64(*i),
        ParamValue::Double(d) => wit::ParameterValue::Double(*d),
        ParamValue::Text(t) => wit::ParameterValue::Text(t.clone()),
    };
    wit::Parameter {
        key: key.clone(),
        value,
    }
}
