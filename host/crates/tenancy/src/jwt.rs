//! JSON Web Tokens as tenant credentials: the tenants file's `[jwt]` table
//! names a JWKS file (the identity provider's public keys), the audience
//! kiln expects, optionally the issuer, and the claim that names the tenant.
//!
//! ```toml
//! [jwt]
//! jwks = "jwks.json"             # relative to the tenants file
//! audience = "kiln"              # `aud` must contain it
//! issuer = "https://idp.example" # optional: `iss` must equal it
//! tenant_claim = "tenant"        # default "tenant"
//! algorithms = ["RS256", "ES256"] # the default; only these two are accepted
//! leeway_seconds = 30            # clock skew allowed on exp / nbf (default 30)
//! ```
//!
//! A token is verified with `jsonwebtoken`: the header's `alg` must be one
//! of `algorithms` and match the key's type (no `none`, no HMAC, so no
//! algorithm confusion), the key is the JWKS entry with the header's `kid`
//! (or, without a `kid`, any key of the algorithm's type), and `exp` and
//! `aud` are required, `nbf` checked when present. The JWKS is read with
//! the tenants file and re-read when either changes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use toml::Spanned;

/// The largest JWKS file and the longest token kiln reads.
pub const MAX_JWKS_BYTES: u64 = 1 << 20;
pub const MAX_TOKEN_BYTES: usize = 16 << 10;
const MAX_LEEWAY_SECONDS: u64 = 300;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JwtDoc {
    jwks: Spanned<String>,
    audience: String,
    issuer: Option<String>,
    tenant_claim: Option<String>,
    algorithms: Option<Vec<Spanned<String>>>,
    leeway_seconds: Option<Spanned<u64>>,
}

struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Verifies bearer tokens and names their tenant.
pub struct JwtVerifier {
    jwks: PathBuf,
    keys: Vec<Key>,
    validations: Vec<Validation>,
    tenant_claim: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("jwks", &self.jwks)
            .field("keys", &self.keys.len())
            .field("tenant_claim", &self.tenant_claim)
            .finish()
    }
}

