//! The cluster bus over NATS (`--bus-url nats://…`): the transport of
//! [`super::cluster`]'s envelopes between reel nodes.
//!
//! Subjects (`<prefix>` defaults to `reel`):
//! - `<prefix>.all`: [`Announcement`]s; every node subscribes and publishes here;
//! - `<prefix>.node.<node-id>`: [`Directed`] messages for one node.
//!
//! Payloads are JSON [`Envelope`]s. Publishing goes through one bounded queue and task, so
//! the signaling registry never waits for the network under its lock; a full queue drops
//! the message (counted in [`DROPPED`]) and the router treats the recipient as busy. Every
//! node announces a heartbeat each `heartbeat` interval; a node silent for `node_timeout`
//! is forgotten (its connections leave every mirror, its storage peers detach), and a
//! heartbeat from a node this one does not know yet asks it to re-announce its state.
//! NATS itself reconnects after a lost connection (async-nats buffers meanwhile).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::cluster::{Announcement, ClusterLink, Directed, Envelope};
use super::registry::LocalBus;
use crate::limits::SignalingLimits;
use crate::members::Members;

/// Prometheus counter: cluster bus messages dropped because the publish queue was full.
pub const DROPPED: &str = "reel_cluster_bus_dropped_total";
/// Prometheus counter: cluster bus messages that could not be decoded.
pub const UNDECODABLE: &str = "reel_cluster_bus_undecodable_total";

/// Messages waiting to be published.
const PUBLISH_QUEUE: usize = 8192;
/// How long to wait for the NATS server at startup.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How this node takes part in the cluster bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusOptions {
    /// The NATS server(s), e.g. `nats://127.0.0.1:4222` (comma-separated for several).
    pub url: String,
    /// This node's id (unique in the cluster).
    pub node_id: String,
    /// First token of every subject, so several clusters can share one NATS.
    pub subject_prefix: String,
    /// How often this node announces it is alive.
    pub heartbeat: Duration,
    /// After how long without a heartbeat another node is forgotten.
    pub node_timeout: Duration,
    /// The base URL this node advertises to clients (other nodes send clients here).
    pub advertised_url: String,
}

/// Why the cluster bus could not start.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to the cluster bus {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("cannot subscribe to {subject} on the cluster bus: {detail}")]
    Subscribe { subject: String, detail: String },
}

/// [`ClusterLink`] over the publish queue.
#[derive(Debug)]
struct NatsLink {
    node: String,
    all_subject: String,
    node_prefix: String,
    tx: mpsc::Sender<(String, Bytes)>,
}

impl NatsLink {
    fn enqueue<T: Serialize>(&self, subject: String, body: T) -> bool {
        enqueue(&self.tx, &self.node, subject, body)
    }
}

/// Queues `body` from node `from` for `subject` on the publish queue `tx`, without waiting;
/// false (and counted in [`DROPPED`]) when the queue is full.
pub(super) fn enqueue<T: Serialize>(tx: &mpsc::Sender<(String, Bytes)>, from: &str, subject: String, body: T) -> bool {
    let envelope = Envelope { from: from.to_string(), body };
    let Ok(json) = serde_json::to_vec(&envelope) else { return false };
    match tx.try_send((subject, Bytes::from(json))) {
        Ok(()) => true,
        Err(_) => {
            metrics::counter!(DROPPED).increment(1);
            false
        }
    }
}

impl ClusterLink for NatsLink {
    fn node_id(&self) -> &str {
        &self.node
    }

    fn announce(&self, body: Announcement) {
        self.enqueue(self.all_subject.clone(), body);
    }

    fn send(&self, node: &str, body: Directed) -> bool {
        self.enqueue(format!("{}{node}", self.node_prefix), body)
    }
}

/// A running cluster bus: keep it for the life of the server, [`NatsBus::flush`] at shutdown.
#[derive(Debug, Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    /// The publish queue every message of this node goes through.
    tx: mpsc::Sender<(String, Bytes)>,
    subject_prefix: String,
    node_id: String,
}

