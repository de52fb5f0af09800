//! Authentication: JWTs for users (HS256 with the deployment's secret, and
//! RS/PS/ES tokens from an identity provider when one is configured, see
//! [`external`]), and the shared secret services use to call each other's
//! `/internal/` routes.
//!
//! `exp` and `sub` are required and the signature is always checked; what a
//! verified user may do is decided by the services.

pub mod external;

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::protocol::{Role, UserInfo, UserRef};

/// The claims of a Telepath token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Username.
    pub name: String,
    /// `user` or `admin`.
    #[serde(default)]
    pub role: Role,
    /// Expiry, seconds since the Unix epoch (required).
    pub exp: i64,
    /// Issued at, seconds since the Unix epoch (0 when the token has none).
    /// A token issued before its user's revocation (`POST
    /// /admin/users/{id}/revoke`) is refused, and so is a future `iat`.
    /// (`nbf`, when present, is checked by the validation, not kept.)
    #[serde(default, skip_serializing_if = "is_zero")]
    pub iat: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Claims {
    /// The user these claims name.
    pub fn user(&self) -> UserInfo {
        UserInfo {
            id: self.sub.clone(),
            name: self.name.clone(),
            role: self.role,
        }
    }

    /// The user without the role, as events show it.
    pub fn user_ref(&self) -> UserRef {
        UserRef {
            id: self.sub.clone(),
            name: self.name.clone(),
        }
    }

    /// Whether these claims carry the admin role.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether a revocation of this user's tokens issued before
    /// `valid_after` (seconds since the epoch) covers this token.
    pub fn revoked_by(&self, valid_after: i64) -> bool {
        self.iat < valid_after
    }
}

/// Why a token was refused; [`AuthError::reason`] is what a client sees
/// (the 401's message and its `WWW-Authenticate` description).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("expired")]
    Expired,
    #[error("not valid yet")]
    NotYetValid,
    #[error("bad signature")]
    BadSignature,
    #[error("wrong audience")]
    WrongAudience,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("unknown key")]
    UnknownKey,
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    #[error("missing claim: {0}")]
    MissingClaim(String),
    #[error("malformed token")]
    Malformed,
    #[error("token issued in the future")]
    IssuedInTheFuture,
}

impl AuthError {
    /// The refusal as clients see it: `expired`, `bad_signature`,
    /// `missing_claim: name` ...
    pub fn reason(&self) -> String {
        match self {
            AuthError::Missing => "missing_token".to_owned(),
            AuthError::Expired => "expired".to_owned(),
            AuthError::NotYetValid => "not_yet_valid".to_owned(),
            AuthError::BadSignature => "bad_signature".to_owned(),
            AuthError::WrongAudience => "wrong_audience".to_owned(),
            AuthError::WrongIssuer => "wrong_issuer".to_owned(),
            AuthError::UnknownKey => "unknown_key".to_owned(),
            AuthError::UnsupportedAlgorithm => "unsupported_algorithm".to_owned(),
            AuthError::MissingClaim(c) => format!("missing_claim: {c}"),
            AuthError::Malformed => "malformed".to_owned(),
            AuthError::IssuedInTheFuture => "issued_in_the_future".to_owned(),
        }
    }

    fn from_jwt(e: jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::ExpiredSignature => AuthError::Expired,
            K::ImmatureSignature => AuthError::NotYetValid,
            K::InvalidSignature => AuthError::BadSignature,
            K::InvalidAudience => AuthError::WrongAudience,
            K::InvalidIssuer => AuthError::WrongIssuer,
            K::InvalidAlgorithm | K::UnsupportedAlgorithm | K::InvalidAlgorithmName => {
                AuthError::UnsupportedAlgorithm
            }
            K::MissingRequiredClaim(c) => AuthError::MissingClaim(c.clone()),
            _ => AuthError::Malformed,
        }
    }
}

/// Keys and validation rules for one deployment's tokens.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// An identity provider's keys, when configured.
    external: Option<std::sync::Arc<external::External>>,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(..)")
    }
}

/// Clock skew tolerated on `exp`: a token is accepted until `exp` plus
/// this, and a session it opened lives as long (the gateway's expiry timer
/// uses the same bound, so a token accepted at the upgrade is not closed
/// with 4001 the moment after).
pub const LEEWAY_SECS: u64 = 5;

