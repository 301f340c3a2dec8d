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
    /// A bounded resource is used up (a count of registrations, a quota).
    #[error("{0}")]
    ResourceExhausted(String),
    /// The request is larger than the server accepts.
    #[error("{0}")]
    TooLarge(String),
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
    pub fn resource_exhausted(msg: impl Into<String>) -> Self {
        Self::ResourceExhausted(msg.into())
    }
    pub fn too_large(msg: impl Into<String>) -> Self {
        Self::TooLarge(msg.into())
    }

    pub fn message(&self) -> &str {
        match self {
            Self::InvalidArgument(m)
            | Self::NotFound(m)
            | Self::Unavailable(m)
            | Self::AlreadyExists(m)
            | Self::Unimplemented(m)
            | Self::ResourceExhausted(m)
            | Self::TooLarge(m)
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
            Self::ResourceExhausted(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl KilnError {
    pub fn grpc_code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::Unavailable(_) => Code::Unavailable,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::Unimplemented(_) => Code::Unimplemented,
            Self::ResourceExhausted(_) | Self::TooLarge(_) => Code::ResourceExhausted,
            Self::Internal(_) => Code::Internal,
        }
    }

    /// The message as a protocol answer carries it: bounded, whatever went
    /// into it (see `limits::bound_message`).
    pub fn into_message(self) -> String {
        crate::limits::bound_message(self.message().to_string())
    }
}

impl From<KilnError> for tonic::Status {
    fn from(e: KilnError) -> Self {
        let code = e.grpc_code();
        tonic::Status::new(code, e.into_message())
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
            (
                KilnError::resource_exhausted("x"),
                tonic::Code::ResourceExhausted,
                429,
            ),
            (
                KilnError::too_large("x"),
                tonic::Code::ResourceExhausted,
                413,
            ),
        ];
        for (err, code, http) in cases {
            assert_eq!(err.http_status().as_u16(), http);
            assert_eq!(tonic::Status::from(err).code(), code);
        }
        let huge = tonic::Status::from(KilnError::invalid("x".repeat(1 << 20)));
        assert!(huge.message().len() <= crate::limits::MAX_ERROR_BYTES + 16);
    }
}
