//! Signaling across nodes: what reel nodes tell each other, sans-IO.
//!
//! Every node keeps its own sockets in its [`super::registry::LocalBus`] and mirrors the
//! parties connected to other nodes as *remote* entries there, so one set of routing rules
//! (newest master wins, viewer limits, held messages, the storage peer) serves both. Nodes
//! exchange two kinds of message over the bus transport ([`super::nats`]):
//! - [`Announcement`]s go to every node: a party connected or left, a storage peer
//!   attached or detached, a channel was deleted, and the node's own liveness (`Hello`,
//!   `Heartbeat`, `Bye`). Applying them in order makes each node's mirror converge.
//! - [`Directed`] messages go to one node: a relayed signaling message for a party it holds,
//!   a master message for the storage peer it runs, a viewer's message for the viewer
//!   session it runs, a request to run a storage or viewer session there and its answer
//!   ([`super::handoff`]), or a request to re-announce its state.
//!
//! Ordering: "newest wins" compares [`Since`] (connect time in ms, then node id), so two
//! nodes that see two masters connect at nearly the same moment agree on the winner.
//! A node that stops sending heartbeats is forgotten after the configured timeout (its
//! parties leave every mirror as if they had disconnected).

use serde::{Deserialize, Serialize};

use super::handoff::{Ask, Refusal};
use super::message::SignalingMessage;
use super::pending::Party;

/// When a connection or attachment began, cluster-wide comparable: later `at_ms` wins,
/// the node id breaks ties.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Since {
    /// Wall-clock ms since the Unix epoch on the node that accepted it.
    pub at_ms: u64,
    /// That node's id.
    pub node: String,
}

/// What one node tells every other node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Announcement {
    /// This node (re)joined: every node forgets what an earlier run of it held and
    /// re-announces its own parties to it.
    Hello {
        /// The base URL this node advertises to clients.
        url: String,
    },
    /// This node is alive.
    Heartbeat {
        /// The base URL this node advertises to clients.
        url: String,
    },
    /// This node is shutting down: forget its parties now.
    Bye,
    /// A party connected to this node.
    Connected {
        /// Channel ARN.
        channel: String,
        /// The channel's `MessageTtlSeconds`, in ms (how long messages for absent parties are held).
        message_ttl_ms: u64,
        /// Master or viewer.
        role: Party,
        /// The connection's id on its node.
        conn_id: u64,
        /// When it connected.
        since: Since,
    },
    /// A party's connection on this node ended.
    Disconnected {
        /// Channel ARN.
        channel: String,
        /// Master or viewer.
        role: Party,
        /// The connection's id on its node.
        conn_id: u64,
    },
    /// This node runs the channel's storage peer (JoinStorageSession was served here).
    StorageAttached {
        /// Channel ARN.
        channel: String,
        /// The attachment's id on its node.
        attachment: u64,
        /// When it attached.
        since: Since,
    },
    /// This node's storage peer of the channel detached.
    StorageDetached {
        /// Channel ARN.
        channel: String,
        /// The attachment's id on its node.
        attachment: u64,
    },
    /// How many storage viewer sessions (JoinStorageSessionAsViewer) of the channel are
    /// attached on this node now (0: none left). A master's JoinStorageSession on another
    /// node hands the session to the node where most of them wait ([`Ask::StartStorage`]).
    ViewersWatching {
        /// Channel ARN.
        channel: String,
        /// Storage viewer sessions attached on this node.
        count: usize,
    },
    /// The channel was deleted: close its connections everywhere.
    ChannelClosed {
        /// Channel ARN.
        channel: String,
    },
}

