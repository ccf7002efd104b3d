//! What real players make of a media file or URL: one wrapper around `ffprobe`, `ffmpeg`
//! and `mkvinfo` for every test that judges reel's output with them. Blocking (runs the
//! tools as child processes); async tests call it from `spawn_blocking`.

use std::ffi::OsStr;
use std::process::Command;

use serde_json::Value;

/// Why a tool could not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot run {tool}: {source}")]
    Spawn { tool: &'static str, source: std::io::Error },
    #[error("{tool} failed: {stderr}")]
    Failed { tool: &'static str, stderr: String },
    #[error("{tool} printed something unexpected: {output}")]
    Output { tool: &'static str, output: String },
}

/// Debian packages that provide the tools tests run, with the command that installs them.
const INSTALL: &[(&str, &str)] = &[
    ("ffprobe", "apt-get install -y ffmpeg"),
    ("ffmpeg", "apt-get install -y ffmpeg"),
    ("mkvinfo", "apt-get install -y mkvtoolnix"),
    ("curl", "apt-get install -y curl"),
    ("node", "apt-get install -y nodejs npm"),
    ("npm", "apt-get install -y nodejs npm"),
    ("aws", "apt-get install -y awscli"),
];

/// The command that installs `tool` (every tool a test requires is listed here).
pub fn install_command(tool: &str) -> &'static str {
    INSTALL
        .iter()
        .find(|(t, _)| *t == tool)
        .map(|(_, cmd)| *cmd)
        .unwrap_or_else(|| panic!("no install command known for `{tool}`: add it to reel::testkit::probe::INSTALL"))
}

/// Fails the calling test unless every tool in `tools` runs (`-version` or `--version`),
/// naming the command that installs the missing one: tests never pass by skipping.
pub fn require(tools: &[&str]) {
    let runs = |t: &str, flag: &str| Command::new(t).arg(flag).output().is_ok_and(|o| o.status.success());
    for tool in tools {
        let install = install_command(tool);
        assert!(
            runs(tool, "-version") || runs(tool, "--version"),
            "`{tool}` is required but does not run: {install} (.ci/run installs everything the tests need)"
        );
    }
}

/// Runs `tool` with `args`; its stdout, or its stderr as the error when it fails.
fn run(tool: &'static str, args: &[&OsStr]) -> Result<String, ProbeError> {
    let out = Command::new(tool).args(args).output().map_err(|source| ProbeError::Spawn { tool, source })?;
    if !out.status.success() {
        return Err(ProbeError::Failed { tool, stderr: String::from_utf8_lossy(&out.stderr).into_owned() });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ffprobe -v error -show_entries <entries> -of <format> <input>`.
fn ffprobe(entries: &str, format: &str, input: &OsStr) -> Result<String, ProbeError> {
    let args = ["-v", "error", "-show_entries", entries, "-of", format].map(OsStr::new);
    run("ffprobe", &[&args[..], &[input]].concat())
}

/// Decodes all of `input` with `ffmpeg -v error … -enc_time_base -1 -f null -`: everything
/// ffmpeg reported (empty for a clean file), plus the exit status when it failed.
///
/// `-enc_time_base -1` keeps the input's time base for the null output. By default ffmpeg
/// gives it 1/(guessed frame rate), and two video frames of a variable-rate stream closer
/// than one nominal frame (a browser camera catching up after a stall stores frames 1 ms
/// apart, strictly increasing) then collide there and ffmpeg's muxer complains about
/// "non monotonically increasing dts": an artefact of the null output, not of the file.
pub fn decode_errors(input: impl AsRef<OsStr>) -> Result<String, ProbeError> {
    let tool = "ffmpeg";
    let out = Command::new(tool)
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(input)
        .args(["-enc_time_base", "-1", "-f", "null", "-"])
        .output()
        .map_err(|source| ProbeError::Spawn { tool, source })?;
    let mut errors = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        errors.push_str(&format!("\nffmpeg exited with {}", out.status));
    }
    Ok(errors)
}

/// The container duration ffprobe reports (`format=duration`), in seconds.
pub fn duration(input: impl AsRef<OsStr>) -> Result<f64, ProbeError> {
    let text = ffprobe("format=duration", "default=nw=1:nk=1", input.as_ref())?;
    text.trim().parse().map_err(|_| ProbeError::Output { tool: "ffprobe", output: text })
}

/// `ffprobe -show_entries stream=…` in `compact` form: one line per stream with its codec,
/// profile, picture size, sample rate and channels.
pub fn stream_summary(input: impl AsRef<OsStr>) -> Result<String, ProbeError> {
    ffprobe("stream=index,codec_name,width,height,sample_rate,channels,profile", "compact", input.as_ref())
}

/// The MD5 of each packet of the first audio stream of `input`, as ffprobe demuxes it
/// (`-show_data_hash MD5`): what a remuxer must carry over byte for byte.
pub fn audio_packet_hashes(input: impl AsRef<OsStr>) -> Result<Vec<String>, ProbeError> {
    let args = ["-v", "error", "-select_streams", "a:0", "-show_data_hash", "MD5", "-show_entries", "packet=data_hash"];
    let args = [&args[..], &["-of", "csv=p=0"]].concat().into_iter().map(OsStr::new).collect::<Vec<_>>();
    let out = run("ffprobe", &[&args[..], &[input.as_ref()]].concat())?;
    Ok(out.lines().map(str::to_owned).collect())
}

/// `mkvinfo [-v] <path>` output (`verbose` reads past the first Cluster).
pub fn mkvinfo(path: impl AsRef<OsStr>, verbose: bool) -> Result<String, ProbeError> {
    let (flag, path) = (OsStr::new("-v"), path.as_ref());
    let args: &[&OsStr] = if verbose { &[flag, path] } else { &[path] };
    run("mkvinfo", args)
}

/// One packet as ffprobe demuxes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Packet {
    /// Index of its stream.
    pub stream: u32,
    /// Presentation time, s (NaN when ffprobe gives none).
    pub pts: f64,
    /// Duration, s (0 when ffprobe gives none).
    pub duration: f64,
    /// A keyframe (`K` flag).
    pub keyframe: bool,
}

/// What ffprobe demuxes from a file or URL.
#[derive(Debug, Clone, Default)]
pub struct Streams {
    /// `codec_name` of each stream by index, e.g. `["h264", "opus"]`.
    pub codecs: Vec<String>,
    /// Every packet, in file order.
    pub packets: Vec<Packet>,
}

impl Streams {
    /// The packets of the stream with this index.
    pub fn of_stream(&self, index: u32) -> Vec<Packet> {
        self.packets.iter().filter(|p| p.stream == index).copied().collect()
    }

    /// Last packet end minus first packet start of the stream with this codec, in s.
    pub fn codec_duration(&self, codec: &str) -> Option<f64> {
        let index = self.codecs.iter().position(|c| c == codec)?;
        let (mut first, mut last) = (f64::MAX, f64::MIN);
        for p in self.of_stream(index as u32).iter().filter(|p| p.pts.is_finite()) {
            first = first.min(p.pts);
            last = last.max(p.pts + p.duration);
        }
        Some(if last >= first { last - first } else { 0.0 })
    }
}

/// Codecs and packets of `input` (`ffprobe -show_entries stream=…:packet=… -of json`).
pub fn streams(input: impl AsRef<OsStr>) -> Result<Streams, ProbeError> {
    let entries = "stream=index,codec_name:packet=stream_index,pts_time,duration_time,flags";
    let out = ffprobe(entries, "json", input.as_ref())?;
    let v: Value =
        serde_json::from_str(&out).map_err(|_| ProbeError::Output { tool: "ffprobe", output: out.clone() })?;
    let time = |p: &Value, key: &str| p[key].as_str().and_then(|t| t.parse::<f64>().ok());
    let mut streams: Vec<(i64, String)> = v["streams"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| (s["index"].as_i64().unwrap_or(-1), s["codec_name"].as_str().unwrap_or("?").to_string()))
        .collect();
    streams.sort_by_key(|(i, _)| *i);
    let packets = v["packets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| Packet {
            stream: p["stream_index"].as_u64().unwrap_or(u64::MAX) as u32,
            pts: time(p, "pts_time").unwrap_or(f64::NAN),
            duration: time(p, "duration_time").unwrap_or(0.0),
            keyframe: p["flags"].as_str().is_some_and(|f| f.contains('K')),
        })
        .collect();
    Ok(Streams { codecs: streams.into_iter().map(|(_, c)| c).collect(), packets })
}
