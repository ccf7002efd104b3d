//! Private network namespaces for the WebRTC end-to-end tests.
//!
//! WebRTC stacks (Chromium, libnice) gather no ICE candidates on loopback alone, so each
//! ingest test re-runs itself under `unshare -n` in a namespace of its own: `lo` up plus a
//! veth pair [`REEL_IP`]/24 ↔ [`MASTER_IP`]/24, reel listening on the veth address, the
//! master running beside it. Traffic never leaves loopback and 198.18.0.0/24 (RFC 2544
//! benchmarking range), and parallel tests never share a namespace.
//!
//! Use (the `netns_` prefix lets `cargo test -- --skip netns_` exclude these tests where
//! namespaces are impossible, as the README documents; `tests/honest.rs` enforces it):
//! ```ignore
//! #[test]
//! fn netns_my_test() {
//!     netns::run("netns_my_test", |ns| {
//!         // … runs only inside the namespace …
//!     });
//! }
//! ```
//! Outside, [`run`] re-executes the test binary for exactly that test inside a fresh
//! namespace, streams its output and fails if the inner run failed (or ran no test). When
//! namespaces are unavailable it fails the test with the command that fixes it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::{Options, ROOT_KEY_ID, ROOT_SECRET, Reel};

pub use reel_sim::netns::{MASTER_IP, REEL_IP};
/// Overrides the `reel` binary the namespaced tests start (e.g. a release build).
pub const BIN_ENV: &str = "REEL_E2E_BIN";

/// Extra `reel serve` flags for the media peer inside the namespace: the one place to
/// adapt when the peer's flags change (its host-candidate address follows `--listen` by
/// default; an explicit flag goes here).
pub fn media_peer_args(ns: &Netns) -> Vec<String> {
    let _ = ns;
    Vec::new()
}

/// The namespace a test runs in (only constructed inside it).
#[derive(Debug, Clone)]
pub struct Netns {
    /// [`REEL_IP`].
    pub reel_ip: &'static str,
    /// [`MASTER_IP`].
    pub master_ip: &'static str,
}

/// Inside the namespace: set it up and run `body` in it. Outside: run `test_name` (the
/// calling test's exact name) in a fresh namespace and assert that it passed.
pub fn run(test_name: &str, body: impl FnOnce(Netns)) {
    if reel_sim::netns::inside() {
        reel_sim::netns::setup_links().expect("set up the namespace's links");
        body(Netns { reel_ip: REEL_IP, master_ip: MASTER_IP });
    } else {
        run_outside(test_name);
    }
}

/// Re-runs exactly `test_name` under `unshare -n` and asserts it passed there.
fn run_outside(test_name: &str) {
    if let Err(e) = reel_sim::netns::probe() {
        panic!(
            "{test_name} needs a private network namespace ({e}): run the tests as root with `unshare` and `ip` (apt-get install util-linux iproute2, or bash tests/e2e/install.sh)"
        );
    }
    let exe = std::env::current_exe().expect("current test executable");
    let mut child = reel_sim::netns::reexec_command(
        &exe,
        ["--exact", test_name, "--nocapture", "--test-threads=1", "--include-ignored"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .expect("spawn the test binary under unshare -n");
    let stdout = child.stdout.take().expect("child stdout");
    let mut ran_one = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if line.contains("test result: ok. 1 passed") {
            ran_one = true;
        }
        println!("[netns] {line}");
    }
    let status = child.wait().expect("wait for the namespaced test");
    assert!(status.success(), "{test_name} failed inside its network namespace ({status})");
    assert!(ran_one, "{test_name}: the namespaced run did not run exactly this one test");
}

/// Start `reel serve --listen <ip>:0` with the test root key, `opts.args` and the
/// namespace's media peer flags (like [`Reel::start_with`], but on the veth address; the
/// binary is this build's unless [`BIN_ENV`] names another).
pub fn start_reel(ns: &Netns, opts: Options) -> Reel {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir: PathBuf = opts.data_dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let bin = std::env::var_os(BIN_ENV).unwrap_or_else(|| env!("CARGO_BIN_EXE_reel").into());
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("{}:0", ns.reel_ip))
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--access-key-id", ROOT_KEY_ID, "--secret-access-key", ROOT_SECRET])
        .args(&opts.args)
        .args(media_peer_args(ns));
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    cmd.env("REEL_LOG_SDP", "1");
    // Tests scrape /metrics; off loopback it is signed-only unless opened.
    cmd.env("REEL_METRICS", "open");
    let tmp = if opts.data_dir.is_some() { None } else { Some(tmp) };
    Reel::launch(cmd, data_dir, tmp)
}
