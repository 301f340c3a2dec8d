//! The `kiln` command: `serve` and `check` (see the library crate).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "Inference server for Triton model repositories (KServe v2 over gRPC and HTTP)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a model repository.
    Serve(Box<kiln::settings::ServeArgs>),
    /// Validate a model repository (a table of models and versions) and/or
    /// a tenants file.
    Check {
        /// The model repository.
        #[arg(required_unless_present = "tenants")]
        dir: Option<PathBuf>,
        /// A tenants file to validate.
        #[arg(long)]
        tenants: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve(args) => {
            // Settings first: they say how to log.
            let settings = kiln::settings::Settings::resolve(*args);
            kiln::logging::init(
                settings
                    .as_ref()
                    .map_or(Default::default(), |s: &kiln::settings::Settings| {
                        s.log_format
                    }),
            );
            // Every client connection is a file descriptor, and libtorch/CUDA
            // hold hundreds more: the common soft limit of 1024 made
            // connections fail at 256 perf_analyzer clients on the H100 box.
            match rlimit::increase_nofile_limit(u64::MAX) {
                Ok(n) => tracing::debug!(nofile = n, "open-file limit raised"),
                Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
            }
            let result = settings.and_then(|settings| {
                // One worker per core (TOKIO_WORKER_THREADS overrides):
                // work on large requests leaves the workers through
                // block_in_place (protocol::off_the_runtime), so health
                // checks keep a worker without extra threads, which cost
                // every small request context switches on a small machine.
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()?;
                let served = runtime.block_on(kiln::server::serve(settings));
                // serve() bounded the drain already; what is still running
                // (a model load, a stuck connection) must not hold the exit.
                runtime.shutdown_timeout(std::time::Duration::from_secs(1));
                served
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { dir, tenants } => {
            kiln::logging::init(Default::default());
            let mut ok = true;
            if let Some(file) = tenants {
                ok &= kiln::check::check_tenants(&file, dir.as_deref());
            }
            if let Some(dir) = dir {
                ok &= match kiln::check::check_repository(&dir) {
                    Ok(rows) => {
                        kiln::check::print_table(&rows);
                        rows.iter().all(|r| r.status == "OK") && !rows.is_empty()
                    }
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        false
                    }
                };
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
