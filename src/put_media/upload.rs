//! One PutMedia connection at work: the body is read as it arrives and parsed
//! ([`StreamReader`]), clusters become fragments ([`Assembler`]), a writer task stores them
//! in order, and acknowledgements go back on the response body. The connection ends when
//! the producer ends its body, at the first failed fragment (an `ERROR` acknowledgement,
//! as KVS ends it), after `idle_timeout_secs` without data, at `max_connection_secs`, when
//! a newer PutMedia on the stream replaces it, or when the stream's writer lease is lost.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// Complete fragments queued for the writer before reading the body waits.
const WRITE_QUEUE: usize = 4;
/// Acknowledgements queued for the client; a client that reads none loses `BUFFERING` and
/// `IDLE` ones first (the writer's wait for room slows only this connection).
pub const ACK_QUEUE: usize = 64;

/// Fragments, bytes and connections by outcome, for `/metrics`.
pub const FRAGMENTS: &str = "reel_put_media_fragments_total";
/// Connections ended, by reason.
pub const CONNECTIONS: &str = "reel_put_media_connections_total";

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
            Self::Failed(_) => "failed",
        }
    }
}

/// Runs the connection until it ends; acknowledgements go to `acks`.
pub async fn run(mut up: Upload, body: Body, acks: mpsc::Sender<Ack>) {
    let fence = up.lease.as_ref().and_then(LeaseKeeper::fence);
    let (fragments, queue) = mpsc::channel(WRITE_QUEUE);
    let mut writer =
        tokio::spawn(write_fragments(up.id, up.stream.clone(), fence, queue, acks.clone(), up.acks, up.persisted_acks));
    let max_element = up.limits.max_fragment_bytes.saturating_add(1024);
    let mut reader = StreamReader::new(max_element);
    let mut data = body.into_data_stream();
    let deadline = Instant::now() + Duration::from_secs(up.limits.max_connection_secs);
    let idle_every = Duration::from_millis(up.limits.idle_ack_interval_ms.max(100));
    let idle_timeout = Duration::from_secs(up.limits.idle_timeout_secs);
    let mut last_data = Instant::now();
    let mut idle_tick = tokio::time::interval_at(Instant::now() + idle_every, idle_every);
    let mut writer_failed = None;
    let end = loop {
        tokio::select! {
            piece = data.next() => match piece {
                Some(Ok(bytes)) => {
                    last_data = Instant::now();
                    reader.push(&bytes);
                    if let Err(f) = drain(&mut reader, &mut up.assembler, &fragments, &acks, up.acks).await {
                        break End::Failed(f);
                    }
                }
                Some(Err(e)) => {
                    tracing::info!(upload = up.id, error = %e, "PutMedia body broke off");
                    break End::Aborted;
                }
                None => {
                    if let Err(f) = drain(&mut reader, &mut up.assembler, &fragments, &acks, up.acks).await {
                        break End::Failed(f);
                    }
                    match reader.finish() {
                        Ok(events) => {
                            if let Err(f) = apply_all(events, &mut up.assembler, &fragments, &acks, up.acks).await {
                                break End::Failed(f);
                            }
                            break End::Finished;
                        }
                        Err(e) => break End::Failed(up.assembler.reader_failure(&e)),
                    }
                }
            },
            _ = idle_tick.tick() => {
                if last_data.elapsed() >= idle_timeout {
                    break End::Idle;
                }
                if last_data.elapsed() >= idle_every {
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
            failed = &mut writer => {
                writer_failed = Some(failed.ok().flatten());
                break match writer_failed {
                    Some(Some(f)) => End::Failed(f),
                    _ => End::Aborted,
                };
            }
        }
    };
    drop(fragments);
    // Fragments already complete are stored before the connection ends.
    let stored = match writer_failed {
        Some(outcome) => outcome,
        None => writer.await.ok().flatten(),
    };
    let failure = match end {
        End::Failed(f) => Some(f),
        _ => stored,
    };
    if let Some(f) = failure {
        tracing::info!(upload = up.id, error = f.error.code(), timecode = f.timecode, "PutMedia fragment failed");
        metrics::counter!(FRAGMENTS, "outcome" => f.error.code()).increment(1);
        let _ = acks.send(Ack::Error { timecode: f.timecode, error: f.error }).await;
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
async fn drain(
    reader: &mut StreamReader,
    assembler: &mut Assembler,
    fragments: &mpsc::Sender<ReadyFragment>,
    acks: &mpsc::Sender<Ack>,
    send_acks: bool,
) -> Result<(), Failure> {
    loop {
        match reader.next_event() {
            Ok(Some(ev)) => {
                let step = assembler.apply(ev)?;
                forward(step, fragments, acks, send_acks).await?;
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(assembler.reader_failure(&e)),
        }
    }
}

async fn apply_all(
    events: Vec<reel_media::mkv::StreamEvent>,
    assembler: &mut Assembler,
    fragments: &mpsc::Sender<ReadyFragment>,
    acks: &mpsc::Sender<Ack>,
    send_acks: bool,
) -> Result<(), Failure> {
    for ev in events {
        let step = assembler.apply(ev)?;
        forward(step, fragments, acks, send_acks).await?;
    }
    Ok(())
}

async fn forward(
    step: Option<Step>,
    fragments: &mpsc::Sender<ReadyFragment>,
    acks: &mpsc::Sender<Ack>,
    send_acks: bool,
) -> Result<(), Failure> {
    match step {
        Some(Step::Began { timecode }) if send_acks => {
            let _ = acks.try_send(Ack::Buffering { timecode });
        }
        Some(Step::Complete(f)) => {
            let timecode = f.timecode;
            if fragments.send(f).await.is_err() {
                return Err(Failure { timecode, error: ErrorId::InternalError });
            }
        }
        _ => {}
    }
    Ok(())
}

/// Stores the fragments in order; `RECEIVED` once numbered, `PERSISTED` once durable.
/// Returns the failure that stopped it, if any.
async fn write_fragments(
    id: u64,
    stream: Stream,
    fence: Option<Fence>,
    mut queue: mpsc::Receiver<ReadyFragment>,
    acks: mpsc::Sender<Ack>,
    send_acks: bool,
    persisted_acks: bool,
) -> Option<Failure> {
    while let Some(f) = queue.recv().await {
        let timecode = f.timecode;
        let fail = |e: StoreError| {
            tracing::error!(upload = id, error = %e, "cannot store a PutMedia fragment");
            let error = match e {
                StoreError::StreamDeleted { .. } => ErrorId::StreamDeleted,
                _ => ErrorId::InternalError,
            };
            Some(Failure { timecode, error })
        };
        let start = FragmentStart { producer_ts_ms: f.producer_ts_ms, server_ts_ms: now_ms(), header: f.header.into() };
        let mut writer = match crate::peer::ingest::begin(&stream, start, fence.as_ref()).await {
            Ok(w) => w,
            Err(e) => return fail(e),
        };
        let number = writer.number().to_string();
        if send_acks {
            let _ = acks.send(Ack::Received { timecode, number: number.clone() }).await;
        }
        if !f.chunk.is_empty()
            && let Err(e) = writer.append_chunk(f.duration_ms, Bytes::from(f.chunk)).await
        {
            return fail(e);
        }
        match writer.finish(f.duration_ms).await {
            Ok(_) => {
                metrics::counter!(FRAGMENTS, "outcome" => "persisted").increment(1);
                if send_acks && persisted_acks {
                    let _ = acks.send(Ack::Persisted { timecode, number }).await;
                }
            }
            Err(e) => return fail(e),
        }
    }
    None
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
