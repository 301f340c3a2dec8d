//! Server settings: command-line flags over a TOML file (`--config`) over
//! defaults (Triton's where Triton has the setting: ports 8000/8001/8002,
//! `--exit-timeout-secs`, `--http-max-input-size`, the gRPC keepalive
//! flags, the restricted-API flags).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use kiln_kserve::limits::RequestLimits;
use kiln_kserve::restricted::{Restrictions, Wire as RestrictedWire};
use kiln_kserve::shared_memory::RegionLimits;
use kiln_kserve::transport::{ConnectionPolicy, Http2Settings, Wire};
use kiln_repository::ControlMode;

/// `kiln serve` flags. Every one can also be set as an environment variable,
/// `KILN_` and its name in capitals with underscores (`KILN_MODEL_REPOSITORY`,
/// how a container is configured), and in the TOML file under the same name
/// with underscores. A flag given on the command line wins over the
/// variable, which wins over the file. Repeatable flags take several values
/// in one variable separated by `;` (commas already mean something inside
/// `--grpc-restricted-protocol`).
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML server config; flags given on the command line win over it.
    #[arg(long, env = "KILN_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// A Triton-layout model repository to serve: a folder, or an object
    /// store as Triton names it (`s3://bucket/path`, `s3://host:port/bucket/path`,
    /// `gs://bucket/path`, `as://account/container/path`). Repeatable: the
    /// repositories serve as one, each model name in only one of them.
    #[arg(long, env = "KILN_MODEL_REPOSITORY", value_delimiter = ';')]
    #[serde(default, deserialize_with = "one_or_many")]
    pub model_repository: Vec<String>,
    /// Where models from object-store repositories are downloaded to.
    /// Default: `kiln-repositories` in the system's temporary folder.
    #[arg(long, env = "KILN_REPOSITORY_CACHE_DIR")]
    pub repository_cache_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "KILN_HOST")]
    pub host: Option<String>,
    #[arg(long, env = "KILN_HTTP_PORT")]
    pub http_port: Option<u16>,
    #[arg(long, env = "KILN_GRPC_PORT")]
    pub grpc_port: Option<u16>,
    #[arg(long, env = "KILN_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// Once the listeners are bound, write their ports to this file as JSON
    /// (`{"http": 8000, "grpc": 8001, "metrics": 8002}`, replaced atomically):
    /// with port 0 the system picks free ports, and a supervisor or a test
    /// reads them here instead of racing to pick them first.
    #[arg(long, env = "KILN_PORT_FILE")]
    pub port_file: Option<PathBuf>,
    /// none: load all at start; poll: also reload changes; explicit: load on request.
    #[arg(long, value_enum, env = "KILN_MODEL_CONTROL_MODE")]
    pub model_control_mode: Option<ControlMode>,
    /// Rescan interval in poll mode.
    #[arg(long, env = "KILN_REPOSITORY_POLL_SECS")]
    pub repository_poll_secs: Option<u64>,
    /// Models to load at start in explicit mode ("*" for all); repeatable.
    #[arg(long, env = "KILN_LOAD_MODEL", value_delimiter = ';')]
    #[serde(default)]
    pub load_model: Vec<String>,
    /// TF32 tensor-core math for FP32 matmuls (cuBLAS) and convolutions
    /// (cuDNN), for every GPU model: libtorch keeps these switches process-wide,
    /// so they are a server setting, not a model parameter. Unset: libtorch's
    /// defaults (cuDNN on, cuBLAS off). Needs a kiln built with `cuda`.
    #[arg(long, env = "KILN_CUDA_TF32")]
    pub cuda_tf32: Option<bool>,

    // ---- logs and traces
    /// Log lines as `default` (text), `iso8601` (text; Triton's name, the
    /// same timestamps) or `json` (one object per line, for log collectors).
    #[arg(long, value_enum, env = "KILN_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Triton's trace settings: `rate=N`, `level=TIMESTAMPS|TENSORS|OFF`,
    /// `count=N`, `mode=triton|opentelemetry`, `triton,file=PATH`,
    /// `triton,log-frequency=N`, `opentelemetry,url=URL`,
    /// `opentelemetry,resource=KEY=VALUE`, `opentelemetry,bsp_*=N`.
    /// Repeatable. See README "Tracing".
    #[arg(long, env = "KILN_TRACE_CONFIG", value_delimiter = ';')]
    #[serde(default)]
    pub trace_config: Vec<String>,

    // ---- shutdown
    /// How long shutdown waits for in-flight requests to answer (and then for
    /// model instances to stop) before exiting anyway. A second SIGINT or
    /// SIGTERM exits at once. Triton's flag; default 30.
    #[arg(long, env = "KILN_EXIT_TIMEOUT_SECS")]
    pub exit_timeout_secs: Option<u64>,

    // ---- tenants
    /// The tenants file (TOML): who may call, with which API keys, to do
    /// what. Without it every caller is anonymous and may do everything (as
    /// in Triton). Re-read every second while serving; a file that fails to
    /// validate keeps the previous one in force. See README "Tenants".
    #[arg(long, env = "KILN_TENANTS")]
    pub tenants: Option<PathBuf>,

    // ---- restricted APIs (Triton's flags and syntax)
    /// `<api>[,<api>...]:<header>=<value>`: requests to these gRPC API groups
    /// must carry the header with that value. Groups: health, metadata,
    /// inference, shared-memory, model-config, model-repository, statistics,
    /// trace, logging. Repeatable.
    #[arg(long, env = "KILN_GRPC_RESTRICTED_PROTOCOL", value_delimiter = ';')]
    #[serde(default)]
    pub grpc_restricted_protocol: Vec<String>,
    /// The same for the HTTP API.
    #[arg(long, env = "KILN_HTTP_RESTRICTED_API", value_delimiter = ';')]
    #[serde(default)]
    pub http_restricted_api: Vec<String>,

    // ---- request size and shape limits
    /// Largest HTTP request body, after decompression (bytes). Triton's flag;
    /// default 64 MiB.
    #[arg(long, env = "KILN_HTTP_MAX_INPUT_SIZE")]
    pub http_max_input_size: Option<u64>,
    /// Largest gRPC request message, after decompression (bytes). Default
    /// 2147483647, what gRPC clients allow.
    #[arg(long, env = "KILN_GRPC_MAX_INPUT_SIZE")]
    pub grpc_max_input_size: Option<u64>,
    /// Inputs (and raw_input_contents entries) per request. Default 1024.
    #[arg(long, env = "KILN_MAX_REQUEST_INPUTS")]
    pub max_request_inputs: Option<usize>,
    /// Requested outputs per request. Default 1024.
    #[arg(long, env = "KILN_MAX_REQUEST_OUTPUTS")]
    pub max_request_outputs: Option<usize>,
    /// Entries of one parameters map (request, tensor). Default 256.
    #[arg(long, env = "KILN_MAX_REQUEST_PARAMETERS")]
    pub max_request_parameters: Option<usize>,
    /// Dimensions of one tensor. Default 64.
    #[arg(long, env = "KILN_MAX_TENSOR_DIMS")]
    pub max_tensor_dims: Option<usize>,
    /// Elements of one tensor. Default 2^31.
    #[arg(long, env = "KILN_MAX_TENSOR_ELEMENTS")]
    pub max_tensor_elements: Option<u64>,
    /// Nesting depth of an HTTP tensor's JSON `data`. Default 65.
    #[arg(long, env = "KILN_MAX_JSON_DEPTH")]
    pub max_json_depth: Option<usize>,

    // ---- connections
    /// Open connections per listener; one more is closed at once. Default 4096.
    #[arg(long, env = "KILN_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// An HTTP/1 request head must arrive within this. Default 10.
    #[arg(long, env = "KILN_HEADER_READ_TIMEOUT_SECS")]
    pub header_read_timeout_secs: Option<u64>,
    /// Largest request head (HTTP/1) or header list (HTTP/2), bytes. Default 65536.
    #[arg(long, env = "KILN_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<usize>,
    /// A connection with nothing in flight and no traffic for this long is
    /// closed gracefully. Default 120.
    #[arg(long, env = "KILN_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// A reply the client does not read for this long fails its connection.
    /// Default 30.
    #[arg(long, env = "KILN_WRITE_TIMEOUT_SECS")]
    pub write_timeout_secs: Option<u64>,
    /// gRPC: HTTP/2 ping interval on a connection, ms. Triton's flag; default
    /// 7200000 (2 h).
    #[arg(long, env = "KILN_GRPC_KEEPALIVE_TIME")]
    pub grpc_keepalive_time: Option<u64>,
    /// gRPC: a ping unanswered for this long closes the connection, ms.
    /// Triton's flag; default 20000.
    #[arg(long, env = "KILN_GRPC_KEEPALIVE_TIMEOUT")]
    pub grpc_keepalive_timeout: Option<u64>,
    /// gRPC: concurrent streams per connection. Default 1024.
    #[arg(long, env = "KILN_GRPC_MAX_CONCURRENT_STREAMS")]
    pub grpc_max_concurrent_streams: Option<u32>,
    /// gRPC: a connection older than this (ms) is asked to close (GOAWAY), so
    /// clients rebalance. Triton's flag; default: never.
    #[arg(long, env = "KILN_GRPC_MAX_CONNECTION_AGE")]
    pub grpc_max_connection_age: Option<u64>,
    /// gRPC: how long (ms) an aged connection may finish its calls before it
    /// is closed. Triton's flag; default: as long as they take.
    #[arg(long, env = "KILN_GRPC_MAX_CONNECTION_AGE_GRACE")]
    pub grpc_max_connection_age_grace: Option<u64>,

    // ---- shared memory
    /// System shared-memory regions one caller may register. Default 256.
    #[arg(long, env = "KILN_SHARED_MEMORY_MAX_REGIONS")]
    pub shared_memory_max_regions: Option<usize>,
    /// Regions all callers together may register (each holds an open file).
    /// Default 4096.
    #[arg(long, env = "KILN_SHARED_MEMORY_MAX_REGIONS_TOTAL")]
    pub shared_memory_max_regions_total: Option<usize>,
}

