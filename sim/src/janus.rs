//! Janus VideoRoom (recording on) as the side-by-side baseline recorder.
//!
//! [`Janus::start`] runs the Debian `janus` binary (1.1.x) with a generated minimal
//! configuration: only the HTTP transport (on 127.0.0.1, a free port) and only the
//! VideoRoom plugin are loaded (symlinked into private folders), no event handlers or
//! loggers, no STUN, ICE gathering restricted to one address (`ice_enforce_list`).
//! [`Janus::publish`] drives the Janus HTTP API for one publisher: its own Janus session
//! and handle, its own room (`record: true`, `rec_dir` = `<workdir>/rec`, H.264 + Opus),
//! join as publisher, `publish` with the caller's SDP offer, and returns Janus's answer.
//! One room per publisher keeps publishers independent (no room publisher limit, no
//! fan-out work: nobody subscribes) — what a recorder of many cameras would configure.
//!
//! What Janus does per packet for this baseline: ICE/DTLS-SRTP, RTCP/NACK/TWCC feedback,
//! and writing each RTP packet as-is into `.mjr` files (no depacketizing, no muxing).
//! See `sim/BASELINE.md`.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

/// The `janus` executable (looked up on `PATH`).
pub const JANUS_BIN: &str = "janus";
/// Where the Debian package installs Janus plugins and transports.
pub const JANUS_LIB_DIR: &str = "/usr/lib/x86_64-linux-gnu/janus";
/// Overrides [`JANUS_LIB_DIR`] (e.g. a Janus built from source).
pub const JANUS_LIB_DIR_ENV: &str = "REEL_JANUS_LIB_DIR";
/// Overrides Janus's log level (0-7, default 4) in the generated config.
pub const DEBUG_LEVEL_ENV: &str = "REEL_JANUS_DEBUG_LEVEL";
/// Sets Janus's `event_loops` (a fixed pool of ICE/media threads) in the generated config;
/// unset, Janus's default applies: one thread per handle (per publisher).
pub const EVENT_LOOPS_ENV: &str = "REEL_JANUS_EVENT_LOOPS";
/// How long [`Janus::start`] waits for the HTTP API to answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Janus::publish`] waits for the SDP answer event.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Janus::stop`] waits after SIGTERM before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Keepalive period of each publisher's Janus session (Janus times sessions out at 60 s).
pub const KEEPALIVE_PERIOD: Duration = Duration::from_secs(25);

