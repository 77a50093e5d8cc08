//! Who is asking, and from which page: the client's address (the TCP peer's, or, only from a
//! trusted reverse proxy, the one it forwards), and whether the page's `Origin` may open a
//! session, so that another site cannot open sessions from a visitor's browser. (How many
//! sessions an address may hold is the signalling state machine's business.)

use std::net::IpAddr;

use axum::http::{header, HeaderMap};
use visavis_turn::Cidr;

/// The client's address: `peer` itself, unless `peer` is a trusted proxy, in which case the
/// address it forwards (`X-Forwarded-For`, else `Forwarded: for=`), read from the right and
/// skipping further trusted proxies, so that a client cannot choose its own address by sending
/// the header itself.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let forwarded_for = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let chain = if forwarded_for.is_empty() {
        forwarded_for_of(headers)
    } else {
        forwarded_for
    };
    let mut last = peer;
    for hop in chain.iter().rev() {
        let Some(ip) = parse_ip(hop) else {
            // Unreadable: stop at the last address we could trust to have been written by
            // a proxy of ours.
            return last;
        };
        if !is_trusted(ip) {
            return ip;
        }
        last = ip;
    }
    last
}

/// The `for=` addresses of RFC 7239 `Forwarded` headers, in order.
fn forwarded_for_of(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.eq_ignore_ascii_case("for")
                    .then(|| value.trim().trim_matches('"').to_owned())
            })
        })
        .collect()
}

/// An address as proxies write it: `203.0.113.5`, `203.0.113.5:4711`, `[2001:db8::1]:4711`,
/// `2001:db8::1`.
fn parse_ip(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    text.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok())
}

/// Whether a WebSocket upgrade with this `Origin` may proceed.
///
/// Without an Origin (not a browser) it may. A browser page may if its origin is one of
/// `allowed` (the server's public origins and `--allowed-origin`). When no public origin is
/// configured, a page may also if it was served by this server under an IP address or
/// `localhost` (its origin is the request's `Host`): such names cannot be re-pointed by DNS,
/// whereas a domain that matches `Host` may be an attacker's that resolves to this server (DNS
/// rebinding), so domains must be configured.
pub fn origin_allowed(
    origin: Option<&str>,
    host: Option<&str>,
    allowed: &[String],
    configured: bool,
) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let origin = origin.trim_end_matches('/');
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    if configured {
        return false;
    }
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    let name = match origin_host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => origin_host,
    };
    let literal = name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok()
        || name.trim_matches(['[', ']']).parse::<IpAddr>().is_ok();
    literal && host.is_some_and(|h| h.eq_ignore_ascii_case(origin_host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn same_origin_by_address_and_the_allow_list() {
        let allowed = vec!["https://app.example.org".to_owned()];
        assert!(origin_allowed(None, Some("h:8080"), &[], false), "not a browser");
        assert!(origin_allowed(
            Some("http://127.0.0.1:8080"),
            Some("127.0.0.1:8080"),
            &[],
            false
        ));
        assert!(origin_allowed(
            Some("http://LOCALHOST:8080"),
            Some("localhost:8080"),
            &[],
            false
        ));
        assert!(origin_allowed(
            Some("http://[::1]:8080"),
            Some("[::1]:8080"),
            &[],
            false
        ));
        assert!(
            !origin_allowed(Some("http://127.0.0.1:9090"), Some("127.0.0.1:8080"), &[], false),
            "other port"
        );
        assert!(!origin_allowed(
            Some("https://evil.example"),
            Some("h:8080"),
            &[],
            false
        ));
        assert!(origin_allowed(
            Some("https://app.example.org"),
            Some("h:8080"),
            &allowed,
            false
        ));
        assert!(!origin_allowed(Some("null"), Some("h:8080"), &allowed, false));
    }

    #[test]
    fn a_domain_matching_host_is_not_enough() {
        // DNS rebinding: rebind.evil.example resolves to this server, so Host matches Origin.
        let rebound = Some("http://rebind.evil.example:8080");
        assert!(!origin_allowed(
            rebound,
            Some("rebind.evil.example:8080"),
            &[],
            false
        ));
        let public = vec!["https://consult.example.org".to_owned()];
        assert!(origin_allowed(
            Some("https://consult.example.org"),
            Some("x"),
            &public,
            true
        ));
        // Once public origins are configured, only they (and --allowed-origin) are let in.
        assert!(!origin_allowed(
            Some("http://127.0.0.1:8080"),
            Some("127.0.0.1:8080"),
            &public,
            true
        ));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted = ["10.0.0.0/8".parse::<Cidr>().unwrap()];
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.9")]);
        // From the proxy: the rightmost address that is not one of ours (what a client wrote
        // itself, 6.6.6.6, is ignored).
        assert_eq!(
            client_ip(proxy, &xff, &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // From anyone else: the header is the client's own claim, ignored.
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(client_ip(stranger, &xff, &trusted), stranger);
        assert_eq!(client_ip(proxy, &xff, &[]), proxy, "no trusted proxies");
        let fwd = headers(&[(
            "forwarded",
            r#"for="[2001:db8::5]:4711";proto=https, for=10.0.0.3"#,
        )]);
        assert_eq!(
            client_ip(proxy, &fwd, &trusted),
            "2001:db8::5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(proxy, &headers(&[]), &trusted),
            proxy,
            "nothing forwarded"
        );
        let junk = headers(&[("x-forwarded-for", "203.0.113.7, not-an-ip")]);
        assert_eq!(client_ip(proxy, &junk, &trusted), proxy);
    }
}