/// Fills every unset field of `args` from `file`.
macro_rules! or_file {
    ($args:ident, $file:ident, [$($opt:ident),* $(,)?], [$($list:ident),* $(,)?]) => {
        ServeArgs {
            config: $args.config,
            $($opt: $args.$opt.or($file.$opt),)*
            $($list: if $args.$list.is_empty() { $file.$list } else { $args.$list },)*
        }
    };
}

impl ServeArgs {
    fn or_file(self, file: ServeArgs) -> ServeArgs {
        let args = self;
        or_file!(
            args,
            file,
            [
                repository_cache_dir,
                tenants,
                host,
                http_port,
                grpc_port,
                metrics_port,
                port_file,
                model_control_mode,
                repository_poll_secs,
                cuda_tf32,
                exit_timeout_secs,
                http_max_input_size,
                grpc_max_input_size,
                max_request_inputs,
                max_request_outputs,
                max_request_parameters,
                max_tensor_dims,
                max_tensor_elements,
                max_json_depth,
                max_connections,
                header_read_timeout_secs,
                max_header_bytes,
                idle_timeout_secs,
                write_timeout_secs,
                grpc_keepalive_time,
                grpc_keepalive_timeout,
                grpc_max_concurrent_streams,
                grpc_max_connection_age,
                grpc_max_connection_age_grace,
                shared_memory_max_regions,
                shared_memory_max_regions_total,
                log_format,
            ],
            [
                model_repository,
                load_model,
                grpc_restricted_protocol,
                http_restricted_api,
                trace_config
            ]
        )
    }
}

