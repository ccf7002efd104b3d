//! The Postgres backend of [`MetaStore`](super::MetaStore), for cluster mode: several reel
//! nodes share one database through sqlx, each with its own [`PostgresStore`] (a connection
//! pool).
//!
//! - Every write is one transaction whose first statement takes one cluster-wide advisory
//!   lock (`WRITE_LOCK_KEY`), so writes from all nodes run one at a time and the
//!   check-then-write rules (quotas, version compare-and-set, mapping rules) stay atomic
//!   across the cluster; see `PostgresStore::begin_write`. The per-fragment and per-lease
//!   writes of ingest are single statements without that lock, their check and write one
//!   atomic step: a fragment insert goes in only while its lease row (locked `FOR SHARE`)
//!   still names its writer and epoch, and a renewal is one conditional `UPDATE`.
//! - Reads take no lock. Each is one statement (one snapshot), except
//!   [`MetaStore::tags`](super::MetaStore::tags), which reads in one `REPEATABLE READ`
//!   transaction (`PostgresStore::begin_read`) so existence and tags agree.
//! - Everything is bounded so a lost database fails calls instead of hanging them: connect
//!   (`CONNECT_TIMEOUT`), pool acquire (`ACQUIRE_TIMEOUT`), and per-session server
//!   timeouts (`SESSION_SETTINGS`), the last also ensuring a node that vanishes
//!   mid-transaction cannot hold the write lock for ever.
//! - The schema is `migrations/postgres`, applied at connect. sqlx's migrator holds its own
//!   session advisory lock while migrating, so nodes starting together migrate once.
//!
//! The statements and the rules around them are shared with [`super::sqlite`]
//! (`sql::sql_store!`); this file holds what is Postgres' own: connecting,
//! migrating, the session limits and the write lock, and how transactions begin.

use std::path::PathBuf;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::common::db_err;
use super::{MetaError, redact_url};

/// How long connecting (TCP, TLS, authentication) may take at startup.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long applying the schema may take at startup (it may wait for another node's
/// migration to finish).
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a call waits for a pooled connection (including opening a new one) before it
/// fails with [`MetaError::Database`].
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per node. Writes run one at a time cluster-wide anyway; the rest serve
/// lookups (e.g. signaling's `channel_by_arn` on every connect) while a write runs.
const MAX_CONNECTIONS: u32 = 8;
/// A pooled connection idle at least this long is pinged before it is used (a dead one is
/// dropped and another opened, as after a database restart); a busier one is not. sqlx's
/// default pings before every use, which under load made each query three round trips
/// (ping, query, and the ping sqlx sends when a connection is returned).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);
/// Server-side limits set on every pooled session:
/// - `lock_timeout`: a write waiting longer than this for [`WRITE_LOCK_KEY`] fails rather
///   than queueing without bound behind a stuck writer;
/// - `statement_timeout`: no statement runs longer than this;
/// - `idle_in_transaction_session_timeout`: the server ends a session that sits inside a
///   transaction this long (a node that crashed or was partitioned away mid-write),
///   releasing the write lock it held.
const SESSION_SETTINGS: [(&str, &str); 3] =
    [("lock_timeout", "5s"), ("statement_timeout", "15s"), ("idle_in_transaction_session_timeout", "15s")];
/// Key of the transaction-scoped advisory lock every write takes first: "reelmeta" in
/// ASCII. Advisory keys are per database; nothing else reel runs there uses this one
/// (sqlx's migrator derives its key from the database name and a different multiplier).
const WRITE_LOCK_KEY: i64 = 0x7265_656c_6d65_7461;

