//! The tenants file (TOML):
//!
//! ```toml
//! [[tenant]]
//! name = "team-a"
//! api_keys = ["sha256:8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8"]
//! scopes = ["infer", "metadata"]
//! repository = "tenants/team-a"      # its own models (relative to this file)
//! shared_models = ["digits*"]        # the main repository's models it may use
//! weight = 3                         # its share of a busy model (default 1)
//!
//! [tenant.quotas]                    # each optional
//! requests_per_second = 100          # a token bucket ...
//! burst = 200                        # ... this deep (default: requests_per_second)
//! max_in_flight = 64                 # requests admitted and not yet answered
//! max_queued_per_model = 32          # requests waiting in one model's queue
//! max_loaded_models = 10             # models loaded from its own repository
//! wasm_memory_mb = 128               # ceilings on its own plugins' settings
//! wasm_timeout_ms = 500
//! wasm_fuel = 1000000000
//! ```
//!
//! Unknown keys, bad digests, unknown scopes, duplicate names, a key digest
//! given to two tenants, a repository that is not a directory and a bad
//! pattern are errors naming `file:line:column`, the way config.pbtxt
//! errors are.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use serde::Deserialize;
use toml::Spanned;

use crate::jwt::{JwtDoc, JwtVerifier};
use crate::keys::{KeyDigest, KeyIndex};
use crate::scope::{Scope, Scopes};

/// The largest tenants file kiln reads (it is the operator's, but is read
/// again on every change while serving).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Why a tenants file was refused; the message names the file and, where
/// one thing is wrong, its line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantsError(pub String);

impl std::fmt::Display for TenantsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TenantsError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    tenant: Vec<TenantDoc>,
    jwt: Option<JwtDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantDoc {
    name: Spanned<String>,
    #[serde(default)]
    api_keys: Vec<Spanned<String>>,
    scopes: Spanned<Vec<Spanned<String>>>,
    repository: Option<Spanned<String>>,
    #[serde(default)]
    shared_models: Vec<Spanned<String>>,
    weight: Option<Spanned<u32>>,
    #[serde(default)]
    quotas: QuotasDoc,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct QuotasDoc {
    requests_per_second: Option<Spanned<u32>>,
    burst: Option<Spanned<u32>>,
    max_in_flight: Option<Spanned<u32>>,
    max_loaded_models: Option<Spanned<u32>>,
    max_queued_per_model: Option<Spanned<u32>>,
    wasm_memory_mb: Option<Spanned<u32>>,
    wasm_timeout_ms: Option<Spanned<u32>>,
    wasm_fuel: Option<Spanned<u64>>,
}

/// The largest scheduling weight: one tenant gets at most this many turns'
/// worth of a busy model for another's one.
pub const MAX_WEIGHT: u32 = 1000;

/// A requests-per-second quota: a token bucket refilled at `per_second`,
/// `burst` deep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

/// A tenant's quotas; `None` is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quotas {
    pub rate: Option<Rate>,
    pub max_in_flight: Option<NonZeroU32>,
    pub max_loaded_models: Option<NonZeroU32>,
    pub max_queued_per_model: Option<NonZeroU32>,
    /// Ceilings on its own plugins' `wasm_memory_mb`, `wasm_timeout_ms`
    /// and `wasm_fuel` (parameter name, ceiling), in that order, those set.
    pub plugin_ceilings: Vec<(&'static str, u64)>,
}

/// One tenant as admission sees it.
#[derive(Clone)]
pub struct Tenant {
    pub name: Arc<str>,
    pub scopes: Scopes,
    /// Its own model repository (absolute, or relative to where kiln runs
    /// if the file's own path was).
    pub repository: Option<PathBuf>,
    /// The patterns of `shared_models`, as written.
    pub shared_patterns: Vec<String>,
    shared: GlobSet,
    pub quotas: Quotas,
    /// Its share of a busy model against other tenants' (1..=[`MAX_WEIGHT`]).
    pub weight: u32,
}

impl Tenant {
    /// May this tenant use the main repository's model `name`?
    pub fn may_use_shared(&self, name: &str) -> bool {
        self.shared.is_match(name)
    }
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("repository", &self.repository)
            .field("shared_models", &self.shared_patterns)
            .field("quotas", &self.quotas)
            .field("weight", &self.weight)
            .finish()
    }
}

/// One version of the tenants file, validated.
pub struct Tenants {
    tenants: Vec<Tenant>,
    keys: KeyIndex,
    jwt: Option<JwtVerifier>,
    /// What is legal but likely a mistake (overlapping patterns), named by
    /// `file:line:column`; `kiln check` prints them, serving logs them.
    warnings: Vec<String>,
}

