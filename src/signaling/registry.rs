//! Who is connected to which channel, and the routing rules between them.
//!
//! [`SignalingBus`] is the seam for deployments: [`LocalBus`] routes within this process;
//! a multi-node deployment implements the same trait by keeping a `LocalBus` for its own
//! sockets and forwarding messages for parties connected elsewhere over a bus such as
//! NATS (subject per channel ARN), with channel ownership (which node holds the master)
//! published there. Handlers only ever see [`Registry`], a cheap clonable handle.
//!
//! Routing rules (docs/kvs-wire.md §3.3):
//! - a viewer's message goes to the master (its `recipientClientId` is ignored), carrying
//!   `senderClientId` = the viewer's ClientId;
//! - a master's message goes to the viewer named by `recipientClientId`; with no recipient
//!   (JS omits it, the C SDK sends `""`) it goes to the channel's **storage peer**, and is a
//!   routing error when none is attached; a viewer never reaches another viewer;
//! - a message for a party that is not connected is held for the channel's
//!   `MessageTtlSeconds` and delivered when it connects (see [`super::pending`]);
//! - a newer master replaces the older connection; a viewer reconnecting with the same
//!   ClientId replaces its older connection; at most `max_viewers_per_channel` viewers;
//!   connects are limited to `connect_tps_per_channel`.
//!
//! # The storage-peer seam
//! The media peer (WebRTC ingestion) joins a channel as an in-process participant:
//! [`Registry::attach_storage_peer`] returns a [`StoragePeerHandle`] whose
//! [`send_to_master`](Attachment::send_to_master) delivers to the master **without**
//! `senderClientId` (as the KVS storage session does, docs/kvs-wire.md §4.3) and whose
//! [`recv`](Attachment::recv) yields every master message that named no recipient.
//! One storage peer per channel: attaching again detaches the older handle (its `recv`
//! returns `None`); dropping the handle detaches it.
//!
//! The storage peer belongs to the **channel**, not to the master connection that was
//! there when it attached: signaling connections end for ordinary reasons (the idle
//! timeout, `GO_AWAY` before the connection cap, a network blip) while the media
//! connection they negotiated carries on. So the master's connection closing only reports
//! [`StoragePeerEvent::MasterDisconnected`], and a master connecting again (after a close,
//! or replacing the older connection: newest master wins) reports
//! [`StoragePeerEvent::MasterConnected`]; the handle stays attached either way. Its
//! `send_to_master` always goes to the channel's current master connection, and the
//! recipient-less messages of whichever master is connected come to it. Whether the
//! session goes on is the storage session's decision (see `crate::peer::session`); only a
//! newer attachment, [`SignalingBus::close_channel`] or [`SignalingBus::close_all`] detach it.
//!
//! # Storage viewers (JoinStorageSessionAsViewer)
//! [`Registry::attach_storage_viewer`] binds a connected VIEWER's ClientId to a viewer
//! session of the channel's storage session and returns a [`StorageViewerHandle`]. Its
//! [`send`](Attachment::send) delivers to that viewer's connection **without**
//! `senderClientId` (like the storage offer to the master), and while it is attached
//! **every** message of that viewer (its SDP_ANSWER, ICE_CANDIDATEs) goes to the handle
//! instead of the master: the viewer talks to the storage session, not peer to peer. The
//! viewer's connection closing is reported ([`StorageViewerEvent::Disconnected`]) and ends
//! the viewer session; attaching the same ClientId again detaches the older handle (its
//! `recv` returns `None`: replaced).
//!
//! Cluster mode: a viewer session runs on the node of the channel's storage session, while
//! the viewer's WebSocket may be on any node. Attaching a viewer connected to another node
//! tells that node ([`Directed::ViewerAttached`]); it then sends the viewer's messages to the
//! session ([`Directed::ToViewerSession`]), and the session's offer and candidates reach the
//! viewer as relayed messages. The node holding the viewer's WebSocket keeps one viewer session
//! per viewer: a newer one, wherever it runs, replaces the older one
//! ([`Directed::ViewerReplaced`]). A viewer that reconnects to another node takes its session
//! along. Each node announces how many storage viewer sessions it runs per channel, so every
//! node knows where they wait ([`SignalingBus::storage_viewers_at`]), and the master's
//! JoinStorageSession starts the session there ([`super::handoff`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::cluster::{Announcement, ClusterLink, Directed, Since, now_ms};
use super::handoff::{Answer, Ask, Asked, HandOffs};
use super::message::{ClientMessage, MessageKind, ServiceEvent, SignalingMessage};
use super::pending::{Held, Party, PendingQueue};
use crate::limits::SignalingLimits;
use crate::rate::TokenBucket;

/// Prometheus counter: messages delivered, per channel (KVS `MessagesTransferred.Count`).
pub const MESSAGES_TRANSFERRED: &str = "reel_signaling_messages_transferred_total";
/// Prometheus gauge: connected clients by role (`master` / `viewer`).
pub const CONNECTED_CLIENTS: &str = "reel_signaling_connected_clients";

/// What the registry needs to know about a channel when someone connects to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The channel ARN (the routing key).
    pub arn: String,
    /// `MessageTtlSeconds`: how long undelivered messages are held.
    pub message_ttl: Duration,
}

/// One registered WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Channel ARN.
    pub channel_arn: String,
    /// Master or viewer (with its ClientId).
    pub role: Party,
    /// Distinguishes this connection from an older/newer one with the same role.
    pub conn_id: u64,
}

/// What the registry asks a connection to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Send this event as a text frame.
    Event(ServiceEvent),
    /// Close the socket.
    Close(CloseReason),
}

/// Why the registry closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// A newer connection took this role (newer master, or same viewer ClientId).
    Replaced,
    /// The server is shutting down (after its GO_AWAY grace).
    Shutdown,
}

/// A newly registered connection: its identity and the queue of what to send it.
#[derive(Debug)]
pub struct Connection {
    /// Identity to pass back to [`SignalingBus::route`] and [`SignalingBus::disconnect`].
    pub endpoint: Endpoint,
    /// Events and close requests for this socket, held messages first.
    pub outbound: mpsc::Receiver<Outbound>,
}

/// Refusals of ConnectAsMaster / ConnectAsViewer (both `ClientLimitExceededException`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnectError {
    #[error("connect rate for this channel exceeded (limit {0} per second)")]
    RateExceeded(f64),
    #[error("the channel already has the maximum of {0} viewers connected")]
    TooManyViewers(usize),
}

/// Why a message could not be routed (answered with `STATUS_RESPONSE` when correlated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("recipientClientId is required: no storage session is attached to this channel")]
    NoRecipient,
    #[error("recipient {0} is not accepting messages right now")]
    RecipientBusy(String),
    #[error("this connection is no longer registered (replaced by a newer one)")]
    NotConnected,
}

impl RouteError {
    /// KVS error name for `STATUS_RESPONSE.errorType`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::NoRecipient => "InvalidArgumentException",
            Self::RecipientBusy(_) => "ClientLimitExceededException",
            Self::NotConnected => "InvalidClientException",
        }
    }
}

/// What the storage peer receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoragePeerEvent {
    /// A master message that named no recipient (answer or candidate for the storage session).
    Message(SignalingMessage),
    /// The master's signaling connection closed (the client closed it, it timed out, hit
    /// the connection cap, or failed). The storage peer stays attached: the master may
    /// reconnect ([`StoragePeerEvent::MasterConnected`]) and its media connection, if any,
    /// is not affected.
    MasterDisconnected,
    /// A master connected to the channel on a new signaling connection, after the previous
    /// one closed or replacing it (newest master wins; a replacement is reported as this
    /// event alone). Messages to the master now go over it, and its recipient-less
    /// messages come to this storage peer.
    MasterConnected,
}

/// Why the storage peer could not send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoragePeerError {
    #[error("no master is connected to the channel")]
    NoMaster,
    #[error("the master is not accepting messages right now")]
    MasterBusy,
    #[error("this storage peer was detached (a newer one attached, or the server is shutting down)")]
    Detached,
}

/// What a storage viewer session receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageViewerEvent {
    /// A message of the viewer (its answer or a candidate).
    Message(SignalingMessage),
    /// The viewer's signaling connection closed.
    Disconnected,
    /// A newer attachment for the same ClientId replaced this one (its queue ends next).
    Replaced,
}

/// Why a viewer cannot be attached to, or reached by, a storage viewer session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageViewerError {
    #[error("no viewer with this client id is connected to the channel")]
    NotConnected,
    #[error("the viewer is not accepting messages right now")]
    Busy,
    #[error("this viewer session was detached (replaced by a newer one, or shutdown)")]
    Detached,
}

/// Connected masters and viewers, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectedCounts {
    /// Channels with a master connected.
    pub masters: usize,
    /// Viewers connected, all channels.
    pub viewers: usize,
}

