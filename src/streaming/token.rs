//! Session tokens of HLS/DASH streaming sessions: the session's parameters (stream ARN,
//! mode, range, options, expiry) as JSON, base64url-encoded and HMAC-SHA256-signed with a
//! per-data-directory key, so sub-resources need no server-side session table.
//!
//! Format: `<base64url(json)>.<base64url(hmac)>` (URL-safe, no padding).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// File (in the data directory) holding the 32-byte signing key, mode 0600.
pub const KEY_FILE: &str = "streaming-session.key";

/// Which protocol a session serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// HLS (`/hls/v1/...`).
    Hls,
    /// DASH (`/dash/v1/...`).
    Dash,
}

/// `PlaybackMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Follows the newest fragments.
    Live,
    /// Starts at a timestamp, then follows.
    LiveReplay,
    /// A fixed range.
    OnDemand,
}

/// `ContainerFormat` (HLS only; DASH is always fMP4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Container {
    /// `FRAGMENTED_MP4`.
    Fmp4,
    /// `MPEG_TS`.
    Ts,
}

/// `DiscontinuityMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Discontinuity {
    /// Between every two fragments.
    Always,
    /// Never.
    Never,
    /// Where fragments leave a gap or overlap of more than 50 ms.
    OnDiscontinuity,
}

/// Everything a session's sub-resources need, fixed when the session URL was issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// HLS or DASH.
    pub protocol: Protocol,
    /// Stream ARN (the store key).
    pub arn: String,
    /// Playback mode.
    pub mode: Mode,
    /// True: producer timestamps select; false: server timestamps.
    pub producer: bool,
    /// Range start (ms), for LIVE_REPLAY / ON_DEMAND.
    pub start_ms: Option<u64>,
    /// Range end (ms).
    pub end_ms: Option<u64>,
    /// Container format.
    pub container: Container,
    /// Discontinuity marking.
    pub discontinuity: Discontinuity,
    /// Show fragment timestamps (PROGRAM-DATE-TIME / `kvs:ts`).
    pub show_ts: bool,
    /// Show fragment numbers (`kvs:fn`, DASH).
    pub show_fn: bool,
    /// Fragments per playlist/manifest.
    pub max_results: u32,
    /// When the session was issued, ms since the Unix epoch (LIVE_REPLAY advances from it).
    pub issued_ms: u64,
    /// Where playlist sequence numbers count from (LIVE: server timestamp of the first
    /// fragment shown at issue; LIVE_REPLAY: the start timestamp); `None` for ON_DEMAND.
    pub anchor_ms: Option<u64>,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not our format or the signature does not match.
    #[error("the session token is invalid")]
    Invalid,
    /// Past its expiry.
    #[error("the session token has expired")]
    Expired,
    /// Issued for the other protocol.
    #[error("the session token belongs to another kind of session")]
    WrongProtocol,
}

impl From<TokenError> for crate::error::ApiError {
    fn from(e: TokenError) -> Self {
        crate::error::ApiError::not_authorized(e.to_string())
    }
}

/// The signing key of `data_dir`: loaded from [`KEY_FILE`], created (0600) on first use.
pub fn key_for(data_dir: &Path) -> std::io::Result<[u8; 32]> {
    static KEYS: OnceLock<Mutex<HashMap<PathBuf, [u8; 32]>>> = OnceLock::new();
    let keys = KEYS.get_or_init(Default::default);
    let mut keys = keys.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(k) = keys.get(data_dir) {
        return Ok(*k);
    }
    let path = data_dir.join(KEY_FILE);
    let key = match std::fs::read(&path) {
        Ok(bytes) if bytes.len() == 32 => {
            let mut k = [0u8; 32];
            k.copy_from_slice(&bytes);
            k
        }
        _ => {
            let k: [u8; 32] = rand::random();
            crate::private_fs::create_private_dir(data_dir)?;
            crate::private_fs::write_private(&path, &k)?;
            k
        }
    };
    keys.insert(data_dir.to_path_buf(), key);
    Ok(key)
}

fn mac(key: &[u8; 32], data: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!("any key length"));
    m.update(data);
    m
}

/// Signs `session` into a URL-safe token.
pub fn issue(key: &[u8; 32], session: &Session) -> String {
    let json = serde_json::to_vec(session).unwrap_or_default();
    let tag = mac(key, &json).finalize().into_bytes();
    format!("{}.{}", URL_SAFE_NO_PAD.encode(&json), URL_SAFE_NO_PAD.encode(tag))
}

/// Verifies `token` (signature, expiry at `now_s`, protocol) and returns its session.
pub fn verify(key: &[u8; 32], token: &str, protocol: Protocol, now_s: u64) -> Result<Session, TokenError> {
    let (body, tag) = token.split_once('.').ok_or(TokenError::Invalid)?;
    let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| TokenError::Invalid)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TokenError::Invalid)?;
    mac(key, &json).verify_slice(&tag).map_err(|_| TokenError::Invalid)?;
    let session: Session = serde_json::from_slice(&json).map_err(|_| TokenError::Invalid)?;
    if session.protocol != protocol {
        return Err(TokenError::WrongProtocol);
    }
    if now_s >= session.expires_at {
        return Err(TokenError::Expired);
    }
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            protocol: Protocol::Hls,
            arn: "arn:aws:kinesisvideo:us-east-1:123456789012:stream/s/1".into(),
            mode: Mode::OnDemand,
            producer: false,
            start_ms: Some(1),
            end_ms: Some(2),
            container: Container::Fmp4,
            discontinuity: Discontinuity::Always,
            show_ts: false,
            show_fn: false,
            max_results: 1000,
            issued_ms: 0,
            anchor_ms: None,
            expires_at: 1000,
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let key = [7u8; 32];
        let t = issue(&key, &session());
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        assert_eq!(verify(&key, &t, Protocol::Hls, 999), Ok(session()));
        assert_eq!(verify(&key, &t, Protocol::Hls, 1000), Err(TokenError::Expired));
        assert_eq!(verify(&key, &t, Protocol::Dash, 1), Err(TokenError::WrongProtocol));
        assert_eq!(verify(&[8u8; 32], &t, Protocol::Hls, 1), Err(TokenError::Invalid));
        // Tampering with the parameters breaks the signature.
        let mut forged = session();
        forged.expires_at = u64::MAX;
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let sig = t.split_once('.').unwrap().1;
        assert_eq!(verify(&key, &format!("{body}.{sig}"), Protocol::Hls, 1), Err(TokenError::Invalid));
        assert_eq!(verify(&key, "garbage", Protocol::Hls, 1), Err(TokenError::Invalid));
    }
}
