//! Tokens from an identity provider (Auth0, Keycloak, Cognito ...): RS256,
//! RS384, RS512, PS256-512, ES256 or ES384, checked with a PEM public key
//! (`TELEPATH_JWT_PUBLIC_KEY_FILE`) or the provider's JWKS
//! (`TELEPATH_JWT_JWKS_URL`), with `aud` and `iss` required when configured
//! (`TELEPATH_JWT_AUDIENCE`, `TELEPATH_JWT_ISSUER`), and the user's name and
//! role read from the claims the operator names (`TELEPATH_JWT_NAME_CLAIM`,
//! `TELEPATH_JWT_ROLE_CLAIM`).
//!
//! The JWKS is fetched when first needed and kept; a token naming a key id
//! the set does not hold makes one refresh (at most one every
//! [`MIN_REFRESH`], whoever asks), and a set older than [`MAX_AGE`] is
//! fetched again before use, its old keys kept if the provider does not
//! answer. A fetch waits at most [`FETCH_TIMEOUT`] and reads at most
//! [`MAX_JWKS_BYTES`] and [`MAX_KEYS`] keys, so a provider that is down,
//! slow or huge delays a handshake by that bound at most, and a token whose
//! key cannot be had is refused (`unknown_key`), never admitted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::{AuthError, Claims, LEEWAY_SECS};
use crate::protocol::Role;

/// Longest a JWKS fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// Fewest seconds between two fetches of the JWKS.
pub const MIN_REFRESH: Duration = Duration::from_secs(2);
/// Age after which the JWKS is fetched again before use.
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// Largest JWKS document read.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys kept from one JWKS.
pub const MAX_KEYS: usize = 64;

/// Which signatures a key can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    /// P-256 or P-384 (a key of the other curve fails the signature check).
    Ec,
}

impl Family {
    fn allows(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Family::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Family::Ec => matches!(alg, ES256 | ES384),
        }
    }
}

/// A public key and what it checks.
#[derive(Clone)]
struct Key {
    key: DecodingKey,
    family: Family,
}

/// What the operator configured for tokens from an identity provider.
#[derive(Debug, Clone, Default)]
pub struct ExternalSettings {
    /// A PEM public key (RSA or EC), the file's contents.
    pub public_key_pem: Option<Vec<u8>>,
    pub jwks_url: Option<String>,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    /// The claim holding the user's name (default `name`).
    pub name_claim: String,
    /// The claim holding the role (default `role`): `admin`, or a list
    /// holding `admin`, makes an admin; anything else a user.
    pub role_claim: String,
}

/// Verifies identity providers' tokens.
pub struct External {
    settings: ExternalSettings,
    pem: Option<Key>,
    jwks: Option<Jwks>,
}

impl std::fmt::Debug for External {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("External")
            .field("jwks_url", &self.settings.jwks_url)
            .field("pem", &self.pem.is_some())
            .finish_non_exhaustive()
    }
}

impl External {
    /// `None` when neither a key nor a JWKS URL is configured; an error
    /// for a key that is not an RSA or EC public key in PEM, or a JWKS URL
    /// that is not http(s).
    pub fn new(settings: ExternalSettings) -> Result<Option<Arc<Self>>, String> {
        if settings.public_key_pem.is_none() && settings.jwks_url.is_none() {
            return Ok(None);
        }
        let pem = match &settings.public_key_pem {
            Some(pem) => Some(pem_key(pem)?),
            None => None,
        };
        let jwks = match &settings.jwks_url {
            Some(url) => Some(Jwks::new(url)?),
            None => None,
        };
        Ok(Some(Arc::new(External {
            settings,
            pem,
            jwks,
        })))
    }

    /// Verifies `token` (whose header names `alg` and maybe `kid`) and maps
    /// its claims to a Telepath user.
    pub(super) async fn verify(
        &self,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Claims, AuthError> {
        let key = match (kid, &self.jwks, &self.pem) {
            (Some(kid), Some(jwks), _) => jwks.key(kid).await?,
            (_, _, Some(pem)) => pem.clone(),
            // A JWKS but no key id: the set's only key, if it has one.
            (None, Some(jwks), None) => jwks.only_key().await?,
            (_, None, None) => return Err(AuthError::UnknownKey),
        };
        if !key.family.allows(alg) {
            return Err(AuthError::UnsupportedAlgorithm);
        }
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        match &self.settings.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.settings.issuer {
            validation.set_issuer(&[iss]);
        }
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key.key, &validation)
                .map_err(AuthError::from_jwt)?;
        self.map_claims(&data.claims)
    }