impl JwtKeys {
    /// Keys for the HS256 secret `secret`.
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // A few seconds of clock skew between services, not the default minute.
        validation.leeway = LEEWAY_SECS;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            external: None,
        }
    }

    /// Keys for `secret` and, when `settings` name a key or a JWKS, for an
    /// identity provider's tokens too.
    pub fn with_external(
        secret: &str,
        settings: external::ExternalSettings,
    ) -> Result<Self, String> {
        let mut keys = JwtKeys::new(secret);
        keys.external = external::External::new(settings)?;
        Ok(keys)
    }

    /// Signs a token for `user` valid for `ttl_secs` seconds.
    pub fn mint(&self, user: &UserInfo, ttl_secs: i64) -> String {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user.id.clone(),
            name: user.name.clone(),
            role: user.role,
            exp: now + ttl_secs,
            iat: now,
        };
        self.sign(&claims)
    }

    /// Signs arbitrary claims (tests use it for expired tokens).
    pub fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    /// Verifies a token: an HS256 signature with the deployment's secret,
    /// or an identity provider's signature (see [`external`]); `exp` in the
    /// future, `sub` present, `nbf` (when present) passed, `iat` (when
    /// present) not in the future, each with [`LEEWAY_SECS`] of clock skew.
    /// Only a provider's token whose key must be fetched waits (at most
    /// [`external::FETCH_TIMEOUT`]).
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        // Without a provider every token is ours: its header is read once,
        // by the decoding itself (another algorithm is refused there).
        let Some(external) = &self.external else {
            return self.verify_own(token);
        };
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg == Algorithm::HS256 {
            return self.verify_own(token);
        }
        let claims = external
            .verify(token, header.alg, header.kid.as_deref())
            .await?;
        not_from_the_future(claims)
    }

    /// Verifies a token signed with the deployment's secret (HS256 only).
    pub fn verify_own(&self, token: &str) -> Result<Claims, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(AuthError::from_jwt)?;
        not_from_the_future(data.claims)
    }
}

/// `claims`, unless their `iat` is in the future (beyond the leeway).
fn not_from_the_future(claims: Claims) -> Result<Claims, AuthError> {
    if claims.iat > Utc::now().timestamp() + LEEWAY_SECS as i64 {
        return Err(AuthError::IssuedInTheFuture);
    }
    Ok(claims)
}

/// The token from an `Authorization: Bearer <token>` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The service-to-service token derived from the JWT secret, used when
/// `TELEPATH_INTERNAL_TOKEN` is unset, so every service of one deployment
/// agrees: HMAC-SHA256 keyed with the secret over a fixed label, in hex.
/// Nobody without the secret can compute it (split services refuse to
/// start with the development secret, which everyone knows).
pub fn derive_internal_token(jwt_secret: &str) -> String {
    hmac_sha256_hex(jwt_secret.as_bytes(), &[b"telepath internal token v2"])
}

