//! Who may open a WebSocket session: the page's `Origin` (so another site cannot open sessions
//! from a visitor's browser), and how many connections one IP address may hold.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

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

/// Counts open connections per client IP.
#[derive(Debug, Clone)]
pub struct IpSlots {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection's slot; freed when dropped.
#[derive(Debug)]
pub struct Slot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl IpSlots {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    /// A slot for `ip`, or None when it already holds the maximum.
    pub fn acquire(&self, ip: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            ip,
            open: self.open.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
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

    #[test]
    fn slots_are_counted_per_ip_and_freed() {
        let slots = IpSlots::new(2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = slots.acquire(ip).unwrap();
        let _b = slots.acquire(ip).unwrap();
        assert!(slots.acquire(ip).is_none());
        assert!(slots.acquire("127.0.0.2".parse().unwrap()).is_some());
        drop(a);
        assert!(slots.acquire(ip).is_some());
    }
}
