//! KServe request parameters, as every protocol delivers them and as
//! backends and plugins receive them.

/// A KServe request parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Double(f64),
    Text(String),
}

/// Request parameters in the order the client sent them.
pub type Parameters = Vec<(String, ParamValue)>;
