//! A private Postgres server for the metadata and cluster tests, on 127.0.0.1 only: reel-sim's
//! [`PrivatePostgres`](reel_sim::pg::PrivatePostgres) (the one implementation, also behind
//! `reel-load --target reel-cluster`), with panics instead of errors (a test fails, naming
//! the install command, and never skips) and databases made on demand.
//!
//! [`fresh_database`] starts one server per test process on first use and gives each test
//! a database of its own. [`PgTestServer::start`] starts a separate one for a test that
//! needs to stop it: [`PgTestServer::stop`] and [`PgTestServer::restart`] take it down and
//! back up on the same data and port (a database outage); dropping it stops the server.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use reel_sim::pg::PrivatePostgres;
use sqlx::{Connection as _, Executor as _, PgConnection};

/// A running private Postgres server.
#[derive(Debug)]
pub struct PgTestServer {
    pg: PrivatePostgres,
}

/// The server shared by the tests of this process (never dropped: it stops when the
/// process exits and its supervisor's pipe closes).
static SHARED: OnceLock<PgTestServer> = OnceLock::new();

/// The URL of a fresh, empty database on this process's shared test server.
pub async fn fresh_database() -> String {
    SHARED.get_or_init(PgTestServer::start).create_database().await
}

impl PgTestServer {
    /// Create a cluster in a new temporary directory and start a server on a free port of
    /// 127.0.0.1; returns once it accepts connections. Panics (never skips) if Postgres is
    /// not installed or does not start.
    pub fn start() -> Self {
        Self { pg: PrivatePostgres::start().unwrap_or_else(|e| panic!("{e}")) }
    }

    /// Fast shutdown (like `pg_ctl stop -m fast`), keeping the data directory and port for
    /// [`PgTestServer::restart`]; returns once the server has exited.
    pub fn stop(&mut self) {
        self.pg.stop().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts a [stopped](PgTestServer::stop) server again on the same data and port;
    /// returns once it accepts connections.
    pub fn restart(&mut self) {
        self.pg.restart().unwrap_or_else(|e| panic!("{e}"));
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.pg.port()
    }

    /// Create a database with a fresh name; its URL.
    pub async fn create_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("reel_test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let mut admin = PgConnection::connect(&self.url("postgres"))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}\n{}", self.pg.log()));
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        admin.close().await.expect("close the admin connection");
        self.url(&name)
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        self.pg.url(database)
    }
}
