//! The live nodes of a cluster and the URLs they advertise, as the cluster bus sees them.
//!
//! Written by the bus ([`crate::signaling::nats`]: heartbeats add or refresh a node, `Bye`
//! and silence remove it) and read by the APIs that send a client to a particular node
//! (GetDataEndpoint answers with the URL of the node that writes the stream). Without a
//! bus (a single node) it only knows this node.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Cheap, clonable view of the cluster's live nodes.
#[derive(Debug, Clone, Default)]
pub struct Members {
    urls: Arc<RwLock<HashMap<String, String>>>,
}

impl Members {
    /// A view that knows only this node.
    pub fn new(node_id: &str, url: &str) -> Self {
        let members = Self::default();
        members.upsert(node_id, url);
        members
    }

    /// `node` is alive and advertises `url`.
    pub fn upsert(&self, node: &str, url: &str) {
        self.urls.write().unwrap_or_else(|p| p.into_inner()).insert(node.to_string(), url.to_string());
    }

    /// `node` left or went silent.
    pub fn remove(&self, node: &str) {
        self.urls.write().unwrap_or_else(|p| p.into_inner()).remove(node);
    }

    /// The URL of `node` while it is alive.
    pub fn url(&self, node: &str) -> Option<String> {
        self.urls.read().unwrap_or_else(|p| p.into_inner()).get(node).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_come_and_go() {
        let m = Members::new("a", "https://a:1");
        m.upsert("b", "https://b:1");
        assert_eq!(m.url("b").as_deref(), Some("https://b:1"));
        m.remove("b");
        assert_eq!((m.url("a").as_deref(), m.url("b")), (Some("https://a:1"), None));
    }
}
