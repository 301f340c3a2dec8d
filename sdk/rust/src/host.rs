//! Helpers over the `kiln:plugin/host` imports: logging, the model's config
//! parameters, and a monotonic clock.
//!
//! These call into kiln, so they only work inside a plugin running in
//! kiln (on other targets they panic).

use crate::bindings::kiln::plugin::host as imports;

/// Structured logging into kiln's log, tagged by kiln with the model name.
///
/// Plain functions ([`log::info`], ...) take a message; the macros
/// [`trace!`](crate::trace), [`debug!`](crate::debug),
/// [`info!`](crate::info), [`warn!`](crate::warn) and
/// [`error!`](crate::error) take `format!` arguments; [`log::with_fields`]
/// adds key/value fields.
///
/// Logging is for operators, not for the hot path: every call crosses into
/// the host.
pub mod log {
    use super::imports;

    pub use imports::LogLevel as Level;

    /// Whether a message at `level` would be recorded by the host, so a
    /// plugin can skip building messages nobody reads (`host.log-enabled`,
    /// new in ABI 1.1.0; every plugin of this SDK is built against 1.2.0).
    pub fn enabled(level: Level) -> bool {
        imports::log_enabled(level)
    }

    /// Logs `message` at `level`.
    pub fn log(level: Level, message: &str) {
        imports::log(level, message, &[]);
    }

    /// Logs `message` at `level` with key/value fields.
    pub fn with_fields(level: Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        imports::log(level, message, &fields);
    }

    /// Logs at level `trace`.
    pub fn trace(message: &str) {
        log(Level::Trace, message)
    }
    /// Logs at level `debug`.
    pub fn debug(message: &str) {
        log(Level::Debug, message)
    }
    /// Logs at level `info`.
    pub fn info(message: &str) {
        log(Level::Info, message)
    }
    /// Logs at level `warn`.
    pub fn warn(message: &str) {
        log(Level::Warn, message)
    }
    /// Logs at level `error`.
    pub fn error(message: &str) {
        log(Level::Error, message)
    }
}

/// Logs a `format!` message at level `trace` (see [`log`](crate::log)).
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => { $crate::log::trace(&::std::format!($($arg)*)) };
}
/// Logs a `format!` message at level `debug` (see [`log`](crate::log)).
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::debug(&::std::format!($($arg)*)) };
}
/// Logs a `format!` message at level `info` (see [`log`](crate::log)).
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::info(&::std::format!($($arg)*)) };
}
/// Logs a `format!` message at level `warn` (see [`log`](crate::log)).
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::warn(&::std::format!($($arg)*)) };
}
/// Logs a `format!` message at level `error` (see [`log`](crate::log)).
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::error(&::std::format!($($arg)*)) };
}

/// The model's `config.pbtxt` `parameters` (read-only, fixed for the life
/// of the model version). kiln's own `wasm_*` parameters are visible too.
///
/// A parameter that cannot be parsed is a misconfigured model: the typed
/// getters report it as `unavailable` (gRPC `UNAVAILABLE`, HTTP 503), with
/// the key, the value and the parse error in the message.
pub mod config {
    use core::fmt::Display;
    use core::str::FromStr;

    use super::imports;
    use crate::{Error, Result};

    /// The raw value of config parameter `key`.
    pub fn get(key: &str) -> Option<String> {
        imports::get_parameter(key)
    }

    /// All config parameters, as (key, value) pairs.
    pub fn all() -> Vec<(String, String)> {
        imports::parameters()
    }

    /// Config parameter `key` parsed as `T` (surrounding whitespace is
    /// ignored); `Ok(None)` when absent.
    pub fn parse<T: FromStr>(key: &str) -> Result<Option<T>>
    where
        T::Err: Display,
    {
        get(key).map(|raw| parse_value(key, &raw)).transpose()
    }

    /// Config parameter `key` parsed as `T`, or `default` when absent.
    pub fn get_or<T: FromStr>(key: &str, default: T) -> Result<T>
    where
        T::Err: Display,
    {
        Ok(parse(key)?.unwrap_or(default))
    }

    pub(crate) fn parse_value<T: FromStr>(key: &str, raw: &str) -> Result<T>
    where
        T::Err: Display,
    {
        raw.trim().parse().map_err(|e| {
            Error::unavailable(format!(
                "config parameter '{key}': cannot parse '{raw}' as {}: {e}",
                short_type_name::<T>()
            ))
        })
    }

    fn short_type_name<T>() -> &'static str {
        let full = core::any::type_name::<T>();
        full.rsplit("::").next().unwrap_or(full)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::ErrorKind;

        #[test]
        fn parse_errors_name_key_value_and_type() {
            assert_eq!(parse_value::<f32>("factor", " 3.5 ").unwrap(), 3.5);
            let e = parse_value::<f32>("factor", "lots").unwrap_err();
            assert_eq!(e.kind, ErrorKind::Unavailable);
            assert_eq!(
                e.message,
                "config parameter 'factor': cannot parse 'lots' as f32: invalid float literal"
            );
        }
    }
}

/// kiln's monotonic clock (always available, unlike WASI clocks, which
/// need the `clock` grant). For measuring durations, not for dates.
pub mod time {
    use super::imports;

    /// Monotonic time in nanoseconds since an arbitrary origin.
    pub fn now_ns() -> u64 {
        imports::monotonic_now()
    }

    /// Nanoseconds elapsed since `start` (a value of [`now_ns`]).
    pub fn elapsed_ns(start: u64) -> u64 {
        now_ns().saturating_sub(start)
    }
}