/// What one node sends to one other node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Directed {
    /// A signaling message for a party connected to the receiving node.
    Relay {
        /// Channel ARN.
        channel: String,
        /// The recipient.
        to: Party,
        /// The sending viewer's ClientId (`None`: the master or the storage peer).
        sender: Option<String>,
        /// The message.
        message: SignalingMessage,
        /// How many nodes forwarded it already (a message is forwarded at most once, so
        /// two mirrors that disagree for a moment cannot bounce it between them).
        hops: u8,
    },
    /// A master message with no recipient, for the storage peer running on the receiving node.
    ToStorage {
        /// Channel ARN.
        channel: String,
        /// The storage peer's attachment id on the receiving node.
        attachment: u64,
        /// The message.
        message: SignalingMessage,
    },
    /// Do `ask` for the channel on the receiving node (see [`super::handoff`]); answered
    /// with [`Directed::Answer`].
    Request {
        /// Channel ARN.
        channel: String,
        /// The sender's id of this request.
        request: u64,
        /// What is asked.
        ask: Ask,
    },
    /// The answer to [`Directed::Request`].
    Answer {
        /// The request it answers.
        request: u64,
        /// Why it was not done (`None`: done).
        refusal: Option<Refusal>,
    },
    /// A storage viewer session of the sending node now serves the viewer with this
    /// ClientId, whose WebSocket the receiving node holds: route that viewer's messages to
    /// it ([`Directed::ToViewerSession`]) instead of to the master. A viewer session the
    /// receiving node held for it (its own, or another node's) is replaced.
    ViewerAttached {
        /// Channel ARN.
        channel: String,
        /// The viewer's ClientId.
        client_id: String,
        /// The viewer session's attachment id on the sending node.
        attachment: u64,
    },
    /// The sending node's viewer session `attachment` of this viewer ended.
    ViewerDetached {
        /// Channel ARN.
        channel: String,
        /// The viewer's ClientId.
        client_id: String,
        /// The viewer session's attachment id on the sending node.
        attachment: u64,
    },
    /// A newer viewer session of this viewer replaced the receiving node's `attachment`
    /// (sent by the node holding the viewer's WebSocket).
    ViewerReplaced {
        /// Channel ARN.
        channel: String,
        /// The viewer's ClientId.
        client_id: String,
        /// The replaced viewer session's attachment id on the receiving node.
        attachment: u64,
    },
    /// A message of a viewer connected to the sending node, for its viewer session running
    /// on the receiving node.
    ToViewerSession {
        /// Channel ARN.
        channel: String,
        /// The viewer's ClientId.
        client_id: String,
        /// The viewer session's attachment id on the receiving node.
        attachment: u64,
        /// The message.
        message: SignalingMessage,
    },
    /// Re-announce your parties (the sender had forgotten this node, e.g. after a partition).
    Resync,
}

/// A message with the id of the node that sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// The sending node.
    pub from: String,
    /// The message.
    pub body: T,
}

/// The transport a [`super::registry::LocalBus`] uses to reach other nodes. Both methods
/// enqueue without blocking (the bus calls them under its lock).
pub trait ClusterLink: Send + Sync + std::fmt::Debug {
    /// This node's id.
    fn node_id(&self) -> &str;
    /// Tell every other node.
    fn announce(&self, body: Announcement);
    /// Send to one node; `false` when the transport's queue is full (the message is dropped
    /// and the sender treats the recipient as busy).
    fn send(&self, node: &str, body: Directed) -> bool;
}

/// Wall-clock ms since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::message::MessageKind;

    #[test]
    fn envelopes_round_trip_as_json() {
        let a = Envelope {
            from: "n1".into(),
            body: Announcement::Connected {
                channel: "arn:c".into(),
                message_ttl_ms: 60_000,
                role: Party::Viewer("v1".into()),
                conn_id: 7,
                since: Since { at_ms: 5, node: "n1".into() },
            },
        };
        let json = serde_json::to_vec(&a).expect("json");
        assert_eq!(serde_json::from_slice::<Envelope<Announcement>>(&json).expect("back"), a);
        let d = Envelope {
            from: "n2".into(),
            body: Directed::Relay {
                channel: "arn:c".into(),
                to: Party::Master,
                sender: Some("v1".into()),
                message: SignalingMessage { kind: MessageKind::SdpOffer, payload: "b2Zm".into() },
                hops: 0,
            },
        };
        let json = serde_json::to_vec(&d).expect("json");
        assert_eq!(serde_json::from_slice::<Envelope<Directed>>(&json).expect("back"), d);
    }

    #[test]
    fn newest_wins_by_time_then_node() {
        let a = Since { at_ms: 10, node: "b".into() };
        let b = Since { at_ms: 11, node: "a".into() };
        let c = Since { at_ms: 11, node: "c".into() };
        assert!(a < b && b < c);
    }
}
