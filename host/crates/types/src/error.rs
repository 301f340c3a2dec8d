//! One error type for the request path. Each variant maps to exactly one gRPC
//! status and one HTTP status, so both protocols answer the same failure the
//! same way (Triton's mapping); the mapping lives with the protocols
//! (kiln's `protocol::status`), not here.

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

    /// The message as a protocol answer carries it: bounded, whatever went
    /// into it (see `text::bound_message`).
    pub fn into_message(self) -> String {
        crate::text::bound_message(self.message().to_string())
    }
}

/// What a caught panic said (`catch_unwind`'s payload), or "" when it
/// carried no message.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}
