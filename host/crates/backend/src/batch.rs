//! One execution for several requests: which requests can share one, their
//! inputs concatenated along the batch dimension, and the batched outputs
//! split back to their callers.

use bytes::{Bytes, BytesMut};
use kiln_types::tensor::{bytes_elements, encode_bytes_elements, DataType, Tensor};

use crate::request::BackendRequest;

/// Requests can share an execution when every input has the same presence,
/// datatype and per-item shape, and their parameters are equal.
pub fn compatible(a: &BackendRequest, b: &BackendRequest) -> bool {
    a.parameters == b.parameters
        && a.inputs.len() == b.inputs.len()
        && a.inputs.iter().zip(&b.inputs).all(|(x, y)| match (x, y) {
            (None, None) => true,
            (Some(x), Some(y)) => {
                x.datatype == y.datatype
                    && x.shape.get(1..) == y.shape.get(1..)
                    && !x.shape.is_empty()
            }
            _ => false,
        })
}

/// Concatenates compatible requests along the batch dimension.
pub fn merge(requests: &[&BackendRequest]) -> BackendRequest {
    let first = requests[0];
    let inputs = (0..first.inputs.len())
        .map(|i| {
            let head = first.inputs[i].as_ref()?;
            let mut data = BytesMut::with_capacity(
                requests
                    .iter()
                    .map(|r| r.inputs[i].as_ref().map_or(0, |t| t.data.len()))
                    .sum(),
            );
            let mut batch = 0;
            for r in requests {
                let t = r.inputs[i]
                    .as_ref()
                    .expect("compatible requests have the same inputs");
                data.extend_from_slice(&t.data);
                batch += t.shape[0];
            }
            let mut shape = head.shape.clone();
            shape[0] = batch;
            Some(Tensor::new(
                head.name.clone(),
                head.datatype,
                shape,
                data.freeze(),
            ))
        })
        .collect();
    BackendRequest {
        inputs,
        parameters: first.parameters.clone(),
    }
}

/// Splits batched outputs back into per-request outputs of `sizes` items.
pub fn split(outputs: Vec<Tensor>, sizes: &[usize]) -> Result<Vec<Vec<Tensor>>, String> {
    let total: usize = sizes.iter().sum();
    let mut per_request: Vec<Vec<Tensor>> = sizes
        .iter()
        .map(|_| Vec::with_capacity(outputs.len()))
        .collect();
    for t in outputs {
        if t.shape.first().copied() != Some(total as i64) {
            return Err(format!(
                "output '{}' has shape {:?}; a batch of {total} needs {total} as its first dim",
                t.name, t.shape
            ));
        }
        let pieces: Vec<Bytes> = if t.datatype == DataType::Bytes {
            let elements = bytes_elements(&t.data)?;
            let per_item = elements.len() / total.max(1);
            let mut start = 0;
            sizes
                .iter()
                .map(|&n| {
                    let chunk = &elements[start..start + n * per_item];
                    start += n * per_item;
                    Bytes::from(encode_bytes_elements(chunk.iter().copied()))
                })
                .collect()
        } else {
            let per_item = t.data.len() / total.max(1);
            let mut start = 0;
            sizes
                .iter()
                .map(|&n| {
                    let piece = t.data.slice(start..start + n * per_item);
                    start += n * per_item;
                    piece
                })
                .collect()
        };
        for ((out, piece), &n) in per_request.iter_mut().zip(pieces).zip(sizes) {
            let mut shape = t.shape.clone();
            shape[0] = n as i64;
            out.push(Tensor::new(t.name.clone(), t.datatype, shape, piece));
        }
    }
    Ok(per_request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, rows: i64, fill: u8) -> BackendRequest {
        let t = Tensor::new(
            name,
            DataType::Uint8,
            vec![rows, 2],
            Bytes::from(vec![fill; rows as usize * 2]),
        );
        BackendRequest {
            inputs: vec![Some(t)],
            parameters: vec![],
        }
    }

    #[test]
    fn merge_then_split_gives_each_caller_its_rows() {
        let (a, b) = (req("x", 1, 1), req("x", 2, 2));
        assert!(compatible(&a, &b));
        let merged = merge(&[&a, &b]);
        let t = merged.inputs[0].clone().unwrap();
        assert_eq!(t.shape, vec![3, 2]);
        assert_eq!(&t.data[..], &[1, 1, 2, 2, 2, 2]);
        let parts = split(vec![t], &[1, 2]).unwrap();
        assert_eq!(&parts[0][0].data[..], &[1, 1]);
        assert_eq!(parts[1][0].shape, vec![2, 2]);
        assert_eq!(&parts[1][0].data[..], &[2, 2, 2, 2]);
    }

    #[test]
    fn bytes_outputs_split_by_element() {
        let data = encode_bytes_elements([&b"a"[..], b"bb", b"", b"dddd"]);
        let t = Tensor::new("s", DataType::Bytes, vec![2, 2], Bytes::from(data));
        let parts = split(vec![t], &[1, 1]).unwrap();
        assert_eq!(
            bytes_elements(&parts[1][0].data).unwrap(),
            vec![&b""[..], b"dddd"]
        );
    }

    #[test]
    fn incompatible_requests_stay_apart() {
        let a = req("x", 1, 0);
        let mut b = req("x", 1, 0);
        b.inputs[0].as_mut().unwrap().shape = vec![1, 3];
        assert!(!compatible(&a, &b));
        let mut c = req("x", 1, 0);
        c.parameters
            .push(("k".into(), kiln_types::ParamValue::Bool(true)));
        assert!(!compatible(&a, &c));
        let wrong = Tensor::new("y", DataType::Uint8, vec![2, 2], Bytes::from(vec![0u8; 4]));
        assert!(split(vec![wrong], &[1, 2]).is_err());
    }
}