/// One `--model-repository`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryLocation {
    Local(PathBuf),
    /// An object-store URL (`s3://`, `gs://`, `as://`).
    Remote(String),
}

impl std::fmt::Display for RepositoryLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RepositoryLocation::Local(p) => write!(f, "{}", p.display()),
            RepositoryLocation::Remote(url) => f.write_str(url),
        }
    }
}

/// A TOML value that may be one string or a list of them.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub model_repositories: Vec<RepositoryLocation>,
    pub repository_cache_dir: PathBuf,
    pub tenants: Option<PathBuf>,
    pub host: String,
    pub http_port: u16,
    pub grpc_port: u16,
    pub metrics_port: u16,
    pub port_file: Option<PathBuf>,
    pub model_control_mode: ControlMode,
    pub repository_poll_secs: u64,
    pub load_model: Vec<String>,
    pub cuda_tf32: Option<bool>,
    pub exit_timeout: Duration,
    pub limits: RequestLimits,
    pub grpc_connections: ConnectionPolicy,
    pub http_connections: ConnectionPolicy,
    pub grpc_restricted: Restrictions,
    pub http_restricted: Restrictions,
    pub shared_memory: RegionLimits,
    pub log_format: LogFormat,
    pub trace: kiln_trace::TraceConfig,
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable text with RFC 3339 timestamps.
    #[default]
    Default,
    /// Triton's name for its ISO 8601 timestamps: the default format.
    #[value(alias = "ISO8601")]
    #[serde(alias = "ISO8601")]
    Iso8601,
    /// One JSON object per line: timestamp, level, target, message and
    /// fields, and the request's span.
    Json,
}

