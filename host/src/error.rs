//! One error type for the request path. Each variant maps to exactly one gRPC
//! status and one HTTP status, so both protocols answer the same failure the
//! same way (Triton's mapping).

use axum::http::StatusCode;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum KilnError {
    /// The request is malformed or does not match the model's config.
    #[error("{0}")]
    InvalidArgument(String),
    /// Unknown model or version.
    #[error("{0}")]
    NotFound(String),
    /// The model exists but cannot serve now (loading, failed, unloading,
    /// shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// The thing to create exists already (a shared-memory region name).
    #[error("{0}")]
    AlreadyExists(String),
    /// The feature exists in the protocol but not in kiln yet.
    #[error("{0}")]
    Unimplemented(String),
    /// A bug or a backend failure that is not the caller's fault.
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = KilnError> = std::result::Result<T, E>;

impl KilnError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }
    pub fn unavailable(msg: impl Into<String>) -> Self {
        Self::Unavailable(msg.into())
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::Internal(msg.into())
    }
    pub fn already_exists(msg: impl Into<String>) -> Self {
        Self::AlreadyExists(msg.into())
    }
    pub fn unimplemented(msg: impl Into<String>) -> Self {
        Self::Unimplemented(msg.into())
    }

    pub fn message(&self) -> &str {
        match self {
            Self::InvalidArgument(m)
            | Self::NotFound(m)
            | Self::Unavailable(m)
            | Self::AlreadyExists(m)
            | Self::Unimplemented(m)
            | Self::Internal(m) => m,
        }
    }

    pub fn http_status(&self) -> StatusCode {
        match self {
            Self::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::AlreadyExists(_) => StatusCode::CONFLICT,
            Self::Unimplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<KilnError> for tonic::Status {
    fn from(e: KilnError) -> Self {
        match e {
            KilnError::InvalidArgument(m) => tonic::Status::invalid_argument(m),
            KilnError::NotFound(m) => tonic::Status::not_found(m),
            KilnError::Unavailable(m) => tonic::Status::unavailable(m),
            KilnError::AlreadyExists(m) => tonic::Status::already_exists(m),
            KilnError::Unimplemented(m) => tonic::Status::unimplemented(m),
            KilnError::Internal(m) => tonic::Status::internal(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_matching_grpc_and_http_codes() {
        let cases = [
            (KilnError::invalid("x"), tonic::Code::InvalidArgument, 400),
            (KilnError::not_found("x"), tonic::Code::NotFound, 404),
            (KilnError::unavailable("x"), tonic::Code::Unavailable, 503),
            (
                KilnError::already_exists("x"),
                tonic::Code::AlreadyExists,
                409,
            ),
            (
                KilnError::unimplemented("x"),
                tonic::Code::Unimplemented,
                501,
            ),
            (KilnError::internal("x"), tonic::Code::Internal, 500),
        ];
        for (err, code, http) in cases {
            assert_eq!(err.http_status().as_u16(), http);
            assert_eq!(tonic::Status::from(err).code(), code);
        }
    }
}