impl NatsBus {
    /// Connect, subscribe and announce this node; returns the registry's bus (local
    /// sockets plus the mirror of the other nodes) and the handle.
    pub async fn start(
        options: &BusOptions,
        limits: SignalingLimits,
        members: Members,
    ) -> Result<(Arc<LocalBus>, Self), BusError> {
        let connect = async_nats::ConnectOptions::new()
            .name(format!("reel {}", options.node_id))
            .connection_timeout(CONNECT_TIMEOUT)
            .connect(options.url.as_str());
        let client = match tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(BusError::Connect { url: options.url.clone(), detail: e.to_string() }),
            Err(_) => {
                return Err(BusError::Connect { url: options.url.clone(), detail: "no answer within 10 s".into() });
            }
        };
        let all_subject = format!("{}.all", options.subject_prefix);
        let node_prefix = format!("{}.node.", options.subject_prefix);
        let own_subject = format!("{node_prefix}{}", options.node_id);
        let subscribe = |subject: String| {
            let client = client.clone();
            async move {
                client
                    .subscribe(subject.clone())
                    .await
                    .map_err(|e| BusError::Subscribe { subject, detail: e.to_string() })
            }
        };
        let announcements = subscribe(all_subject.clone()).await?;
        let directed = subscribe(own_subject).await?;

        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        let link = Arc::new(NatsLink { node: options.node_id.clone(), all_subject, node_prefix, tx: tx.clone() });
        let bus = Arc::new(LocalBus::clustered(limits, link.clone()));
        tokio::spawn(publish(client.clone(), rx));
        tokio::spawn(receive_directed(directed, bus.clone()));
        tokio::spawn(receive_announcements(announcements, bus.clone(), link.clone(), options.clone(), members));
        link.announce(Announcement::Hello { url: options.advertised_url.clone() });
        tracing::info!(url = %options.url, node = %options.node_id, "cluster bus connected");
        let handle =
            Self { client, tx, subject_prefix: options.subject_prefix.clone(), node_id: options.node_id.clone() };
        Ok((bus, handle))
    }

    /// Carries the media store's fragment index notices between the nodes
    /// ([`super::index_notices`]).
    pub async fn carry_index_notices(&self, store: reel_storage::Store) -> Result<(), BusError> {
        super::index_notices::start(&self.client, self.tx.clone(), &self.subject_prefix, &self.node_id, store).await
    }

    /// Whether the NATS connection is up right now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Send what is queued (e.g. this node's `Bye` at shutdown).
    pub async fn flush(&self) {
        // Let the publish task hand the last messages to the client first.
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Err(e) = self.client.flush().await {
            tracing::warn!(error = %e, "cluster bus flush failed");
        }
    }
}

async fn publish(client: async_nats::Client, mut rx: mpsc::Receiver<(String, Bytes)>) {
    while let Some((subject, payload)) = rx.recv().await {
        if let Err(e) = client.publish(subject, payload).await {
            tracing::warn!(error = %e, "cluster bus publish failed");
        }
    }
}

/// Decodes a message, or counts it in [`UNDECODABLE`] and logs why not.
pub(super) fn decode<T: DeserializeOwned>(payload: &[u8]) -> Option<Envelope<T>> {
    match serde_json::from_slice(payload) {
        Ok(envelope) => Some(envelope),
        Err(e) => {
            metrics::counter!(UNDECODABLE).increment(1);
            tracing::warn!(error = %e, "undecodable cluster bus message");
            None
        }
    }
}

async fn receive_directed(mut sub: async_nats::Subscriber, bus: Arc<LocalBus>) {
    while let Some(msg) = sub.next().await {
        if let Some(Envelope { from, body }) = decode::<Directed>(&msg.payload) {
            bus.receive(&from, body);
        }
    }
    tracing::warn!("cluster bus: directed subscription ended");
}

/// Applies other nodes' announcements, announces this node's heartbeat and forgets
/// nodes that went silent.
async fn receive_announcements(
    mut sub: async_nats::Subscriber,
    bus: Arc<LocalBus>,
    link: Arc<NatsLink>,
    options: BusOptions,
    members: Members,
) {
    let mut last_seen: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(options.heartbeat);
    loop {
        tokio::select! {
            msg = sub.next() => {
                let Some(msg) = msg else { break };
                let Some(Envelope { from, body }) = decode::<Announcement>(&msg.payload) else { continue };
                if from == options.node_id {
                    continue;
                }
                let known = last_seen.insert(from.clone(), Instant::now()).is_some();
                match &body {
                    Announcement::Hello { url } => {
                        members.upsert(&from, url);
                        // The newcomer learns this node's URL now, not at its next heartbeat
                        // (it may route a client here before then: GetDataEndpoint, viewers).
                        link.announce(Announcement::Heartbeat { url: options.advertised_url.clone() });
                        bus.announce_state();
                    }
                    Announcement::Bye => {
                        last_seen.remove(&from);
                        members.remove(&from);
                    }
                    Announcement::Heartbeat { url } => {
                        members.upsert(&from, url);
                        // A node we had forgotten (or never heard announce): ask for its state.
                        if !known {
                            link.send(&from, Directed::Resync);
                        }
                    }
                    _ => {}
                }
                bus.apply(&from, body);
            }
            _ = tick.tick() => {
                link.announce(Announcement::Heartbeat { url: options.advertised_url.clone() });
                let now = Instant::now();
                let silent: Vec<String> = last_seen
                    .iter()
                    .filter(|(_, seen)| now.duration_since(**seen) > options.node_timeout)
                    .map(|(node, _)| node.clone())
                    .collect();
                for node in silent {
                    tracing::warn!(node = %node, timeout_ms = options.node_timeout.as_millis() as u64, "cluster node went silent; forgetting its connections");
                    last_seen.remove(&node);
                    members.remove(&node);
                    bus.forget_node(&node);
                }
            }
        }
    }
    tracing::warn!("cluster bus: announcement subscription ended");
}
