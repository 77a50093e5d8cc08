//! Which pages may open a WebSocket session: the page's `Origin`, so that another site cannot
//! open sessions from a visitor's browser. (How many sessions an address may hold is the
//! signalling state machine's business.)

/// Whether a WebSocket upgrade with this `Origin` may proceed. Without an Origin (not a
/// browser) it may; a browser page may when it was served by this server (same host and port
/// as the request's `Host`) or its origin is on the allow-list.
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
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
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    host.is_some_and(|h| h.eq_ignore_ascii_case(origin_host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_and_allow_list() {
        let allowed = vec!["https://app.example.org".to_owned()];
        assert!(origin_allowed(None, Some("h:8080"), &[]), "not a browser");
        assert!(origin_allowed(Some("http://h:8080"), Some("h:8080"), &[]));
        assert!(origin_allowed(Some("http://H:8080"), Some("h:8080"), &[]));
        assert!(
            !origin_allowed(Some("http://h:9090"), Some("h:8080"), &[]),
            "other port"
        );
        assert!(!origin_allowed(Some("https://evil.example"), Some("h:8080"), &[]));
        assert!(origin_allowed(
            Some("https://app.example.org"),
            Some("h:8080"),
            &allowed
        ));
        assert!(!origin_allowed(Some("null"), Some("h:8080"), &allowed));
    }
}