/// gRPC HTTP/2 flow control: h2's default 64 KiB windows make a client stop
/// and wait for a WINDOW_UPDATE every 64 KiB, i.e. ten round trips for one
/// 600 KB image. Windows large enough for a whole batch of tensors in
/// flight, and frames up to 1 MiB, let a request arrive in one go.
const GRPC_STREAM_WINDOW: u32 = 16 << 20;
const GRPC_CONNECTION_WINDOW: u32 = 64 << 20;
const GRPC_MAX_FRAME: u32 = 1 << 20;

impl Settings {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let (file, file_dir) = match &args.config {
            Some(path) => (
                read_file(path)?,
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
            ),
            None => (ServeArgs::default(), PathBuf::new()),
        };
        // Relative paths in the file are relative to the file.
        let file = ServeArgs {
            model_repository: file
                .model_repository
                .into_iter()
                .map(|r| {
                    if kiln_object_repository::StoreUrl::is_remote(&r) {
                        r
                    } else {
                        file_dir.join(r).display().to_string()
                    }
                })
                .collect(),
            repository_cache_dir: file.repository_cache_dir.map(|p| file_dir.join(p)),
            port_file: file.port_file.map(|p| file_dir.join(p)),
            tenants: file.tenants.map(|p| file_dir.join(p)),
            ..file
        };
        let a = args.or_file(file);
        anyhow::ensure!(
            !a.model_repository.is_empty(),
            "no model repository: pass --model-repository DIR (or URL) or set model_repository in the config file"
        );
        let mut model_repositories = Vec::with_capacity(a.model_repository.len());
        for r in &a.model_repository {
            model_repositories.push(if kiln_object_repository::StoreUrl::is_remote(r) {
                kiln_object_repository::StoreUrl::parse(r).map_err(anyhow::Error::msg)?;
                RepositoryLocation::Remote(r.clone())
            } else {
                RepositoryLocation::Local(PathBuf::from(r))
            });
        }
        let defaults = RequestLimits::default();
        let limits = RequestLimits {
            max_inputs: a.max_request_inputs.unwrap_or(defaults.max_inputs),
            max_outputs: a.max_request_outputs.unwrap_or(defaults.max_outputs),
            max_parameters: a.max_request_parameters.unwrap_or(defaults.max_parameters),
            max_dims: a.max_tensor_dims.unwrap_or(defaults.max_dims),
            max_tensor_elements: a
                .max_tensor_elements
                .unwrap_or(defaults.max_tensor_elements),
            max_json_depth: a.max_json_depth.unwrap_or(defaults.max_json_depth),
            http_max_input_size: size(a.http_max_input_size, defaults.http_max_input_size)
                .context("http_max_input_size")?,
            grpc_max_input_size: size(a.grpc_max_input_size, defaults.grpc_max_input_size)
                .context("grpc_max_input_size")?,
            ..defaults
        };
        let secs = |v: Option<u64>, default: u64| Duration::from_secs(v.unwrap_or(default).max(1));
        let http_connections = ConnectionPolicy {
            wire: Wire::Http1,
            max_connections: a.max_connections.unwrap_or(4096).max(1),
            header_read_timeout: secs(a.header_read_timeout_secs, 10),
            max_header_bytes: a.max_header_bytes.unwrap_or(64 << 10).max(8 << 10),
            idle_timeout: secs(a.idle_timeout_secs, 120),
            write_timeout: secs(a.write_timeout_secs, 30),
            max_connection_age: None,
            max_connection_age_grace: None,
            http2: Http2Settings {
                keepalive_interval: Some(Duration::from_millis(
                    a.grpc_keepalive_time.unwrap_or(7_200_000).max(1000),
                )),
                keepalive_timeout: Duration::from_millis(
                    a.grpc_keepalive_timeout.unwrap_or(20_000).max(100),
                ),
                max_concurrent_streams: a.grpc_max_concurrent_streams.unwrap_or(1024).max(1),
                stream_window: GRPC_STREAM_WINDOW,
                connection_window: GRPC_CONNECTION_WINDOW,
                max_frame_size: GRPC_MAX_FRAME,
            },
        };
        let grpc_connections = ConnectionPolicy {
            wire: Wire::Http2,
            max_connection_age: a.grpc_max_connection_age.map(Duration::from_millis),
            max_connection_age_grace: a.grpc_max_connection_age_grace.map(Duration::from_millis),
            ..http_connections.clone()
        };
        Ok(Self {
            model_repositories,
            repository_cache_dir: a
                .repository_cache_dir
                .unwrap_or_else(|| std::env::temp_dir().join("kiln-repositories")),
            tenants: a.tenants,
            host: a.host.unwrap_or_else(|| "0.0.0.0".into()),
            http_port: a.http_port.unwrap_or(8000),
            grpc_port: a.grpc_port.unwrap_or(8001),
            metrics_port: a.metrics_port.unwrap_or(8002),
            port_file: a.port_file,
            model_control_mode: a.model_control_mode.unwrap_or_default(),
            repository_poll_secs: a.repository_poll_secs.unwrap_or(15),
            load_model: a.load_model,
            cuda_tf32: a.cuda_tf32,
            exit_timeout: Duration::from_secs(a.exit_timeout_secs.unwrap_or(30)),
            limits,
            grpc_connections,
            http_connections,
            grpc_restricted: Restrictions::parse(RestrictedWire::Grpc, &a.grpc_restricted_protocol)
                .context("--grpc-restricted-protocol")?,
            http_restricted: Restrictions::parse(RestrictedWire::Http, &a.http_restricted_api)
                .context("--http-restricted-api")?,
            shared_memory: RegionLimits {
                per_caller: a.shared_memory_max_regions.unwrap_or(256),
                total: a.shared_memory_max_regions_total.unwrap_or(4096),
            },
            log_format: a.log_format.unwrap_or_default(),
            trace: kiln_trace::TraceConfig::parse(&a.trace_config).map_err(anyhow::Error::msg)?,
        })
    }
}