/// The signaling routing fabric; see the module docs.
pub trait SignalingBus: Send + Sync + fmt::Debug {
    /// Register a WebSocket connection (after auth and channel lookup), replacing an older
    /// one with the same role; held messages for it are queued first. A master's connection
    /// is reported to the channel's storage peer ([`StoragePeerEvent::MasterConnected`]).
    fn connect(&self, channel: &ChannelInfo, role: Party, now: Instant) -> Result<Connection, ConnectError>;
    /// Route one message from a registered connection.
    fn route(&self, from: &Endpoint, message: ClientMessage, now: Instant) -> Result<(), RouteError>;
    /// Forget a connection (no-op if a newer one already replaced it). The master's is
    /// reported to the channel's storage peer ([`StoragePeerEvent::MasterDisconnected`]),
    /// which stays attached.
    fn disconnect(&self, endpoint: &Endpoint);
    /// Attach the channel's storage peer; returns its attachment id and inbound queue.
    fn attach_storage_peer(&self, channel_arn: &str) -> (u64, mpsc::Receiver<StoragePeerEvent>);
    /// Send from the storage peer `attachment` to the master (no `senderClientId`).
    fn storage_peer_send(
        &self,
        channel_arn: &str,
        attachment: u64,
        message: SignalingMessage,
    ) -> Result<(), StoragePeerError>;
    /// Whether a master is connected to the channel.
    fn master_connected(&self, channel_arn: &str) -> bool;
    /// Attach a storage viewer session to the connected viewer `client_id` (see the module
    /// docs); returns its attachment id and inbound queue.
    fn attach_storage_viewer(
        &self,
        channel_arn: &str,
        client_id: &str,
    ) -> Result<(u64, mpsc::Receiver<StorageViewerEvent>), StorageViewerError>;
    /// Send from the storage viewer session `attachment` to its viewer (no `senderClientId`).
    fn storage_viewer_send(
        &self,
        channel_arn: &str,
        client_id: &str,
        attachment: u64,
        message: SignalingMessage,
    ) -> Result<(), StorageViewerError>;
    /// Detach the storage viewer session `attachment` (no-op if a newer one replaced it).
    fn detach_storage_viewer(&self, channel_arn: &str, client_id: &str, attachment: u64);
    /// Where the channel's storage peer runs, if one is attached anywhere in the cluster.
    fn storage_peer_at(&self, channel_arn: &str) -> Option<StoragePeerAt>;
    /// The node running the channel's storage peer when it is another node of the cluster.
    fn storage_peer_node(&self, channel_arn: &str) -> Option<String> {
        match self.storage_peer_at(channel_arn)? {
            StoragePeerAt::OtherNode(node) => Some(node),
            StoragePeerAt::ThisNode => None,
        }
    }
    /// Detach the storage peer `attachment` (no-op if a newer one replaced it).
    fn detach_storage_peer(&self, channel_arn: &str, attachment: u64);
    /// The node where most storage viewer sessions of the channel are attached, cluster-wide
    /// (ties: the node running its storage peer, then the lowest node id); `None` when
    /// there are none. Viewers waiting for a master are sent there, and a master's
    /// JoinStorageSession starts the session there (see [`super::handoff`]).
    fn storage_viewers_at(&self, channel_arn: &str) -> Option<StoragePeerAt>;
    /// Ask `node` to do `ask` for the channel (see [`super::handoff`]); returns the request
    /// id and the receiver of its answer, which fails when the request could not be sent or
    /// the node was forgotten first.
    fn ask(&self, node: &str, channel_arn: &str, ask: Ask) -> (u64, oneshot::Receiver<Answer>);
    /// Forget a request whose answer is no longer awaited.
    fn cancel_ask(&self, request: u64);
    /// The requests other nodes send this one (a later call replaces the earlier receiver;
    /// without one, requests are refused at once).
    fn serve_asks(&self) -> mpsc::Receiver<Asked>;
    /// SendAlexaOfferToMaster: deliver `offer` to the master as if from viewer
    /// `sender_client_id`; the receiver yields the master's SDP answer payload.
    fn alexa_offer(
        &self,
        channel: &ChannelInfo,
        sender_client_id: &str,
        offer: String,
        now: Instant,
    ) -> (u64, oneshot::Receiver<String>);
    /// Drop an Alexa waiter that timed out.
    fn cancel_alexa(&self, channel_arn: &str, sender_client_id: &str, waiter: u64);
    /// Send `event` to every connected client (GO_AWAY, RECONNECT_ICE_SERVER).
    fn broadcast(&self, event: ServiceEvent) -> usize;
    /// Close every connection and detach every storage peer (shutdown).
    fn close_all(&self);
    /// Close every connection of one channel and forget its state (DeleteSignalingChannel).
    fn close_channel(&self, channel_arn: &str);
    /// Connected clients.
    fn counts(&self) -> ConnectedCounts;
    /// Forget expired held messages and idle channels.
    fn sweep(&self, now: Instant);
}

/// Clonable handle to the signaling bus, as kept in `AppState`.
#[derive(Debug, Clone)]
pub struct Registry {
    bus: Arc<dyn SignalingBus>,
}

impl Registry {
    /// In-process routing with the given quotas.
    pub fn local(limits: SignalingLimits) -> Self {
        Self::new(Arc::new(LocalBus::new(limits)))
    }

    /// Wrap any bus implementation (e.g. a NATS-backed one).
    pub fn new(bus: Arc<dyn SignalingBus>) -> Self {
        Self { bus }
    }

    /// The underlying bus.
    pub fn bus(&self) -> &Arc<dyn SignalingBus> {
        &self.bus
    }

    /// Attach the storage peer of `channel_arn` (the media-peer seam; see module docs).
    /// Call it when JoinStorageSession starts a session; any older handle is detached.
    pub fn attach_storage_peer(&self, channel_arn: &str) -> StoragePeerHandle {
        let (attachment, events) = self.bus.attach_storage_peer(channel_arn);
        Attachment {
            registry: self.clone(),
            channel_arn: channel_arn.to_string(),
            seat: Seat::Peer,
            attachment,
            events,
        }
    }
}

impl Registry {
    /// Attach a storage viewer session to the viewer `client_id` of `channel_arn`, connected
    /// to this node or (cluster mode) another; an older attachment of that viewer is detached.
    pub fn attach_storage_viewer(
        &self,
        channel_arn: &str,
        client_id: &str,
    ) -> Result<StorageViewerHandle, StorageViewerError> {
        let (attachment, events) = self.bus.attach_storage_viewer(channel_arn, client_id)?;
        Ok(Attachment {
            registry: self.clone(),
            channel_arn: channel_arn.to_string(),
            seat: Seat::Viewer(client_id.to_string()),
            attachment,
            events,
        })
    }
}

/// Whose place in a channel an [`Attachment`] holds.
#[derive(Debug)]
enum Seat {
    /// The channel's storage peer (the media peer's side of the master).
    Peer,
    /// The storage session of the viewer with this ClientId.
    Viewer(String),
}

/// A storage session's place in one channel (see the module docs): its inbound events
/// (`E`), and what it may send. Dropping it detaches.
#[derive(Debug)]
pub struct Attachment<E> {
    registry: Registry,
    channel_arn: String,
    seat: Seat,
    attachment: u64,
    events: mpsc::Receiver<E>,
}

/// The storage peer's place in one channel: master messages in, offer/candidates out.
pub type StoragePeerHandle = Attachment<StoragePeerEvent>;

/// A storage viewer session's place in one channel: the viewer's messages in, offer and
/// candidates out.
pub type StorageViewerHandle = Attachment<StorageViewerEvent>;

impl<E> Attachment<E> {
    /// The channel.
    pub fn channel_arn(&self) -> &str {
        &self.channel_arn
    }

    /// The next inbound event; `None` once detached (replaced by a newer attachment, the
    /// channel deleted, or shutdown).
    pub async fn recv(&mut self) -> Option<E> {
        self.events.recv().await
    }

    /// Non-blocking [`recv`](Self::recv).
    pub fn try_recv(&mut self) -> Result<E, mpsc::error::TryRecvError> {
        self.events.try_recv()
    }
}

impl Attachment<StorageViewerEvent> {
    /// The viewer's ClientId.
    pub fn client_id(&self) -> &str {
        match &self.seat {
            Seat::Viewer(client_id) => client_id,
            Seat::Peer => "",
        }
    }

    /// Deliver `message` (the viewer offer, candidates) to the viewer, no `senderClientId`.
    pub fn send(&self, message: SignalingMessage) -> Result<(), StorageViewerError> {
        self.registry.bus.storage_viewer_send(&self.channel_arn, self.client_id(), self.attachment, message)
    }
}

impl Attachment<StoragePeerEvent> {
    /// Deliver `message` (normally the storage session's SDP_OFFER, then ICE_CANDIDATEs) to
    /// the channel's master — its current connection, whichever that is — with no
    /// `senderClientId`. Not held when no master is connected: the caller learns
    /// [`StoragePeerError::NoMaster`] at once.
    pub fn send_to_master(&self, message: SignalingMessage) -> Result<(), StoragePeerError> {
        self.registry.bus.storage_peer_send(&self.channel_arn, self.attachment, message)
    }

    /// Whether a master is connected right now.
    pub fn master_connected(&self) -> bool {
        self.registry.bus.master_connected(&self.channel_arn)
    }
}

impl<E> Drop for Attachment<E> {
    fn drop(&mut self) {
        match &self.seat {
            Seat::Peer => self.registry.bus.detach_storage_peer(&self.channel_arn, self.attachment),
            Seat::Viewer(client_id) => {
                self.registry.bus.detach_storage_viewer(&self.channel_arn, client_id, self.attachment)
            }
        }
    }
}

/// Capacity of the storage peer's inbound queue.
pub const STORAGE_PEER_QUEUE: usize = 256;

/// [`SignalingBus`] within one process; with a [`ClusterLink`] it also mirrors the parties
/// of other nodes (see [`super::cluster`]) and routes to them through the link.
#[derive(Debug)]
pub struct LocalBus {
    limits: SignalingLimits,
    channels: Mutex<HashMap<String, ChannelState>>,
    next_id: AtomicU64,
    link: Option<Arc<dyn ClusterLink>>,
    /// Storage session starts asked of other nodes, and where theirs go.
    handoffs: HandOffs,
}

/// Where a connected party's events go.
#[derive(Debug)]
enum Sink {
    /// A WebSocket connection of this process.
    Local(mpsc::Sender<Outbound>),
    /// A connection held by another node (through the cluster link).
    Remote(String),
}

#[derive(Debug)]
struct Client {
    conn_id: u64,
    sink: Sink,
    since: Since,
}

impl Client {
    fn is_local(&self) -> bool {
        matches!(self.sink, Sink::Local(_))
    }

