//! Where a webhook may deliver: `http`/`https` URLs whose host is a public
//! address. Loopback, private, link-local (cloud metadata), shared,
//! documentation, multicast and other reserved ranges are refused unless
//! `TELEPATH_WEBHOOK_ALLOW_PRIVATE` is set: a webhook URL must not let an
//! API key reach into the network the server runs in. Checked when the
//! webhook is registered and again on every connection (the resolver
//! below), so a name re-pointed at a private address later gets nothing.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::dns::Name;
use telepath_shared::http::ApiError;

/// Longest a name may take to resolve when a webhook is registered.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `ip` is a public unicast address.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                // shared address space (carrier-grade NAT), 100.64.0.0/10
                || (a == 100 && (64..128).contains(&b))
                // IETF protocol assignments, 192.0.0.0/24
                || (a == 192 && b == 0 && c == 0)
                // benchmarking, 198.18.0.0/15
                || (a == 198 && (b == 18 || b == 19))
                // reserved, 240.0.0.0/4
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                // IPv4-compatible (deprecated) and NAT64 embed IPv4 addresses
                || (seg[0..6] == [0, 0, 0, 0, 0, 0])
                || (seg[0] == 0x64 && seg[1] == 0xff9b)
                // documentation, 2001:db8::/32
                || (seg[0] == 0x2001 && seg[1] == 0x0db8)
                // discard-only, 100::/64
                || (seg[0] == 0x100 && seg[1..4] == [0, 0, 0]))
        }
    }
}

/// The host of a URL's authority (brackets of an IPv6 literal removed),
/// and its port.
fn host_and_port(uri: &hyper::Uri) -> Option<(String, u16)> {
    let host = uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => 443,
        _ => 80,
    });
    Some((host.to_owned(), port))
}

/// The URL parsed, when its form is one a webhook may have: `http` or
/// `https`, a host, no user info, no whitespace, at most 2048 characters.
pub(crate) fn parse(url: &str) -> Result<hyper::Uri, &'static str> {
    if url.len() > 2048 {
        return Err("url: at most 2048 characters");
    }
    if url.chars().any(char::is_whitespace) {
        return Err("url: no whitespace");
    }
    let uri: hyper::Uri = url.parse().map_err(|_| "url: not a URL")?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {}
        _ => return Err("url: http:// or https:// only"),
    }
    let authority = uri.authority().ok_or("url: no host")?;
    if authority.as_str().contains('@') {
        return Err("url: no user info");
    }
    if authority.host().is_empty() {
        return Err("url: no host");
    }
    Ok(uri)
}

/// Refuses a URL a webhook may not have (400 saying why): its form, a host
/// that does not resolve, or one with a non-public address (unless
/// `allow_private`).
pub(crate) async fn check_url(url: &str, allow_private: bool) -> Result<(), ApiError> {
    let uri = parse(url).map_err(ApiError::bad_request)?;
    let (host, port) = host_and_port(&uri).ok_or_else(|| ApiError::bad_request("url: no host"))?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        if !allow_private && !is_public(ip) {
            return Err(ApiError::bad_request(
                "url: a non-public address (set TELEPATH_WEBHOOK_ALLOW_PRIVATE=1 to allow it)",
            ));
        }
        return Ok(());
    }
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(
        RESOLVE_TIMEOUT,
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(addrs)) => addrs.collect(),
        _ => Vec::new(),
    };
    if addrs.is_empty() {
        return Err(ApiError::bad_request("url: the host does not resolve"));
    }
    if !allow_private && addrs.iter().any(|a| !is_public(a.ip())) {
        return Err(ApiError::bad_request(
            "url: the host resolves to a non-public address (set TELEPATH_WEBHOOK_ALLOW_PRIVATE=1 to allow it)",
        ));
    }
    Ok(())
}

/// Whether a delivery to `uri` may go ahead, as far as its host's form
/// says: an IP literal must be public (names are checked by [`Resolver`]).
pub(crate) fn literal_allowed(uri: &hyper::Uri, allow_private: bool) -> bool {
    if allow_private {
        return true;
    }
    match host_and_port(uri).map(|(h, _)| h.parse::<IpAddr>()) {
        Some(Ok(ip)) => is_public(ip),
        Some(Err(_)) => true,
        None => false,
    }
}

/// The deliveries' resolver: the system's, keeping public addresses only
/// (every address, with `allow_private`).
#[derive(Clone)]
pub(crate) struct Resolver {
    pub(crate) allow_private: bool,
}

type Addrs = std::vec::IntoIter<SocketAddr>;

impl tower_service::Service<Name> for Resolver {
    type Response = Addrs;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Addrs, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(std::io::Error::other(
                    "the host has no public address (TELEPATH_WEBHOOK_ALLOW_PRIVATE is off)",
                ));
            }
            Ok(addrs.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().unwrap())
    }

    #[test]
    fn only_public_unicast_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
        ] {
            assert!(!public(private), "{private} must not be public");
        }
        for ok in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(public(ok), "{ok} is public");
        }
    }

    #[test]
    fn urls_take_the_webhook_form() {
        assert!(parse("https://example.test/hook?x=1").is_ok());
        assert!(parse("HTTP://example.test:8080").is_ok());
        for bad in [
            "ftp://example.test/",
            "https://user:pw@example.test/",
            "https:///path",
            "example.test/hook",
            "https://exa mple.test/",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
        let long = format!("https://example.test/{}", "a".repeat(2048));
        assert!(parse(&long).is_err());
    }

    #[tokio::test]
    async fn private_hosts_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost:8080/",
        ] {
            let err = check_url(url, false).await.unwrap_err();
            assert!(err.message.contains("non-public"), "{url}: {err:?}");
            check_url(url, true).await.unwrap();
        }
        // The deliveries' resolver keeps public addresses only: a name
        // that resolves to loopback alone resolves to nothing.
        use tower_service::Service as _;
        let name: Name = "localhost".parse().unwrap();
        let refused = Resolver {
            allow_private: false,
        }
        .call(name.clone())
        .await;
        assert!(refused.is_err(), "localhost is not public");
        let allowed: Vec<SocketAddr> = Resolver {
            allow_private: true,
        }
        .call(name)
        .await
        .unwrap()
        .collect();
        assert!(allowed.iter().any(|a| a.ip().is_loopback()), "{allowed:?}");
        let uri: hyper::Uri = "http://10.0.0.1/".parse().unwrap();
        assert!(!literal_allowed(&uri, false));
        assert!(literal_allowed(&uri, true));
    }
}
