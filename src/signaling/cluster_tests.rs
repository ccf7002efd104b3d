//! Several [`LocalBus`]es joined by an in-memory [`ClusterLink`]: the routing rules hold
//! across nodes (the NATS transport only carries these same envelopes).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cluster::{Announcement, ClusterLink, Directed};
use super::handoff::{Ask, Refusal};
use super::message::{ClientMessage, EventType, MessageKind, ServiceEvent, SignalingMessage};
use super::pending::Party;
use super::registry::{
    ChannelInfo, CloseReason, ConnectError, Connection, LocalBus, Outbound, SignalingBus, StoragePeerAt,
    StoragePeerEvent, StorageViewerEvent,
};
use crate::limits::SignalingLimits;

const ARN: &str = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/c/1";

enum Msg {
    All(Announcement),
    To(String, Directed),
}

/// Messages in flight between the nodes, delivered by [`Cluster::pump`].
#[derive(Default)]
struct Wire {
    queue: Mutex<VecDeque<(String, Msg)>>,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wire")
    }
}

#[derive(Debug)]
struct TestLink {
    node: String,
    wire: Arc<Wire>,
}

impl ClusterLink for TestLink {
    fn node_id(&self) -> &str {
        &self.node
    }
    fn announce(&self, body: Announcement) {
        self.wire.queue.lock().expect("wire").push_back((self.node.clone(), Msg::All(body)));
    }
    fn send(&self, node: &str, body: Directed) -> bool {
        self.wire.queue.lock().expect("wire").push_back((self.node.clone(), Msg::To(node.to_string(), body)));
        true
    }
}

struct Cluster {
    wire: Arc<Wire>,
    nodes: Vec<(String, Arc<LocalBus>)>,
}

impl Cluster {
    fn new(n: usize, limits: SignalingLimits) -> Self {
        let wire = Arc::new(Wire::default());
        let nodes = (0..n)
            .map(|i| {
                let node = format!("n{i}");
                let link = Arc::new(TestLink { node: node.clone(), wire: wire.clone() });
                (node, Arc::new(LocalBus::clustered(limits.clone(), link)))
            })
            .collect();
        Self { wire, nodes }
    }

    fn bus(&self, i: usize) -> &LocalBus {
        &self.nodes[i].1
    }

    /// Deliver everything in flight (and what that causes) to the other nodes.
    fn pump(&self) {
        loop {
            let next = self.wire.queue.lock().expect("wire").pop_front();
            let Some((from, msg)) = next else { return };
            match msg {
                Msg::All(body) => {
                    for (node, bus) in &self.nodes {
                        if *node != from {
                            bus.apply(&from, body.clone());
                        }
                    }
                }
                Msg::To(to, body) => {
                    if let Some((_, bus)) = self.nodes.iter().find(|(n, _)| *n == to) {
                        bus.receive(&from, body);
                    }
                }
            }
        }
    }

    /// Drop what is in flight (a partition or a dead node).
    fn lose_in_flight(&self) {
        self.wire.queue.lock().expect("wire").clear();
    }
}

fn limits() -> SignalingLimits {
    SignalingLimits { connect_tps_per_channel: 1000.0, ..SignalingLimits::default() }
}

fn channel() -> ChannelInfo {
    ChannelInfo { arn: ARN.into(), message_ttl: Duration::from_secs(60) }
}

fn viewer(id: &str) -> Party {
    Party::Viewer(id.into())
}

fn msg(kind: MessageKind, payload: &str, recipient: Option<&str>) -> ClientMessage {
    ClientMessage {
        message: SignalingMessage { kind, payload: payload.into() },
        recipient: recipient.map(str::to_string),
        correlation_id: None,
    }
}

