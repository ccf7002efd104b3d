//! A private network namespace for WebRTC runs: `unshare -n`, `lo` up, and a veth pair
//! [`REEL_IP`]/24 (reel) ↔ [`MASTER_IP`]/24 (the masters).
//!
//! WebRTC stacks (Chromium, libnice) gather no ICE candidates on loopback alone, and a
//! benchmark must not share its links with anything else; so the end-to-end tests and
//! `reel-load --netns` re-run themselves under `unshare -n` ([`reexec_command`]), and the
//! inner process, recognised by [`INNER_ENV`], calls [`setup_links`]. Traffic never leaves the
//! namespace, and 198.18.0.0/24 is the RFC 2544 benchmarking range.

use std::ffi::OsStr;
use std::process::Command;

/// Address of reel's end of the veth pair (HTTP/WSS listener, TURN, media host candidate).
pub const REEL_IP: &str = "198.18.0.1";
/// Address of the masters' end of the veth pair.
pub const MASTER_IP: &str = "198.18.0.2";
/// Set in the re-executed process; its presence means "already inside".
pub const INNER_ENV: &str = "REEL_E2E_IN_NETNS";

/// Why the namespace could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// `unshare -n` is not permitted or not installed.
    #[error("network namespaces are unavailable: {0}")]
    Unavailable(String),
    /// An `ip` command failed.
    #[error("ip {args} failed: {stderr}")]
    Ip {
        /// The arguments.
        args: String,
        /// What it printed.
        stderr: String,
    },
}

/// Whether this process runs inside the namespace (its parent re-executed it).
pub fn inside() -> bool {
    std::env::var_os(INNER_ENV).is_some()
}

/// Checks that `unshare -n` works here.
pub fn probe() -> Result<(), NetnsError> {
    match Command::new("unshare").args(["-n", "true"]).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(NetnsError::Unavailable(format!(
            "`unshare -n true` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
        Err(e) => Err(NetnsError::Unavailable(format!("cannot run `unshare`: {e}"))),
    }
}

/// `unshare -n -- <exe> <args…>` with [`INNER_ENV`] set: the same program, inside a fresh
/// namespace. The caller adds stdio and runs it.
pub fn reexec_command<I, S>(exe: impl AsRef<OsStr>, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("unshare");
    cmd.arg("-n").arg("--").arg(exe).args(args).env(INNER_ENV, "1");
    cmd
}

/// Turns IPv6 off for the links created next in this namespace (its `/proc/sys/net` is the
/// namespace's own). Otherwise each veth end gets a link-local IPv6 address a second or two
/// after it comes up, and Chromium, already running by then, reports that as a network
/// change and fails in-flight requests with `net::ERR_NETWORK_CHANGED`. The tests use IPv4
/// only. Nothing to do where the kernel has no IPv6.
fn no_ipv6_on_new_links() {
    // `default` applies to links created from now on (the veth pair), not to `lo`.
    let path = "/proc/sys/net/ipv6/conf/default/disable_ipv6";
    if std::path::Path::new(path).exists()
        && let Err(e) = std::fs::write(path, "1")
    {
        tracing::warn!(path, error = %e, "cannot turn IPv6 off in the test namespace");
    }
}

fn ip(args: &[&str]) -> Result<(), NetnsError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetnsError::Ip { args: args.join(" "), stderr: format!("cannot run `ip` (iproute2): {e}") })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetnsError::Ip { args: args.join(" "), stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }
}

/// Inside the namespace: loopback up, and the veth pair with both ends addressed and up.
pub fn setup_links() -> Result<(), NetnsError> {
    no_ipv6_on_new_links();
    ip(&["link", "set", "lo", "up"])?;
    ip(&["link", "add", "reel0", "type", "veth", "peer", "name", "master0"])?;
    ip(&["addr", "add", &format!("{REEL_IP}/24"), "dev", "reel0"])?;
    ip(&["addr", "add", &format!("{MASTER_IP}/24"), "dev", "master0"])?;
    ip(&["link", "set", "reel0", "up"])?;
    ip(&["link", "set", "master0", "up"])?;
    Ok(())
}