    /// A Telepath user from a provider's claims.
    fn map_claims(&self, claims: &serde_json::Map<String, Value>) -> Result<Claims, AuthError> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let sub = text("sub")
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::MissingClaim("sub".to_owned()))?;
        let name_claim = &self.settings.name_claim;
        let name = text(name_claim)
            .map(str::trim)
            .filter(|n| {
                !n.is_empty() && n.chars().count() <= 64 && !n.chars().any(char::is_control)
            })
            .ok_or_else(|| AuthError::MissingClaim(name_claim.clone()))?;
        let role = match claims.get(&self.settings.role_claim) {
            Some(Value::String(r)) if r == "admin" => Role::Admin,
            Some(Value::Array(rs)) if rs.iter().any(|r| r == "admin") => Role::Admin,
            _ => Role::User,
        };
        let int = |name: &str| claims.get(name).and_then(Value::as_i64).unwrap_or(0);
        Ok(Claims {
            sub: user_id(text("iss").unwrap_or(""), sub),
            name: name.to_owned(),
            role,
            exp: int("exp"),
            iat: int("iat"),
        })
    }
}

/// The Telepath user id of a provider's subject: the subject itself when it
/// is a lowercase UUID (Keycloak, Cognito), else a UUID v5 of the issuer
/// and the subject (`auth0|abc`), stable for the same provider and user.
pub fn user_id(issuer: &str, sub: &str) -> String {
    if crate::protocol::is_canonical_id(sub) {
        return sub.to_owned();
    }
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b1f_3c52_9a0e_4f7d_8e21_5c4b_a3d9_0e17);
    uuid::Uuid::new_v5(&NAMESPACE, format!("{issuer}\n{sub}").as_bytes())
        .hyphenated()
        .to_string()
}

fn pem_key(pem: &[u8]) -> Result<Key, String> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok(Key {
            key,
            family: Family::Rsa,
        });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Ok(Key {
            key,
            family: Family::Ec,
        });
    }
    Err("TELEPATH_JWT_PUBLIC_KEY_FILE: not an RSA or EC public key in PEM".to_owned())
}

/// A JWKS endpoint's keys, cached.
struct Jwks {
    uri: hyper::Uri,
    client: crate::http::client::OutboundClient,
    cache: tokio::sync::RwLock<Cache>,
    /// One fetch at a time; the others wait for it and read its result.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, Key>,
    fetched_at: Option<Instant>,
    tried_at: Option<Instant>,
}

impl Jwks {
    fn new(url: &str) -> Result<Self, String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err("TELEPATH_JWT_JWKS_URL must be an http(s) URL".to_owned());
        }
        Ok(Jwks {
            uri: url
                .parse()
                .map_err(|e| format!("TELEPATH_JWT_JWKS_URL: {e}"))?,
            client: crate::http::client::outbound_client()
                .map_err(|e| format!("TELEPATH_JWT_JWKS_URL: {e}"))?,
            cache: tokio::sync::RwLock::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The key `kid`, fetching the set when it is unknown or stale.
    async fn key(&self, kid: &str) -> Result<Key, AuthError> {
        {
            let cache = self.cache.read().await;
            let fresh = cache.fetched_at.is_some_and(|t| t.elapsed() < MAX_AGE);
            if let Some(key) = cache.keys.get(kid).filter(|_| fresh) {
                return Ok(key.clone());
            }
        }
        self.refresh().await;
        self.cache
            .read()
            .await
            .keys
            .get(kid)
            .cloned()
            .ok_or(AuthError::UnknownKey)
    }

    /// The set's one key, for tokens without `kid`.
    async fn only_key(&self) -> Result<Key, AuthError> {
        let stale = {
            let cache = self.cache.read().await;
            cache.fetched_at.is_none_or(|t| t.elapsed() >= MAX_AGE)
        };
        if stale {
            self.refresh().await;
        }
        let cache = self.cache.read().await;
        match cache.keys.len() {
            1 => Ok(cache.keys.values().next().cloned().expect("one key")),
            _ => Err(AuthError::UnknownKey),
        }
    }

    /// Fetches the set unless another fetch ran within [`MIN_REFRESH`];
    /// a failed fetch keeps the keys held.
    async fn refresh(&self) {
        let _one = self.fetching.lock().await;
        if self
            .cache
            .read()
            .await
            .tried_at
            .is_some_and(|t| t.elapsed() < MIN_REFRESH)
        {
            return;
        }
        let fetched = tokio::time::timeout(FETCH_TIMEOUT, self.fetch()).await;
        let mut cache = self.cache.write().await;
        cache.tried_at = Some(Instant::now());
        match fetched {
            Ok(Ok(keys)) => {
                cache.keys = keys;
                cache.fetched_at = Some(Instant::now());
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "fetching the JWKS failed; keeping the keys held")
            }
            Err(_) => {
                tracing::warn!("the JWKS endpoint did not answer in time; keeping the keys held")
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, Key>, String> {
        use http_body_util::BodyExt as _;
        let resp = self
            .client
            .get(self.uri.clone())
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        let body = http_body_util::Limited::new(resp.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let mut keys = HashMap::new();
        for jwk in set.keys.iter().take(MAX_KEYS) {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let family = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Family::Rsa,
                AlgorithmParameters::EllipticCurve(ec)
                    if matches!(ec.curve, EllipticCurve::P256 | EllipticCurve::P384) =>
                {
                    Family::Ec
                }
                // Symmetric and Ed25519 keys are not taken from a JWKS.
                _ => continue,
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, Key { key, family });
            }
        }
        Ok(keys)
    }
}
