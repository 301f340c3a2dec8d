//! `--trace-config`, with Triton's syntax: `<setting>=<value>` for the
//! global settings (`rate`, `level`, `count`, `mode`) and
//! `<mode>,<setting>=<value>` for a mode's own (`triton,file=...`,
//! `triton,log-frequency=...`, `opentelemetry,url=...`,
//! `opentelemetry,resource=key=value`, `opentelemetry,bsp_*`). The flag is
//! repeatable; `level` may be given several times and adds up.

use std::time::Duration;

use crate::settings::{Level, Mode, Values};

/// Where OTLP spans go and how they are batched (Triton's settings and
/// defaults: OpenTelemetry's batch span processor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// OTLP/HTTP traces endpoint; `http://` is assumed without a scheme, as
    /// Triton takes `localhost:4318/v1/traces`.
    pub url: String,
    /// Resource attributes, after `service.name=kiln` and
    /// `OTEL_RESOURCE_ATTRIBUTES` (later ones win).
    pub resource: Vec<(String, String)>,
    /// The batch span processor's settings; unset: `OTEL_BSP_*` or
    /// OpenTelemetry's defaults (2048, 5000 ms, 512), as in Triton.
    pub max_queue_size: Option<usize>,
    pub schedule_delay: Option<Duration>,
    pub max_export_batch_size: Option<usize>,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            url: "http://localhost:4318/v1/traces".into(),
            resource: Vec::new(),
            max_queue_size: None,
            schedule_delay: None,
            max_export_batch_size: None,
        }
    }
}

/// Everything `--trace-config` sets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceConfig {
    pub mode: Mode,
    /// The global settings at start.
    pub values: Values,
    pub otlp: OtlpConfig,
}

impl TraceConfig {
    /// Reads the flag's values in order; the error names the entry.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<TraceConfig, String> {
        let mut config = TraceConfig::default();
        let mut levels: Vec<String> = Vec::new();
        for entry in entries {
            let entry = entry.as_ref();
            config
                .apply(entry, &mut levels)
                .map_err(|e| format!("--trace-config '{entry}': {e}"))?;
        }
        if !levels.is_empty() {
            config.values.level = Level::parse(&levels)?;
        }
        if let (Some(batch), Some(queue)) = (
            config.otlp.max_export_batch_size,
            config.otlp.max_queue_size,
        ) {
            if batch > queue {
                return Err(format!(
                    "--trace-config: bsp_max_export_batch_size ({batch}) must not exceed bsp_max_queue_size ({queue})"
                ));
            }
        }
        Ok(config)
    }

    fn apply(&mut self, entry: &str, levels: &mut Vec<String>) -> Result<(), String> {
        let (scope, setting) = match entry.split_once(',') {
            Some((scope, rest)) => (Some(scope), rest),
            None => (None, entry),
        };
        let (key, value) = setting
            .split_once('=')
            .ok_or("expected <setting>=<value> or <mode>,<setting>=<value>")?;
        match (scope, key) {
            (None, "rate") => self.values.rate = parse(key, value)?,
            (None, "count") => {
                self.values.count = parse(key, value)?;
                if self.values.count < -1 {
                    return Err("count must be -1 (no limit) or more".into());
                }
            }
            (None, "level") => levels.push(value.to_string()),
            (None, "mode") => {
                self.mode = match value {
                    "triton" => Mode::Triton,
                    "opentelemetry" => Mode::OpenTelemetry,
                    _ => return Err("mode is triton or opentelemetry".into()),
                }
            }
            (Some("triton"), "file") => self.values.file = value.to_string(),
            (Some("triton"), "log-frequency") => self.values.log_frequency = parse(key, value)?,
            (Some("opentelemetry"), "url") => {
                self.otlp.url = if value.contains("://") {
                    value.to_string()
                } else {
                    format!("http://{value}")
                }
            }
            (Some("opentelemetry"), "resource") => {
                let (k, v) = value
                    .split_once('=')
                    .ok_or("resource takes <key>=<value>")?;
                self.otlp.resource.push((k.to_string(), v.to_string()));
            }
            (Some("opentelemetry"), "bsp_max_queue_size") => {
                self.otlp.max_queue_size = Some(parse::<usize>(key, value)?.max(1))
            }
            (Some("opentelemetry"), "bsp_schedule_delay") => {
                self.otlp.schedule_delay = Some(Duration::from_millis(parse(key, value)?))
            }
            (Some("opentelemetry"), "bsp_max_export_batch_size") => {
                self.otlp.max_export_batch_size = Some(parse::<usize>(key, value)?.max(1))
            }
            (Some(scope @ ("triton" | "opentelemetry")), _) => {
                return Err(format!("unknown {scope} setting '{key}'"))
            }
            (Some(_), _) => return Err("the mode is triton or opentelemetry".into()),
            (None, _) => {
                return Err(format!(
                    "unknown setting '{key}' (rate, level, count, mode)"
                ))
            }
        }
        Ok(())
    }
}

fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{key} takes a whole number, got '{value}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triton_syntax_is_read() {
        let c = TraceConfig::parse(&[
            "triton,file=/tmp/trace.json",
            "triton,log-frequency=50",
            "rate=100",
            "level=TIMESTAMPS",
            "level=TENSORS",
            "count=100",
        ])
        .unwrap();
        assert_eq!(c.mode, Mode::Triton);
        assert_eq!(c.values.file, "/tmp/trace.json");
        assert_eq!(
            (c.values.rate, c.values.count, c.values.log_frequency),
            (100, 100, 50)
        );
        assert!(
            c.values.level.contains(Level::TENSORS) && c.values.level.contains(Level::TIMESTAMPS)
        );

        let c = TraceConfig::parse(&[
            "mode=opentelemetry",
            "opentelemetry,url=localhost:4318/v1/traces",
            "opentelemetry,resource=service.name=kiln-test",
            "opentelemetry,resource=deployment.environment=ci",
            "opentelemetry,bsp_schedule_delay=100",
        ])
        .unwrap();
        assert_eq!(c.mode, Mode::OpenTelemetry);
        assert_eq!(c.otlp.url, "http://localhost:4318/v1/traces");
        assert_eq!(c.otlp.resource.len(), 2);
        assert_eq!(
            c.otlp.resource[0],
            ("service.name".into(), "kiln-test".into())
        );
        assert_eq!(c.otlp.schedule_delay, Some(Duration::from_millis(100)));
    }

    #[test]
    fn mistakes_name_the_entry() {
        for (entry, want) in [
            ("rate=often", "whole number"),
            ("mode=zipkin", "triton or opentelemetry"),
            ("jaeger,url=x", "the mode is"),
            ("triton,url=x", "unknown triton setting 'url'"),
            ("speed=1", "unknown setting 'speed'"),
            ("level", "expected <setting>=<value>"),
            ("count=-5", "-1"),
        ] {
            let e = TraceConfig::parse(&[entry]).unwrap_err();
            assert!(e.contains(entry) && e.contains(want), "{entry}: {e}");
        }
        let e = TraceConfig::parse(&["level=OFF", "level=TIMESTAMPS"]).unwrap_err();
        assert!(e.contains("only one"), "{e}");
        let e = TraceConfig::parse(&[
            "opentelemetry,bsp_max_queue_size=10",
            "opentelemetry,bsp_max_export_batch_size=20",
        ])
        .unwrap_err();
        assert!(e.contains("must not exceed"), "{e}");
    }
}