fn next_event(c: &mut Connection) -> ServiceEvent {
    match c.outbound.try_recv() {
        Ok(Outbound::Event(e)) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[test]
fn master_and_viewer_on_different_nodes_exchange_offer_answer_and_candidates() {
    let c = Cluster::new(3, limits());
    let t = Instant::now();
    let mut master = c.bus(0).connect(&channel(), Party::Master, t).expect("master");
    c.pump();
    let mut v = c.bus(2).connect(&channel(), viewer("v1"), t).expect("viewer");
    c.pump();
    c.bus(2).route(&v.endpoint, msg(MessageKind::SdpOffer, "b2Zm", None), t).expect("offer");
    c.pump();
    let e = next_event(&mut master);
    assert_eq!((e.message_type, e.sender_client_id.as_deref()), (EventType::SdpOffer, Some("v1")));
    c.bus(0).route(&master.endpoint, msg(MessageKind::SdpAnswer, "YW5z", Some("v1")), t).expect("answer");
    c.bus(0).route(&master.endpoint, msg(MessageKind::IceCandidate, "Y2Fu", Some("v1")), t).expect("candidate");
    c.pump();
    let e = next_event(&mut v);
    assert_eq!(
        (e.message_type, e.sender_client_id, e.message_payload.as_deref()),
        (EventType::SdpAnswer, None, Some("YW5z"))
    );
    assert_eq!(next_event(&mut v).message_type, EventType::IceCandidate);
    // Only the owning node counts the connection as its own.
    assert_eq!((c.bus(0).counts().masters, c.bus(0).counts().viewers), (1, 0));
    assert_eq!((c.bus(2).counts().masters, c.bus(2).counts().viewers), (0, 1));
    assert!(c.bus(1).master_connected(ARN), "every node knows the channel has a master");
}

#[test]
fn newest_master_wins_cluster_wide() {
    let c = Cluster::new(2, limits());
    let t = Instant::now();
    let mut old = c.bus(0).connect(&channel(), Party::Master, t).expect("master on n0");
    c.pump();
    std::thread::sleep(Duration::from_millis(2));
    let mut new = c.bus(1).connect(&channel(), Party::Master, t).expect("master on n1");
    c.pump();
    assert_eq!(old.outbound.try_recv(), Ok(Outbound::Close(CloseReason::Replaced)));
    assert!(new.outbound.try_recv().is_err(), "the newer master stays");
    // The replaced connection can no longer send; its late disconnect changes nothing.
    assert!(c.bus(0).route(&old.endpoint, msg(MessageKind::SdpAnswer, "eA==", Some("v")), t).is_err());
    c.bus(0).disconnect(&old.endpoint);
    c.pump();
    assert!(c.bus(0).master_connected(ARN) && c.bus(1).master_connected(ARN));
    // A viewer on n0 reaches the master on n1.
    let v = c.bus(0).connect(&channel(), viewer("v"), t).expect("viewer");
    c.pump();
    c.bus(0).route(&v.endpoint, msg(MessageKind::SdpOffer, "b2Zm", None), t).expect("offer");
    c.pump();
    assert_eq!(next_event(&mut new).sender_client_id.as_deref(), Some("v"));
}

#[test]
fn held_messages_reach_a_party_that_connects_on_another_node() {
    let c = Cluster::new(2, limits());
    let t = Instant::now();
    let v = c.bus(1).connect(&channel(), viewer("v"), t).expect("viewer");
    c.pump();
    c.bus(1).route(&v.endpoint, msg(MessageKind::SdpOffer, "b2Zm", None), t).expect("held");
    c.pump();
    let mut master = c.bus(0).connect(&channel(), Party::Master, t).expect("master");
    c.pump();
    let e = next_event(&mut master);
    assert_eq!((e.message_type, e.sender_client_id.as_deref()), (EventType::SdpOffer, Some("v")));
}

#[test]
fn viewer_limit_counts_every_node() {
    let c = Cluster::new(2, SignalingLimits { max_viewers_per_channel: 2, ..limits() });
    let t = Instant::now();
    let _a = c.bus(0).connect(&channel(), viewer("a"), t).expect("a");
    c.pump();
    let _b = c.bus(1).connect(&channel(), viewer("b"), t).expect("b");
    c.pump();
    assert!(matches!(c.bus(0).connect(&channel(), viewer("c"), t), Err(ConnectError::TooManyViewers(2))));
    assert!(matches!(c.bus(1).connect(&channel(), viewer("c"), t), Err(ConnectError::TooManyViewers(2))));
    // The same viewer id reconnecting elsewhere replaces itself, within the limit.
    let _a2 = c.bus(1).connect(&channel(), viewer("a"), t).expect("a again on n1");
}

#[test]
fn storage_peer_on_another_node_reaches_the_master_and_hears_it_come_and_go() {
    let c = Cluster::new(3, limits());
    let t = Instant::now();
    let mut master = c.bus(0).connect(&channel(), Party::Master, t).expect("master");
    c.pump();
    let (attachment, mut peer) = c.bus(1).attach_storage_peer(ARN);
    c.pump();
    assert!(c.bus(1).master_connected(ARN));
    // Storage peer → master (no senderClientId), master → storage peer (no recipient).
    let offer = SignalingMessage { kind: MessageKind::SdpOffer, payload: "b2Zm".into() };
    c.bus(1).storage_peer_send(ARN, attachment, offer).expect("to master");
    c.pump();
    let e = next_event(&mut master);
    assert_eq!((e.message_type, e.sender_client_id), (EventType::SdpOffer, None));
    c.bus(0).route(&master.endpoint, msg(MessageKind::SdpAnswer, "YW5z", None), t).expect("to storage");
    c.pump();
    assert!(matches!(peer.try_recv(), Ok(StoragePeerEvent::Message(m)) if m.payload == "YW5z"));
    // The master leaves and comes back on another node: one event each, no duplicates.
    c.bus(0).disconnect(&master.endpoint);
    c.pump();
    assert_eq!(peer.try_recv(), Ok(StoragePeerEvent::MasterDisconnected));
    assert!(peer.try_recv().is_err());
    let _again = c.bus(2).connect(&channel(), Party::Master, t).expect("master on n2");
    c.pump();
    assert_eq!(peer.try_recv(), Ok(StoragePeerEvent::MasterConnected));
    assert!(peer.try_recv().is_err());
    // A newer storage peer elsewhere replaces this one: its queue ends.
    let (_newer, _peer2) = c.bus(2).attach_storage_peer(ARN);
    c.pump();
    assert!(matches!(peer.try_recv(), Err(tokio::sync::mpsc::error::TryRecvError::Disconnected)));
}

/// The bus says where the storage peer runs, on every node.
#[test]
fn every_node_knows_where_the_storage_peer_runs() {
    let c = Cluster::new(2, limits());
    let (_attachment, _peer) = c.bus(1).attach_storage_peer(ARN);
    c.pump();
    assert_eq!(c.bus(0).storage_peer_node(ARN), Some("n1".to_string()));
    assert_eq!(c.bus(1).storage_peer_node(ARN), None, "local");
    assert_eq!(c.bus(0).storage_peer_at(ARN), Some(StoragePeerAt::OtherNode("n1".to_string())));
    assert_eq!(c.bus(1).storage_peer_at(ARN), Some(StoragePeerAt::ThisNode));
}

fn viewer_event(e: Result<StorageViewerEvent, tokio::sync::mpsc::error::TryRecvError>) -> StorageViewerEvent {
    e.expect("a viewer session event")
}

/// A viewer session runs on the storage session's node while the viewer's WebSocket is on
/// another: the offer and candidates reach the viewer as from the storage session, its
/// answer and candidates reach the session (not the master), and its disconnect ends it.
#[test]
fn a_viewer_session_serves_a_viewer_connected_to_another_node() {
    let c = Cluster::new(3, limits());
    let t = Instant::now();
    let mut master = c.bus(0).connect(&channel(), Party::Master, t).expect("master on n0");
    let mut v = c.bus(2).connect(&channel(), viewer("v"), t).expect("viewer on n2");
    c.pump();
    let (attachment, mut session) = c.bus(1).attach_storage_viewer(ARN, "v").expect("n1 serves v");
    c.pump();
    assert_eq!(c.bus(0).storage_viewers_at(ARN), Some(StoragePeerAt::OtherNode("n1".to_string())));
    c.bus(1)
        .storage_viewer_send(
            ARN,
            "v",
            attachment,
            SignalingMessage { kind: MessageKind::SdpOffer, payload: "b2Zm".into() },
        )
        .expect("offer");
    c.pump();
    let offer = next_event(&mut v);
    assert_eq!((offer.message_type, offer.sender_client_id.as_deref()), (EventType::SdpOffer, None));
    c.bus(2).route(&v.endpoint, msg(MessageKind::SdpAnswer, "YW5z", None), t).expect("answer");
    c.bus(2).route(&v.endpoint, msg(MessageKind::IceCandidate, "Y2FuZA==", Some("ignored")), t).expect("candidate");
    c.pump();
    assert!(
        matches!(viewer_event(session.try_recv()), StorageViewerEvent::Message(m) if m.kind == MessageKind::SdpAnswer)
    );
    assert!(
        matches!(viewer_event(session.try_recv()), StorageViewerEvent::Message(m) if m.kind == MessageKind::IceCandidate)
    );
    assert!(master.outbound.try_recv().is_err(), "the master hears nothing of the viewer's session");
    c.bus(2).disconnect(&v.endpoint);
    c.pump();
    assert_eq!(viewer_event(session.try_recv()), StorageViewerEvent::Disconnected);
}

/// One viewer session per viewer, cluster-wide: a newer one replaces the older wherever
/// either runs; an ended session stops the routing to it; a viewer that reconnects to
/// another node takes its session along; a node that dies takes its viewers' sessions.
#[test]
fn a_viewer_has_one_session_cluster_wide() {
    let c = Cluster::new(3, limits());
    let t = Instant::now();
    let _master = c.bus(0).connect(&channel(), Party::Master, t).expect("master on n0");
    let v = c.bus(2).connect(&channel(), viewer("v"), t).expect("viewer on n2");
    c.pump();
    // Its own node's session, then one on n1: the older one hears it was replaced.
    let (_, mut here) = c.bus(2).attach_storage_viewer(ARN, "v").expect("n2 serves v");
    let (first, mut there) = c.bus(1).attach_storage_viewer(ARN, "v").expect("n1 serves v");
    c.pump();
    assert_eq!(viewer_event(here.try_recv()), StorageViewerEvent::Replaced);
    assert_eq!(c.bus(0).storage_viewers_at(ARN), Some(StoragePeerAt::OtherNode("n1".to_string())));
    // n0 takes over: n1's session is replaced, and the viewer now talks to n0's.
    let (_, mut third) = c.bus(0).attach_storage_viewer(ARN, "v").expect("n0 serves v");
    c.pump();
    assert_eq!(viewer_event(there.try_recv()), StorageViewerEvent::Replaced);
    c.bus(2).route(&v.endpoint, msg(MessageKind::SdpAnswer, "YW5z", None), t).expect("answer");
    c.pump();
    assert!(matches!(viewer_event(third.try_recv()), StorageViewerEvent::Message(_)));
    assert!(there.try_recv().is_err());
    let _ = first;
    // The viewer reconnects to n1: its session on n0 follows it there.
    let v2 = c.bus(1).connect(&channel(), viewer("v"), t).expect("viewer again, on n1");
    c.pump();
    c.bus(1).route(&v2.endpoint, msg(MessageKind::IceCandidate, "Y2FuZA==", None), t).expect("candidate");
    c.pump();
    assert!(
        matches!(viewer_event(third.try_recv()), StorageViewerEvent::Message(m) if m.kind == MessageKind::IceCandidate)
    );
    // n1 goes silent: the session on n0 hears its viewer is gone.
    c.bus(0).forget_node("n1");
    assert_eq!(viewer_event(third.try_recv()), StorageViewerEvent::Disconnected);
}

/// A viewer session that ends (detached) stops the viewer's node routing to it: the
/// viewer's messages go to the master again, as for any viewer.
#[test]
fn an_ended_viewer_session_hands_the_viewer_back_to_the_master() {
    let c = Cluster::new(2, limits());
    let t = Instant::now();
    let mut master = c.bus(0).connect(&channel(), Party::Master, t).expect("master on n0");
    let v = c.bus(1).connect(&channel(), viewer("v"), t).expect("viewer on n1");
    c.pump();
    let (attachment, _session) = c.bus(0).attach_storage_viewer(ARN, "v").expect("n0 serves v");
    c.pump();
    c.bus(0).detach_storage_viewer(ARN, "v", attachment);
    c.pump();
    assert_eq!(c.bus(1).storage_viewers_at(ARN), None);
    c.bus(1).route(&v.endpoint, msg(MessageKind::SdpOffer, "b2Zm", None), t).expect("offer");
    c.pump();
    let e = next_event(&mut master);
    assert_eq!((e.message_type, e.sender_client_id.as_deref()), (EventType::SdpOffer, Some("v")));
}

/// Where a channel's storage viewers wait is known on every node: the node with the most,
/// ties to the storage peer's node, then the lowest id; a node that leaves takes its own.
#[test]
fn every_node_knows_where_the_channels_viewers_wait() {
    let c = Cluster::new(3, limits());
    let t = Instant::now();
    let here = |i: usize| c.bus(i).storage_viewers_at(ARN);
    let other = |n: &str| Some(StoragePeerAt::OtherNode(n.to_string()));
    assert_eq!(here(0), None);
    let _a = c.bus(1).connect(&channel(), viewer("a"), t).expect("a on n1");
    let _b = c.bus(2).connect(&channel(), viewer("b"), t).expect("b on n2");
    let _c = c.bus(2).connect(&channel(), viewer("c"), t).expect("c on n2");
    c.pump();
    let a = c.bus(1).attach_storage_viewer(ARN, "a").expect("attach a");
    c.pump();
    assert_eq!((here(0), here(1), here(2)), (other("n1"), Some(StoragePeerAt::ThisNode), other("n1")));
    let b = c.bus(2).attach_storage_viewer(ARN, "b").expect("attach b");
    c.pump();
    assert_eq!(here(0), other("n1"), "a tie goes to the lowest id");
    let (_peer, _events) = c.bus(2).attach_storage_peer(ARN);
    c.pump();
    assert_eq!((here(0), here(1)), (other("n2"), other("n2")), "a tie goes to the storage peer's node");
    let _c2 = c.bus(2).attach_storage_viewer(ARN, "c").expect("attach c");
    c.pump();
    c.bus(2).detach_storage_viewer(ARN, "b", b.0);
    c.bus(2).detach_storage_peer(ARN, _peer);
    c.pump();
    assert_eq!(here(0), other("n1"), "one each again, no storage peer: the lowest id");
    // A node forgotten takes its viewers along; a resync brings them back.
    c.bus(0).forget_node("n1");
    assert_eq!(here(0), other("n2"));
    c.bus(1).receive("n0", Directed::Resync);
    c.pump();
    assert_eq!(here(0), other("n1"));
    c.bus(1).detach_storage_viewer(ARN, "a", a.0);
    c.pump();
    assert_eq!(here(0), other("n2"));
}

/// A node asks another to start a storage session or run a viewer session: the request
/// reaches that node's server and the answer (or refusal) comes back; a node that serves no
/// requests refuses at once; a request to a node that is forgotten fails instead of hanging.
#[test]
fn a_request_to_another_node_is_answered() {
    let c = Cluster::new(3, limits());
    let mut requests = c.bus(1).serve_asks();
    let (_, mut answer) = c.bus(0).ask("n1", ARN, Ask::StartStorage);
    c.pump();
    let start = requests.try_recv().expect("the start request reached n1");
    assert_eq!((start.channel.as_str(), start.from.as_str(), &start.ask), (ARN, "n0", &Ask::StartStorage));
    assert!(answer.try_recv().is_err(), "no answer before n1 answers");
    start.answer(Ok(()));
    c.pump();
    assert_eq!(answer.try_recv(), Ok(Ok(())));

    let join = Ask::JoinViewer { client_id: "v".into() };
    let (_, mut answer) = c.bus(2).ask("n1", ARN, join.clone());
    c.pump();
    let asked = requests.try_recv().expect("the viewer request reached n1");
    assert_eq!((asked.from.as_str(), &asked.ask), ("n2", &join));
    let full = Refusal::Api { code: "ClientLimitExceededException".into(), status: 400, message: "full".into() };
    asked.answer(Err(full.clone()));
    c.pump();
    assert_eq!(answer.try_recv(), Ok(Err(full)), "the refusal comes back as it was given");

    let (_, mut refused) = c.bus(0).ask("n2", ARN, Ask::StartStorage);
    c.pump();
    let why = refused.try_recv().expect("answered").expect_err("n2 serves no requests");
    assert!(matches!(&why, Refusal::Unavailable(w) if w.contains("serves no storage session requests")), "{why}");

    let (_, mut lost) = c.bus(0).ask("n1", ARN, Ask::StartStorage);
    c.lose_in_flight();
    c.bus(0).forget_node("n1");
    assert!(matches!(lost.try_recv(), Err(tokio::sync::oneshot::error::TryRecvError::Closed)));

    // An answer from a node that was not asked is not taken for the asked node's.
    let (request, mut asked) = c.bus(0).ask("n1", ARN, Ask::StartStorage);
    c.lose_in_flight();
    c.bus(0).receive("n2", Directed::Answer { request, refusal: None });
    assert!(matches!(asked.try_recv(), Err(tokio::sync::oneshot::error::TryRecvError::Empty)));
    c.bus(0).cancel_ask(request);
    assert!(matches!(asked.try_recv(), Err(tokio::sync::oneshot::error::TryRecvError::Closed)));
}

#[test]
fn a_silent_node_is_forgotten_and_a_resync_brings_it_back() {
    let c = Cluster::new(2, limits());
    let t = Instant::now();
    let _master = c.bus(0).connect(&channel(), Party::Master, t).expect("master");
    c.pump();
    let (_attachment, mut peer) = c.bus(1).attach_storage_peer(ARN);
    c.pump();
    c.bus(1).forget_node("n0");
    assert!(!c.bus(1).master_connected(ARN));
    assert_eq!(peer.try_recv(), Ok(StoragePeerEvent::MasterDisconnected));
    c.bus(0).receive("n1", Directed::Resync);
    c.pump();
    assert!(c.bus(1).master_connected(ARN));
    assert_eq!(peer.try_recv(), Ok(StoragePeerEvent::MasterConnected));
    c.lose_in_flight();
}

/// A node that restarts under its id before the others time it out says Hello: what its
/// earlier run held (a master, waiting viewers, a hand-off request) is forgotten at once.
#[test]
fn a_restarted_node_holds_nothing_of_its_earlier_run() {
    let c = Cluster::new(2, limits());
    let t = Instant::now();
    let _master = c.bus(0).connect(&channel(), Party::Master, t).expect("master on n0");
    let _v = c.bus(0).connect(&channel(), viewer("v"), t).expect("viewer on n0");
    let _attached = c.bus(0).attach_storage_viewer(ARN, "v").expect("attach");
    c.pump();
    let (_, mut asked) = c.bus(1).ask("n0", ARN, Ask::StartStorage);
    c.lose_in_flight();
    assert!(c.bus(1).master_connected(ARN));
    assert_eq!(c.bus(1).storage_viewers_at(ARN), Some(StoragePeerAt::OtherNode("n0".to_string())));
    c.bus(1).apply("n0", Announcement::Hello { url: "http://n0".into() });
    assert!(!c.bus(1).master_connected(ARN));
    assert_eq!(c.bus(1).storage_viewers_at(ARN), None);
    assert!(matches!(asked.try_recv(), Err(tokio::sync::oneshot::error::TryRecvError::Closed)));
}

#[test]
fn deleting_a_channel_closes_it_on_every_node() {
    let c = Cluster::new(2, limits());
    let t = Instant::now();
    let mut m = c.bus(0).connect(&channel(), Party::Master, t).expect("master");
    let mut v = c.bus(1).connect(&channel(), viewer("v"), t).expect("viewer");
    c.pump();
    c.bus(0).close_channel(ARN);
    c.pump();
    assert_eq!(m.outbound.try_recv(), Ok(Outbound::Close(CloseReason::Shutdown)));
    assert_eq!(v.outbound.try_recv(), Ok(Outbound::Close(CloseReason::Shutdown)));
    assert!(!c.bus(1).master_connected(ARN));
}
