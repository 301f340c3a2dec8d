//! The process's log output: stderr, filtered by `RUST_LOG` (default
//! `info`), as text or as JSON lines (`--log-format json`, what log
//! collectors in a cluster parse without a custom pattern).

use crate::settings::LogFormat;

pub fn init(format: LogFormat) {
    let filter =
        || tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Default | LogFormat::Iso8601 => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // `message` and the event's fields at the top level; the request's
        // span (protocol, api, caller) under `span`.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
