//! Cluster mode: one node asks another to run part of a channel's storage session there.
//! This is the bus's side, sans-IO: the requests between nodes and their answers. The peer
//! layer serves them (`crate::peer::handoff`).
//!
//! A channel's storage session and its viewer sessions run on one node, because the viewers
//! are fed the master's packets on that node's worker. Two requests gather them there:
//! - [`Ask::StartStorage`]: a master's JoinStorageSession landed on a node other than the one
//!   where the channel's live viewers wait; that node is asked to start the session instead.
//!   The session reaches the master through the bus, as any storage peer on another node does.
//! - [`Ask::JoinViewer`]: a JoinStorageSessionAsViewer landed on a node other than the one
//!   that runs (or will run) the channel's storage session; that node is asked to run the
//!   viewer session. Its offer and candidates reach the viewer through the bus, wherever the
//!   viewer's WebSocket is (see `super::registry`, "Storage viewers").
//!
//! Each request is answered ([`Directed::Answer`]); the asking node answers its client from
//! that, or does the work itself when the other node is unavailable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::cluster::{ClusterLink, Directed};
use super::registry::{SignalingBus, StoragePeerAt};
use crate::members::Members;

/// Requests queued for the peer layer before it takes them.
const ASKED_QUEUE: usize = 64;

/// What one node asks another to run for a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ask {
    /// Start the channel's storage session (its live viewers wait on the asked node).
    StartStorage,
    /// Run the storage viewer session of the viewer with this ClientId (the channel's
    /// storage session runs on the asked node, or its viewers wait there).
    JoinViewer {
        /// The viewer's ClientId.
        client_id: String,
    },
}

/// Why the asked node did not do it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Refusal {
    /// The request breaks an API rule there: the KVS error it answers, for the client.
    #[error("{code}: {message}")]
    Api {
        /// The KVS error code, e.g. `ClientLimitExceededException`.
        code: String,
        /// Its HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// The node serves no such requests now (none served, too many queued, shutting down).
    #[error("{0}")]
    Unavailable(String),
}

/// What a node answers a request.
pub type Answer = Result<(), Refusal>;

/// Another node's request to this one.
#[derive(Debug)]
pub struct Asked {
    /// Channel ARN.
    pub channel: String,
    /// The requesting node.
    pub from: String,
    /// What it asks.
    pub ask: Ask,
    reply: Reply,
}

impl Asked {
    /// Answers the requesting node.
    pub fn answer(self, answer: Answer) {
        self.reply.send(answer);
    }
}

/// Where the answer to an [`Asked`] goes.
#[derive(Debug)]
struct Reply {
    link: Arc<dyn ClusterLink>,
    to: String,
    request: u64,
}

impl Reply {
    fn send(self, answer: Answer) {
        let body = Directed::Answer { request: self.request, refusal: answer.err() };
        if !self.link.send(&self.to, body) {
            tracing::warn!(node = %self.to, "cluster bus queue full: answer to another node dropped");
        }
    }
}

/// A request this node sent, waiting for its answer.
#[derive(Debug)]
struct Waiter {
    node: String,
    tx: oneshot::Sender<Answer>,
}

/// This node's requests in flight, and where requests from other nodes go.
#[derive(Debug, Default)]
pub(super) struct HandOffs {
    next_request: AtomicU64,
    waiting: Mutex<HashMap<u64, Waiter>>,
    asked: Mutex<Option<mpsc::Sender<Asked>>>,
}

impl HandOffs {
    fn waiting(&self) -> MutexGuard<'_, HashMap<u64, Waiter>> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Asks `node` to do `ask` for `channel`. The receiver yields its answer, or fails when
    /// the request could not be sent or `node` was forgotten before answering.
    pub(super) fn request(
        &self,
        link: &dyn ClusterLink,
        node: &str,
        channel: &str,
        ask: Ask,
    ) -> (u64, oneshot::Receiver<Answer>) {
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting().insert(request, Waiter { node: node.to_string(), tx });
        if !link.send(node, Directed::Request { channel: channel.to_string(), request, ask }) {
            self.cancel(request);
        }
        (request, rx)
    }

    /// Forgets a request whose answer is no longer awaited.
    pub(super) fn cancel(&self, request: u64) {
        self.waiting().remove(&request);
    }

    /// Delivers `node`'s answer to request `request`. An answer from another node than the
    /// one asked is ignored.
    pub(super) fn answered(&self, node: &str, request: u64, refusal: Option<Refusal>) {
        let mut waiting = self.waiting();
        if waiting.get(&request).is_some_and(|w| w.node == node)
            && let Some(w) = waiting.remove(&request)
        {
            let _ = w.tx.send(refusal.map_or(Ok(()), Err));
        }
    }

    /// Fails the requests sent to `node` (it left or went silent).
    pub(super) fn forget_node(&self, node: &str) {
        self.waiting().retain(|_, w| w.node != node);
    }

    /// Where requests from other nodes go from now on (a later call replaces it).
    pub(super) fn serve(&self) -> mpsc::Receiver<Asked> {
        let (tx, rx) = mpsc::channel(ASKED_QUEUE);
        *self.asked.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(tx);
        rx
    }

    /// Hands `node`'s request to the peer layer, or refuses it at once when nothing serves
    /// requests here or too many are queued.
    pub(super) fn asked(&self, link: Arc<dyn ClusterLink>, node: &str, channel: String, request: u64, ask: Ask) {
        let reply = Reply { link, to: node.to_string(), request };
        let asked = Asked { channel, from: node.to_string(), ask, reply };
        let served = self.asked.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let refused = match served.as_ref() {
            None => Some((asked, "this node serves no storage session requests of other nodes")),
            Some(tx) => match tx.try_send(asked) {
                Ok(()) => None,
                Err(mpsc::error::TrySendError::Full(asked)) => Some((asked, "too many requests of other nodes queued")),
                Err(mpsc::error::TrySendError::Closed(asked)) => Some((asked, "this node is shutting down")),
            },
        };
        drop(served);
        if let Some((asked, why)) = refused {
            asked.answer(Err(Refusal::Unavailable(why.to_string())));
        }
    }
}

/// The node where a stored channel's storage session and its viewer sessions run, or will:
/// where its storage peer is attached; with none, where most of its viewer sessions wait;
/// with none either, the channel's home node among `members` (every node agrees on it, so
/// viewers that join at the same moment through different nodes still gather on one).
pub fn session_node(bus: &dyn SignalingBus, members: &Members, channel_arn: &str) -> StoragePeerAt {
    if let Some(at) = bus.storage_peer_at(channel_arn).or_else(|| bus.storage_viewers_at(channel_arn)) {
        return at;
    }
    match members.home(channel_arn) {
        Some(node) if node != members.this_node() => StoragePeerAt::OtherNode(node),
        _ => StoragePeerAt::ThisNode,
    }
}
