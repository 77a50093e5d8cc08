//! The node registry: which nodes of the cluster are alive and where they are reached
//! (`--node-url`). Pure; each node writes its own entry into the Redis hash `visavis:nodes`
//! every heartbeat, and reads the whole hash back to know the others.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One node's entry, as kept in Redis (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// Where the other nodes open WebSockets to it (`--node-url`).
    pub url: String,
    /// Its last heartbeat, Unix ms (by its clock; the nodes' clocks are assumed kept by NTP).
    pub seen_ms: u64,
}

/// Every node known, as last read.
#[derive(Debug)]
pub struct Registry {
    /// A node not heard from for this long counts as dead.
    ttl_ms: u64,
    nodes: HashMap<String, NodeEntry>,
}

impl Registry {
    pub fn new(ttl_ms: u64) -> Self {
        Self {
            ttl_ms,
            nodes: HashMap::new(),
        }
    }

    /// The hash as read from Redis: node id → entry. Entries that do not parse are skipped.
    pub fn handle_entries(&mut self, entries: impl IntoIterator<Item = (String, String)>) {
        self.nodes = entries
            .into_iter()
            .filter_map(|(id, json)| Some((id, serde_json::from_str(&json).ok()?)))
            .collect();
    }

    /// Where `node` is reached, if it is alive at `now_ms`.
    pub fn url_of(&self, node: &str, now_ms: u64) -> Option<&str> {
        self.nodes
            .get(node)
            .filter(|e| self.alive(e, now_ms))
            .map(|e| e.url.as_str())
    }

    /// The nodes alive at `now_ms`, sorted.
    pub fn alive_nodes(&self, now_ms: u64) -> Vec<&str> {
        let mut alive: Vec<&str> = self
            .nodes
            .iter()
            .filter(|(_, e)| self.alive(e, now_ms))
            .map(|(id, _)| id.as_str())
            .collect();
        alive.sort_unstable();
        alive
    }

    /// Entries so old that they are dead for sure (ten TTLs): removed from the hash, so that it
    /// does not grow with every node that ever ran.
    pub fn stale(&self, now_ms: u64) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|(_, e)| now_ms.saturating_sub(e.seen_ms) > 10 * self.ttl_ms)
            .map(|(id, _)| id.as_str())
            .collect()
    }

    fn alive(&self, entry: &NodeEntry, now_ms: u64) -> bool {
        now_ms.saturating_sub(entry.seen_ms) <= self.ttl_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(url: &str, seen_ms: u64) -> String {
        serde_json::to_string(&NodeEntry {
            url: url.into(),
            seen_ms,
        })
        .unwrap()
    }

    #[test]
    fn a_node_is_alive_while_its_heartbeats_are_recent() {
        let mut registry = Registry::new(3000);
        registry.handle_entries([
            ("a".to_string(), entry("http://10.0.0.1:8080", 10_000)),
            ("b".to_string(), entry("http://10.0.0.2:8080", 6_000)),
            ("junk".to_string(), "not json".to_string()),
        ]);
        assert_eq!(registry.url_of("a", 12_000), Some("http://10.0.0.1:8080"));
        assert_eq!(registry.alive_nodes(9_000), ["a", "b"]);
        assert_eq!(registry.alive_nodes(9_001), ["a"], "b silent for more than 3 s");
        assert_eq!(registry.url_of("b", 9_001), None);
        assert_eq!(registry.url_of("junk", 0), None);
        assert!(registry.stale(36_000).is_empty());
        assert_eq!(registry.stale(36_001), ["b"]);
    }
}
