//! One PutMedia connection at work: the body is read as it arrives and parsed
//! ([`StreamReader`]), clusters become fragments ([`Assembler`]), a writer task stores them
//! in order, and acknowledgements go back on the response body. The connection ends when
//! the producer ends its body, at the first failed fragment (an `ERROR` acknowledgement,
//! as KVS ends it), after `idle_timeout_secs` without data, at `max_connection_secs`, when
//! a newer PutMedia on the stream replaces it (fragments not yet begun are dropped: the
//! producer resends what was not acknowledged), or when the stream's writer lease is lost.
//! A client that reads no acknowledgements slows nothing: after one waits 10 s in vain, the
//! rest are sent only when there is room.

use std::collections::VecDeque;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt;
use reel_media::mkv::StreamReader;
use reel_storage::{Fence, FragmentStart, StoreError, Stream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::ack::{Ack, ErrorId};
use super::assemble::{Assembler, Failure, ReadyFragment, Step};
use crate::limits::PutMediaLimits;
use crate::peer::lease_keeper::LeaseKeeper;

/// Complete fragments handed to the writer at once; more wait in the reader, which then
/// stops reading the body until the writer catches up.
const WRITE_QUEUE: usize = 2;
/// Complete fragments the reader holds before it stops reading the body.
const MAX_PENDING: usize = 2;
/// Acknowledgements queued for the client; a client that reads none loses `BUFFERING`,
/// `RECEIVED` and `IDLE` ones first.
pub const ACK_QUEUE: usize = 64;
/// How long a `PERSISTED` or `ERROR` acknowledgement may wait for room in a full queue; a
/// client that reads none for this long is not reading, and later acknowledgements are
/// sent only if there is room (the fragments are stored all the same).
const ACK_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Fragments, bytes and connections by outcome, for `/metrics`.
pub const FRAGMENTS: &str = "reel_put_media_fragments_total";
/// Connections ended, by reason.
pub const CONNECTIONS: &str = "reel_put_media_connections_total";
/// Connections open now.
pub const ACTIVE: &str = "reel_put_media_connections_active";

/// What one connection needs.
pub struct Upload {
    /// Connection id, for logs.
    pub id: u64,
    /// The stream written.
    pub stream: Stream,
    /// The writer lease (cluster mode).
    pub lease: Option<LeaseKeeper>,
    /// The connection's fragment checks and time origin.
    pub assembler: Assembler,
    /// Whether acknowledgements were asked for.
    pub acks: bool,
    /// Whether `PERSISTED` is sent (KVS: only for streams with retention > 0).
    pub persisted_acks: bool,
    /// Quotas.
    pub limits: PutMediaLimits,
    /// Turns true when a newer PutMedia replaced this one.
    pub replaced: watch::Receiver<bool>,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The producer ended its body.
    Finished,
    /// No data for the idle timeout.
    Idle,
    /// A newer PutMedia took the stream.
    Replaced,
    /// The producer went away mid-body.
    Aborted,
    /// The writer stopped (its failure, if any, is reported).
    WriterStopped,
    /// A fragment failed.
    Failed(Failure),
}

impl End {
    fn label(self) -> &'static str {
        match self {
            Self::Finished => "finished",
            Self::Idle => "idle",
            Self::Replaced => "replaced",
            Self::Aborted => "aborted",
            Self::WriterStopped | Self::Failed(_) => "failed",
        }
    }
}

/// Why the writer stopped early: a fragment could not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WriterStop(Failure);

