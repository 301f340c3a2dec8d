//! [`KilnError`] as each protocol answers it. Every variant maps to exactly
//! one gRPC code and one HTTP status (Triton's mapping), so gRPC and HTTP
//! answer the same failure the same way; the error type itself knows no
//! transport (kiln-types).

use axum::http::StatusCode;
use kiln_types::KilnError;

pub fn http_code(e: &KilnError) -> StatusCode {
    match e {
        KilnError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        KilnError::NotFound(_) => StatusCode::NOT_FOUND,
        KilnError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        KilnError::AlreadyExists(_) => StatusCode::CONFLICT,
        KilnError::Unimplemented(_) => StatusCode::NOT_IMPLEMENTED,
        KilnError::ResourceExhausted(_) => StatusCode::TOO_MANY_REQUESTS,
        KilnError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        KilnError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub fn grpc_code(e: &KilnError) -> tonic::Code {
    use tonic::Code;
    match e {
        KilnError::InvalidArgument(_) => Code::InvalidArgument,
        KilnError::NotFound(_) => Code::NotFound,
        KilnError::Unavailable(_) => Code::Unavailable,
        KilnError::AlreadyExists(_) => Code::AlreadyExists,
        KilnError::Unimplemented(_) => Code::Unimplemented,
        KilnError::ResourceExhausted(_) | KilnError::TooLarge(_) => Code::ResourceExhausted,
        KilnError::Internal(_) => Code::Internal,
    }
}

/// The gRPC status for an error, its message bounded
/// ([`KilnError::into_message`]). Used as `.map_err(grpc_status)?`.
pub fn grpc_status(e: KilnError) -> tonic::Status {
    let code = grpc_code(&e);
    tonic::Status::new(code, e.into_message())
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
            assert_eq!(http_code(&err).as_u16(), http);
            assert_eq!(grpc_status(err).code(), code);
        }
        let huge = grpc_status(KilnError::invalid("x".repeat(1 << 20)));
        assert!(huge.message().len() <= kiln_types::text::MAX_ERROR_BYTES + 16);
    }
}