/// What can go wrong starting or driving Janus.
#[derive(Debug, thiserror::Error)]
pub enum JanusError {
    /// `janus` is not on `PATH`, or its plugin/transport libraries are missing.
    #[error("janus is not installed: {0}")]
    NotInstalled(String),
    /// Local I/O (config files, process spawn).
    #[error("janus I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP API could not be reached.
    #[error("janus HTTP: {0}")]
    Http(#[from] reqwest::Error),
    /// Janus or the VideoRoom plugin answered with an error.
    #[error("janus API error {code}: {reason}")]
    Api {
        /// Janus or VideoRoom error code.
        code: i64,
        /// Its message.
        reason: String,
    },
    /// An answer we did not expect (missing ids, wrong message).
    #[error("unexpected janus reply: {0}")]
    Protocol(String),
    /// Janus did not do something in time (start, SDP answer).
    #[error("janus timed out: {0}")]
    Timeout(&'static str),
    /// The janus process exited; the last lines of its log are attached.
    #[error("janus exited ({status}); log tail:\n{log_tail}")]
    Exited {
        /// Exit status.
        status: String,
        /// Last lines of `<workdir>/janus.log`.
        log_tail: String,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, JanusError>;

/// Whether `janus` and the two libraries this baseline loads are installed.
pub fn installed() -> std::result::Result<(), String> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(JANUS_BIN).is_file()))
        .unwrap_or(false);
    if !on_path {
        return Err(format!("`{JANUS_BIN}` is not on PATH (Debian: apt-get install janus)"));
    }
    let lib = lib_dir();
    for l in [lib.join("plugins/libjanus_videoroom.so"), lib.join("transports/libjanus_http.so")] {
        if !l.is_file() {
            return Err(format!("{} is missing (set {JANUS_LIB_DIR_ENV})", l.display()));
        }
    }
    Ok(())
}

fn lib_dir() -> PathBuf {
    std::env::var_os(JANUS_LIB_DIR_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(JANUS_LIB_DIR))
}

/// Inside a private network namespace whose veth pair has both ends local (as in the
/// end-to-end tests): let packets with a local source address arrive on a veth device.
///
/// Janus (libnice) sends out of its ICE interface, so its packets reach the publisher's
/// veth end carrying a source address that is local to the namespace, and Linux drops
/// them as martians unless `accept_local` is on (and `rp_filter` off). Symptom without it:
/// Janus answers STUN checks but the publisher never sees a reply; ICE stays `Checking`.
/// Sets `net.ipv4.conf.{all,default,<every device>}.accept_local=1, rp_filter=0` — only
/// in a non-initial network namespace: refuses (error) when run in the host's namespace.
pub fn netns_accept_local() -> std::io::Result<()> {
    let own = std::fs::read_link("/proc/self/ns/net")?;
    if std::fs::read_link("/proc/1/ns/net").is_ok_and(|init| init == own) {
        return Err(std::io::Error::other("refusing to change sysctls of the initial network namespace"));
    }
    for entry in std::fs::read_dir("/proc/sys/net/ipv4/conf")? {
        let dir = entry?.path();
        std::fs::write(dir.join("accept_local"), "1")?;
        std::fs::write(dir.join("rp_filter"), "0")?;
    }
    Ok(())
}

/// A running Janus with the baseline configuration. Killed on drop.
pub struct Janus {
    child: Child,
    workdir: PathBuf,
    api: Api,
}

impl Janus {
    /// Write the configuration into `workdir` (`conf/`, `plugins/`, `transports/`,
    /// `rec/`, `janus.log`), spawn `janus`, and wait until its HTTP API answers.
    /// ICE candidates are gathered on `bind_ip` only. Janus skips loopback interfaces
    /// when gathering, so `bind_ip` must be a non-loopback address (e.g. the veth end
    /// inside a private network namespace).
    pub async fn start(workdir: impl AsRef<Path>, bind_ip: IpAddr) -> Result<Janus> {
        installed().map_err(JanusError::NotInstalled)?;
        let workdir = std::path::absolute(workdir.as_ref())?;
        let port = free_tcp_port()?;
        write_config(&workdir, port, bind_ip)?;
        let log = std::fs::File::create(workdir.join("janus.log"))?;
        let child = Command::new(JANUS_BIN)
            .arg("--configs-folder")
            .arg(workdir.join("conf"))
            .arg("--config")
            .arg(workdir.join("conf/janus.jcfg"))
            .args(["--disable-colors", "--debug-timestamps"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        let mut janus = Janus { child, workdir, api: Api::new(format!("http://127.0.0.1:{port}/janus"))? };
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = janus.child.try_wait()? {
                return Err(JanusError::Exited { status: status.to_string(), log_tail: janus.log_tail(30) });
            }
            if janus.api.info().await.is_ok() {
                return Ok(janus);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(JanusError::Timeout("HTTP API did not come up"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Process id of `janus` (for CPU and RSS figures from `/proc/<pid>`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Base URL of the Janus HTTP API (`http://127.0.0.1:<port>/janus`).
    pub fn api_url(&self) -> &str {
        &self.api.base
    }

    /// Where recordings go (`<workdir>/rec`).
    pub fn rec_dir(&self) -> PathBuf {
        self.workdir.join("rec")
    }

    /// Total size of the `.mjr` recordings so far.
    pub fn recorded_bytes(&self) -> u64 {
        let Ok(entries) = std::fs::read_dir(self.rec_dir()) else { return 0 };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "mjr"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    /// The last `lines` lines of Janus's log (for error reports).
    pub fn log_tail(&self, lines: usize) -> String {
        let Ok(f) = std::fs::File::open(self.workdir.join("janus.log")) else { return String::new() };
        let all: Vec<String> = BufReader::new(f).lines().map_while(|l| l.ok()).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Publish one stream: new Janus session + VideoRoom handle, a room of its own with
    /// recording on, join as publisher, `publish` with `offer_sdp`; returns once Janus's
    /// SDP answer arrives (the caller applies it and connects ICE/DTLS itself).
    pub async fn publish(&self, offer_sdp: &str) -> Result<JanusPublisher> {
        let api = self.api.clone();
        let session = api.create_session().await?;
        let handle = api.attach(session, "janus.plugin.videoroom").await?;
        let created = api
            .plugin_request(
                session,
                handle,
                json!({
                    "request": "create",
                    "description": "reel baseline",
                    "publishers": 1,
                    "bitrate": 0,
                    "record": true,
                    "rec_dir": self.rec_dir().to_string_lossy(),
                    "videocodec": "h264",
                    "audiocodec": "opus",
                }),
            )
            .await?;
        let room = created["room"].as_u64().ok_or_else(|| JanusError::Protocol(format!("create: {created}")))?;
        api.plugin_message(session, handle, json!({"request": "join", "ptype": "publisher", "room": room}), None)
            .await?;
        let joined = api.wait_event(session, ANSWER_TIMEOUT, |d, _| d["videoroom"] == "joined").await?;
        let publisher_id = joined.0["id"].as_u64().unwrap_or(0);
        api.plugin_message(
            session,
            handle,
            json!({"request": "publish", "audio": true, "video": true}),
            Some(json!({"type": "offer", "sdp": offer_sdp})),
        )
        .await?;
        let (_, jsep) = api.wait_event(session, ANSWER_TIMEOUT, |_, jsep| jsep.is_some()).await?;
        let answer = jsep
            .and_then(|j| j["sdp"].as_str().map(str::to_owned))
            .ok_or_else(|| JanusError::Protocol("answer event without jsep.sdp".into()))?;
        // All our candidates are in the offer (no trickle): tell Janus gathering is done.
        api.post(&format!("/{session}/{handle}"), json!({"janus": "trickle", "candidate": {"completed": true}}))
            .await?;
        let keepalive = tokio::spawn({
            let api = api.clone();
            async move {
                loop {
                    tokio::time::sleep(KEEPALIVE_PERIOD).await;
                    if let Err(e) = api.post(&format!("/{session}"), json!({"janus": "keepalive"})).await {
                        tracing::warn!(session, error = %e, "janus keepalive failed");
                    }
                }
            }
        });
        Ok(JanusPublisher { api, session, handle, room, publisher_id, answer, keepalive })
    }

    /// Stop Janus: SIGTERM (Janus closes its recordings and exits), SIGKILL after
    /// [`STOP_TIMEOUT`]; waits for the process either way.
    pub fn stop(mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) with the pid of our own child, not yet reaped (so not reused).
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = std::time::Instant::now() + STOP_TIMEOUT;
        while std::time::Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One publisher's state in Janus. Dropping it stops the keepalives (Janus then times the
/// session out after 60 s); [`JanusPublisher::unpublish`] tears it down at once.
pub struct JanusPublisher {
    api: Api,
    session: u64,
    handle: u64,
    room: u64,
    publisher_id: u64,
    answer: String,
    keepalive: tokio::task::JoinHandle<()>,
}

impl JanusPublisher {
    /// Janus's SDP answer to the offer given to [`Janus::publish`].
    pub fn answer_sdp(&self) -> &str {
        &self.answer
    }

    /// The VideoRoom room created for this publisher.
    pub fn room(&self) -> u64 {
        self.room
    }

    /// The publisher's id in its room.
    pub fn publisher_id(&self) -> u64 {
        self.publisher_id
    }

    /// Unpublish, destroy the room and the Janus session (closes the PeerConnection and
    /// the recordings).
    pub async fn unpublish(self) -> Result<()> {
        let (s, h) = (self.session, self.handle);
        self.api.plugin_message(s, h, json!({"request": "unpublish"}), None).await?;
        self.api.plugin_request(s, h, json!({"request": "destroy", "room": self.room})).await?;
        self.api.post(&format!("/{s}"), json!({"janus": "destroy"})).await?;
        Ok(())
    }
}

impl Drop for JanusPublisher {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

/// The Janus HTTP API (plain HTTP on 127.0.0.1).
#[derive(Clone)]
struct Api {
    base: String,
    http: reqwest::Client,
}

/// Transaction ids, unique within the process.
static TRANSACTION: AtomicU64 = AtomicU64::new(1);

impl Api {
    fn new(base: String) -> Result<Api> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).no_proxy().build()?;
        Ok(Api { base, http })
    }

    async fn info(&self) -> Result<Value> {
        Ok(self.http.get(format!("{}/info", self.base)).send().await?.error_for_status()?.json().await?)
    }

    /// POST a Janus API request (a transaction id is added); returns the reply after
    /// mapping `"janus": "error"` to [`JanusError::Api`].
    async fn post(&self, path: &str, mut body: Value) -> Result<Value> {
        body["transaction"] = json!(format!("t{}", TRANSACTION.fetch_add(1, Ordering::Relaxed)));
        let reply: Value = self.http.post(format!("{}{path}", self.base)).json(&body).send().await?.json().await?;
        if reply["janus"] == "error" {
            return Err(JanusError::Api {
                code: reply["error"]["code"].as_i64().unwrap_or(0),
                reason: reply["error"]["reason"].as_str().unwrap_or("").to_owned(),
            });
        }
        Ok(reply)
    }

    async fn create_session(&self) -> Result<u64> {
        let r = self.post("", json!({"janus": "create"})).await?;
        r["data"]["id"].as_u64().ok_or_else(|| JanusError::Protocol(format!("create: {r}")))
    }

    async fn attach(&self, session: u64, plugin: &str) -> Result<u64> {
        let r = self.post(&format!("/{session}"), json!({"janus": "attach", "plugin": plugin})).await?;
        r["data"]["id"].as_u64().ok_or_else(|| JanusError::Protocol(format!("attach: {r}")))
    }

    /// A synchronous plugin request (create, destroy): returns `plugindata.data`.
    async fn plugin_request(&self, session: u64, handle: u64, body: Value) -> Result<Value> {
        let r = self.post(&format!("/{session}/{handle}"), json!({"janus": "message", "body": body})).await?;
        plugin_data(&r)
    }

    /// An asynchronous plugin message (join, publish, unpublish): Janus acks it and
    /// delivers the result as an event.
    async fn plugin_message(&self, session: u64, handle: u64, body: Value, jsep: Option<Value>) -> Result<Value> {
        let mut msg = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        let r = self.post(&format!("/{session}/{handle}"), msg).await?;
        if r["janus"] == "success" {
            // Some requests (e.g. unpublish when nothing is published) answer at once.
            plugin_data(&r)?;
        }
        Ok(r)
    }

    /// Long-poll the session's events until a plugin event matches `want(data, jsep)`;
    /// VideoRoom errors in events become [`JanusError::Api`].
    async fn wait_event(
        &self,
        session: u64,
        timeout: Duration,
        want: impl Fn(&Value, Option<&Value>) -> bool,
    ) -> Result<(Value, Option<Value>)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let poll = self.http.get(format!("{}/{session}?maxev=1", self.base)).send();
            let reply: Value = match tokio::time::timeout_at(deadline, poll).await {
                Ok(r) => r?.json().await?,
                Err(_) => return Err(JanusError::Timeout("waiting for a VideoRoom event")),
            };
            // maxev=1 still answers with an array on some versions; accept both.
            let events = match reply {
                Value::Array(v) => v,
                v => vec![v],
            };
            for ev in events {
                if ev["janus"] != "event" {
                    continue;
                }
                let data = plugin_data(&ev)?;
                let jsep = ev.get("jsep").cloned();
                if want(&data, jsep.as_ref()) {
                    return Ok((data, jsep));
                }
            }
        }
    }
}

/// `plugindata.data` of a reply, with VideoRoom's `error_code`/`error` mapped to an error.
fn plugin_data(reply: &Value) -> Result<Value> {
    let data = reply["plugindata"]["data"].clone();
    if data.is_null() {
        return Err(JanusError::Protocol(format!("no plugindata in {reply}")));
    }
    if let Some(code) = data["error_code"].as_i64() {
        return Err(JanusError::Api { code, reason: data["error"].as_str().unwrap_or("").to_owned() });
    }
    Ok(data)
}

/// A TCP port free on 127.0.0.1 right now (Janus binds it a moment later; a collision
/// shows up as a start timeout).
fn free_tcp_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Write `conf/` (janus.jcfg, the HTTP transport and VideoRoom configs) and the
/// `plugins/`, `transports/` folders holding a symlink to exactly the one library each.
fn write_config(workdir: &Path, http_port: u16, bind_ip: IpAddr) -> std::io::Result<()> {
    let lib = lib_dir();
    for d in ["conf", "plugins", "transports", "empty", "rec"] {
        std::fs::create_dir_all(workdir.join(d))?;
    }
    for (dir, so) in [("plugins", "libjanus_videoroom.so"), ("transports", "libjanus_http.so")] {
        let link = workdir.join(dir).join(so);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(lib.join(dir).join(so), link)?;
    }
    let w = workdir.display();
    let debug_level: u8 = std::env::var(DEBUG_LEVEL_ENV).ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let event_loops = std::env::var(EVENT_LOOPS_ENV)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .map(|n| format!("\tevent_loops = {n}\n"))
        .unwrap_or_default();
    std::fs::write(
        workdir.join("conf/janus.jcfg"),
        format!(
            r#"general: {{
	configs_folder = "{w}/conf"
	plugins_folder = "{w}/plugins"
	transports_folder = "{w}/transports"
	events_folder = "{w}/empty"
	loggers_folder = "{w}/empty"
	interface = "{bind_ip}"
	debug_level = {debug_level}
	session_timeout = 60
	hide_dependencies = true
{event_loops}}}
certificates: {{
}}
media: {{
	ipv6 = false
}}
nat: {{
	nice_debug = false
	ice_enforce_list = "{bind_ip}"
	ignore_mdns = true
}}
plugins: {{
}}
transports: {{
}}
loggers: {{
}}
events: {{
	broadcast = false
}}
"#
        ),
    )?;
    std::fs::write(
        workdir.join("conf/janus.transport.http.jcfg"),
        format!(
            r#"general: {{
	json = "plain"
	base_path = "/janus"
	http = true
	port = {http_port}
	ip = "127.0.0.1"
	https = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
cors: {{
}}
"#
        ),
    )?;
    std::fs::write(workdir.join("conf/janus.plugin.videoroom.jcfg"), "general: {\n}\n")?;
    Ok(())
}
