//! Restricted APIs, Triton's `--grpc-restricted-protocol` and
//! `--http-restricted-api`: the operator names groups of the API and a
//! header that requests to them must carry (`shared-memory,model-repository:
//! admin-key=s3cret`). Requests without it are refused before any handler
//! runs, so registering another process's shared memory or unloading a model
//! can be kept from clients that only may infer.
//!
//! As in Triton 2.51 (probed): HTTP requests carry the header as named and
//! are refused with 403 `{"error": "This API is restricted, expecting header
//! 'admin-key'"}`; gRPC requests carry it as metadata
//! `triton-grpc-protocol-<key>` and are refused with UNAVAILABLE "This
//! protocol is restricted, expecting header 'triton-grpc-protocol-admin-key'"
//! (a stream as soon as it opens). A group may be named once per protocol;
//! health stays open unless listed. The value is compared in constant time.
//!
//! Enforced by admission (`protocol::admission`), the one place each
//! protocol's requests pass before their handlers.

use std::collections::BTreeMap;
use std::fmt;

use http::HeaderMap;

/// An API group, in Triton's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Api {
    Health,
    Metadata,
    Inference,
    SharedMemory,
    ModelConfig,
    ModelRepository,
    Statistics,
    Trace,
    Logging,
}

impl Api {
    const ALL: [Api; 9] = [
        Api::Health,
        Api::Metadata,
        Api::Inference,
        Api::SharedMemory,
        Api::ModelConfig,
        Api::ModelRepository,
        Api::Statistics,
        Api::Trace,
        Api::Logging,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Api::Health => "health",
            Api::Metadata => "metadata",
            Api::Inference => "inference",
            Api::SharedMemory => "shared-memory",
            Api::ModelConfig => "model-config",
            Api::ModelRepository => "model-repository",
            Api::Statistics => "statistics",
            Api::Trace => "trace",
            Api::Logging => "logging",
        }
    }

    fn parse(name: &str) -> Option<Api> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The group of a request to a listener speaking `wire`.
    pub fn of(wire: Wire, path: &str) -> Option<Api> {
        match wire {
            Wire::Grpc => Self::of_grpc_path(path),
            Wire::Http => Self::of_http_path(path),
        }
    }

    /// The group of a gRPC method (`/package.Service/Method`).
    pub fn of_grpc_path(path: &str) -> Option<Api> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        if service == "grpc.health.v1.Health" {
            return Some(Api::Health);
        }
        if service != "inference.GRPCInferenceService" {
            return None;
        }
        Some(match method {
            "ServerLive" | "ServerReady" | "ModelReady" => Api::Health,
            "ServerMetadata" | "ModelMetadata" => Api::Metadata,
            "ModelInfer" | "ModelStreamInfer" => Api::Inference,
            "ModelConfig" => Api::ModelConfig,
            "ModelStatistics" => Api::Statistics,
            "RepositoryIndex" | "RepositoryModelLoad" | "RepositoryModelUnload" => {
                Api::ModelRepository
            }
            "TraceSetting" => Api::Trace,
            "LogSettings" => Api::Logging,
            m if m.contains("SharedMemory") => Api::SharedMemory,
            _ => return None,
        })
    }

    /// The group of an HTTP route (KServe v2 and Triton's extensions).
    pub fn of_http_path(path: &str) -> Option<Api> {
        let rest = path.strip_prefix("/v2")?;
        if rest.is_empty() || rest == "/" {
            return Some(Api::Metadata);
        }
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        Some(match parts.as_slice() {
            ["health", ..] => Api::Health,
            ["repository", ..] => Api::ModelRepository,
            ["systemsharedmemory", ..] | ["cudasharedmemory", ..] => Api::SharedMemory,
            ["trace", ..] => Api::Trace,
            ["logging", ..] => Api::Logging,
            ["models", "stats"] => Api::Statistics,
            ["models", _model, tail @ ..] => {
                // Skip `versions/{v}`.
                let tail = match tail {
                    ["versions", _, t @ ..] => t,
                    t => t,
                };
                match tail {
                    [] => Api::Metadata,
                    ["ready"] => Api::Health,
                    ["config"] => Api::ModelConfig,
                    ["stats"] => Api::Statistics,
                    ["infer"] => Api::Inference,
                    ["trace", ..] => Api::Trace,
                    _ => return None,
                }
            }
            _ => return None,
        })
    }
}

/// gRPC metadata keys of restricted protocols carry this prefix (Triton's).
const GRPC_HEADER_PREFIX: &str = "triton-grpc-protocol-";

/// Which protocol's flag a restriction came from (their messages differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Grpc,
    Http,
}

/// The header (lower-case) and value a group requires.
#[derive(Clone, PartialEq)]
pub struct Requirement {
    pub header: String,
    value: String,
}

impl fmt::Debug for Requirement {
    // Never print the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Requirement")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// The restricted groups of one protocol.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Restrictions {
    wire: Option<Wire>,
    groups: BTreeMap<Api, Requirement>,
}