    fn is_live(&self) -> bool {
        match &self.sink {
            Sink::Local(tx) => !tx.is_closed(),
            Sink::Remote(_) => true,
        }
    }

    fn close(&self, reason: CloseReason) {
        if let Sink::Local(tx) = &self.sink {
            // Full queue: dropping the sender still ends the session once it drains.
            let _ = tx.try_send(Outbound::Close(reason));
        }
    }
}

/// Where a channel's storage peer (its storage session's signaling attachment) runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoragePeerAt {
    /// On this node.
    ThisNode,
    /// On the named node of the cluster.
    OtherNode(String),
}

/// Where the channel's storage peer runs.
#[derive(Debug)]
enum StorageSink {
    Local(mpsc::Sender<StoragePeerEvent>),
    Remote(String),
}

#[derive(Debug)]
struct StorageSlot {
    attachment: u64,
    sink: StorageSink,
    since: Since,
}

impl StorageSlot {
    /// Tell a storage peer of this process about the master's connection; a remote one
    /// learns it from the announcement on its own node.
    fn notify(&self, event: StoragePeerEvent) {
        if let StorageSink::Local(tx) = &self.sink {
            let _ = tx.try_send(event);
        }
    }
}

/// A storage viewer session of this node bound to one viewer ClientId.
#[derive(Debug)]
struct ViewerSlot {
    attachment: u64,
    tx: mpsc::Sender<StorageViewerEvent>,
    /// The node holding the viewer's WebSocket when it is another one (told of this slot).
    viewer_node: Option<String>,
}

impl ViewerSlot {
    /// The slot ends: its session hears `why` (if it still listens), and the viewer's node
    /// (if `link` is given) stops routing to it.
    fn end(
        self,
        link: Option<&Arc<dyn ClusterLink>>,
        channel_arn: &str,
        client_id: &str,
        why: Option<StorageViewerEvent>,
    ) {
        if let Some(why) = why {
            let _ = self.tx.try_send(why);
        }
        if let (Some(node), Some(link)) = (self.viewer_node, link) {
            let body = Directed::ViewerDetached {
                channel: channel_arn.to_string(),
                client_id: client_id.to_string(),
                attachment: self.attachment,
            };
            link.send(&node, body);
        }
    }
}

/// The viewer session, on another node, of a viewer connected to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SessionElsewhere {
    node: String,
    attachment: u64,
}

#[derive(Debug)]
struct AlexaWaiter {
    id: u64,
    tx: oneshot::Sender<String>,
}

#[derive(Debug)]
struct ChannelState {
    message_ttl: Duration,
    connects: TokenBucket,
    master: Option<Client>,
    viewers: HashMap<String, Client>,
    storage_peer: Option<StorageSlot>,
    /// Storage viewer sessions of this node by viewer ClientId.
    storage_viewers: HashMap<String, ViewerSlot>,
    /// Viewers connected to this node whose storage viewer session runs on another node.
    sessions_elsewhere: HashMap<String, SessionElsewhere>,
    /// How many storage viewer sessions other nodes hold, by node id (none listed: 0).
    watching: HashMap<String, usize>,
    alexa: HashMap<String, AlexaWaiter>,
    pending: PendingQueue,
}

impl ChannelState {
    fn new(message_ttl: Duration, limits: &SignalingLimits, now: Instant) -> Self {
        Self {
            message_ttl,
            connects: TokenBucket::per_second(limits.connect_tps_per_channel, now),
            master: None,
            viewers: HashMap::new(),
            storage_peer: None,
            storage_viewers: HashMap::new(),
            sessions_elsewhere: HashMap::new(),
            watching: HashMap::new(),
            alexa: HashMap::new(),
            pending: PendingQueue::default(),
        }
    }

    fn is_idle(&mut self, now: Instant) -> bool {
        self.master.is_none()
            && self.viewers.is_empty()
            && self.storage_peer.is_none()
            && self.storage_viewers.is_empty()
            && self.sessions_elsewhere.is_empty()
            && self.watching.is_empty()
            && self.alexa.is_empty()
            && self.pending.is_empty()
            && self.connects.is_full(now)
    }

    fn client(&self, party: &Party) -> Option<&Client> {
        match party {
            Party::Master => self.master.as_ref(),
            Party::Viewer(id) => self.viewers.get(id),
        }
    }

    /// Put `client` in `role`'s place, returning the one it replaced.
    fn install(&mut self, role: &Party, client: Client) -> Option<Client> {
        match role {
            Party::Master => self.master.replace(client),
            Party::Viewer(id) => self.viewers.insert(id.clone(), client),
        }
    }

    /// Remove `role`'s client if `matches` accepts it.
    fn remove_if(&mut self, role: &Party, matches: impl Fn(&Client) -> bool) -> Option<Client> {
        match role {
            Party::Master if self.master.as_ref().is_some_and(&matches) => self.master.take(),
            Party::Master => None,
            Party::Viewer(id) => match self.viewers.get(id) {
                Some(c) if matches(c) => self.viewers.remove(id),
                _ => None,
            },
        }
    }
}

/// Outcome of trying to put an event on a party's queue.
enum Push {
    Sent,
    Gone,
    Full,
}

fn transferred(channel_arn: &str) {
    if crate::observe::metrics::channel_labels() {
        metrics::counter!(MESSAGES_TRANSFERRED, "channel" => channel_arn.to_string()).increment(1);
    } else {
        metrics::counter!(MESSAGES_TRANSFERRED).increment(1);
    }
}

/// Hands a signaling message (`event`) to a storage session of this process: the channel's
/// storage peer or a storage viewer session.
fn to_local_session<E>(arn: &str, tx: &mpsc::Sender<E>, event: E) -> Result<(), RouteError> {
    match tx.try_send(event) {
        Ok(()) => {
            transferred(arn);
            Ok(())
        }
        Err(mpsc::error::TrySendError::Full(_)) => Err(RouteError::RecipientBusy("storage session".into())),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(RouteError::NoRecipient),
    }
}

fn busy_name(to: &Party) -> String {
    match to {
        Party::Master => "master".into(),
        Party::Viewer(id) => id.clone(),
    }
}

impl LocalBus {
    /// An empty registry with these quotas, routing within this process only.
    pub fn new(limits: SignalingLimits) -> Self {
        Self {
            limits,
            channels: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            link: None,
            handoffs: HandOffs::default(),
        }
    }

