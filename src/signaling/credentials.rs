//! Short-lived TURN credentials, HMAC-derived from a server secret (TURN REST style, but
//! in the `[a-zA-Z0-9_.-]` alphabet the signaling model requires).
//!
//! Username: `<expiry unix seconds>.<channel key>.<nonce>`, where the channel key is the
//! first 16 hex digits of SHA-256(channel ARN) — the TURN server counts allocations per
//! channel by it. Password: unpadded base64url of HMAC-SHA256(secret, username). The
//! secret lives in `<data-dir>/turn-secret` (hex, mode 0600) and can be rotated; rotation
//! invalidates every credential issued before it.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

/// File name of the secret inside the data directory.
pub const SECRET_FILE: &str = "turn-secret";
/// Length of the secret, bytes.
pub const SECRET_LEN: usize = 32;

/// One issued credential pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCredential {
    /// TURN username.
    pub username: String,
    /// TURN password.
    pub password: String,
    /// Seconds until it expires (`Ttl`).
    pub ttl_secs: u64,
}

/// A username that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedUser {
    /// The password the client must have used.
    pub password: String,
    /// The channel the credential was issued for (see module docs).
    pub channel_key: String,
}

/// Why a TURN username is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("username is not one reel issued")]
    Malformed,
    #[error("credential expired")]
    Expired,
}

/// The channel key of an ARN (see module docs).
pub fn channel_key(channel_arn: &str) -> String {
    hex::encode(&Sha256::digest(channel_arn.as_bytes())[..8])
}

/// The password for `username` under `secret`.
pub fn password_for(secret: &[u8], username: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(username.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Build a credential for `channel_arn` valid for `ttl` from `now`, sans-IO.
pub fn issue(secret: &[u8], channel_arn: &str, ttl: Duration, nonce: u32, now: SystemTime) -> IssuedCredential {
    let expiry = now.duration_since(UNIX_EPOCH).unwrap_or_default() + ttl;
    let username = format!("{}.{}.{nonce:08x}", expiry.as_secs(), channel_key(channel_arn));
    IssuedCredential { password: password_for(secret, &username), username, ttl_secs: ttl.as_secs() }
}

/// Check a username's shape and expiry at `now`, sans-IO.
pub fn verify(secret: &[u8], username: &str, now: SystemTime) -> Result<VerifiedUser, CredentialError> {
    let mut parts = username.split('.');
    let (Some(expiry), Some(key), Some(nonce), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(CredentialError::Malformed);
    };
    let hex16 = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex16(key, 16)
        || !hex16(nonce, 8)
        || expiry.is_empty()
        || expiry.len() > 12
        || !expiry.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(CredentialError::Malformed);
    }
    let expiry: u64 = expiry.parse().map_err(|_| CredentialError::Malformed)?;
    if now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() >= expiry {
        return Err(CredentialError::Expired);
    }
    Ok(VerifiedUser { password: password_for(secret, username), channel_key: key.to_string() })
}

/// The persisted, rotatable secret (its `Debug` shows the file, not the secret).
pub struct TurnSecret {
    current: RwLock<Vec<u8>>,
    path: PathBuf,
}

impl std::fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnSecret").field("current", &"***").field("path", &self.path).finish()
    }
}

impl TurnSecret {
    /// Load `<data_dir>/turn-secret`, creating it on first start.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join(SECRET_FILE);
        let secret = match std::fs::read_to_string(&path) {
            Ok(text) => match hex::decode(text.trim()) {
                Ok(bytes) if bytes.len() >= 16 => bytes,
                _ => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} is not a hex secret of at least 16 bytes", path.display()),
                    ));
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let fresh = random_secret();
                write_secret(&path, &fresh)?;
                fresh
            }
            Err(e) => return Err(e),
        };
        Ok(Self { current: RwLock::new(secret), path })
    }

    /// An in-memory secret (fuzzing and tests; [`Self::rotate`] would write to no file).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn fixed(secret: Vec<u8>) -> Self {
        Self { current: RwLock::new(secret), path: PathBuf::new() }
    }

    /// Replace the secret (persisted first); credentials issued before stop working.
    pub fn rotate(&self) -> std::io::Result<()> {
        let fresh = random_secret();
        write_secret(&self.path, &fresh)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// Issue a credential for `channel_arn` valid for `ttl`.
    pub fn issue(&self, channel_arn: &str, ttl: Duration, now: SystemTime) -> IssuedCredential {
        let secret = self.current.read().unwrap_or_else(|p| p.into_inner());
        issue(&secret, channel_arn, ttl, rand::random(), now)
    }

    /// Check a TURN username at `now`.
    pub fn verify(&self, username: &str, now: SystemTime) -> Result<VerifiedUser, CredentialError> {
        let secret = self.current.read().unwrap_or_else(|p| p.into_inner());
        verify(&secret, username, now)
    }
}

fn random_secret() -> Vec<u8> {
    (0..SECRET_LEN).map(|_| rand::random::<u8>()).collect()
}

fn write_secret(path: &Path, secret: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp)?;
        f.write_all(hex::encode(secret).as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::validate::is_client_id;

    const ARN: &str = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/c/1";

    #[test]
    fn issued_credentials_verify_until_expiry_in_the_model_alphabet() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let c = issue(b"secret-secret-secret", ARN, Duration::from_secs(300), 7, t0);
        assert!(is_client_id(&c.username) && is_client_id(&c.password), "{c:?}");
        assert_eq!(c.ttl_secs, 300);
        let v = verify(b"secret-secret-secret", &c.username, t0 + Duration::from_secs(299)).expect("valid");
        assert_eq!(v.password, c.password);
        assert_eq!(v.channel_key, channel_key(ARN));
        assert_eq!(
            verify(b"secret-secret-secret", &c.username, t0 + Duration::from_secs(300)),
            Err(CredentialError::Expired)
        );
        assert_ne!(verify(b"another-secret-xxxxx", &c.username, t0).expect("shape ok").password, c.password);
    }

    #[test]
    fn foreign_usernames_are_malformed() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for u in [
            "",
            "user",
            "1700000300:abc",
            "99999999999999.0123456789abcdef.00000000",
            "1700000300.0123456789ABCDEF.00000000",
            "1700000300.0123456789abcdef.0000000",
            "1700000300.0123456789abcdef.00000000.x",
        ] {
            assert_eq!(verify(b"s", u, t0), Err(CredentialError::Malformed), "{u}");
        }
    }

    #[test]
    fn secret_persists_and_rotation_invalidates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = TurnSecret::load_or_create(dir.path()).expect("create");
        let now = SystemTime::now();
        let c = s.issue(ARN, Duration::from_secs(300), now);
        let reloaded = TurnSecret::load_or_create(dir.path()).expect("reload");
        assert_eq!(reloaded.verify(&c.username, now).expect("valid").password, c.password);
        s.rotate().expect("rotate");
        assert_ne!(s.verify(&c.username, now).expect("shape").password, c.password);
        let after = TurnSecret::load_or_create(dir.path()).expect("reload");
        assert_ne!(after.verify(&c.username, now).expect("shape").password, c.password, "rotation persisted");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(SECRET_FILE)).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let file = std::fs::read_to_string(dir.path().join(SECRET_FILE)).expect("secret file");
        let shown = format!("{after:?}");
        let bytes = format!("{:?}", hex::decode(file.trim()).expect("hex"));
        let bytes = bytes.trim_matches(['[', ']']);
        assert!(!shown.contains(bytes) && shown.contains("***"), "Debug hides the secret: {shown}");
    }
}