/// A byte size setting: at least 1 KiB, at most what a 32-bit gRPC/HTTP
/// length and the address space allow.
fn size(value: Option<u64>, default: usize) -> anyhow::Result<usize> {
    let v = value.unwrap_or(default as u64);
    anyhow::ensure!(
        (1024..=i32::MAX as u64).contains(&v),
        "must be between 1024 and 2147483647 bytes, got {v}"
    );
    Ok(v as usize)
}

fn read_file(path: &Path) -> anyhow::Result<ServeArgs> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_has_its_environment_variable() {
        use clap::Args;
        let cmd = ServeArgs::augment_args(clap::Command::new("serve"));
        let mut checked = 0;
        for arg in cmd.get_arguments().filter(|a| a.get_long().is_some()) {
            let want = format!("KILN_{}", arg.get_id().as_str().to_uppercase());
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(want.as_str()),
                "--{}",
                arg.get_long().unwrap_or_default()
            );
            checked += 1;
        }
        assert!(checked >= 38, "{checked} flags");
    }

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("kiln.toml");
        std::fs::write(&file, "model_repository = \"models\"\nhttp_port = 9000\ngrpc_port = 9001\nmodel_control_mode = \"poll\"\nmax_request_inputs = 7\nhttp_restricted_api = [\"shared-memory:admin=s3cret\"]\ntenants = \"tenants.toml\"\n").unwrap();
        let s = Settings::resolve(ServeArgs {
            config: Some(file),
            grpc_port: Some(7001),
            idle_timeout_secs: Some(5),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            s.model_repositories,
            [RepositoryLocation::Local(tmp.path().join("models"))]
        );
        assert_eq!(s.tenants, Some(tmp.path().join("tenants.toml")));
        assert_eq!(
            (s.http_port, s.grpc_port, s.metrics_port),
            (9000, 7001, 8002)
        );
        assert_eq!(s.model_control_mode, ControlMode::Poll);
        assert_eq!(s.limits.max_inputs, 7);
        assert_eq!(s.limits.max_outputs, RequestLimits::default().max_outputs);
        assert_eq!(s.http_connections.idle_timeout, Duration::from_secs(5));
        assert_eq!(s.exit_timeout, Duration::from_secs(30));
        assert!(!s.http_restricted.is_empty());
        assert!(s.grpc_restricted.is_empty());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("kiln.toml");
        std::fs::write(&file, "htp_port = 1\n").unwrap();
        let e = Settings::resolve(ServeArgs {
            config: Some(file),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("htp_port"), "{e:#}");
        let e = Settings::resolve(ServeArgs {
            model_repository: vec!["m".into()],
            http_max_input_size: Some(10),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("http_max_input_size"), "{e:#}");
    }
}
