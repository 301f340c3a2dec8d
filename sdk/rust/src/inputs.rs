//! A request's input tensors and parameters.

use crate::{Error, Parameter, ParameterValue, Result, Tensor};

/// The input tensors of one request, in the order the client sent them.
///
/// kiln has already checked them against `config.pbtxt` (names, datatypes,
/// shapes), so a required input is normally present; [`Inputs::get`] still
/// fails cleanly (`invalid-argument`, naming the missing tensor) for
/// optional inputs and for models whose config declares fewer inputs than
/// the plugin reads.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    tensors: Vec<Tensor>,
}

impl Inputs {
    /// Wraps a list of tensors (what kiln passes to `process`).
    pub fn new(tensors: Vec<Tensor>) -> Inputs {
        Inputs { tensors }
    }

    fn missing(&self, name: &str) -> Error {
        let have: Vec<&str> = self.tensors.iter().map(|t| t.name.as_str()).collect();
        Error::invalid(format!(
            "missing input tensor '{name}' (the request has: {})",
            if have.is_empty() {
                "none".into()
            } else {
                have.join(", ")
            }
        ))
    }

    /// The input named `name`, or an `invalid-argument` error naming it.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.find(name).ok_or_else(|| self.missing(name))
    }

    /// The input named `name`, mutable (e.g. for [`Tensor::as_f32_mut`]).
    pub fn get_mut(&mut self, name: &str) -> Result<&mut Tensor> {
        match self.tensors.iter().position(|t| t.name == name) {
            Some(i) => Ok(&mut self.tensors[i]),
            None => Err(self.missing(name)),
        }
    }

    /// Removes and returns the input named `name`: the way to reuse an
    /// input's buffer for an output without copying it.
    pub fn take(&mut self, name: &str) -> Result<Tensor> {
        match self.tensors.iter().position(|t| t.name == name) {
            Some(i) => Ok(self.tensors.swap_remove(i)),
            None => Err(self.missing(name)),
        }
    }

    /// The input named `name`, if the request has it.
    pub fn find(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The names of the inputs.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|t| t.name.as_str())
    }

    /// All inputs, in request order.
    pub fn iter(&self) -> core::slice::Iter<'_, Tensor> {
        self.tensors.iter()
    }

    /// Number of inputs.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether there are no inputs.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The inputs as a vector.
    pub fn into_vec(self) -> Vec<Tensor> {
        self.tensors
    }
}

impl IntoIterator for Inputs {
    type Item = Tensor;
    type IntoIter = std::vec::IntoIter<Tensor>;
    fn into_iter(self) -> Self::IntoIter {
        self.tensors.into_iter()
    }
}

impl<'a> IntoIterator for &'a Inputs {
    type Item = &'a Tensor;
    type IntoIter = core::slice::Iter<'a, Tensor>;
    fn into_iter(self) -> Self::IntoIter {
        self.tensors.iter()
    }
}

/// The request's KServe `parameters` (not the model's config parameters:
/// those are in [`config`](crate::config)).
///
/// The typed getters return `Ok(None)` when the parameter is absent and an
/// `invalid-argument` error when it has another type.
#[derive(Debug, Clone, Default)]
pub struct Params {
    params: Vec<Parameter>,
}

impl Params {
    /// Wraps a list of parameters (what kiln passes to `process`).
    pub fn new(params: Vec<Parameter>) -> Params {
        Params { params }
    }

    /// The value of parameter `key`, if the request has it.
    pub fn get(&self, key: &str) -> Option<&ParameterValue> {
        self.params.iter().find(|p| p.key == key).map(|p| &p.value)
    }

    fn wrong(key: &str, want: &str, got: &ParameterValue) -> Error {
        Error::invalid(format!(
            "request parameter '{key}' must be {want}, got {got:?}"
        ))
    }

    /// A boolean parameter.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(ParameterValue::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(Self::wrong(key, "a bool", other)),
        }
    }

    /// An integer parameter.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(ParameterValue::Int64(v)) => Ok(Some(*v)),
            Some(other) => Err(Self::wrong(key, "an integer", other)),
        }
    }

    /// A number parameter (an integer parameter is converted).
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(ParameterValue::Double(v)) => Ok(Some(*v)),
            Some(ParameterValue::Int64(v)) => Ok(Some(*v as f64)),
            Some(other) => Err(Self::wrong(key, "a number", other)),
        }
    }

    /// A string parameter.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(ParameterValue::Text(s)) => Ok(Some(s)),
            Some(other) => Err(Self::wrong(key, "a string", other)),
        }
    }

    /// All parameters, in request order.
    pub fn iter(&self) -> core::slice::Iter<'_, Parameter> {
        self.params.iter()
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether the request has no parameters.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn get_names_the_missing_tensor() {
        let mut inputs = Inputs::new(vec![
            Tensor::from_f32("A", &[1], &[1.0]),
            Tensor::from_f32("B", &[1], &[2.0]),
        ]);
        assert_eq!(inputs.get("B").unwrap().name, "B");
        let e = inputs.get("C").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert_eq!(
            e.message,
            "missing input tensor 'C' (the request has: A, B)"
        );
        let a = inputs.take("A").unwrap();
        assert_eq!(a.name, "A");
        assert_eq!(inputs.names().collect::<Vec<_>>(), vec!["B"]);
        assert!(Inputs::default()
            .get("X")
            .unwrap_err()
            .message
            .contains("has: none"));
    }

    #[test]
    fn typed_parameters() {
        let p = |key: &str, value| Parameter {
            key: key.into(),
            value,
        };
        let params = Params::new(vec![
            p("b", ParameterValue::Bool(true)),
            p("i", ParameterValue::Int64(3)),
            p("s", ParameterValue::Text("x".into())),
        ]);
        assert_eq!(params.get_bool("b").unwrap(), Some(true));
        assert_eq!(params.get_f64("i").unwrap(), Some(3.0));
        assert_eq!(params.get_str("s").unwrap(), Some("x"));
        assert_eq!(params.get_i64("missing").unwrap(), None);
        assert!(params
            .get_i64("s")
            .unwrap_err()
            .message
            .contains("'s' must be an integer"));
    }
}