/// Postgres-backed [`MetaStore`](super::MetaStore): one node's pool on the cluster's shared database.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connect to the database at `url` (`postgres://` or `postgresql://`, any option
    /// sqlx's `PgConnectOptions` accepts) and apply the schema migrations.
    ///
    /// Fails with [`MetaError::Open`] naming the URL with its password replaced by `***`
    /// when the server is unreachable (within 10 s), refuses the login, or the schema
    /// cannot be applied (e.g. a newer reel already migrated this database).
    pub async fn connect(url: &str) -> Result<Self, MetaError> {
        let shown = redact_url(url);
        let secrets = url_secrets(url);
        let fail = |detail: String| MetaError::Open { path: PathBuf::from(&shown), detail: scrub(detail, &secrets) };
        let options: PgConnectOptions = url.parse().map_err(|e| fail(format!("not a usable Postgres URL: {e}")))?;

        // Migrate over a dedicated one-connection pool without the session limits: waiting
        // for another node's migration must not trip `lock_timeout`. (A pool rather than a
        // bare connection: `Migrator::run` on `&mut PgConnection` makes this future
        // non-`Send` for the compiler.)
        let migrate_pool = PgPoolOptions::new().max_connections(1).acquire_timeout(CONNECT_TIMEOUT);
        let migrate_pool = match tokio::time::timeout(CONNECT_TIMEOUT, migrate_pool.connect_with(options.clone())).await
        {
            Ok(Ok(pool)) => pool,
            Ok(Err(e)) => return Err(fail(format!("cannot connect: {e}"))),
            Err(_) => return Err(fail(format!("cannot connect: no answer within {} s", CONNECT_TIMEOUT.as_secs()))),
        };
        let migrator = sqlx::migrate!("src/meta/migrations/postgres");
        match tokio::time::timeout(MIGRATE_TIMEOUT, migrator.run(&migrate_pool)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(fail(format!("schema migration failed: {e}"))),
            Err(_) => {
                return Err(fail(format!("schema migration did not finish within {} s", MIGRATE_TIMEOUT.as_secs())));
            }
        }
        migrate_pool.close().await;

        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options.options(SESSION_SETTINGS));
        // Open one pooled connection now, so a rejected session setting fails startup.
        pool.acquire().await.map_err(|e| fail(format!("cannot open a pooled connection: {e}")))?;
        tracing::info!(url = %shown, "metadata database open (postgres)");
        Ok(Self { pool })
    }

    /// Begin a write transaction holding the cluster-wide write lock.
    ///
    /// Why a lock: the quotas are "count the rows, then insert", which no constraint can
    /// express. Under `READ COMMITTED` two nodes could both count N-1 and both insert; even
    /// `SERIALIZABLE` would need a retry loop around every write. One transaction-scoped
    /// advisory lock serializes all writes of all nodes instead: metadata writes are rare
    /// and short, and the lock is released by commit, rollback, or the session ending.
    ///
    /// It must be the first statement: under `READ COMMITTED` every later statement takes
    /// its snapshot after the lock is granted, so it sees everything the previous holders
    /// committed.
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, MetaError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITE_LOCK_KEY).execute(&mut *tx).await.map_err(db_err)?;
        Ok(tx)
    }

    /// Begin a read-only `REPEATABLE READ` transaction: one snapshot for all its reads.
    async fn begin_read(&self) -> Result<Transaction<'static, Postgres>, MetaError> {
        self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await.map_err(db_err)
    }
}

super::sql::sql_store!(
    PostgresStore,
    db: Postgres,
    reads: pool,
    leases: pool,
    name_filter: "($1::text IS NULL OR starts_with(name, $1)) AND ($2::text IS NULL OR name > $2)",
    now_ms: "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
    lease_share_lock: "FOR SHARE",
);

/// The password of a URL (as written and percent-decoded, from the user info and any
/// `password=` parameter), to keep out of error messages.
fn url_secrets(url: &str) -> Vec<String> {
    let mut raw = Vec::new();
    if let (Some(start), Some(at)) = (url.find("://").map(|i| i + 3), url.rfind('@'))
        && start < at
        && let Some((_, password)) = url[start..at].split_once(':')
    {
        raw.push(password.to_string());
    }
    if let Some((_, query)) = url.split_once('?') {
        raw.extend(
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .filter(|(k, _)| k.eq_ignore_ascii_case("password"))
                .map(|(_, v)| v.to_string()),
        );
    }
    let decoded: Vec<String> = raw.iter().map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned()).collect();
    raw.into_iter().chain(decoded).filter(|s| !s.is_empty()).collect()
}

