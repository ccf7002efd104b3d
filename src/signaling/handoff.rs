//! Cluster mode: a channel's storage session starts on the node where its live viewers
//! wait. This is the bus's side, sans-IO: the requests between nodes and their answers.
//! The peer layer serves the requests (`crate::peer::handoff`).
//!
//! A viewer session (JoinStorageSessionAsViewer) runs on the node that holds the viewer's
//! WebSocket, and only that node's storage session feeds it. A viewer that joins before the
//! master waits on its node, but the master's JoinStorageSession may land on any node. That
//! node asks the node where most of the channel's viewers wait to start the session instead
//! ([`Directed::StartStorage`]). The session reaches the master through the bus, as any
//! storage peer on another node does, and the answer ([`Directed::StorageStarted`]) lets
//! JoinStorageSession succeed, or fall back to starting the session itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, oneshot};

use super::cluster::{ClusterLink, Directed};

/// Start requests queued for the peer layer before it takes them.
const STARTS_QUEUE: usize = 64;

/// What a node answers a start request: `Err` says why it started nothing.
pub type StartAnswer = Result<(), String>;

/// Another node's request to start the channel's storage session on this node.
#[derive(Debug)]
pub struct StorageStart {
    /// Channel ARN.
    pub channel: String,
    /// The requesting node.
    pub from: String,
    reply: StartReply,
}

impl StorageStart {
    /// Answers the requesting node.
    pub fn answer(self, answer: StartAnswer) {
        self.reply.send(answer);
    }
}

/// Where the answer to a [`StorageStart`] goes.
#[derive(Debug)]
struct StartReply {
    link: Arc<dyn ClusterLink>,
    to: String,
    request: u64,
}

impl StartReply {
    fn send(self, answer: StartAnswer) {
        let body = Directed::StorageStarted { request: self.request, error: answer.err() };
        if !self.link.send(&self.to, body) {
            tracing::warn!(node = %self.to, "cluster bus queue full: storage start answer dropped");
        }
    }
}

/// A request this node sent, waiting for its answer.
#[derive(Debug)]
struct Waiter {
    node: String,
    tx: oneshot::Sender<StartAnswer>,
}

/// This node's start requests in flight, and where requests from other nodes go.
#[derive(Debug, Default)]
pub(super) struct HandOffs {
    next_request: AtomicU64,
    waiting: Mutex<HashMap<u64, Waiter>>,
    starts: Mutex<Option<mpsc::Sender<StorageStart>>>,
}

impl HandOffs {
    fn waiting(&self) -> MutexGuard<'_, HashMap<u64, Waiter>> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Asks `node` to start `channel`'s storage session. The receiver yields its answer, or
    /// fails when the request could not be sent or `node` was forgotten before answering.
    pub(super) fn request(
        &self,
        link: &dyn ClusterLink,
        node: &str,
        channel: &str,
    ) -> (u64, oneshot::Receiver<StartAnswer>) {
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting().insert(request, Waiter { node: node.to_string(), tx });
        if !link.send(node, Directed::StartStorage { channel: channel.to_string(), request }) {
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
    pub(super) fn answered(&self, node: &str, request: u64, error: Option<String>) {
        let mut waiting = self.waiting();
        if waiting.get(&request).is_some_and(|w| w.node == node)
            && let Some(w) = waiting.remove(&request)
        {
            let _ = w.tx.send(error.map_or(Ok(()), Err));
        }
    }

    /// Fails the requests sent to `node` (it left or went silent).
    pub(super) fn forget_node(&self, node: &str) {
        self.waiting().retain(|_, w| w.node != node);
    }

    /// Where start requests from other nodes go from now on (a later call replaces it).
    pub(super) fn serve(&self) -> mpsc::Receiver<StorageStart> {
        let (tx, rx) = mpsc::channel(STARTS_QUEUE);
        *self.starts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(tx);
        rx
    }

    /// Hands `node`'s request to the peer layer, or answers it at once when nothing serves
    /// starts here or too many are queued.
    pub(super) fn start(&self, link: Arc<dyn ClusterLink>, node: &str, channel: String, request: u64) {
        let reply = StartReply { link, to: node.to_string(), request };
        let start = StorageStart { channel, from: node.to_string(), reply };
        let starts = self.starts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let refused = match starts.as_ref() {
            None => Some((start, "this node does not start storage sessions for other nodes")),
            Some(tx) => match tx.try_send(start) {
                Ok(()) => None,
                Err(mpsc::error::TrySendError::Full(start)) => Some((start, "too many storage starts queued")),
                Err(mpsc::error::TrySendError::Closed(start)) => Some((start, "this node is shutting down")),
            },
        };
        drop(starts);
        if let Some((start, why)) = refused {
            start.answer(Err(why.to_string()));
        }
    }
}