/// Does a bearer credential look like a JWT (three base64url parts) rather
/// than an API key? Only then is it verified as one.
pub fn looks_like_jwt(credential: &str) -> bool {
    credential.split('.').count() == 3
        && credential
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl JwtVerifier {
    /// `at(offset, message)` makes an error naming the tenants file's line.
    pub(crate) fn from_doc(
        doc: JwtDoc,
        base: &Path,
        at: &dyn Fn(usize, String) -> String,
    ) -> Result<Self, String> {
        let algorithms = match &doc.algorithms {
            None => vec![Algorithm::RS256, Algorithm::ES256],
            Some(names) => {
                let mut out = Vec::new();
                for name in names {
                    match name.get_ref().as_str() {
                        "RS256" => out.push(Algorithm::RS256),
                        "ES256" => out.push(Algorithm::ES256),
                        other => {
                            return Err(at(
                                name.span().start,
                                format!(
                                    "jwt.algorithms: '{}' is not accepted (RS256, ES256)",
                                    kiln_types::text::clip(other)
                                ),
                            ))
                        }
                    }
                }
                if out.is_empty() {
                    return Err(at(0, "jwt.algorithms is empty".into()));
                }
                out
            }
        };
        let leeway = match &doc.leeway_seconds {
            None => 30,
            Some(v) if *v.get_ref() <= MAX_LEEWAY_SECONDS => *v.get_ref(),
            Some(v) => {
                return Err(at(
                    v.span().start,
                    format!("jwt.leeway_seconds must be at most {MAX_LEEWAY_SECONDS}"),
                ))
            }
        };
        let jwks = base.join(doc.jwks.get_ref());
        let at_jwks = |m: String| at(doc.jwks.span().start, m);
        let text = read_jwks(&jwks).map_err(&at_jwks)?;
        let set: JwkSet = serde_json::from_str(&text)
            .map_err(|e| at_jwks(format!("JWKS {}: {e}", jwks.display())))?;
        let mut keys = Vec::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            let name = || {
                jwk.common
                    .key_id
                    .as_deref()
                    .map_or(format!("key {i}"), |k| {
                        format!("key '{}'", kiln_types::text::clip(k))
                    })
            };
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                _ => {
                    return Err(at_jwks(format!(
                        "JWKS {}: {} is neither an RSA nor a P-256 key (RS256, ES256)",
                        jwks.display(),
                        name()
                    )))
                }
            };
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| at_jwks(format!("JWKS {}: {}: {e}", jwks.display(), name())))?;
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            });
        }
        if keys.is_empty() {
            return Err(at_jwks(format!("JWKS {} holds no keys", jwks.display())));
        }
        let validations = algorithms
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                v.leeway = leeway;
                v.validate_nbf = true;
                v.set_audience(&[&doc.audience]);
                let mut required: HashSet<String> =
                    ["exp", "aud"].into_iter().map(String::from).collect();
                if let Some(issuer) = &doc.issuer {
                    v.set_issuer(&[issuer]);
                    required.insert("iss".into());
                }
                v.required_spec_claims = required;
                v
            })
            .collect();
        Ok(Self {
            jwks,
            keys,
            validations,
            tenant_claim: doc.tenant_claim.unwrap_or_else(|| "tenant".into()),
        })
    }

    /// The JWKS file, whose changes the tenants watch follows too.
    pub fn jwks_path(&self) -> &Path {
        &self.jwks
    }

    /// The tenant `token` names, if it is valid; else why not (never
    /// echoing the token).
    pub fn verify(&self, token: &str) -> Result<String, String> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(format!("the token is longer than {MAX_TOKEN_BYTES} bytes"));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| format!("the token's header is not valid: {e}"))?;
        let validation = self
            .validations
            .iter()
            .find(|v| v.algorithms == [header.alg])
            .ok_or_else(|| format!("the token's algorithm {:?} is not accepted", header.alg))?;
        let candidates = self.keys.iter().filter(|k| {
            k.algorithm == header.alg
                && match (&header.kid, &k.kid) {
                    (Some(want), Some(have)) => want == have,
                    (Some(_), None) => false,
                    (None, _) => true,
                }
        });
        let mut last = "no key of the JWKS matches the token's kid and algorithm".to_string();
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Value>(token, &key.key, validation) {
                Ok(data) => {
                    return match data.claims.get(&self.tenant_claim) {
                        Some(serde_json::Value::String(tenant)) => Ok(tenant.clone()),
                        _ => Err(format!(
                            "the token has no string claim '{}' naming the tenant",
                            self.tenant_claim
                        )),
                    }
                }
                Err(e) => last = describe(&e),
            }
        }
        Err(last)
    }
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "the token has expired (exp)".into(),
        K::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        K::InvalidAudience => "the token's audience (aud) is not this server's".into(),
        K::InvalidIssuer => "the token's issuer (iss) is not the one configured".into(),
        K::InvalidSignature => "the token's signature does not verify".into(),
        K::MissingRequiredClaim(c) => format!("the token lacks the claim '{c}'"),
        _ => format!("the token is not valid: {e}"),
    }
}

fn read_jwks(path: &Path) -> Result<String, String> {
    crate::bounded::read_bounded(path, MAX_JWKS_BYTES)
}

/// The bytes of the JWKS file now, for the tenants watch's fingerprint
/// (empty when unreadable: the parse then says why).
pub(crate) fn jwks_bytes(path: &Path) -> Vec<u8> {
    read_jwks(path).map(String::into_bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_three_base64url_parts_look_like_a_token() {
        assert!(looks_like_jwt("eyJhbGciOi.eyJzdWIi.c2ln"));
        assert!(!looks_like_jwt("alpha-key-0123456789"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c d"));
    }
}