/// `detail` with every secret replaced by `***`.
fn scrub(mut detail: String, secrets: &[String]) -> String {
    for secret in secrets {
        detail = detail.replace(secret.as_str(), "***");
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::suite;
    use crate::meta::{MetaStore, Tags};
    use crate::testkit::postgres as pg_test_server;

    /// A fresh store on its own database of the shared test server.
    async fn fresh() -> (PostgresStore, ()) {
        let url = pg_test_server::fresh_database().await;
        (PostgresStore::connect(&url).await.expect("connect"), ())
    }

    suite::backend_tests!(fresh);

    /// Two pools on one fresh database: two reel nodes.
    async fn two_nodes() -> (PostgresStore, PostgresStore) {
        let url = pg_test_server::fresh_database().await;
        let (a, b) = tokio::join!(PostgresStore::connect(&url), PostgresStore::connect(&url));
        (a.expect("node a"), b.expect("node b"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quotas_hold_across_nodes() {
        let (a, b) = two_nodes().await;
        suite::quotas_hold_across_nodes(&a, &b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_writer_lease_across_nodes() {
        let (a, b) = two_nodes().await;
        let s = suite::stream("contended", 24);
        a.create_stream(&s, &Tags::new(), 10).await.expect("stream");
        let mut last = 0;
        for round in 0..20u64 {
            // Both nodes take the lease at once: the takes are serialized, both get distinct,
            // growing epochs, and the stored lease is the later take's (the other is fenced).
            let now = 1_000_000 + round * 20_000;
            let (x, y) =
                tokio::join!(a.acquire_lease(&s.arn, "a", now, 10_000), b.acquire_lease(&s.arn, "b", now, 10_000));
            let (x, y) = (x.expect("a takes"), y.expect("b takes"));
            assert!(x.epoch != y.epoch && x.epoch.min(y.epoch) > last, "round {round}: {x:?} {y:?}");
            last = x.epoch.max(y.epoch);
            let newest = if x.epoch > y.epoch { &x } else { &y };
            assert_eq!(a.lease(&s.arn).await.expect("lease").as_ref(), Some(newest));
            let stale = if x.epoch > y.epoch { &y } else { &x };
            let refused = b.renew_lease(&s.arn, &stale.holder, stale.epoch, now + 1, 10_000).await;
            assert!(matches!(refused, Err(MetaError::LeaseLost { .. })), "round {round}: {refused:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fenced_insert_waits_for_a_take_in_flight_and_is_refused() {
        let (a, b) = two_nodes().await;
        let s = suite::stream("raced", 24);
        a.create_stream(&s, &Tags::new(), 10).await.expect("stream");
        let lease = a.acquire_lease(&s.arn, "a", 0, 10_000).await.expect("lease");
        let entry = |counter: u64| reel_storage::CatalogEntry {
            info: reel_storage::FragmentInfo {
                number: reel_storage::FragmentNumber::from_counter(counter),
                producer_ts_ms: 1,
                server_ts_ms: 1,
                duration_ms: 1_000,
                chunk_count: 1,
                payload_bytes: 10,
                header_bytes: 1,
                truncated: false,
            },
            object_bytes: 20,
        };
        a.insert_fragment(&s.arn, &entry(1), "a", lease.epoch).await.expect("held: inserted");
        // Node b is taking the stream (its lease row written, not yet committed): a's next
        // insert waits for that transaction instead of slipping in before it…
        let mut take = b.pool.begin().await.expect("begin");
        sqlx::query("UPDATE stream_leases SET holder = 'b', epoch = epoch + 1 WHERE stream_arn = $1")
            .bind(&s.arn)
            .execute(&mut *take)
            .await
            .expect("take in flight");
        let insert = tokio::spawn({
            let arn = s.arn.clone();
            async move { a.insert_fragment(&arn, &entry(2), "a", lease.epoch).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!insert.is_finished(), "the insert waits for the take");
        // … and once the take commits, it is refused: nothing of a's lands after b's lease.
        take.commit().await.expect("commit take");
        let refused = insert.await.expect("task");
        assert!(matches!(refused, Err(MetaError::LeaseLost { .. })), "{refused:?}");
        assert_eq!(b.fragments_after(&s.arn, 0, 10).await.expect("list"), vec![entry(1)]);
    }

    #[tokio::test]
    async fn reconnect_keeps_data_and_migrations_are_idempotent() {
        let url = pg_test_server::fresh_database().await;
        let c = suite::channel("keep", 5);
        {
            let store = PostgresStore::connect(&url).await.expect("connect");
            store.create_channel(&c, &[("k".to_string(), "v".to_string())].into(), 10).await.expect("create");
            store.pool.close().await;
        }
        let store = PostgresStore::connect(&url).await.expect("reconnect");
        assert_eq!(store.channel_by_arn(&c.arn).await.expect("get"), Some(c.clone()));
        assert_eq!(store.tags(&c.arn).await.expect("tags").get("k").map(String::as_str), Some("v"));
    }

    #[tokio::test]
    async fn open_url_connects_to_postgres() {
        let url = pg_test_server::fresh_database().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let url = url.replacen("postgres://", "postgresql://", 1);
        let store = crate::meta::open_url(Some(&url), dir.path()).await.expect("open_url");
        store.create_channel(&suite::channel("via-url", 1), &Tags::new(), 1).await.expect("create");
        assert!(!dir.path().join(crate::meta::DB_FILE).exists(), "no SQLite file with a Postgres URL");
    }

    #[tokio::test]
    async fn unreachable_server_is_a_clear_error_without_the_password() {
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let url = format!("postgres://reel:s3cr%65t@127.0.0.1:{port}/reel?sslmode=disable&password=other");
        let started = std::time::Instant::now();
        let e = PostgresStore::connect(&url).await.expect_err("nothing listens");
        assert!(started.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(1), "fails within the connect timeout");
        assert!(matches!(e, MetaError::Open { .. }), "{e:?}");
        let shown = e.to_string();
        assert!(shown.contains(&format!("127.0.0.1:{port}/reel")), "{shown}");
        assert!(shown.contains("cannot connect"), "{shown}");
        for secret in ["s3cr%65t", "s3cret", "other"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[tokio::test]
    async fn lost_database_fails_calls_fast() {
        // A server of its own, to stop under the store.
        let server = pg_test_server::PgTestServer::start();
        let store = PostgresStore::connect(&server.create_database().await).await.expect("connect");
        store.create_channel(&suite::channel("x", 1), &Tags::new(), 10).await.expect("create while up");
        drop(server);
        let started = std::time::Instant::now();
        let (y, no_tags) = (suite::channel("y", 2), Tags::new());
        let (read, write) = tokio::join!(store.channel_by_name("x"), store.create_channel(&y, &no_tags, 10));
        assert!(matches!(read, Err(MetaError::Database(_))), "{read:?}");
        assert!(matches!(write, Err(MetaError::Database(_))), "{write:?}");
        let bound = ACQUIRE_TIMEOUT + Duration::from_secs(2);
        assert!(started.elapsed() < bound, "calls fail within the acquire timeout, took {:?}", started.elapsed());
    }

    #[test]
    fn secrets_are_found_for_scrubbing() {
        assert_eq!(url_secrets("postgres://u:p%40ss@h/db"), ["p%40ss", "p@ss"]);
        assert_eq!(url_secrets("postgres://u@h/db?password=x"), ["x", "x"]);
        assert!(url_secrets("postgres://u@h/db").is_empty());
        assert_eq!(scrub("bad p@ss and p%40ss".into(), &url_secrets("postgres://u:p%40ss@h/db")), "bad *** and ***");
    }
}
