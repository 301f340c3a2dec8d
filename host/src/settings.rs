//! Server settings: command-line flags over a TOML file (`--config`) over
//! Triton's defaults (HTTP 8000, gRPC 8001, metrics 8002).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::repository::ControlMode;

/// `kiln serve` flags. Every one can also be set in the TOML file under the
/// same name (with underscores).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML server config; flags given on the command line win over it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The Triton-layout model repository to serve.
    #[arg(long)]
    pub model_repository: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    pub host: Option<String>,
    #[arg(long)]
    pub http_port: Option<u16>,
    #[arg(long)]
    pub grpc_port: Option<u16>,
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// none: load all at start; poll: also reload changes; explicit: load on request.
    #[arg(long, value_enum)]
    pub model_control_mode: Option<ControlMode>,
    /// Rescan interval in poll mode.
    #[arg(long)]
    pub repository_poll_secs: Option<u64>,
    /// Models to load at start in explicit mode ("*" for all); repeatable.
    #[arg(long)]
    pub load_model: Vec<String>,
    /// TF32 tensor-core math for FP32 matmuls (cuBLAS) and convolutions
    /// (cuDNN), for every GPU model: libtorch keeps these switches process-wide,
    /// so they are a server setting, not a model parameter. Unset: libtorch's
    /// defaults (cuDNN on, cuBLAS off). Needs a kiln built with `cuda`.
    #[arg(long)]
    pub cuda_tf32: Option<bool>,
}

/// The TOML file: the same settings, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    model_repository: Option<PathBuf>,
    host: Option<String>,
    http_port: Option<u16>,
    grpc_port: Option<u16>,
    metrics_port: Option<u16>,
    model_control_mode: Option<ControlMode>,
    repository_poll_secs: Option<u64>,
    #[serde(default)]
    load_model: Vec<String>,
    cuda_tf32: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub model_repository: PathBuf,
    pub host: String,
    pub http_port: u16,
    pub grpc_port: u16,
    pub metrics_port: u16,
    pub model_control_mode: ControlMode,
    pub repository_poll_secs: u64,
    pub load_model: Vec<String>,
    pub cuda_tf32: Option<bool>,
}

impl Settings {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        // Relative paths in the file are relative to the file.
        let file_dir = args
            .config
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let model_repository = args
            .model_repository
            .or_else(|| file.model_repository.map(|p| file_dir.join(p)))
            .context("no model repository: pass --model-repository DIR or set model_repository in the config file")?;
        Ok(Self {
            model_repository,
            host: args.host.or(file.host).unwrap_or_else(|| "0.0.0.0".into()),
            http_port: args.http_port.or(file.http_port).unwrap_or(8000),
            grpc_port: args.grpc_port.or(file.grpc_port).unwrap_or(8001),
            metrics_port: args.metrics_port.or(file.metrics_port).unwrap_or(8002),
            model_control_mode: args
                .model_control_mode
                .or(file.model_control_mode)
                .unwrap_or_default(),
            repository_poll_secs: args
                .repository_poll_secs
                .or(file.repository_poll_secs)
                .unwrap_or(15),
            load_model: if args.load_model.is_empty() {
                file.load_model
            } else {
                args.load_model
            },
            cuda_tf32: args.cuda_tf32.or(file.cuda_tf32),
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("kiln.toml");
        std::fs::write(&file, "model_repository = \"models\"\nhttp_port = 9000\ngrpc_port = 9001\nmodel_control_mode = \"poll\"\n").unwrap();
        let s = Settings::resolve(ServeArgs {
            config: Some(file),
            grpc_port: Some(7001),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.model_repository, tmp.path().join("models"));
        assert_eq!(
            (s.http_port, s.grpc_port, s.metrics_port),
            (9000, 7001, 8002)
        );
        assert_eq!(s.model_control_mode, ControlMode::Poll);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("kiln.toml");
        std::fs::write(&file, "htp_port = 1\n").unwrap();
        let e = Settings::resolve(ServeArgs {
            config: Some(file),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("htp_port"), "{e:#}");
    }
}
