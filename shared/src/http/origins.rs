//! Which browser origins may use the hub (`TELEPATH_ALLOWED_ORIGINS`).
//!
//! A browser names the page's origin in an `Origin` header on every
//! WebSocket handshake and cross-origin request; other clients (servers,
//! the CLI, mobile apps) send none and are never refused for it. Unset, only
//! the page's own origin is allowed: the `Origin` header's host and port
//! must be the request's `Host`. Set, it is a comma-separated list of
//! origins (`https://app.example.com`, `http://localhost:5173`), or `*` for
//! any. The gateway refuses a handshake from any other origin with 403
//! before the upgrade; the REST surface answers CORS (preflights included)
//! for the listed origins only.

use std::fmt;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Origins longer than this are refused without parsing.
const MAX_ORIGIN_BYTES: usize = 512;

/// `TELEPATH_ALLOWED_ORIGINS`, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Unset: the request's own origin only.
    #[default]
    SameOrigin,
    /// `*`: any origin.
    Any,
    /// These origins (normalised: lowercase `scheme://host[:port]`, no
    /// default port).
    List(Vec<String>),
}

impl AllowedOrigins {
    /// Parses the variable's value: `*`, or a comma list of origins.
    pub fn parse(v: &str) -> Result<Self, String> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(AllowedOrigins::SameOrigin);
        }
        if v == "*" {
            return Ok(AllowedOrigins::Any);
        }
        let mut list = Vec::new();
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let origin = Origin::parse(item)
                .ok_or_else(|| format!("{item:?} is not an origin (scheme://host[:port])"))?;
            list.push(origin.to_string());
        }
        if list.is_empty() {
            return Ok(AllowedOrigins::SameOrigin);
        }
        Ok(AllowedOrigins::List(list))
    }

    /// Whether a request with these headers may go on: no `Origin` (not a
    /// browser), or an allowed one. `Err` says why not, for the 403's body.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        if *self == AllowedOrigins::Any {
            return Ok(());
        }
        let origin = origin
            .to_str()
            .ok()
            .and_then(Origin::parse)
            .ok_or("this origin may not connect")?;
        let allowed = match self {
            AllowedOrigins::Any => true,
            AllowedOrigins::List(list) => list.iter().any(|o| *o == origin.to_string()),
            AllowedOrigins::SameOrigin => headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .is_some_and(|host| origin.is_host(host)),
        };
        if allowed {
            Ok(())
        } else {
            Err("this origin may not connect")
        }
    }

    /// The CORS layer for the REST surface: none when only the same origin
    /// is allowed (browsers then refuse cross-origin reads themselves).
    pub fn cors(&self) -> Option<CorsLayer> {
        let origins = match self {
            AllowedOrigins::SameOrigin => return None,
            AllowedOrigins::Any => AllowOrigin::any(),
            AllowedOrigins::List(list) => AllowOrigin::list(
                list.iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok())
                    .collect::<Vec<_>>(),
            ),
        };
        Some(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                ])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("idempotency-key"),
                ])
                .expose_headers([header::RETRY_AFTER, header::LOCATION])
                .max_age(Duration::from_secs(600)),
        )
    }
}

/// An origin: scheme, host and port (none for the scheme's default).
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    /// `scheme://host[:port]` with nothing after (a trailing `/` is
    /// tolerated), http(s) only; `None` otherwise (the opaque `null` too).
    fn parse(s: &str) -> Option<Origin> {
        if s.len() > MAX_ORIGIN_BYTES {
            return None;
        }
        let (scheme, rest) = s.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = split_host_port(rest)?;
        let port = port.filter(|p| Some(*p) != default_port(&scheme));
        Some(Origin { scheme, host, port })
    }

    /// Whether a `Host` header names this origin's host and port.
    fn is_host(&self, host: &str) -> bool {
        match split_host_port(host.trim()) {
            Some((h, port)) => {
                let port = port.filter(|p| Some(*p) != default_port(&self.scheme));
                h == self.host && port == self.port
            }
            None => false,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// `host[:port]` (an IPv6 host in brackets), the host lowercased; `None`
/// for anything else (a path, user info, an empty host, a bad port).
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if s.is_empty() || s.contains(['/', '@', '?', '#', ' ']) {
        return None;
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{}]", h.to_ascii_lowercase()), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (s.to_ascii_lowercase(), None),
        }
    };
    if host.is_empty() || host.contains(':') && !host.starts_with('[') {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn unset_allows_the_same_origin_and_clients_without_one() {
        let same = AllowedOrigins::default();
        assert!(same.check(&headers(None, "hub.test:8080")).is_ok());
        assert!(
            same.check(&headers(Some("http://hub.test:8080"), "hub.test:8080"))
                .is_ok()
        );
        assert!(
            same.check(&headers(Some("https://HUB.test"), "hub.test:443"))
                .is_ok()
        );
        assert!(
            same.check(&headers(Some("http://[::1]:8080"), "[::1]:8080"))
                .is_ok()
        );
        for refused in [
            "http://evil.test:8080",
            "http://hub.test:8081",
            "http://hub.test",
            "null",
            "file://",
            "http://hub.test:8080/path",
            "http://user@hub.test:8080",
            "",
        ] {
            assert!(
                same.check(&headers(Some(refused), "hub.test:8080"))
                    .is_err(),
                "{refused}"
            );
        }
    }

    #[test]
    fn a_list_allows_exactly_its_origins() {
        let list = AllowedOrigins::parse("https://app.test, http://localhost:5173/").unwrap();
        assert_eq!(
            list,
            AllowedOrigins::List(vec![
                "https://app.test".into(),
                "http://localhost:5173".into()
            ])
        );
        assert!(
            list.check(&headers(Some("https://app.test:443"), "hub"))
                .is_ok()
        );
        assert!(
            list.check(&headers(Some("http://localhost:5173"), "hub"))
                .is_ok()
        );
        assert!(
            list.check(&headers(Some("http://app.test"), "hub"))
                .is_err()
        );
        assert!(
            list.check(&headers(Some("http://hub"), "hub")).is_err(),
            "the list replaces same-origin"
        );
        assert!(list.check(&headers(None, "hub")).is_ok());
        assert!(list.cors().is_some());
        assert!(AllowedOrigins::default().cors().is_none());
    }

    #[test]
    fn any_and_bad_values() {
        let any = AllowedOrigins::parse("*").unwrap();
        assert!(any.check(&headers(Some("http://x.test"), "hub")).is_ok());
        assert_eq!(
            AllowedOrigins::parse(" ").unwrap(),
            AllowedOrigins::SameOrigin
        );
        for bad in [
            "app.test",
            "ftp://x",
            "https://x/path",
            "https://x:99999",
            "https://",
        ] {
            assert!(AllowedOrigins::parse(bad).is_err(), "{bad}");
        }
    }
}