/// The tenants, never their key digests.
impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.tenants).finish()
    }
}

/// Whether a shared_models pattern matches more than its own text.
fn has_glob_syntax(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{', '\\'])
}

/// Tenant names: what logs, metrics labels and namespaces show.
fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tenant name '{}' must be 1-64 of A-Z a-z 0-9 _ - . and not start with '.'",
            kiln_types::text::clip(name)
        ))
    }
}

impl Tenants {
    /// Parses and validates the text of the tenants file at `file`.
    pub fn parse(file: &Path, text: &str) -> Result<Self, TenantsError> {
        let at = |offset: usize, message: String| {
            let (line, col) = kiln_types::text::line_col(text, offset);
            TenantsError(format!("{}:{line}:{col}: {message}", file.display()))
        };
        let doc: FileDoc = toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            match e.span() {
                Some(span) => at(span.start, message),
                None => TenantsError(format!("{}: {message}", file.display())),
            }
        })?;
        let jwt = match doc.jwt {
            None => None,
            Some(jwt) => Some(
                JwtVerifier::from_doc(jwt, file.parent().unwrap_or(Path::new("")), &|o, m| {
                    at(o, m).0
                })
                .map_err(TenantsError)?,
            ),
        };
        let mut tenants = Vec::with_capacity(doc.tenant.len());
        let mut warnings = Vec::new();
        let mut keys = KeyIndex::default();
        for (index, t) in doc.tenant.into_iter().enumerate() {
            let name = t.name.get_ref().as_str();
            check_name(name).map_err(|m| at(t.name.span().start, m))?;
            if tenants.iter().any(|x: &Tenant| &*x.name == name) {
                return Err(at(
                    t.name.span().start,
                    format!("tenant '{name}' is declared twice"),
                ));
            }
            if t.api_keys.is_empty() && jwt.is_none() {
                return Err(at(
                    t.name.span().start,
                    format!(
                        "tenant '{name}' has no credentials: give it api_keys, or configure [jwt]"
                    ),
                ));
            }
            for key in &t.api_keys {
                let digest = KeyDigest::parse(key.get_ref())
                    .map_err(|m| at(key.span().start, format!("tenant '{name}': {m}")))?;
                if let Err(owner) = keys.insert(digest, index) {
                    let owner = if owner == index {
                        "this tenant already".to_string()
                    } else {
                        format!("tenant '{}'", tenants[owner].name)
                    };
                    return Err(at(
                        key.span().start,
                        format!("tenant '{name}': this API key digest is given to {owner}: a key must name one tenant"),
                    ));
                }
            }
            let mut scopes = Scopes::default();
            for s in t.scopes.get_ref() {
                let scope = Scope::parse(s.get_ref()).ok_or_else(|| {
                    at(
                        s.span().start,
                        format!(
                            "tenant '{name}': unknown scope '{}' (scopes: {})",
                            kiln_types::text::clip(s.get_ref()),
                            Scope::ALL.map(Scope::name).join(", ")
                        ),
                    )
                })?;
                scopes.insert(scope);
            }
            if scopes.is_empty() {
                return Err(at(
                    t.scopes.span().start,
                    format!(
                        "tenant '{name}' has no scopes: list what it may do ({})",
                        Scope::ALL.map(Scope::name).join(", ")
                    ),
                ));
            }
            let repository = match &t.repository {
                None => None,
                Some(dir) => {
                    let base = file.parent().unwrap_or(Path::new(""));
                    let path = base.join(dir.get_ref());
                    if !path.is_dir() {
                        return Err(at(
                            dir.span().start,
                            format!(
                                "tenant '{name}': repository '{}' is not a directory",
                                path.display()
                            ),
                        ));
                    }
                    Some(path)
                }
            };
            let mut shared = GlobSetBuilder::new();
            let mut matchers: Vec<(&str, globset::GlobMatcher)> = Vec::new();
            for pattern in &t.shared_models {
                let glob = GlobBuilder::new(pattern.get_ref())
                    .literal_separator(true)
                    .build()
                    .map_err(|e| {
                        at(
                            pattern.span().start,
                            format!("tenant '{name}': shared_models pattern: {}", e.kind()),
                        )
                    })?;
                let text = pattern.get_ref().as_str();
                let matcher = glob.compile_matcher();
                let covered = matchers.iter().find(|(other, m)| {
                    *other == text || (!has_glob_syntax(text) && m.is_match(text))
                });
                if let Some((other, _)) = covered {
                    warnings.push(at(
                        pattern.span().start,
                        format!("tenant '{name}': shared_models pattern '{}' adds nothing: '{}' already grants it", kiln_types::text::clip(text), kiln_types::text::clip(other)),
                    ).0);
                } else if let Some((other, _)) = matchers
                    .iter()
                    .find(|(other, _)| !has_glob_syntax(other) && matcher.is_match(other))
                {
                    warnings.push(at(
                        pattern.span().start,
                        format!("tenant '{name}': shared_models pattern '{}' also grants '{}', listed before it", kiln_types::text::clip(text), kiln_types::text::clip(other)),
                    ).0);
                }
                matchers.push((text, matcher));
                shared.add(glob);
            }
            let shared = shared
                .build()
                .map_err(|e| at(t.name.span().start, format!("tenant '{name}': {e}")))?;
            let positive = |field: &Option<Spanned<u32>>, what: &str| {
                field
                    .as_ref()
                    .map(|v| {
                        NonZeroU32::new(*v.get_ref()).ok_or_else(|| {
                            at(
                                v.span().start,
                                format!("tenant '{name}': quotas.{what} must be at least 1 (leave it out for no limit)"),
                            )
                        })
                    })
                    .transpose()
            };
            let q = &t.quotas;
            let per_second = positive(&q.requests_per_second, "requests_per_second")?;
            let burst = positive(&q.burst, "burst")?;
            let rate = match (per_second, burst) {
                (Some(per_second), burst) => Some(Rate {
                    per_second,
                    burst: burst.unwrap_or(per_second),
                }),
                (None, Some(_)) => {
                    let span = q.burst.as_ref().map_or(0, |b| b.span().start);
                    return Err(at(
                        span,
                        format!("tenant '{name}': quotas.burst needs quotas.requests_per_second"),
                    ));
                }
                (None, None) => None,
            };
            let mut plugin_ceilings = Vec::new();
            for (key, value) in [
                ("wasm_memory_mb", &q.wasm_memory_mb),
                ("wasm_timeout_ms", &q.wasm_timeout_ms),
            ] {
                if let Some(v) = positive(value, key)? {
                    plugin_ceilings.push((key, u64::from(v.get())));
                }
            }
            if let Some(fuel) = &q.wasm_fuel {
                if *fuel.get_ref() == 0 {
                    return Err(at(
                        fuel.span().start,
                        format!("tenant '{name}': quotas.wasm_fuel must be at least 1 (leave it out for no limit)"),
                    ));
                }
                plugin_ceilings.push(("wasm_fuel", *fuel.get_ref()));
            }
            let quotas = Quotas {
                rate,
                max_in_flight: positive(&q.max_in_flight, "max_in_flight")?,
                max_loaded_models: positive(&q.max_loaded_models, "max_loaded_models")?,
                max_queued_per_model: positive(&q.max_queued_per_model, "max_queued_per_model")?,
                plugin_ceilings,
            };
            let weight = match &t.weight {
                None => 1,
                Some(w) if (1..=MAX_WEIGHT).contains(w.get_ref()) => *w.get_ref(),
                Some(w) => {
                    return Err(at(
                        w.span().start,
                        format!("tenant '{name}': weight must be 1..={MAX_WEIGHT}"),
                    ))
                }
            };
            tenants.push(Tenant {
                name: name.into(),
                scopes,
                repository,
                shared_patterns: t
                    .shared_models
                    .iter()
                    .map(|p| p.get_ref().clone())
                    .collect(),
                shared,
                quotas,
                weight,
            });
        }
        Ok(Self {
            tenants,
            keys,
            jwt,
            warnings,
        })
    }

    /// Reads and validates the tenants file.
    pub fn read(file: &Path) -> Result<Self, TenantsError> {
        Self::parse(file, &read_text(file)?)
    }

    /// What is legal but likely a mistake, each naming `file:line:column`.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The tenant called `name`.
    pub fn by_name(&self, name: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| &*t.name == name)
    }

    /// The verifier of bearer JWTs, when the file has a `[jwt]` table.
    pub fn jwt(&self) -> Option<&JwtVerifier> {
        self.jwt.as_ref()
    }

    /// The tenant whose API key `key` is.
    pub fn by_api_key(&self, key: &str) -> Option<&Tenant> {
        self.keys.find(key).map(|i| &self.tenants[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Tenant> {
        self.tenants.iter()
    }

    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }
}

/// The file's text, bounded by [`MAX_FILE_BYTES`].
pub(crate) fn read_text(file: &Path) -> Result<String, TenantsError> {
    crate::bounded::read_bounded(file, MAX_FILE_BYTES).map_err(TenantsError)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALPHA: &str = "sha256:8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8";
    // printf %s 'beta' | sha256sum
    const BETA: &str = "sha256:f44e64e75f3948e9f73f8dfa94721c4ce8cbb4f265c4790c702b2d41cfbf2753";

    fn parse(text: &str) -> Result<Tenants, String> {
        Tenants::parse(Path::new("tenants.toml"), text).map_err(|e| e.0)
    }

    #[test]
    fn a_valid_file_maps_each_key_to_its_tenant() {
        let t = parse(&format!(
            "[[tenant]]\nname = \"a\"\napi_keys = [\"{ALPHA}\"]\nscopes = [\"infer\", \"metadata\"]\n\n\
             [[tenant]]\nname = \"b\"\napi_keys = [\"{BETA}\"]\nscopes = [\"model-control\"]\n"
        ))
        .unwrap();
        assert_eq!(t.len(), 2);
        let a = t.by_api_key("alpha").unwrap();
        assert_eq!(&*a.name, "a");
        assert!(a.scopes.contains(Scope::Infer) && !a.scopes.contains(Scope::ModelControl));
        assert_eq!(&*t.by_api_key("beta").unwrap().name, "b");
        assert!(t.by_api_key("gamma").is_none());
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn mistakes_are_named_with_their_line_and_column() {
        let e = parse("[[tenant]]\nname = \"a\"\nscope = [\"infer\"]\n").unwrap_err();
        assert!(
            e.starts_with("tenants.toml:3:1: unknown field `scope`"),
            "{e}"
        );
        let e = parse(&format!(
            "[[tenant]]\nname = \"a\"\napi_keys = [\"{ALPHA}\"]\nscopes = [\"infer\", \"admin\", \"root\"]\n"
        ))
        .unwrap_err();
        assert!(
            e.starts_with("tenants.toml:4:29: tenant 'a': unknown scope 'root'"),
            "{e}"
        );
        let e = parse("[[tenant]]\nname = \"a\"\napi_keys = [\"s3cret\"]\nscopes = [\"infer\"]\n")
            .unwrap_err();
        assert!(
            e.starts_with("tenants.toml:3:13:") && e.contains("never in clear"),
            "{e}"
        );
        let e =
            parse("[[tenant]]\nname = \"a b\"\napi_keys = []\nscopes = [\"infer\"]\n").unwrap_err();
        assert!(e.starts_with("tenants.toml:2:8: tenant name 'a b'"), "{e}");
        let e = parse("[[tenant]]\nname = \"a\"\nscopes = [\"infer\"]\n").unwrap_err();
        assert!(e.contains("no credentials"), "{e}");
        let e = parse(&format!(
            "[[tenant]]\nname = \"a\"\napi_keys = [\"{ALPHA}\"]\nscopes = []\n"
        ))
        .unwrap_err();
        assert!(
            e.starts_with("tenants.toml:4:10: tenant 'a' has no scopes"),
            "{e}"
        );
    }

    #[test]
    fn a_name_or_a_key_may_appear_once() {
        let two = |n2: &str, k2: &str| {
            parse(&format!(
                "[[tenant]]\nname = \"a\"\napi_keys = [\"{ALPHA}\"]\nscopes = [\"infer\"]\n\
                 [[tenant]]\nname = \"{n2}\"\napi_keys = [\"{k2}\"]\nscopes = [\"infer\"]\n"
            ))
        };
        let e = two("a", BETA).unwrap_err();
        assert!(e.contains("tenant 'a' is declared twice"), "{e}");
        let e = two("b", &ALPHA.to_uppercase().replace("SHA256", "sha256")).unwrap_err();
        assert!(
            e.starts_with(
                "tenants.toml:7:13: tenant 'b': this API key digest is given to tenant 'a'"
            ),
            "{e}"
        );
    }

    #[test]
    fn repositories_are_directories_and_patterns_select_shared_models() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("team-a")).unwrap();
        let file = dir.path().join("tenants.toml");
        let text = |repo: &str, patterns: &str| {
            format!(
                "[[tenant]]\nname = \"a\"\napi_keys = [\"{ALPHA}\"]\nscopes = [\"infer\"]\n\
                 repository = \"{repo}\"\nshared_models = [{patterns}]\n"
            )
        };
        let t = Tenants::parse(&file, &text("team-a", "\"digits*\", \"add_sub\"")).unwrap();
        let a = t.by_api_key("alpha").unwrap();
        assert_eq!(
            a.repository.as_deref(),
            Some(dir.path().join("team-a").as_path())
        );
        assert!(a.may_use_shared("digits_pipeline") && a.may_use_shared("add_sub"));
        assert!(!a.may_use_shared("add_sub2") && !a.may_use_shared("resnet"));
        let e = Tenants::parse(&file, &text("team-b", "")).unwrap_err().0;
        assert!(
            e.contains(":5:14: tenant 'a': repository") && e.contains("is not a directory"),
            "{e}"
        );
        let e = Tenants::parse(&file, &text("team-a", "\"[x\""))
            .unwrap_err()
            .0;
        assert!(
            e.contains(":6:18: tenant 'a': shared_models pattern"),
            "{e}"
        );
        // No patterns: no shared model.
        let t = Tenants::parse(&file, &text("team-a", "")).unwrap();
        assert!(!t.by_api_key("alpha").unwrap().may_use_shared("digits"));
    }

    #[test]
    fn quotas_are_positive_and_burst_defaults_to_the_rate() {
        let with = |quotas: &str| {
            parse(&format!(
                "[[tenant]]\nname = \"a\"\napi_keys = [\"{ALPHA}\"]\nscopes = [\"infer\"]\n[tenant.quotas]\n{quotas}"
            ))
        };
        let t = with("requests_per_second = 5\nmax_in_flight = 2\n").unwrap();
        let q = &t.by_api_key("alpha").unwrap().quotas;
        let rate = q.rate.unwrap();
        assert_eq!((rate.per_second.get(), rate.burst.get()), (5, 5));
        assert_eq!(q.max_in_flight.map(NonZeroU32::get), Some(2));
        assert_eq!(q.max_loaded_models, None);
        let e = with("max_in_flight = 0\n").unwrap_err();
        assert!(
            e.starts_with("tenants.toml:6:17: tenant 'a': quotas.max_in_flight must be at least 1"),
            "{e}"
        );
        let e = with("burst = 3\n").unwrap_err();
        assert!(
            e.contains("quotas.burst needs quotas.requests_per_second"),
            "{e}"
        );
        let e = with("rps = 3\n").unwrap_err();
        assert!(e.contains("unknown field `rps`"), "{e}");
    }

    #[test]
    fn overlapping_patterns_are_warned_of_not_refused() {
        let t = parse(&format!(
            "[[tenant]]\nname = \"a\"\napi_keys = [\"{ALPHA}\"]\nscopes = [\"infer\"]\nshared_models = [\"digits\", \"dig*\", \"add\", \"add\", \"x?\"]\n"
        ))
        .unwrap();
        let w = t.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with(
                "tenants.toml:5:28: tenant 'a': shared_models pattern 'dig*' also grants 'digits'"
            ),
            "{w:?}"
        );
        assert!(
            w[1].contains("pattern 'add' adds nothing: 'add' already grants it"),
            "{w:?}"
        );
    }

    #[test]
    fn weights_and_plugin_ceilings() {
        let with = |extra: &str, quotas: &str| {
            parse(&format!(
                "[[tenant]]\nname = \"a\"\napi_keys = [\"{ALPHA}\"]\nscopes = [\"infer\"]\n{extra}[tenant.quotas]\n{quotas}"
            ))
        };
        let t = with("", "").unwrap();
        assert_eq!(t.by_api_key("alpha").unwrap().weight, 1);
        let t = with(
            "weight = 3\n",
            "max_queued_per_model = 8\nwasm_fuel = 5000000000\nwasm_memory_mb = 64\n",
        )
        .unwrap();
        let a = t.by_api_key("alpha").unwrap();
        assert_eq!(a.weight, 3);
        assert_eq!(a.quotas.max_queued_per_model.map(NonZeroU32::get), Some(8));
        assert_eq!(
            a.quotas.plugin_ceilings,
            vec![("wasm_memory_mb", 64), ("wasm_fuel", 5_000_000_000)]
        );
        let e = with("weight = 0\n", "").unwrap_err();
        assert!(
            e.contains("tenants.toml:5:10: tenant 'a': weight must be 1..=1000"),
            "{e}"
        );
        let e = with("", "wasm_fuel = 0\n").unwrap_err();
        assert!(e.contains("quotas.wasm_fuel must be at least 1"), "{e}");
    }

    #[test]
    fn an_oversized_file_is_refused_before_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tenants.toml");
        std::fs::write(&file, vec![b'#'; MAX_FILE_BYTES as usize + 1]).unwrap();
        let e = Tenants::read(&file).err().unwrap();
        assert!(e.0.contains("larger than"), "{e}");
        assert!(Tenants::read(&dir.path().join("none.toml"))
            .err()
            .unwrap()
            .0
            .contains("cannot read"));
    }
}