/// HMAC-SHA256 keyed with `key` over `parts` one after the other, in
/// lowercase hex (the internal token, webhook signatures).
pub fn hmac_sha256_hex(key: &[u8], parts: &[&[u8]]) -> String {
    use hmac::Mac as _;
    let mut mac =
        hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The header carrying the internal token.
pub const INTERNAL_HEADER: &str = "x-telepath-internal";

#[cfg(test)]
mod tests {
    use super::*;

    fn ada() -> UserInfo {
        UserInfo {
            id: "u-1".into(),
            name: "ada".into(),
            role: Role::User,
        }
    }

    #[test]
    fn a_minted_token_verifies_with_its_claims() {
        let keys = JwtKeys::new("s3cret");
        let claims = keys.verify_own(&keys.mint(&ada(), 60)).unwrap();
        assert_eq!(claims.sub, "u-1");
        assert_eq!(claims.name, "ada");
        assert_eq!(claims.role, Role::User);
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let token = JwtKeys::new("other").mint(&ada(), 60);
        assert!(JwtKeys::new("s3cret").verify_own(&token).is_err());
    }

    #[test]
    fn an_expired_token_is_refused() {
        let keys = JwtKeys::new("s3cret");
        assert!(keys.verify_own(&keys.mint(&ada(), -60)).is_err());
    }

    fn b64(s: &str) -> String {
        use std::fmt::Write;
        // Minimal base64url without padding, enough for hand-made test tokens.
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = (chunk[0] as u32) << 16
                | (*chunk.get(1).unwrap_or(&0) as u32) << 8
                | *chunk.get(2).unwrap_or(&0) as u32;
            for i in 0..=chunk.len() {
                out.write_char(T[(n >> (18 - 6 * i) & 63) as usize] as char)
                    .unwrap();
            }
        }
        out
    }

    #[test]
    fn alg_none_and_missing_or_mistyped_exp_are_refused() {
        let keys = JwtKeys::new("s3cret");
        let far = Utc::now().timestamp() + 3600;
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&format!(
                r#"{{"sub":"u","name":"a","role":"admin","exp":{far}}}"#
            ))
        );
        assert!(keys.verify_own(&none).is_err());
        // Hand-sign claims without exp / with a string exp using the real key.
        for payload in [
            r#"{"sub":"u","name":"a"}"#.to_string(),
            r#"{"sub":"u","name":"a","exp":"never"}"#.to_string(),
            format!(r#"{{"name":"a","exp":{far}}}"#),
        ] {
            let header = b64(r#"{"alg":"HS256","typ":"JWT"}"#);
            let body = b64(&payload);
            let signing_input = format!("{header}.{body}");
            let sig = jsonwebtoken::crypto::sign(
                signing_input.as_bytes(),
                &EncodingKey::from_secret(b"s3cret"),
                Algorithm::HS256,
            )
            .unwrap();
            assert!(
                keys.verify_own(&format!("{signing_input}.{sig}")).is_err(),
                "{payload}"
            );
        }
        assert!(keys.verify_own("not.a.token").is_err());
        assert!(keys.verify_own("").is_err());
    }

    #[test]
    fn bearer_headers_parse() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }

    #[test]
    fn the_internal_token_is_stable_and_secret_dependent() {
        assert_eq!(derive_internal_token("a"), derive_internal_token("a"));
        assert_ne!(derive_internal_token("a"), derive_internal_token("b"));
        // HMAC-SHA256(key "a", "telepath internal token v2"), as Python's hmac computes it.
        assert_eq!(
            derive_internal_token("a"),
            "0129576949689c860b4e35c213216a5c9b0d2e87ec17937db5790af4bb42732d"
        );
    }
}

/// The users whose tokens issued before some instant are revoked, as one
/// process knows them: loaded once from the api (or its database), then
/// kept current by revocation messages. One entry per revoked user at most
/// (a later revocation replaces an earlier one), so it is bounded by the
/// users table.
#[derive(Debug, Default)]
pub struct RevocationList {
    valid_after: std::sync::RwLock<std::collections::HashMap<String, i64>>,
    loaded: tokio::sync::watch::Sender<bool>,
}

impl RevocationList {
    /// An empty list, not yet loaded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `user_id`'s tokens issued before `valid_after` are
    /// revoked; whether that is news (later than what was known).
    pub fn record(&self, user_id: &str, valid_after: i64) -> bool {
        let mut map = self.valid_after.write().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(user_id) {
            Some(known) if *known >= valid_after => false,
            Some(known) => {
                *known = valid_after;
                true
            }
            None => {
                map.insert(user_id.to_owned(), valid_after);
                true
            }
        }
    }

    /// Records every revocation of `list` and marks the list loaded.
    pub fn load(&self, list: &[crate::protocol::Revocation]) {
        for r in list {
            self.record(&r.user_id, r.valid_after);
        }
        self.loaded.send_replace(true);
    }

    /// Whether `claims` is a token a revocation covers.
    pub fn is_revoked(&self, claims: &Claims) -> bool {
        let map = self.valid_after.read().unwrap_or_else(|e| e.into_inner());
        map.get(&claims.sub)
            .is_some_and(|&valid_after| claims.revoked_by(valid_after))
    }

    /// Waits until the list has been loaded once, at most `within`; whether it was.
    pub async fn loaded_within(&self, within: std::time::Duration) -> bool {
        // Loaded once, loaded for good: no subscription nor timer then.
        if *self.loaded.borrow() {
            return true;
        }
        let mut rx = self.loaded.subscribe();
        tokio::time::timeout(within, rx.wait_for(|loaded| *loaded))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}