/// Runs the connection until it ends; acknowledgements go to `acks`. Nothing here waits on
/// the client while the store's writer lock is held, and every wait for the writer races the
/// connection's endings, so a client that stops reading cannot hold the stream.
pub async fn run(mut up: Upload, body: Body, acks: mpsc::Sender<Ack>) {
    let fence = up.lease.as_ref().and_then(LeaseKeeper::fence);
    let (fragments, queue) = mpsc::channel(WRITE_QUEUE);
    let (discard, discarded) = watch::channel(false);
    let mut writer = tokio::spawn(write_fragments(
        up.id,
        up.stream.clone(),
        fence,
        queue,
        acks.clone(),
        AckPolicy { acks: up.acks, persisted: up.persisted_acks },
        discarded,
    ));
    let mut reader = StreamReader::new(up.limits.max_fragment_bytes.saturating_add(1024));
    let mut data = body.into_data_stream();
    let now = Instant::now();
    let deadline = now.checked_add(Duration::from_secs(up.limits.max_connection_secs)).unwrap_or(now);
    let idle_every = Duration::from_millis(up.limits.idle_ack_interval_ms.max(100));
    let idle_timeout = Duration::from_secs(up.limits.idle_timeout_secs);
    let mut last_data = Instant::now();
    let mut idle_tick = tokio::time::interval_at(Instant::now() + idle_every, idle_every);
    let mut pending: VecDeque<ReadyFragment> = VecDeque::new();
    let mut writer_outcome: Option<Option<WriterStop>> = None;
    let end = loop {
        tokio::select! {
            piece = data.next(), if pending.len() < MAX_PENDING => match piece {
                Some(Ok(bytes)) => {
                    last_data = Instant::now();
                    reader.push(&bytes);
                    if let Err(f) = drain(&mut reader, &mut up.assembler, &mut pending, &acks, up.acks) {
                        break End::Failed(f);
                    }
                }
                Some(Err(e)) => {
                    tracing::info!(upload = up.id, error = %e, "PutMedia body broke off");
                    break End::Aborted;
                }
                None => {
                    let finished = drain(&mut reader, &mut up.assembler, &mut pending, &acks, up.acks).and_then(|()| {
                        let events = reader.finish().map_err(|e| up.assembler.reader_failure(&e))?;
                        apply_all(events, &mut up.assembler, &mut pending, &acks, up.acks)
                    });
                    break match finished {
                        Ok(()) => End::Finished,
                        Err(f) => End::Failed(f),
                    };
                }
            },
            permit = fragments.reserve(), if !pending.is_empty() => match (permit, pending.pop_front()) {
                (Ok(permit), Some(f)) => permit.send(f),
                _ => break End::WriterStopped,
            },
            _ = idle_tick.tick() => {
                if last_data.elapsed() >= idle_timeout {
                    break End::Idle;
                }
                if up.acks && last_data.elapsed() >= idle_every {
                    let _ = acks.try_send(Ack::Idle);
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                break End::Failed(up.assembler.fail(ErrorId::MaxConnectionDurationReached));
            }
            () = replaced(&mut up.replaced) => break End::Replaced,
            () = lease_lost(up.lease.as_mut()) => {
                tracing::warn!(upload = up.id, "writer lease lost; ending the PutMedia connection");
                break End::Failed(up.assembler.fail(ErrorId::InternalError));
            }
            outcome = &mut writer => {
                writer_outcome = Some(outcome.ok().flatten());
                break End::WriterStopped;
            }
        }
    };
    // What was complete is stored, unless a newer connection took the stream (its producer
    // resends what this one never acknowledged) or the lease is gone.
    let keep = matches!(end, End::Finished | End::Idle | End::Aborted)
        || matches!(end, End::Failed(f) if f.error != ErrorId::InternalError);
    if !keep {
        let _ = discard.send(true);
        pending.clear();
    }
    if writer_outcome.is_none() {
        for f in pending.drain(..) {
            if fragments.send(f).await.is_err() {
                break;
            }
        }
        drop(fragments);
        writer_outcome = Some(writer.await.ok().flatten());
    }
    let failure = match (end, writer_outcome.flatten()) {
        // The writer's own failure comes first: it concerns an earlier fragment.
        (_, Some(WriterStop(f))) => Some(f),
        (End::Failed(f), _) => Some(f),
        _ => None,
    };
    if let Some(f) = failure {
        tracing::info!(upload = up.id, error = f.error.code(), timecode = f.timecode, "PutMedia fragment failed");
        metrics::counter!(FRAGMENTS, "outcome" => f.error.code()).increment(1);
        let _ = acks.send_timeout(Ack::Error { timecode: f.timecode, error: f.error }, ACK_SEND_TIMEOUT).await;
    }
    let reason = if failure.is_some() { "failed" } else { end.label() };
    metrics::counter!(CONNECTIONS, "reason" => reason).increment(1);
    tracing::info!(upload = up.id, reason, "PutMedia connection ended");
}

/// Resolves when a newer connection replaced this one (never if the registry went away).
async fn replaced(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|r| *r).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Resolves when the lease is lost; never without one.
async fn lease_lost(lease: Option<&mut LeaseKeeper>) {
    match lease {
        Some(l) => l.lost().await,
        None => std::future::pending().await,
    }
}

/// Applies every event the reader can produce now.
fn drain(
    reader: &mut StreamReader,
    assembler: &mut Assembler,
    pending: &mut VecDeque<ReadyFragment>,
    acks: &mpsc::Sender<Ack>,
    send_acks: bool,
) -> Result<(), Failure> {
    loop {
        match reader.next_event() {
            Ok(Some(ev)) => forward(assembler.apply(ev)?, pending, acks, send_acks),
            Ok(None) => return Ok(()),
            Err(e) => return Err(assembler.reader_failure(&e)),
        }
    }
}

fn apply_all(
    events: Vec<reel_media::mkv::StreamEvent>,
    assembler: &mut Assembler,
    pending: &mut VecDeque<ReadyFragment>,
    acks: &mpsc::Sender<Ack>,
    send_acks: bool,
) -> Result<(), Failure> {
    for ev in events {
        forward(assembler.apply(ev)?, pending, acks, send_acks);
    }
    Ok(())
}

fn forward(step: Option<Step>, pending: &mut VecDeque<ReadyFragment>, acks: &mpsc::Sender<Ack>, send_acks: bool) {
    match step {
        Some(Step::Began { timecode }) if send_acks => {
            let _ = acks.try_send(Ack::Buffering { timecode });
        }
        Some(Step::Complete(f)) => pending.push_back(f),
        _ => {}
    }
}

/// Which acknowledgements the writer sends.
#[derive(Debug, Clone, Copy)]
struct AckPolicy {
    acks: bool,
    persisted: bool,
}

/// Stores the fragments in order: `RECEIVED` once written (never waiting for the client),
/// `PERSISTED` once durable and the writer lock released (waiting for room at most once, see
/// [`ACK_SEND_TIMEOUT`]). Once `discard` turns true, queued fragments are dropped unbegun and
/// a wait for the client ends. Returns the failure that stopped it early, if any.
async fn write_fragments(
    id: u64,
    stream: Stream,
    fence: Option<Fence>,
    mut queue: mpsc::Receiver<ReadyFragment>,
    acks: mpsc::Sender<Ack>,
    policy: AckPolicy,
    mut discard: watch::Receiver<bool>,
) -> Option<WriterStop> {
    // Whether the client reads its acknowledgements (until one waited in vain).
    let mut reading = true;
    while let Some(f) = queue.recv().await {
        if *discard.borrow() {
            continue;
        }
        let timecode = f.timecode;
        let fail = |e: StoreError| {
            tracing::error!(upload = id, error = %e, "cannot store a PutMedia fragment");
            let error = match e {
                StoreError::StreamDeleted { .. } => ErrorId::StreamDeleted,
                _ => ErrorId::InternalError,
            };
            Some(WriterStop(Failure { timecode, error }))
        };
        let start = FragmentStart {
            producer_ts_ms: f.producer_ts_ms,
            server_ts_ms: crate::streaming::now_ms(),
            header: f.header.into(),
        };
        let mut writer = match crate::peer::ingest::begin(&stream, start, fence.as_ref()).await {
            Ok(w) => w,
            Err(e) => return fail(e),
        };
        let number = writer.number().to_string();
        if let Err(e) = writer.append_chunk(f.duration_ms, Bytes::from(f.chunk)).await {
            return fail(e);
        }
        if policy.acks {
            let _ = acks.try_send(Ack::Received { timecode, number: number.clone() });
        }
        if let Err(e) = writer.finish(f.duration_ms).await {
            return fail(e);
        }
        metrics::counter!(FRAGMENTS, "outcome" => "persisted").increment(1);
        if policy.acks && policy.persisted {
            let persisted = Ack::Persisted { timecode, number };
            if !reading {
                let _ = acks.try_send(persisted);
                continue;
            }
            tokio::select! {
                sent = acks.send_timeout(persisted, ACK_SEND_TIMEOUT) => {
                    if sent.is_err() {
                        tracing::info!(upload = id, "the PutMedia client reads no acknowledgements; storing on without waiting");
                        reading = false;
                    }
                }
                _ = discard.wait_for(|d| *d) => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::put_media::assemble::FragmentLimits;
    use crate::put_media::request::TimecodeType;
    use reel_media::mkv::ebml::{UNKNOWN_SIZE, write_id, write_master, write_str, write_uint};
    use reel_media::mkv::{id, write_simple_block};
    use reel_storage::{Store, StoreConfig};

    fn body_of(fragments: u64) -> Vec<u8> {
        let mut out = Vec::new();
        write_master(&mut out, id::EBML, |o| write_str(o, id::DOC_TYPE, "matroska"));
        write_id(&mut out, id::SEGMENT);
        out.extend_from_slice(&UNKNOWN_SIZE);
        write_master(&mut out, id::TRACKS, |o| {
            write_master(o, id::TRACK_ENTRY, |t| {
                write_uint(t, id::TRACK_NUMBER, 1);
                write_uint(t, id::TRACK_TYPE, 1);
                write_str(t, id::CODEC_ID, "V_MPEG4/ISO/AVC");
            })
        });
        for i in 0..fragments {
            write_id(&mut out, id::CLUSTER);
            out.extend_from_slice(&UNKNOWN_SIZE);
            write_uint(&mut out, id::TIMECODE, 1_700_000_000_000 + i * 1000);
            write_simple_block(&mut out, 1, 0, true, b"frame");
        }
        out
    }

    /// A live producer whose body stays open after `fragments` clusters, and a client that
    /// never reads its acknowledgements (a queue of one, never drained).
    async fn connection(
        stream: &Stream,
        fragments: u64,
    ) -> (
        tokio::task::JoinHandle<()>,
        watch::Sender<bool>,
        mpsc::Sender<Result<Bytes, std::io::Error>>,
        mpsc::Receiver<Ack>,
    ) {
        let (replace, replaced) = watch::channel(false);
        let limits = FragmentLimits { max_fragment_bytes: 1 << 20, max_fragment_duration_ms: 10_000, max_tracks: 3 };
        let up = Upload {
            id: 1,
            stream: stream.clone(),
            lease: None,
            assembler: Assembler::new(limits, TimecodeType::Absolute, 0),
            acks: true,
            persisted_acks: true,
            limits: PutMediaLimits::default(),
            replaced,
        };
        let (body_tx, mut body_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        body_tx.send(Ok(Bytes::from(body_of(fragments)))).await.expect("body");
        let body = Body::from_stream(futures::stream::poll_fn(move |cx| body_rx.poll_recv(cx)));
        let (acks, unread) = mpsc::channel::<Ack>(1);
        (tokio::spawn(run(up, body, acks)), replace, body_tx, unread)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_reads_no_acknowledgements_never_holds_the_stream() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreConfig::new(dir.path())).await.expect("store");
        let stream = store.create_stream("s", 24).await.expect("stream");
        let (task, replace, _body, _unread) = connection(&stream, 6).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Its first fragment is stored, and the writer then waits for the client without
        // the stream's writer lock.
        assert!(!stream.latest_fragments(10).is_empty(), "a fragment is stored although no ack is read");
        let other = FragmentStart { producer_ts_ms: 1, server_ts_ms: 1, header: Bytes::from_static(b"") };
        let begun = tokio::time::timeout(Duration::from_secs(1), stream.begin_fragment(other)).await;
        assert!(matches!(begun, Ok(Ok(_))), "another writer can take the stream: {begun:?}");
        drop(begun);
        // A newer connection ends it at once.
        replace.send(true).expect("replace");
        tokio::time::timeout(Duration::from_secs(3), task).await.expect("the replaced connection ends").expect("join");
    }
}
