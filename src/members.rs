//! The live nodes of a cluster and the URLs they advertise, as the cluster bus sees them.
//!
//! Written by the bus ([`crate::signaling::nats`]: heartbeats add or refresh a node, `Bye`
//! and silence remove it) and read by the APIs that send a client to a particular node
//! (GetDataEndpoint answers with the URL of the node that writes the stream). Without a
//! bus (a single node) it only knows this node.
//!
//! [`Members::home`] picks one node per key by rendezvous hashing: every node with the same
//! view picks the same node, with nothing exchanged, and a node leaving moves only the keys
//! it was home to. A stored channel's viewers gather on its home node when nothing else
//! (a running storage session, viewers already waiting) decides where they go.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Cheap, clonable view of the cluster's live nodes.
#[derive(Debug, Clone, Default)]
pub struct Members {
    this: String,
    urls: Arc<RwLock<HashMap<String, String>>>,
}

impl Members {
    /// A view that knows only this node.
    pub fn new(node_id: &str, url: &str) -> Self {
        let members = Self { this: node_id.to_string(), ..Self::default() };
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

    /// This node's id.
    pub fn this_node(&self) -> &str {
        &self.this
    }

    /// The live node that is home to `key` (rendezvous hashing; see the module docs).
    pub fn home(&self, key: &str) -> Option<String> {
        let urls = self.urls.read().unwrap_or_else(|p| p.into_inner());
        urls.keys().max_by_key(|node| (rendezvous_score(node, key), node.as_str())).cloned()
    }
}

/// The weight of `node` for `key`: FNV-1a over both, then a 64-bit finalizer (SplitMix64)
/// so that similar names spread evenly. Fixed, so that every node and build agree.
fn rendezvous_score(node: &str, key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain([0xff]).chain(key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
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
        assert_eq!(m.this_node(), "a");
    }

    /// Every view of the same nodes picks the same home; keys spread over the nodes; a node
    /// leaving moves only its own keys.
    #[test]
    fn every_view_agrees_on_a_keys_home() {
        let views: Vec<Members> = ["a", "b", "c"]
            .iter()
            .map(|me| {
                let m = Members::new(me, "https://x");
                for n in ["a", "b", "c"] {
                    m.upsert(n, "https://x");
                }
                m
            })
            .collect();
        let keys: Vec<String> =
            (0..300).map(|i| format!("arn:aws:kinesisvideo:us-west-2:1:channel/cam-{i}/1")).collect();
        let homes: Vec<String> = keys.iter().map(|k| views[0].home(k).expect("home")).collect();
        for v in &views[1..] {
            assert!(keys.iter().zip(&homes).all(|(k, h)| v.home(k).as_ref() == Some(h)));
        }
        for n in ["a", "b", "c"] {
            let share = homes.iter().filter(|h| *h == n).count();
            assert!((60..=140).contains(&share), "{n} is home to {share} of 300 keys");
        }
        views[0].remove("b");
        for (k, h) in keys.iter().zip(&homes) {
            let now = views[0].home(k).expect("home");
            assert!(now == *h || h == "b", "{k} moved from {h} to {now} although {h} stayed");
        }
    }
}