impl Restrictions {
    /// Parses the flag's values: each `<api>[,<api>...]:<header>=<value>`.
    /// A group named twice is an error (one group, one header).
    pub fn parse(wire: Wire, values: &[String]) -> anyhow::Result<Self> {
        let mut groups = BTreeMap::new();
        for spec in values {
            let (apis, requirement) = spec.split_once(':').ok_or_else(|| {
                anyhow::anyhow!("'{spec}': expected <api>[,<api>...]:<header>=<value>")
            })?;
            let (header, value) = requirement
                .split_once('=')
                .filter(|(h, v)| !h.trim().is_empty() && !v.is_empty())
                .ok_or_else(|| {
                    anyhow::anyhow!("'{apis}:…': expected <header>=<value> after the ':'")
                })?;
            let header = match wire {
                Wire::Grpc => format!("{GRPC_HEADER_PREFIX}{}", header.trim()),
                Wire::Http => header.trim().to_string(),
            }
            .to_ascii_lowercase();
            anyhow::ensure!(
                http::HeaderName::from_bytes(header.as_bytes()).is_ok(),
                "'{header}' is not a valid header name"
            );
            for name in apis.split(',').map(str::trim) {
                let api = Api::parse(name).ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown API '{name}' (known: {})",
                        Api::ALL.map(Api::name).join(", ")
                    )
                })?;
                let requirement = Requirement {
                    header: header.clone(),
                    value: value.to_string(),
                };
                anyhow::ensure!(
                    groups.insert(api, requirement).is_none(),
                    "restricted api '{name}' can not be specified in multiple config groups"
                );
            }
        }
        Ok(Self {
            wire: Some(wire),
            groups,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// `Err(message)` when `api` is restricted and `headers` lack its header
    /// with the right value.
    pub fn check(&self, api: Option<Api>, headers: &HeaderMap) -> Result<(), String> {
        let Some(required) = api.and_then(|a| self.groups.get(&a)) else {
            return Ok(());
        };
        let given = headers.get(required.header.as_str()).map(|v| v.as_bytes());
        // Compared in constant time: the value is a shared secret.
        if given.is_some_and(|g| constant_time_eq(g, required.value.as_bytes())) {
            return Ok(());
        }
        let what = match self.wire {
            Some(Wire::Http) => "API",
            _ => "protocol",
        };
        Err(format!(
            "This {what} is restricted, expecting header '{}'",
            required.header
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_into_groups_and_bad_ones_are_named() {
        let r = Restrictions::parse(
            Wire::Http,
            &["shared-memory,model-repository:Admin-Key=s3cret".into()],
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        let e = r.check(Some(Api::SharedMemory), &headers).unwrap_err();
        assert_eq!(e, "This API is restricted, expecting header 'admin-key'");
        headers.insert("admin-key", "wrong".parse().unwrap());
        assert!(r.check(Some(Api::ModelRepository), &headers).is_err());
        headers.insert("admin-key", "s3cret".parse().unwrap());
        assert!(r.check(Some(Api::ModelRepository), &headers).is_ok());
        assert!(r.check(Some(Api::Inference), &HeaderMap::new()).is_ok());
        assert!(!format!("{r:?}").contains("s3cret"));
        let g = Restrictions::parse(Wire::Grpc, &["inference:Key=v".into()]).unwrap();
        let e = g
            .check(Some(Api::Inference), &HeaderMap::new())
            .unwrap_err();
        assert_eq!(
            e,
            "This protocol is restricted, expecting header 'triton-grpc-protocol-key'"
        );
        for bad in ["shared-memory", "bogus:k=v", "inference:=v", "inference:k="] {
            assert!(
                Restrictions::parse(Wire::Grpc, &[bad.into()]).is_err(),
                "{bad}"
            );
        }
        assert!(Restrictions::parse(
            Wire::Grpc,
            &["inference:a=1".into(), "inference:b=2".into()]
        )
        .is_err());
    }

    #[test]
    fn every_route_and_method_has_its_group() {
        for (path, api) in [
            ("/v2", Some(Api::Metadata)),
            ("/v2/health/ready", Some(Api::Health)),
            ("/v2/models/m", Some(Api::Metadata)),
            ("/v2/models/m/versions/2/ready", Some(Api::Health)),
            ("/v2/models/m/config", Some(Api::ModelConfig)),
            ("/v2/models/m/versions/1/infer", Some(Api::Inference)),
            ("/v2/models/stats", Some(Api::Statistics)),
            ("/v2/models/m/stats", Some(Api::Statistics)),
            ("/v2/repository/models/m/load", Some(Api::ModelRepository)),
            (
                "/v2/systemsharedmemory/region/r/register",
                Some(Api::SharedMemory),
            ),
            ("/v2/cudasharedmemory/status", Some(Api::SharedMemory)),
            ("/v2/models/m/trace/setting", Some(Api::Trace)),
            ("/v2/logging", Some(Api::Logging)),
            ("/metrics", None),
        ] {
            assert_eq!(Api::of_http_path(path), api, "{path}");
        }
        for (path, api) in [
            (
                "/inference.GRPCInferenceService/ModelInfer",
                Some(Api::Inference),
            ),
            (
                "/inference.GRPCInferenceService/SystemSharedMemoryRegister",
                Some(Api::SharedMemory),
            ),
            (
                "/inference.GRPCInferenceService/CudaSharedMemoryStatus",
                Some(Api::SharedMemory),
            ),
            (
                "/inference.GRPCInferenceService/RepositoryModelUnload",
                Some(Api::ModelRepository),
            ),
            (
                "/inference.GRPCInferenceService/ModelReady",
                Some(Api::Health),
            ),
            ("/grpc.health.v1.Health/Check", Some(Api::Health)),
            ("/other.Service/X", None),
        ] {
            assert_eq!(Api::of_grpc_path(path), api, "{path}");
        }
    }
}
