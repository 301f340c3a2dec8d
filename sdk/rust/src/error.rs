//! Constructors for the ABI's `error` record.

use crate::{Error, ErrorKind};

/// `Result` with the plugin [`Error`] as its default error type.
pub type Result<T, E = Error> = core::result::Result<T, E>;

impl Error {
    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// The request was wrong: a missing or malformed input, a bad request
    /// parameter. kiln answers gRPC `INVALID_ARGUMENT` / HTTP 400.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// The plugin cannot serve now (a misconfigured model, a resource that
    /// is not ready). kiln answers gRPC `UNAVAILABLE` / HTTP 503.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// A bug in the plugin. kiln answers gRPC `INTERNAL` / HTTP 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The same error with `context: ` put in front of its message.
    pub fn context(mut self, context: impl core::fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl ErrorKind {
    /// The gRPC status code name kiln answers with.
    pub fn grpc_code(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
            ErrorKind::Unavailable => "UNAVAILABLE",
            ErrorKind::Internal => "INTERNAL",
        }
    }

    /// The HTTP status kiln answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidArgument => 400,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_set_kind_and_message() {
        let e = Error::invalid("bad").context("input 'X'");
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert_eq!(e.message, "input 'X': bad");
        assert_eq!(Error::unavailable("x").kind.http_status(), 503);
        assert_eq!(Error::internal("x").kind.grpc_code(), "INTERNAL");
    }
}
