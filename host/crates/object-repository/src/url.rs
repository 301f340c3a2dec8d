//! Triton's repository URLs: `s3://bucket/path`, `s3://host:port/bucket/path`,
//! `s3://http(s)://host:port/bucket/path`, `gs://bucket/path` and
//! `as://account/container/path`.

/// Where a repository lives, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    S3 {
        /// `http(s)://host:port` for an S3-compatible server; `None` for AWS.
        endpoint: Option<String>,
        bucket: String,
        prefix: String,
    },
    Gcs {
        bucket: String,
        prefix: String,
    },
    Azure {
        account: String,
        container: String,
        prefix: String,
    },
}

impl StoreUrl {
    /// Whether `location` names an object store rather than a local path.
    pub fn is_remote(location: &str) -> bool {
        ["s3://", "gs://", "as://"]
            .iter()
            .any(|scheme| location.starts_with(scheme))
    }

    pub fn parse(url: &str) -> Result<StoreUrl, String> {
        let bad = |why: &str| {
            Err(format!(
                "repository URL '{}': {why}",
                kiln_types::text::clip(url)
            ))
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (scheme, rest) = match rest.split_once("://") {
                Some((s @ ("http" | "https"), after)) => (Some(s), after),
                Some(_) => return bad("the endpoint scheme is http or https"),
                None => (None, rest),
            };
            let mut parts = rest.splitn(2, '/');
            let first = parts.next().unwrap_or_default();
            let after = parts.next().unwrap_or_default();
            // A first part with a port (or after a scheme) is the server.
            if scheme.is_some() || first.contains(':') {
                let endpoint = format!("{}://{first}", scheme.unwrap_or("http"));
                let (bucket, prefix) = split(after);
                if bucket.is_empty() {
                    return bad("expected s3://host:port/bucket[/path]");
                }
                return Ok(StoreUrl::S3 {
                    endpoint: Some(endpoint),
                    bucket,
                    prefix,
                });
            }
            if first.is_empty() {
                return bad("expected s3://bucket[/path]");
            }
            return Ok(StoreUrl::S3 {
                endpoint: None,
                bucket: first.to_string(),
                prefix: trim(after),
            });
        }
        if let Some(rest) = url.strip_prefix("gs://") {
            let (bucket, prefix) = split(rest);
            if bucket.is_empty() {
                return bad("expected gs://bucket[/path]");
            }
            return Ok(StoreUrl::Gcs { bucket, prefix });
        }
        if let Some(rest) = url.strip_prefix("as://") {
            let (account, rest) = split(rest);
            let (container, prefix) = split(&rest);
            if account.is_empty() || container.is_empty() {
                return bad("expected as://account/container[/path]");
            }
            return Ok(StoreUrl::Azure {
                account,
                container,
                prefix,
            });
        }
        bad("the scheme is s3://, gs:// or as://")
    }
}

/// `first/rest...` → (`first`, `rest` without surrounding slashes).
fn split(s: &str) -> (String, String) {
    let s = s.trim_matches('/');
    match s.split_once('/') {
        Some((first, rest)) => (first.to_string(), trim(rest)),
        None => (s.to_string(), String::new()),
    }
}

fn trim(s: &str) -> String {
    s.trim_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tritons_forms_parse() {
        let s3 = |endpoint: Option<&str>, bucket: &str, prefix: &str| StoreUrl::S3 {
            endpoint: endpoint.map(str::to_string),
            bucket: bucket.into(),
            prefix: prefix.into(),
        };
        assert_eq!(
            StoreUrl::parse("s3://models").unwrap(),
            s3(None, "models", "")
        );
        assert_eq!(
            StoreUrl::parse("s3://models/team/a/").unwrap(),
            s3(None, "models", "team/a")
        );
        assert_eq!(
            StoreUrl::parse("s3://127.0.0.1:8333/models/repo").unwrap(),
            s3(Some("http://127.0.0.1:8333"), "models", "repo")
        );
        assert_eq!(
            StoreUrl::parse("s3://https://minio.local:9000/models").unwrap(),
            s3(Some("https://minio.local:9000"), "models", "")
        );
        assert_eq!(
            StoreUrl::parse("gs://bucket/a/b").unwrap(),
            StoreUrl::Gcs {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            StoreUrl::parse("as://acct/cont/p").unwrap(),
            StoreUrl::Azure {
                account: "acct".into(),
                container: "cont".into(),
                prefix: "p".into()
            }
        );
        assert!(StoreUrl::is_remote("gs://x") && !StoreUrl::is_remote("/models"));
    }

    #[test]
    fn malformed_urls_say_what_was_expected() {
        for (url, want) in [
            ("s3://", "s3://bucket"),
            ("s3://host:1/", "s3://host:port/bucket"),
            ("s3://ftp://h:1/b", "http or https"),
            ("as://acct", "as://account/container"),
            ("gs://", "gs://bucket"),
            ("az://a/b", "s3://, gs:// or as://"),
        ] {
            let e = StoreUrl::parse(url).unwrap_err();
            assert!(e.contains(want), "{url}: {e}");
        }
    }
}