    /// An empty registry that also reaches the other nodes of a cluster through `link`;
    /// the transport feeds what other nodes say to [`LocalBus::apply`] and
    /// [`LocalBus::receive`].
    pub fn clustered(limits: SignalingLimits, link: Arc<dyn ClusterLink>) -> Self {
        Self { link: Some(link), ..Self::new(limits) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ChannelState>> {
        // A panic while holding the lock cannot leave a channel half-updated in a way that
        // breaks routing invariants worse than dropping the state, so keep serving.
        self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn node(&self) -> &str {
        self.link.as_ref().map_or("local", |l| l.node_id())
    }

    fn since_now(&self) -> Since {
        Since { at_ms: now_ms(), node: self.node().to_string() }
    }

    fn announce(&self, body: Announcement) {
        if let Some(link) = &self.link {
            link.announce(body);
        }
    }

    /// Sends a signaling message (`body`: [`Directed::ToStorage`] or
    /// [`Directed::ToViewerSession`]) to the storage session running on `node`.
    fn to_remote_session(&self, arn: &str, node: &str, body: Directed) -> Result<(), RouteError> {
        match &self.link {
            Some(link) if link.send(node, body) => {
                transferred(arn);
                Ok(())
            }
            _ => Err(RouteError::RecipientBusy("storage session".into())),
        }
    }

    /// Tell the other nodes how many storage viewer sessions of `ch` this node holds.
    fn announce_watching(&self, channel_arn: &str, ch: &ChannelState) {
        self.announce(Announcement::ViewersWatching {
            channel: channel_arn.to_string(),
            count: ch.storage_viewers.len(),
        });
    }

    /// Relay `msg` (from `sender`; `None` = master or storage peer) to `client`.
    fn push(
        &self,
        arn: &str,
        to: &Party,
        client: Option<&Client>,
        sender: Option<String>,
        msg: &SignalingMessage,
        hops: u8,
    ) -> Push {
        match client.map(|c| &c.sink) {
            None => Push::Gone,
            Some(Sink::Local(tx)) => match tx.try_send(Outbound::Event(ServiceEvent::relay(sender, msg))) {
                Ok(()) => Push::Sent,
                Err(mpsc::error::TrySendError::Full(_)) => Push::Full,
                Err(mpsc::error::TrySendError::Closed(_)) => Push::Gone,
            },
            // Forwarded at most once: a mirror that disagrees with ours holds it instead.
            Some(Sink::Remote(_)) if hops > 0 => Push::Gone,
            Some(Sink::Remote(node)) => {
                let relay = Directed::Relay {
                    channel: arn.to_string(),
                    to: to.clone(),
                    sender,
                    message: msg.clone(),
                    hops: hops + 1,
                };
                match &self.link {
                    Some(link) if link.send(node, relay) => Push::Sent,
                    Some(_) => Push::Full,
                    None => Push::Gone,
                }
            }
        }
    }

    /// Deliver to `to` now, or hold it; `sender` is the viewer id (None = master).
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &self,
        arn: &str,
        ch: &mut ChannelState,
        to: Party,
        sender: Option<String>,
        msg: SignalingMessage,
        hops: u8,
        now: Instant,
    ) -> Result<(), RouteError> {
        match self.push(arn, &to, ch.client(&to), sender.clone(), &msg, hops) {
            Push::Sent => {
                transferred(arn);
                Ok(())
            }
            Push::Full => Err(RouteError::RecipientBusy(busy_name(&to))),
            Push::Gone => {
                let held = Held { sender, message: msg, expires: now + ch.message_ttl };
                ch.pending.push(to, held, self.limits.max_pending_messages_per_recipient, now);
                Ok(())
            }
        }
    }

    /// `role` is now `client` (a local connect or a remote announcement): the replaced
    /// local connection is closed, the channel's storage peer hears of a master, and the
    /// messages held for `role` go to it.
    fn take_role(&self, arn: &str, ch: &mut ChannelState, role: &Party, client: Client, now: Instant) {
        if let Party::Viewer(id) = role {
            self.follow_viewer(arn, ch, id, &client);
        }
        if let Some(old) = ch.install(role, client) {
            old.close(CloseReason::Replaced);
        }
        if let (Party::Master, Some(sp)) = (role, &ch.storage_peer) {
            // The storage session belongs to the channel: it carries on with this connection.
            sp.notify(StoragePeerEvent::MasterConnected);
        }
        for held in ch.pending.take(role, now) {
            if matches!(self.push(arn, role, ch.client(role), held.sender, &held.message, 0), Push::Sent) {
                transferred(arn);
            }
        }
    }

    /// Viewer `id` is now connected as `client`: its storage viewer session here follows it
    /// (the node now holding its WebSocket is told), and a session elsewhere that this node
    /// routed to is no longer this node's business once the viewer is on another node.
    fn follow_viewer(&self, arn: &str, ch: &mut ChannelState, id: &str, client: &Client) {
        let node = match &client.sink {
            Sink::Remote(node) => Some(node.clone()),
            Sink::Local(_) => None,
        };
        if node.is_some() {
            ch.sessions_elsewhere.remove(id);
        }
        let Some(slot) = ch.storage_viewers.get_mut(id) else { return };
        if slot.viewer_node == node {
            return;
        }
        slot.viewer_node = node;
        if let (Some(node), Some(link)) = (&slot.viewer_node, &self.link) {
            let body = Directed::ViewerAttached {
                channel: arn.to_string(),
                client_id: id.to_string(),
                attachment: slot.attachment,
            };
            link.send(node, body);
        }
    }

    /// `role`'s connection left: the channel's storage peer hears of the master's departure,
    /// a storage viewer session of a viewer of its viewer's.
    fn drop_role(ch: &mut ChannelState, role: &Party) {
        match (role, &ch.storage_peer) {
            (Party::Master, Some(sp)) => sp.notify(StoragePeerEvent::MasterDisconnected),
            (Party::Master, None) => {}
            (Party::Viewer(id), _) => {
                if let Some(slot) = ch.storage_viewers.get(id) {
                    let _ = slot.tx.try_send(StorageViewerEvent::Disconnected);
                }
                ch.sessions_elsewhere.remove(id);
            }
        }
    }

    /// Viewer `client_id`, connected to this node, is now served by `session`, which
    /// replaces the viewer session that served it before, here or on another node.
    fn replace_viewer_session(
        &self,
        arn: &str,
        ch: &mut ChannelState,
        client_id: &str,
        session: Option<SessionElsewhere>,
    ) {
        if let Some(old) = ch.sessions_elsewhere.remove(client_id)
            && Some(&old) != session.as_ref()
            && let Some(link) = &self.link
        {
            let body = Directed::ViewerReplaced {
                channel: arn.to_string(),
                client_id: client_id.to_string(),
                attachment: old.attachment,
            };
            link.send(&old.node, body);
        }
        if let Some(session) = session {
            if let Some(old) = ch.storage_viewers.remove(client_id) {
                old.end(self.link.as_ref(), arn, client_id, Some(StorageViewerEvent::Replaced));
                self.announce_watching(arn, ch);
            }
            ch.sessions_elsewhere.insert(client_id.to_string(), session);
        }
    }

    fn publish_counts(map: &HashMap<String, ChannelState>) {
        let masters = map.values().filter(|c| c.master.as_ref().is_some_and(Client::is_local)).count();
        let viewers: usize = map.values().map(|c| c.viewers.values().filter(|v| v.is_local()).count()).sum();
        metrics::gauge!(CONNECTED_CLIENTS, "role" => "master").set(masters as f64);
        metrics::gauge!(CONNECTED_CLIENTS, "role" => "viewer").set(viewers as f64);
    }

    /// Apply what another node announced (see [`super::cluster`]); `from` is its node id.
    pub fn apply(&self, from: &str, body: Announcement) {
        if matches!(body, Announcement::Heartbeat { .. }) {
            // Liveness only (the transport tracks it): no routing state changes.
            return;
        }
        let now = Instant::now();
        let mut map = self.lock();
        match body {
            Announcement::Connected { channel, message_ttl_ms, role, conn_id, since } => {
                let ttl = Duration::from_millis(message_ttl_ms);
                let ch = map.entry(channel.clone()).or_insert_with(|| ChannelState::new(ttl, &self.limits, now));
                // Newest wins cluster-wide: an older announcement does not displace a newer holder.
                if ch.client(&role).is_some_and(|c| c.since >= since) {
                    return;
                }
                let client = Client { conn_id, sink: Sink::Remote(from.to_string()), since };
                self.take_role(&channel, ch, &role, client, now);
            }
            Announcement::Disconnected { channel, role, conn_id } => {
                let Some(ch) = map.get_mut(&channel) else { return };
                let remote_conn = |c: &Client| c.conn_id == conn_id && matches!(&c.sink, Sink::Remote(n) if n == from);
                if ch.remove_if(&role, remote_conn).is_some() {
                    Self::drop_role(ch, &role);
                }
            }
            Announcement::StorageAttached { channel, attachment, since } => {
                let ch =
                    map.entry(channel).or_insert_with(|| ChannelState::new(Duration::from_secs(60), &self.limits, now));
                if ch.storage_peer.as_ref().is_some_and(|s| s.since >= since) {
                    return;
                }
                // Replacing a local slot drops its sender: that storage session's recv ends.
                ch.storage_peer = Some(StorageSlot { attachment, sink: StorageSink::Remote(from.to_string()), since });
            }
            Announcement::StorageDetached { channel, attachment } => {
                if let Some(ch) = map.get_mut(&channel)
                    && ch.storage_peer.as_ref().is_some_and(|s| {
                        s.attachment == attachment && matches!(&s.sink, StorageSink::Remote(n) if n == from)
                    })
                {
                    ch.storage_peer = None;
                }
            }
            Announcement::ViewersWatching { channel, count } => {
                if count == 0 {
                    if let Some(ch) = map.get_mut(&channel) {
                        ch.watching.remove(from);
                    }
                } else {
                    let ttl = Duration::from_secs(60);
                    let ch = map.entry(channel).or_insert_with(|| ChannelState::new(ttl, &self.limits, now));
                    ch.watching.insert(from.to_string(), count);
                }
            }
            Announcement::ChannelClosed { channel } => Self::close_channel_locked(&mut map, &channel),
            // A node that (re)started holds nothing yet: what an earlier run of it held is
            // gone, even if it came back before the node timeout forgot it.
            Announcement::Bye | Announcement::Hello { .. } => {
                self.forget_node_locked(&mut map, from);
            }
            Announcement::Heartbeat { .. } => return,
        }
        Self::publish_counts(&map);
    }

    /// Handle what another node sent to this one.
    pub fn receive(&self, from: &str, body: Directed) {
        match body {
            Directed::Relay { channel, to, sender, message, hops } => {
                let now = Instant::now();
                let mut map = self.lock();
                let ch = map
                    .entry(channel.clone())
                    .or_insert_with(|| ChannelState::new(Duration::from_secs(60), &self.limits, now));
                if let Err(e) = self.deliver(&channel, ch, to, sender, message, hops, now) {
                    tracing::debug!(channel = %channel, from, error = %e, "relayed signaling message not delivered");
                }
            }
            Directed::ToStorage { channel, attachment, message } => {
                let map = self.lock();
                let slot = map.get(&channel).and_then(|ch| ch.storage_peer.as_ref());
                match slot {
                    Some(StorageSlot { attachment: a, sink: StorageSink::Local(tx), .. }) if *a == attachment => {
                        let _ = to_local_session(&channel, tx, StoragePeerEvent::Message(message));
                    }
                    _ => tracing::debug!(channel = %channel, from, "message for a storage peer that is gone"),
                }
            }
            Directed::Request { channel, request, ask } => {
                if let Some(link) = &self.link {
                    self.handoffs.asked(link.clone(), from, channel, request, ask);
                }
            }
            Directed::Answer { request, refusal } => self.handoffs.answered(from, request, refusal),
            Directed::ViewerAttached { channel, client_id, attachment } => {
                let mut map = self.lock();
                let Some(ch) = map.get_mut(&channel) else { return };
                if ch.viewers.get(&client_id).is_some_and(Client::is_local) {
                    let session = SessionElsewhere { node: from.to_string(), attachment };
                    self.replace_viewer_session(&channel, ch, &client_id, Some(session));
                } else if let Some(link) = &self.link {
                    // The viewer left this node meanwhile: the session serves nobody here.
                    link.send(from, Directed::ViewerReplaced { channel, client_id, attachment });
                }
            }
            Directed::ViewerDetached { channel, client_id, attachment } => {
                let mut map = self.lock();
                if let Some(ch) = map.get_mut(&channel)
                    && ch
                        .sessions_elsewhere
                        .get(&client_id)
                        .is_some_and(|s| s.node == from && s.attachment == attachment)
                {
                    ch.sessions_elsewhere.remove(&client_id);
                }
            }
            Directed::ViewerReplaced { channel, client_id, attachment } => {
                let mut map = self.lock();
                let Some(ch) = map.get_mut(&channel) else { return };
                let ours = |s: &ViewerSlot| s.attachment == attachment && s.viewer_node.as_deref() == Some(from);
                if ch.storage_viewers.get(&client_id).is_some_and(ours)
                    && let Some(slot) = ch.storage_viewers.remove(&client_id)
                {
                    // The viewer's node already dropped it: no ViewerDetached back.
                    slot.end(None, &channel, &client_id, Some(StorageViewerEvent::Replaced));
                    self.announce_watching(&channel, ch);
                }
            }
            Directed::ToViewerSession { channel, client_id, attachment, message } => {
                let map = self.lock();
                let slot = map.get(&channel).and_then(|ch| ch.storage_viewers.get(&client_id));
                match slot {
                    Some(slot) if slot.attachment == attachment => {
                        let _ = to_local_session(&channel, &slot.tx, StorageViewerEvent::Message(message));
                    }
                    _ => tracing::debug!(channel = %channel, from, "message for a viewer session that is gone"),
                }
            }
            Directed::Resync => self.announce_state(),
        }
    }

    /// Forget every party and storage peer of `node` (it said goodbye or stopped sending
    /// heartbeats), as if each had disconnected.
    pub fn forget_node(&self, node: &str) {
        let mut map = self.lock();
        self.forget_node_locked(&mut map, node);
        Self::publish_counts(&map);
    }

    /// [`LocalBus::forget_node`] under the channels lock; hand-off requests to `node` fail too.
    fn forget_node_locked(&self, map: &mut HashMap<String, ChannelState>, node: &str) {
        self.handoffs.forget_node(node);
        let on_node = |c: &Client| matches!(&c.sink, Sink::Remote(n) if n == node);
        for ch in map.values_mut() {
            if ch.remove_if(&Party::Master, on_node).is_some() {
                Self::drop_role(ch, &Party::Master);
            }
            let gone: Vec<String> = ch.viewers.iter().filter(|(_, v)| on_node(v)).map(|(id, _)| id.clone()).collect();
            for id in gone {
                ch.viewers.remove(&id);
                Self::drop_role(ch, &Party::Viewer(id));
            }
            ch.sessions_elsewhere.retain(|_, s| s.node != node);
            if ch.storage_peer.as_ref().is_some_and(|s| matches!(&s.sink, StorageSink::Remote(n) if n == node)) {
                ch.storage_peer = None;
            }
            ch.watching.remove(node);
        }
    }

    /// Announce every party and storage peer of this node (to a node that joined or
    /// forgot this one).
    pub fn announce_state(&self) {
        let Some(link) = &self.link else { return };
        let map = self.lock();
        for (arn, ch) in map.iter() {
            let ttl_ms = u64::try_from(ch.message_ttl.as_millis()).unwrap_or(u64::MAX);
            let parties = ch
                .master
                .iter()
                .map(|c| (Party::Master, c))
                .chain(ch.viewers.iter().map(|(id, c)| (Party::Viewer(id.clone()), c)));
            for (role, c) in parties.filter(|(_, c)| c.is_local()) {
                link.announce(Announcement::Connected {
                    channel: arn.clone(),
                    message_ttl_ms: ttl_ms,
                    role,
                    conn_id: c.conn_id,
                    since: c.since.clone(),
                });
            }
            if let Some(sp) = ch.storage_peer.as_ref().filter(|s| matches!(s.sink, StorageSink::Local(_))) {
                link.announce(Announcement::StorageAttached {
                    channel: arn.clone(),
                    attachment: sp.attachment,
                    since: sp.since.clone(),
                });
            }
            if !ch.storage_viewers.is_empty() {
                self.announce_watching(arn, ch);
            }
        }
    }

    fn close_channel_locked(map: &mut HashMap<String, ChannelState>, channel_arn: &str) {
        if let Some(mut ch) = map.remove(channel_arn) {
            for client in ch.master.take().into_iter().chain(ch.viewers.drain().map(|(_, c)| c)) {
                client.close(CloseReason::Shutdown);
            }
        }
    }
}

impl SignalingBus for LocalBus {
    fn connect(&self, channel: &ChannelInfo, role: Party, now: Instant) -> Result<Connection, ConnectError> {
        let mut map = self.lock();
        let ch =
            map.entry(channel.arn.clone()).or_insert_with(|| ChannelState::new(channel.message_ttl, &self.limits, now));
        ch.message_ttl = channel.message_ttl;
        // Remote viewers count too: the limit is per channel, cluster-wide.
        if let Party::Viewer(id) = &role
            && !ch.viewers.contains_key(id)
            && ch.viewers.len() >= self.limits.max_viewers_per_channel
        {
            return Err(ConnectError::TooManyViewers(self.limits.max_viewers_per_channel));
        }
        if !ch.connects.try_take(1.0, now) {
            return Err(ConnectError::RateExceeded(self.limits.connect_tps_per_channel));
        }
        let conn_id = self.id();
        let (tx, outbound) = mpsc::channel(self.limits.outbound_queue_per_connection.max(1));
        // Newest wins: a connect here is newer than whatever it replaces, even if that
        // holder's node clock runs ahead of ours.
        let mut since = self.since_now();
        if let Some(old) = ch.client(&role) {
            since.at_ms = since.at_ms.max(old.since.at_ms.saturating_add(1));
        }
        self.take_role(&channel.arn, ch, &role, Client { conn_id, sink: Sink::Local(tx), since: since.clone() }, now);
        self.announce(Announcement::Connected {
            channel: channel.arn.clone(),
            message_ttl_ms: u64::try_from(channel.message_ttl.as_millis()).unwrap_or(u64::MAX),
            role: role.clone(),
            conn_id,
            since,
        });
        Self::publish_counts(&map);
        Ok(Connection { endpoint: Endpoint { channel_arn: channel.arn.clone(), role, conn_id }, outbound })
    }

    fn route(&self, from: &Endpoint, message: ClientMessage, now: Instant) -> Result<(), RouteError> {
        let mut map = self.lock();
        let Some(ch) = map.get_mut(&from.channel_arn) else { return Err(RouteError::NotConnected) };
        if ch.client(&from.role).filter(|c| c.is_local()).map(|c| c.conn_id) != Some(from.conn_id) {
            return Err(RouteError::NotConnected);
        }
        let arn = from.channel_arn.as_str();
        match &from.role {
            // A viewer of a storage viewer session talks to that session only.
            Party::Viewer(id) if ch.storage_viewers.contains_key(id) => {
                let Some(slot) = ch.storage_viewers.get(id) else { return Err(RouteError::NoRecipient) };
                to_local_session(arn, &slot.tx, StorageViewerEvent::Message(message.message))
            }
            // ... wherever that session runs.
            Party::Viewer(id) if ch.sessions_elsewhere.contains_key(id) => {
                let Some(session) = ch.sessions_elsewhere.get(id) else { return Err(RouteError::NoRecipient) };
                let body = Directed::ToViewerSession {
                    channel: arn.to_string(),
                    client_id: id.clone(),
                    attachment: session.attachment,
                    message: message.message,
                };
                self.to_remote_session(arn, &session.node, body)
            }
            // A viewer always talks to the master; its recipientClientId is ignored.
            Party::Viewer(id) => self.deliver(arn, ch, Party::Master, Some(id.clone()), message.message, 0, now),
            Party::Master => match message.recipient {
                None => match &ch.storage_peer {
                    None => Err(RouteError::NoRecipient),
                    Some(StorageSlot { sink: StorageSink::Local(tx), .. }) => {
                        to_local_session(arn, tx, StoragePeerEvent::Message(message.message))
                    }
                    Some(StorageSlot { sink: StorageSink::Remote(node), attachment, .. }) => {
                        let body = Directed::ToStorage {
                            channel: arn.to_string(),
                            attachment: *attachment,
                            message: message.message,
                        };
                        self.to_remote_session(arn, node, body)
                    }
                },
                Some(to) => {
                    if !ch.viewers.contains_key(&to)
                        && let Some(waiter) = ch.alexa.remove(&to)
                    {
                        // An Alexa offer waits for exactly one answer; candidates are
                        // not part of that exchange.
                        if message.message.kind == MessageKind::SdpAnswer {
                            let _ = waiter.tx.send(message.message.payload);
                            transferred(arn);
                        } else {
                            ch.alexa.insert(to, waiter);
                        }
                        return Ok(());
                    }
                    self.deliver(arn, ch, Party::Viewer(to), None, message.message, 0, now)
                }
            },
        }
    }

    fn disconnect(&self, endpoint: &Endpoint) {
        let mut map = self.lock();
        let Some(ch) = map.get_mut(&endpoint.channel_arn) else { return };
        let this_conn = |c: &Client| c.is_local() && c.conn_id == endpoint.conn_id;
        if ch.remove_if(&endpoint.role, this_conn).is_none() {
            return;
        }
        Self::drop_role(ch, &endpoint.role);
        self.announce(Announcement::Disconnected {
            channel: endpoint.channel_arn.clone(),
            role: endpoint.role.clone(),
            conn_id: endpoint.conn_id,
        });
        Self::publish_counts(&map);
    }

    fn attach_storage_peer(&self, channel_arn: &str) -> (u64, mpsc::Receiver<StoragePeerEvent>) {
        let now = Instant::now();
        let attachment = self.id();
        let (tx, rx) = mpsc::channel(STORAGE_PEER_QUEUE);
        let since = self.since_now();
        let mut map = self.lock();
        let ch = map
            .entry(channel_arn.to_string())
            .or_insert_with(|| ChannelState::new(Duration::from_secs(60), &self.limits, now));
        // Replacing the slot drops the older sender: the older handle's recv ends.
        ch.storage_peer = Some(StorageSlot { attachment, sink: StorageSink::Local(tx), since: since.clone() });
        self.announce(Announcement::StorageAttached { channel: channel_arn.to_string(), attachment, since });
        (attachment, rx)
    }

    fn storage_peer_send(
        &self,
        channel_arn: &str,
        attachment: u64,
        message: SignalingMessage,
    ) -> Result<(), StoragePeerError> {
        let map = self.lock();
        let Some(ch) = map.get(channel_arn) else { return Err(StoragePeerError::Detached) };
        let ours = ch
            .storage_peer
            .as_ref()
            .is_some_and(|s| s.attachment == attachment && matches!(s.sink, StorageSink::Local(_)));
        if !ours {
            return Err(StoragePeerError::Detached);
        }
        match self.push(channel_arn, &Party::Master, ch.master.as_ref(), None, &message, 0) {
            Push::Sent => {
                transferred(channel_arn);
                Ok(())
            }
            Push::Full => Err(StoragePeerError::MasterBusy),
            Push::Gone => Err(StoragePeerError::NoMaster),
        }
    }

    fn master_connected(&self, channel_arn: &str) -> bool {
        self.lock().get(channel_arn).is_some_and(|c| c.master.as_ref().is_some_and(Client::is_live))
    }

    fn attach_storage_viewer(
        &self,
        channel_arn: &str,
        client_id: &str,
    ) -> Result<(u64, mpsc::Receiver<StorageViewerEvent>), StorageViewerError> {
        let mut map = self.lock();
        let Some(ch) = map.get_mut(channel_arn) else { return Err(StorageViewerError::NotConnected) };
        let viewer_node = match ch.viewers.get(client_id) {
            Some(Client { sink: Sink::Remote(node), .. }) => Some(node.clone()),
            Some(c) if c.is_live() => None,
            _ => return Err(StorageViewerError::NotConnected),
        };
        let attachment = self.id();
        if let Some(node) = &viewer_node {
            let body = Directed::ViewerAttached {
                channel: channel_arn.to_string(),
                client_id: client_id.to_string(),
                attachment,
            };
            if !self.link.as_ref().is_some_and(|link| link.send(node, body)) {
                return Err(StorageViewerError::Busy);
            }
        } else {
            self.replace_viewer_session(channel_arn, ch, client_id, None);
        }
        let (tx, rx) = mpsc::channel(STORAGE_PEER_QUEUE);
        // Replacing the slot drops the older sender: the older handle hears why, then its
        // recv ends.
        let slot = ViewerSlot { attachment, tx, viewer_node: viewer_node.clone() };
        if let Some(old) = ch.storage_viewers.insert(client_id.to_string(), slot) {
            // The viewer's node (if it moved) stops routing to the older session; the one
            // it is on now was just told of the new one.
            let link = self.link.as_ref().filter(|_| old.viewer_node != viewer_node);
            old.end(link, channel_arn, client_id, Some(StorageViewerEvent::Replaced));
        }
        self.announce_watching(channel_arn, ch);
        Ok((attachment, rx))
    }

    fn storage_viewer_send(
        &self,
        channel_arn: &str,
        client_id: &str,
        attachment: u64,
        message: SignalingMessage,
    ) -> Result<(), StorageViewerError> {
        let map = self.lock();
        let Some(ch) = map.get(channel_arn) else { return Err(StorageViewerError::Detached) };
        if ch.storage_viewers.get(client_id).is_none_or(|s| s.attachment != attachment) {
            return Err(StorageViewerError::Detached);
        }
        let to = Party::Viewer(client_id.to_string());
        match self.push(channel_arn, &to, ch.client(&to), None, &message, 0) {
            Push::Sent => {
                transferred(channel_arn);
                Ok(())
            }
            Push::Full => Err(StorageViewerError::Busy),
            Push::Gone => Err(StorageViewerError::NotConnected),
        }
    }

    fn detach_storage_viewer(&self, channel_arn: &str, client_id: &str, attachment: u64) {
        let mut map = self.lock();
        if let Some(ch) = map.get_mut(channel_arn)
            && ch.storage_viewers.get(client_id).is_some_and(|s| s.attachment == attachment)
            && let Some(slot) = ch.storage_viewers.remove(client_id)
        {
            slot.end(self.link.as_ref(), channel_arn, client_id, None);
            self.announce_watching(channel_arn, ch);
        }
    }

    fn storage_peer_at(&self, channel_arn: &str) -> Option<StoragePeerAt> {
        let map = self.lock();
        Some(match &map.get(channel_arn)?.storage_peer.as_ref()?.sink {
            StorageSink::Remote(node) => StoragePeerAt::OtherNode(node.clone()),
            StorageSink::Local(_) => StoragePeerAt::ThisNode,
        })
    }

    fn storage_viewers_at(&self, channel_arn: &str) -> Option<StoragePeerAt> {
        let map = self.lock();
        let ch = map.get(channel_arn)?;
        let peer_node = ch.storage_peer.as_ref().map(|s| match &s.sink {
            StorageSink::Local(_) => self.node(),
            StorageSink::Remote(node) => node.as_str(),
        });
        let here = (!ch.storage_viewers.is_empty()).then_some((self.node(), ch.storage_viewers.len()));
        let there = ch.watching.iter().map(|(node, n)| (node.as_str(), *n));
        // Most viewers; then the storage peer's node; then the lowest id (every node agrees).
        let (node, _) = here.into_iter().chain(there).filter(|(_, n)| *n > 0).max_by(|(a, n), (b, m)| {
            n.cmp(m).then((Some(*a) == peer_node).cmp(&(Some(*b) == peer_node))).then(b.cmp(a))
        })?;
        Some(if node == self.node() { StoragePeerAt::ThisNode } else { StoragePeerAt::OtherNode(node.to_string()) })
    }

    fn ask(&self, node: &str, channel_arn: &str, ask: Ask) -> (u64, oneshot::Receiver<Answer>) {
        match &self.link {
            Some(link) => self.handoffs.request(link.as_ref(), node, channel_arn, ask),
            // No other node to ask: the receiver fails at once.
            None => (0, oneshot::channel().1),
        }
    }

    fn cancel_ask(&self, request: u64) {
        self.handoffs.cancel(request);
    }

    fn serve_asks(&self) -> mpsc::Receiver<Asked> {
        self.handoffs.serve()
    }

    fn detach_storage_peer(&self, channel_arn: &str, attachment: u64) {
        let mut map = self.lock();
        if let Some(ch) = map.get_mut(channel_arn)
            && ch
                .storage_peer
                .as_ref()
                .is_some_and(|s| s.attachment == attachment && matches!(s.sink, StorageSink::Local(_)))
        {
            ch.storage_peer = None;
            self.announce(Announcement::StorageDetached { channel: channel_arn.to_string(), attachment });
        }
    }

    fn alexa_offer(
        &self,
        channel: &ChannelInfo,
        sender_client_id: &str,
        offer: String,
        now: Instant,
    ) -> (u64, oneshot::Receiver<String>) {
        let id = self.id();
        let (tx, rx) = oneshot::channel();
        let mut map = self.lock();
        let ch =
            map.entry(channel.arn.clone()).or_insert_with(|| ChannelState::new(channel.message_ttl, &self.limits, now));
        ch.message_ttl = channel.message_ttl;
        // A newer offer from the same sender supersedes the older wait (its receiver errors).
        ch.alexa.insert(sender_client_id.to_string(), AlexaWaiter { id, tx });
        let msg = SignalingMessage { kind: MessageKind::SdpOffer, payload: offer };
        if self.deliver(&channel.arn, ch, Party::Master, Some(sender_client_id.to_string()), msg, 0, now).is_err() {
            ch.alexa.remove(sender_client_id);
        }
        (id, rx)
    }

    fn cancel_alexa(&self, channel_arn: &str, sender_client_id: &str, waiter: u64) {
        let mut map = self.lock();
        if let Some(ch) = map.get_mut(channel_arn)
            && ch.alexa.get(sender_client_id).is_some_and(|w| w.id == waiter)
        {
            ch.alexa.remove(sender_client_id);
        }
    }

    fn broadcast(&self, event: ServiceEvent) -> usize {
        let map = self.lock();
        let mut sent = 0;
        for ch in map.values() {
            for client in ch.master.iter().chain(ch.viewers.values()) {
                if let Sink::Local(tx) = &client.sink
                    && tx.try_send(Outbound::Event(event.clone())).is_ok()
                {
                    sent += 1;
                }
            }
        }
        sent
    }

    fn close_all(&self) {
        let mut map = self.lock();
        for ch in map.values_mut() {
            for client in ch.master.take().into_iter().chain(ch.viewers.drain().map(|(_, c)| c)) {
                client.close(CloseReason::Shutdown);
            }
            ch.storage_peer = None;
            ch.storage_viewers.clear();
            ch.sessions_elsewhere.clear();
            ch.alexa.clear();
        }
        self.announce(Announcement::Bye);
        Self::publish_counts(&map);
    }

    fn close_channel(&self, channel_arn: &str) {
        let mut map = self.lock();
        Self::close_channel_locked(&mut map, channel_arn);
        self.announce(Announcement::ChannelClosed { channel: channel_arn.to_string() });
        Self::publish_counts(&map);
    }

    fn counts(&self) -> ConnectedCounts {
        let map = self.lock();
        ConnectedCounts {
            masters: map.values().filter(|c| c.master.as_ref().is_some_and(Client::is_local)).count(),
            viewers: map.values().map(|c| c.viewers.values().filter(|v| v.is_local()).count()).sum(),
        }
    }

    fn sweep(&self, now: Instant) {
        let mut map = self.lock();
        map.retain(|_, ch| {
            ch.pending.sweep(now);
            ch.alexa.retain(|_, w| !w.tx.is_closed());
            !ch.is_idle(now)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::message::EventType;

    const ARN: &str = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/c/1";

    fn channel() -> ChannelInfo {
        ChannelInfo { arn: ARN.into(), message_ttl: Duration::from_secs(60) }
    }

    fn limits() -> SignalingLimits {
        SignalingLimits { connect_tps_per_channel: 1000.0, ..SignalingLimits::default() }
    }

    fn msg(kind: MessageKind, payload: &str, recipient: Option<&str>) -> ClientMessage {
        ClientMessage {
            message: SignalingMessage { kind, payload: payload.into() },
            recipient: recipient.map(str::to_string),
            correlation_id: None,
        }
    }

    fn viewer(id: &str) -> Party {
        Party::Viewer(id.into())
    }

    fn next_event(c: &mut Connection) -> ServiceEvent {
        match c.outbound.try_recv() {
            Ok(Outbound::Event(e)) => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn viewer_to_master_carries_sender_and_ignores_recipient() {
        let bus = LocalBus::new(limits());
        let t = Instant::now();
        let mut master = bus.connect(&channel(), Party::Master, t).expect("master");
        let mut v1 = bus.connect(&channel(), viewer("v1"), t).expect("v1");
        let mut v2 = bus.connect(&channel(), viewer("v2"), t).expect("v2");
        bus.route(&v1.endpoint, msg(MessageKind::SdpOffer, "b2Zm", Some("v2")), t).expect("routed");
        let e = next_event(&mut master);
        assert_eq!(
            (e.sender_client_id.as_deref(), e.message_type, e.message_payload.as_deref()),
            (Some("v1"), EventType::SdpOffer, Some("b2Zm"))
        );
        assert!(v2.outbound.try_recv().is_err(), "viewers never reach each other");
        bus.route(&master.endpoint, msg(MessageKind::SdpAnswer, "YW5z", Some("v1")), t).expect("routed");
        let e = next_event(&mut v1);
        assert_eq!((e.sender_client_id, e.message_type), (None, EventType::SdpAnswer));
        assert!(v2.outbound.try_recv().is_err());
        assert_eq!(bus.counts(), ConnectedCounts { masters: 1, viewers: 2 });
    }

    #[test]
    fn storage_viewer_seam() {
        let registry = Registry::local(limits());
        let bus = registry.bus().clone();
        let t = Instant::now();
        let mut master = bus.connect(&channel(), Party::Master, t).expect("master");
        assert_eq!(registry.attach_storage_viewer(ARN, "v1").err(), Some(StorageViewerError::NotConnected));
        let mut v1 = bus.connect(&channel(), viewer("v1"), t).expect("v1");
        let mut v2 = bus.connect(&channel(), viewer("v2"), t).expect("v2");
        let mut sv = registry.attach_storage_viewer(ARN, "v1").expect("attached");
        // The storage session's offer reaches v1 without a sender, like the master's.
        sv.send(SignalingMessage { kind: MessageKind::SdpOffer, payload: "b2Zm".into() }).expect("sent");
        let e = next_event(&mut v1);
        assert_eq!((e.sender_client_id, e.message_type), (None, EventType::SdpOffer));
        // v1's answer goes to the storage viewer session, not to the master.
        bus.route(&v1.endpoint, msg(MessageKind::SdpAnswer, "YQ==", None), t).expect("routed");
        assert!(matches!(sv.try_recv(), Ok(StorageViewerEvent::Message(m)) if m.kind == MessageKind::SdpAnswer));
        assert!(master.outbound.try_recv().is_err());
        // Other viewers still talk to the master.
        bus.route(&v2.endpoint, msg(MessageKind::SdpOffer, "b2Zm", None), t).expect("routed");
        assert_eq!(next_event(&mut master).sender_client_id.as_deref(), Some("v2"));
        assert!(v2.outbound.try_recv().is_err());
        // A newer attachment for v1 replaces this one.
        let mut sv2 = registry.attach_storage_viewer(ARN, "v1").expect("attached again");
        assert_eq!(sv.try_recv(), Ok(StorageViewerEvent::Replaced));
        assert!(matches!(sv.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
        assert_eq!(
            sv.send(SignalingMessage { kind: MessageKind::IceCandidate, payload: "Yw==".into() }),
            Err(StorageViewerError::Detached)
        );
        drop(sv);
        // v1's connection closing is reported to the live attachment.
        bus.disconnect(&v1.endpoint);
        assert_eq!(sv2.try_recv(), Ok(StorageViewerEvent::Disconnected));
        drop(sv2);
        // Detached: v1's next connection talks to the master again.
        let v1 = bus.connect(&channel(), viewer("v1"), t).expect("v1 again");
        bus.route(&v1.endpoint, msg(MessageKind::SdpOffer, "b2Zm", None), t).expect("routed");
        assert_eq!(next_event(&mut master).sender_client_id.as_deref(), Some("v1"));
        assert_eq!(bus.storage_peer_node(ARN), None);
    }

    #[test]
    fn master_without_recipient_needs_a_storage_peer() {
        let bus = LocalBus::new(limits());
        let t = Instant::now();
        let master = bus.connect(&channel(), Party::Master, t).expect("master");
        assert_eq!(
            bus.route(&master.endpoint, msg(MessageKind::SdpAnswer, "YQ==", None), t),
            Err(RouteError::NoRecipient)
        );
    }

    #[test]
    fn held_until_ttl_then_delivered_on_connect() {
        let bus = LocalBus::new(limits());
        let t = Instant::now();
        let v1 = bus.connect(&channel(), viewer("v1"), t).expect("v1");
        bus.route(&v1.endpoint, msg(MessageKind::SdpOffer, "b2Zm", None), t).expect("held");
        bus.route(&v1.endpoint, msg(MessageKind::IceCandidate, "Yw==", None), t).expect("held");
        let mut master = bus.connect(&channel(), Party::Master, t + Duration::from_secs(59)).expect("master");
        assert_eq!(next_event(&mut master).message_type, EventType::SdpOffer);
        assert_eq!(next_event(&mut master).message_type, EventType::IceCandidate);
        // To a viewer that connects too late: dropped.
        bus.route(&master.endpoint, msg(MessageKind::SdpAnswer, "YQ==", Some("late")), t + Duration::from_secs(59))
            .expect("held");
        let mut late = bus.connect(&channel(), viewer("late"), t + Duration::from_secs(120)).expect("late");
        assert!(late.outbound.try_recv().is_err());
    }

    #[test]
    fn newer_master_replaces_older_and_old_connection_cannot_send() {
        let bus = LocalBus::new(limits());
        let t = Instant::now();
        let mut m1 = bus.connect(&channel(), Party::Master, t).expect("m1");
        let mut m2 = bus.connect(&channel(), Party::Master, t).expect("m2");
        assert_eq!(m1.outbound.try_recv(), Ok(Outbound::Close(CloseReason::Replaced)));
        let v = bus.connect(&channel(), viewer("v"), t).expect("v");
        bus.route(&v.endpoint, msg(MessageKind::SdpOffer, "bw==", None), t).expect("routed");
        assert_eq!(next_event(&mut m2).message_type, EventType::SdpOffer);
        assert_eq!(
            bus.route(&m1.endpoint, msg(MessageKind::SdpAnswer, "YQ==", Some("v")), t),
            Err(RouteError::NotConnected)
        );
        bus.disconnect(&m1.endpoint); // stale: must not remove m2
        assert!(bus.master_connected(ARN));
        bus.disconnect(&m2.endpoint);
        assert!(!bus.master_connected(ARN));
    }

    #[test]
    fn viewer_limit_and_same_id_replacement() {
        let bus = LocalBus::new(SignalingLimits { max_viewers_per_channel: 2, ..limits() });
        let t = Instant::now();
        let _a = bus.connect(&channel(), viewer("a"), t).expect("a");
        let mut b = bus.connect(&channel(), viewer("b"), t).expect("b");
        assert_eq!(bus.connect(&channel(), viewer("c"), t).err(), Some(ConnectError::TooManyViewers(2)));
        let _b2 = bus.connect(&channel(), viewer("b"), t).expect("same id replaces");
        assert_eq!(b.outbound.try_recv(), Ok(Outbound::Close(CloseReason::Replaced)));
        assert_eq!(bus.counts().viewers, 2);
        let _m = bus.connect(&channel(), Party::Master, t).expect("the master is not a viewer");
    }

    #[test]
    fn connect_rate_per_channel() {
        let bus = LocalBus::new(SignalingLimits::default());
        let t = Instant::now();
        let mut conns = Vec::new();
        for i in 0..3 {
            conns.push(bus.connect(&channel(), viewer(&format!("v{i}")), t).expect("within 3 TPS"));
        }
        assert_eq!(bus.connect(&channel(), viewer("v3"), t).err(), Some(ConnectError::RateExceeded(3.0)));
        let other = ChannelInfo { arn: format!("{ARN}0"), ..channel() };
        assert!(bus.connect(&other, Party::Master, t).is_ok(), "quota is per channel");
        assert!(bus.connect(&channel(), viewer("v3"), t + Duration::from_millis(400)).is_ok());
    }

    #[test]
    fn storage_peer_seam() {
        let registry = Registry::local(limits());
        let bus = registry.bus().clone();
        let t = Instant::now();
        let mut sp = registry.attach_storage_peer(ARN);
        assert_eq!(sp.channel_arn(), ARN);
        let offer = SignalingMessage::from_payload_bytes(MessageKind::SdpOffer, br#"{"type":"offer","sdp":"v=0"}"#);
        assert_eq!(sp.send_to_master(offer.clone()), Err(StoragePeerError::NoMaster));
        assert!(!sp.master_connected());

        let mut master = bus.connect(&channel(), Party::Master, t).expect("master");
        assert_eq!(sp.try_recv(), Ok(StoragePeerEvent::MasterConnected));
        let _v = bus.connect(&channel(), viewer("v"), t).expect("viewer");
        assert!(sp.master_connected());
        sp.send_to_master(offer.clone()).expect("sent");
        let e = next_event(&mut master);
        assert_eq!(
            (e.sender_client_id, e.message_type, e.message_payload),
            (None, EventType::SdpOffer, Some(offer.payload.clone()))
        );

        // Recipient-less master messages reach the storage peer; addressed ones do not.
        bus.route(&master.endpoint, msg(MessageKind::SdpAnswer, "YQ==", None), t).expect("to storage");
        bus.route(&master.endpoint, msg(MessageKind::IceCandidate, "Yw==", Some("v")), t).expect("to viewer");
        assert_eq!(
            sp.try_recv(),
            Ok(StoragePeerEvent::Message(SignalingMessage { kind: MessageKind::SdpAnswer, payload: "YQ==".into() }))
        );
        assert!(sp.try_recv().is_err());

        // The master leaving is reported.
        bus.disconnect(&master.endpoint);
        assert_eq!(sp.try_recv(), Ok(StoragePeerEvent::MasterDisconnected));

        // A newer attachment detaches the older one.
        let mut sp2 = registry.attach_storage_peer(ARN);
        assert_eq!(sp.try_recv(), Err(mpsc::error::TryRecvError::Disconnected));
        assert_eq!(sp.send_to_master(offer.clone()), Err(StoragePeerError::Detached));
        drop(sp); // dropping the stale handle must not detach the new one
        let master = bus.connect(&channel(), Party::Master, t).expect("master again");
        assert_eq!(sp2.try_recv(), Ok(StoragePeerEvent::MasterConnected));
        bus.route(&master.endpoint, msg(MessageKind::IceCandidate, "Yw==", None), t).expect("to storage 2");
        assert!(matches!(sp2.try_recv(), Ok(StoragePeerEvent::Message(_))));

        // Dropping the handle detaches: recipient-less messages are routing errors again.
        drop(sp2);
        assert_eq!(
            bus.route(&master.endpoint, msg(MessageKind::IceCandidate, "Yw==", None), t),
            Err(RouteError::NoRecipient)
        );
    }

    #[test]
    fn storage_peer_outlives_master_connections() {
        let registry = Registry::local(limits());
        let bus = registry.bus().clone();
        let t = Instant::now();
        let mut m1 = bus.connect(&channel(), Party::Master, t).expect("m1");
        let mut sp = registry.attach_storage_peer(ARN);
        let offer = SignalingMessage::from_payload_bytes(MessageKind::SdpOffer, br#"{"type":"offer","sdp":"v=0"}"#);
        sp.send_to_master(offer.clone()).expect("offer to m1");
        assert_eq!(next_event(&mut m1).message_type, EventType::SdpOffer);

        // The master's connection closes: reported, but the storage peer stays attached.
        bus.disconnect(&m1.endpoint);
        assert_eq!(sp.try_recv(), Ok(StoragePeerEvent::MasterDisconnected));
        assert_eq!(sp.try_recv(), Err(mpsc::error::TryRecvError::Empty), "still attached");
        let cand = SignalingMessage::from_payload_bytes(MessageKind::IceCandidate, br#"{"candidate":""}"#);
        assert_eq!(sp.send_to_master(cand.clone()), Err(StoragePeerError::NoMaster), "not detached");

        // It reconnects: reported; both directions use the new connection.
        let mut m2 = bus.connect(&channel(), Party::Master, t).expect("m2");
        assert_eq!(sp.try_recv(), Ok(StoragePeerEvent::MasterConnected));
        sp.send_to_master(cand.clone()).expect("to m2");
        assert_eq!(next_event(&mut m2).message_type, EventType::IceCandidate);
        bus.route(&m2.endpoint, msg(MessageKind::IceCandidate, "Yw==", None), t).expect("m2 to storage");
        assert_eq!(
            sp.try_recv(),
            Ok(StoragePeerEvent::Message(SignalingMessage { kind: MessageKind::IceCandidate, payload: "Yw==".into() }))
        );

        // A newer master replaces m2 (newest wins): one MasterConnected, no disconnect.
        let mut m3 = bus.connect(&channel(), Party::Master, t).expect("m3");
        assert_eq!(m2.outbound.try_recv(), Ok(Outbound::Close(CloseReason::Replaced)));
        assert_eq!(sp.try_recv(), Ok(StoragePeerEvent::MasterConnected));
        bus.disconnect(&m2.endpoint); // the replaced socket's late close is stale
        assert_eq!(sp.try_recv(), Err(mpsc::error::TryRecvError::Empty));
        assert_eq!(
            bus.route(&m2.endpoint, msg(MessageKind::SdpAnswer, "YQ==", None), t),
            Err(RouteError::NotConnected),
            "the replaced connection no longer reaches the storage peer"
        );
        sp.send_to_master(cand).expect("to m3");
        assert_eq!(next_event(&mut m3).message_type, EventType::IceCandidate);
        bus.route(&m3.endpoint, msg(MessageKind::SdpAnswer, "YQ==", None), t).expect("m3 to storage");
        assert!(matches!(sp.try_recv(), Ok(StoragePeerEvent::Message(m)) if m.kind == MessageKind::SdpAnswer));

        // Viewers coming and going are not the storage peer's business.
        let v = bus.connect(&channel(), viewer("v"), t).expect("viewer");
        bus.disconnect(&v.endpoint);
        assert_eq!(sp.try_recv(), Err(mpsc::error::TryRecvError::Empty));

        // Only a newer attachment ends it.
        let _sp2 = registry.attach_storage_peer(ARN);
        assert_eq!(sp.try_recv(), Err(mpsc::error::TryRecvError::Disconnected));
    }

    #[test]
    fn deleting_the_channel_detaches_its_storage_peer() {
        let registry = Registry::local(limits());
        let bus = registry.bus().clone();
        let _m = bus.connect(&channel(), Party::Master, Instant::now()).expect("master");
        let mut sp = registry.attach_storage_peer(ARN);
        bus.close_channel(ARN);
        assert_eq!(sp.try_recv(), Err(mpsc::error::TryRecvError::Disconnected));
    }

    #[tokio::test]
    async fn storage_peer_recv_is_async_and_ends_on_shutdown() {
        let registry = Registry::local(limits());
        let bus = registry.bus().clone();
        let t = Instant::now();
        let mut sp = registry.attach_storage_peer(ARN);
        let master = bus.connect(&channel(), Party::Master, t).expect("master");
        assert_eq!(sp.recv().await, Some(StoragePeerEvent::MasterConnected));
        bus.route(&master.endpoint, msg(MessageKind::SdpAnswer, "YQ==", None), t).expect("to storage");
        assert!(matches!(sp.recv().await, Some(StoragePeerEvent::Message(_))));
        bus.close_all();
        assert_eq!(sp.recv().await, None);
    }

    #[test]
    fn alexa_offer_gets_the_masters_answer() {
        let bus = LocalBus::new(limits());
        let t = Instant::now();
        let (_id, mut answer) = bus.alexa_offer(&channel(), "alexa-1", "b2Zm".into(), t);
        let mut master = bus.connect(&channel(), Party::Master, t).expect("master");
        let e = next_event(&mut master);
        assert_eq!((e.sender_client_id.as_deref(), e.message_type), (Some("alexa-1"), EventType::SdpOffer));
        bus.route(&master.endpoint, msg(MessageKind::IceCandidate, "Yw==", Some("alexa-1")), t).expect("ignored");
        assert!(answer.try_recv().is_err());
        bus.route(&master.endpoint, msg(MessageKind::SdpAnswer, "YW5z", Some("alexa-1")), t).expect("answered");
        assert_eq!(answer.try_recv(), Ok("YW5z".to_string()));
        let (id, _rx) = bus.alexa_offer(&channel(), "alexa-2", "b2Zm".into(), t);
        bus.cancel_alexa(ARN, "alexa-2", id);
        bus.route(&master.endpoint, msg(MessageKind::SdpAnswer, "YW5z", Some("alexa-2")), t)
            .expect("held for a viewer now");
    }

    #[test]
    fn broadcast_close_all_and_sweep() {
        let bus = LocalBus::new(limits());
        let t = Instant::now();
        let mut m = bus.connect(&channel(), Party::Master, t).expect("m");
        let mut v = bus.connect(&channel(), viewer("v"), t).expect("v");
        assert_eq!(bus.broadcast(ServiceEvent::go_away()), 2);
        assert_eq!(next_event(&mut m).message_type, EventType::GoAway);
        assert_eq!(next_event(&mut v).message_type, EventType::GoAway);
        bus.close_all();
        assert_eq!(m.outbound.try_recv(), Ok(Outbound::Close(CloseReason::Shutdown)));
        assert_eq!(v.outbound.try_recv(), Ok(Outbound::Close(CloseReason::Shutdown)));
        assert_eq!(bus.counts(), ConnectedCounts::default());
        bus.sweep(t + Duration::from_secs(1));
        assert!(bus.lock().is_empty(), "idle channels are forgotten");
    }

    #[test]
    fn close_channel_closes_only_that_channel() {
        let bus = LocalBus::new(limits());
        let t = Instant::now();
        let mut m = bus.connect(&channel(), Party::Master, t).expect("m");
        let other = ChannelInfo { arn: format!("{ARN}0"), ..channel() };
        let mut o = bus.connect(&other, Party::Master, t).expect("o");
        bus.close_channel(ARN);
        assert_eq!(m.outbound.try_recv(), Ok(Outbound::Close(CloseReason::Shutdown)));
        assert!(o.outbound.try_recv().is_err());
        assert_eq!(bus.counts().masters, 1);
    }

    #[test]
    fn full_outbound_queue_is_a_busy_recipient() {
        let bus = LocalBus::new(SignalingLimits { outbound_queue_per_connection: 1, ..limits() });
        let t = Instant::now();
        let _m = bus.connect(&channel(), Party::Master, t).expect("m");
        let v = bus.connect(&channel(), viewer("v"), t).expect("v");
        bus.route(&v.endpoint, msg(MessageKind::IceCandidate, "Yw==", None), t).expect("first fits");
        assert_eq!(
            bus.route(&v.endpoint, msg(MessageKind::IceCandidate, "Yw==", None), t),
            Err(RouteError::RecipientBusy("master".into()))
        );
    }
}
