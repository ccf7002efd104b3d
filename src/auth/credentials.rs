//! Access keys: the root key from flags, extra keys (with policies) from a TOML
//! credentials file, or a root key generated on first start and kept in the data dir.
//!
//! Credentials file format (also the format of the generated `root-credentials.toml`):
//!
//! ```toml
//! [[key]]
//! access_key_id = "AKIACAMERA0001"
//! secret_access_key = "..."
//! session_token = "..."        # optional: requests must then carry this token (and without
//!                               # one, they must carry none)
//! root = false                  # optional, default false; root may do everything
//! [[key.statement]]
//! effect = "Allow"
//! action = ["kinesisvideo:ConnectAsMaster", "kinesisvideo:Describe*"]
//! resource = "arn:aws:kinesisvideo:*:*:channel/cam-*"
//! ```
//!
//! Policy semantics are documented in [`super::policy`].

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::Rng;
use serde::Deserialize;

use super::policy::{Policy, StatementSpec};

/// File name of the generated root key inside the data dir.
pub const GENERATED_ROOT_FILE: &str = "root-credentials.toml";
/// Longest access key id accepted (AWS: 128).
pub const MAX_ACCESS_KEY_ID_LEN: usize = 128;
/// Length of a generated secret access key (AWS: 40).
pub const GENERATED_SECRET_LEN: usize = 40;

/// Where an access key was defined (used in error messages and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `--access-key-id` / `--secret-access-key`.
    Flags,
    /// The `index`-th (1-based) `[[key]]` of a credentials file.
    File {
        /// The file.
        path: PathBuf,
        /// 1-based position of the `[[key]]` table.
        index: usize,
    },
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flags => write!(f, "--access-key-id"),
            Self::File { path, index } => write!(f, "{} [[key]] #{index}", path.display()),
        }
    }
}

/// One access key with its secret, optional session token and policy.
#[derive(Clone)]
pub struct AccessKey {
    /// The access key id (`AKIA...`).
    pub access_key_id: String,
    secret: String,
    session_token: Option<String>,
    /// Root keys may do everything.
    pub root: bool,
    policy: Arc<Policy>,
    /// Where it was defined.
    pub source: KeySource,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("secret", &"<redacted>")
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .field("root", &self.root)
            .field("policy", &self.policy)
            .field("source", &self.source)
            .finish()
    }
}

impl AccessKey {
    /// A root key (no policy needed).
    pub fn root(access_key_id: impl Into<String>, secret: impl Into<String>, source: KeySource) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret: secret.into(),
            session_token: None,
            root: true,
            policy: Arc::default(),
            source,
        }
    }

    /// A non-root key governed by `policy`.
    pub fn with_policy(
        access_key_id: impl Into<String>,
        secret: impl Into<String>,
        session_token: Option<String>,
        policy: Policy,
        source: KeySource,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret: secret.into(),
            session_token,
            root: false,
            policy: Arc::new(policy),
            source,
        }
    }

    /// The secret access key (signing only; never log it).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The session token requests must carry, if one is configured.
    pub fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref()
    }

    /// The key's policy (empty for root keys, which bypass it).
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }
}

/// Credential loading failures; each names the file and key it is about.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The credentials file (or the generated root key file) cannot be read.
    #[error("cannot read credentials file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML or not the expected structure.
    #[error("invalid credentials file {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's explanation (with line and column).
        message: String,
    },
    /// One `[[key]]` is not valid.
    #[error("invalid credentials file {}, [[key]] #{index}{}: {problem}", path.display(), key_label(access_key_id))]
    InvalidKey {
        /// The file.
        path: PathBuf,
        /// 1-based position of the `[[key]]` table.
        index: usize,
        /// Its access key id, when it has one.
        access_key_id: String,
        /// What is wrong.
        problem: String,
    },
    /// The root key given by flags is not valid.
    #[error("invalid root key from --access-key-id/--secret-access-key: {problem}")]
    InvalidRootFlags {
        /// What is wrong.
        problem: String,
    },
    /// The same access key id is defined twice.
    #[error("duplicate access key id {access_key_id}: defined by {first} and again by {second}")]
    Duplicate {
        /// The repeated id.
        access_key_id: String,
        /// Its first definition.
        first: KeySource,
        /// The repeated definition.
        second: KeySource,
    },
    /// The generated root key file lacks a root key.
    #[error("{} must contain one [[key]] with root = true; delete it to generate a new root key", path.display())]
    GeneratedFileWithoutRoot {
        /// The file.
        path: PathBuf,
    },
    /// The generated root key cannot be stored.
    #[error("cannot store the generated root key in {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn key_label(access_key_id: &str) -> String {
    if access_key_id.is_empty() { String::new() } else { format!(" ({access_key_id})") }
}

/// A root key generated on first start (printed as `export` lines).
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    /// `AKIA` + 16 uppercase alphanumerics.
    pub access_key_id: String,
    /// 40 alphanumerics.
    pub secret_access_key: String,
}

/// `[[key]]` tables of a credentials file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    key: Vec<KeySpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySpec {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
    #[serde(default)]
    root: bool,
    #[serde(default)]
    statement: Vec<StatementSpec>,
}

/// Loaded access keys, by access key id.
#[derive(Debug, Default, Clone)]
pub struct CredentialStore {
    keys: HashMap<String, AccessKey>,
}

impl CredentialStore {
    /// Root key from flags, extra keys from the credentials file, or a generated root key
    /// persisted in `data_dir` (mode 0600) when neither defines a root key. Returns the
    /// generated key only on the start that created it.
    pub fn load(
        root: Option<(String, String)>,
        file: Option<&Path>,
        data_dir: &Path,
    ) -> Result<(Self, Option<GeneratedKey>), CredentialsError> {
        let mut store = Self::default();
        if let Some((id, secret)) = root {
            let problem = validate_access_key_id(&id).or_else(|| validate_secret(&secret));
            if let Some(problem) = problem {
                return Err(CredentialsError::InvalidRootFlags { problem });
            }
            store.insert(AccessKey::root(id, secret, KeySource::Flags))?;
        }
        if let Some(path) = file {
            for key in read_file(path)? {
                store.insert(key)?;
            }
        }
        let mut generated = None;
        if !store.keys.values().any(|k| k.root) {
            let path = data_dir.join(GENERATED_ROOT_FILE);
            let key = if path.exists() {
                let keys = read_file(&path)?;
                keys.into_iter().find(|k| k.root).ok_or(CredentialsError::GeneratedFileWithoutRoot { path })?
            } else {
                let key = generate_key();
                write_generated(data_dir, &path, &key)?;
                tracing::info!(path = %path.display(), access_key_id = %key.access_key_id, "generated a root access key");
                generated = Some(key.clone());
                AccessKey::root(key.access_key_id, key.secret_access_key, KeySource::File { path, index: 1 })
            };
            store.insert(key)?;
        }
        Ok((store, generated))
    }

    /// A store holding exactly `keys` (refusing duplicates).
    pub fn from_keys(keys: impl IntoIterator<Item = AccessKey>) -> Result<Self, CredentialsError> {
        let mut store = Self::default();
        for key in keys {
            store.insert(key)?;
        }
        Ok(store)
    }

    fn insert(&mut self, key: AccessKey) -> Result<(), CredentialsError> {
        if let Some(existing) = self.keys.get(&key.access_key_id) {
            return Err(CredentialsError::Duplicate {
                access_key_id: key.access_key_id.clone(),
                first: existing.source.clone(),
                second: key.source,
            });
        }
        self.keys.insert(key.access_key_id.clone(), key);
        Ok(())
    }

    /// A root key (the one with the smallest id when several are defined), for tools that
    /// act as the operator, such as `reel demo`'s camera.
    pub fn root_key(&self) -> Option<&AccessKey> {
        self.keys.values().filter(|k| k.root).min_by(|a, b| a.access_key_id.cmp(&b.access_key_id))
    }

    /// The key with this id.
    pub fn get(&self, access_key_id: &str) -> Option<&AccessKey> {
        self.keys.get(access_key_id)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is loaded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Parse and validate a credentials file.
fn read_file(path: &Path) -> Result<Vec<AccessKey>, CredentialsError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| CredentialsError::Read { path: path.to_owned(), source })?;
    warn_if_readable_by_others(path);
    let spec: FileSpec =
        toml::from_str(&text).map_err(|e| CredentialsError::Parse { path: path.to_owned(), message: e.to_string() })?;
    spec.key
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            let index = i + 1;
            let invalid = |problem: String| CredentialsError::InvalidKey {
                path: path.to_owned(),
                index,
                access_key_id: k.access_key_id.clone(),
                problem,
            };
            if let Some(problem) =
                validate_access_key_id(&k.access_key_id).or_else(|| validate_secret(&k.secret_access_key))
            {
                return Err(invalid(problem));
            }
            if k.session_token.as_deref().is_some_and(str::is_empty) {
                return Err(invalid("session_token is empty (leave it out instead)".into()));
            }
            let source = KeySource::File { path: path.to_owned(), index };
            if k.root {
                if !k.statement.is_empty() {
                    return Err(invalid(
                        "a root key may do everything; it must not have [[key.statement]] tables".into(),
                    ));
                }
                let mut key = AccessKey::root(k.access_key_id.clone(), k.secret_access_key.clone(), source);
                key.session_token = k.session_token.clone();
                return Ok(key);
            }
            let policy = Policy::from_specs(k.statement.clone()).map_err(|e| invalid(e.to_string()))?;
            if policy.is_empty() {
                tracing::warn!(path = %path.display(), index, access_key_id = %k.access_key_id,
                    "access key has no statements; every request it signs will be denied");
            }
            Ok(AccessKey::with_policy(
                k.access_key_id.clone(),
                k.secret_access_key.clone(),
                k.session_token.clone(),
                policy,
                source,
            ))
        })
        .collect()
}

fn validate_access_key_id(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("access_key_id is empty".into());
    }
    if id.len() > MAX_ACCESS_KEY_ID_LEN {
        return Some(format!("access_key_id is longer than {MAX_ACCESS_KEY_ID_LEN} characters"));
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.') {
        return Some(format!("access_key_id '{id}' may only contain A-Z, a-z, 0-9, '_', '-' and '.'"));
    }
    None
}

fn validate_secret(secret: &str) -> Option<String> {
    if secret.is_empty() {
        Some("secret_access_key is empty".into())
    } else if secret.chars().any(char::is_control) {
        Some("secret_access_key contains control characters".into())
    } else {
        None
    }
}

/// A fresh root key: `AKIA` + 16 of `[A-Z0-9]`, and a 40-character alphanumeric secret.
pub fn generate_key() -> GeneratedKey {
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut pick =
        |set: &[u8], n: usize| -> String { (0..n).map(|_| char::from(set[rng.random_range(0..set.len())])).collect() };
    GeneratedKey {
        access_key_id: format!("AKIA{}", pick(UPPER, 16)),
        secret_access_key: pick(ALNUM, GENERATED_SECRET_LEN),
    }
}

/// Write the generated key atomically (temp file + rename), readable by the owner only.
fn write_generated(data_dir: &Path, path: &Path, key: &GeneratedKey) -> Result<(), CredentialsError> {
    let err = |source| CredentialsError::Write { path: path.to_owned(), source };
    crate::private_fs::create_private_dir(data_dir).map_err(err)?;
    let contents = format!(
        "# reel root access key, generated on first start. Keep this file private.\n\
         [[key]]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\nroot = true\n",
        key.access_key_id, key.secret_access_key
    );
    let tmp = data_dir.join(format!(".{GENERATED_ROOT_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp).map_err(err)?;
    f.write_all(contents.as_bytes()).and_then(|()| f.sync_all()).map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "credentials file is accessible by other users; consider chmod 600");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::policy::Decision;

    const CAM: &str = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/cam-1/1700000000000";

    fn load(
        root: Option<(&str, &str)>,
        file: Option<&str>,
        dir: &Path,
    ) -> Result<(CredentialStore, Option<GeneratedKey>), CredentialsError> {
        let path = file.map(|text| {
            let p = dir.join("creds.toml");
            std::fs::write(&p, text).unwrap();
            p
        });
        CredentialStore::load(root.map(|(a, b)| (a.to_owned(), b.to_owned())), path.as_deref(), dir)
    }

    #[test]
    fn flags_and_file_keys_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = r#"
[[key]]
access_key_id = "AKIACAMERA0001"
secret_access_key = "camsecret"
session_token = "tok"
[[key.statement]]
effect = "Allow"
action = ["kinesisvideo:ConnectAsMaster", "kinesisvideo:Describe*"]
resource = "arn:aws:kinesisvideo:*:*:channel/cam-*"

[[key]]
access_key_id = "AKIAOPERATOR01"
secret_access_key = "opsecret"
root = true
"#;
        let (store, generated) = load(Some(("AKIAROOT", "rootsecret")), Some(file), dir.path()).unwrap();
        assert!(generated.is_none());
        assert_eq!(store.len(), 3);
        assert!(store.get("AKIAROOT").unwrap().root);
        assert!(store.get("AKIAOPERATOR01").unwrap().root);
        let cam = store.get("AKIACAMERA0001").unwrap();
        assert!(!cam.root);
        assert_eq!(cam.secret(), "camsecret");
        assert_eq!(cam.session_token(), Some("tok"));
        assert_eq!(cam.policy().evaluate("kinesisvideo:DescribeSignalingChannel", CAM), Decision::Allow);
        assert_eq!(cam.policy().evaluate("kinesisvideo:DeleteSignalingChannel", CAM), Decision::ImplicitDeny);
        assert!(!dir.path().join(GENERATED_ROOT_FILE).exists(), "no key generated when a root key exists");
        assert!(!format!("{cam:?}").contains("camsecret"), "Debug must not print secrets");
    }

    #[test]
    fn root_in_file_suffices() {
        let dir = tempfile::tempdir().unwrap();
        let (store, generated) = load(
            None,
            Some("[[key]]\naccess_key_id = \"AKIAFILEROOT\"\nsecret_access_key = \"s\"\nroot = true\n"),
            dir.path(),
        )
        .unwrap();
        assert!(generated.is_none());
        assert_eq!(store.len(), 1);
        assert!(!dir.path().join(GENERATED_ROOT_FILE).exists());
    }

    #[test]
    fn generates_root_key_once_with_mode_0600_and_reloads_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, generated) = load(None, None, dir.path()).unwrap();
        let key = generated.expect("first start generates a root key");
        assert_eq!(key.access_key_id.len(), 20);
        assert!(key.access_key_id.starts_with("AKIA"));
        assert!(key.access_key_id[4..].bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        assert_eq!(key.secret_access_key.len(), 40);
        assert!(key.secret_access_key.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(store.get(&key.access_key_id).unwrap().secret(), key.secret_access_key);

        let path = dir.path().join(GENERATED_ROOT_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let (again, generated) = load(None, None, dir.path()).unwrap();
        assert!(generated.is_none(), "later starts reuse the stored key");
        let reloaded = again.get(&key.access_key_id).expect("same key after reload");
        assert!(reloaded.root);
        assert_eq!(reloaded.secret(), key.secret_access_key);

        // A flag root key takes precedence; the stored key is not loaded then.
        let (flagged, generated) = load(Some(("AKIAFLAG", "x")), None, dir.path()).unwrap();
        assert!(generated.is_none());
        assert!(flagged.get(&key.access_key_id).is_none());
        assert_ne!(generate_key().access_key_id, key.access_key_id);
    }

    #[test]
    fn generated_file_without_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(GENERATED_ROOT_FILE),
            "[[key]]\naccess_key_id = \"A\"\nsecret_access_key = \"s\"\n",
        )
        .unwrap();
        let err = load(None, None, dir.path()).unwrap_err();
        assert!(matches!(err, CredentialsError::GeneratedFileWithoutRoot { .. }), "{err}");
    }

    #[test]
    fn clear_errors_for_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = Some(("AKIAROOT", "rootsecret"));
        let msg = |file: &str| load(root, Some(file), dir.path()).unwrap_err().to_string();

        let missing = CredentialStore::load(None, Some(&dir.path().join("nope.toml")), dir.path()).unwrap_err();
        assert!(
            matches!(missing, CredentialsError::Read { .. }) && missing.to_string().contains("nope.toml"),
            "{missing}"
        );

        let m = msg("[[key]\naccess_key_id = 1");
        assert!(m.contains("invalid credentials file") && m.contains("creds.toml"), "{m}");

        let m = msg("[[key]]\naccess_key_id = \"A\"\nsecret_access_key = \"s\"\nsecret = \"typo\"\n");
        assert!(m.contains("secret"), "unknown field named: {m}");

        let m = msg(
            "[[key]]\naccess_key_id = \"AKIAOK\"\nsecret_access_key = \"s\"\n[[key]]\naccess_key_id = \"AKIAEMPTY\"\nsecret_access_key = \"\"\n",
        );
        assert!(m.contains("[[key]] #2") && m.contains("AKIAEMPTY") && m.contains("secret_access_key is empty"), "{m}");

        let m = msg("[[key]]\naccess_key_id = \"\"\nsecret_access_key = \"s\"\n");
        assert!(m.contains("[[key]] #1") && m.contains("access_key_id is empty"), "{m}");

        let m = msg("[[key]]\naccess_key_id = \"AK/ID\"\nsecret_access_key = \"s\"\n");
        assert!(m.contains("may only contain"), "{m}");

        let m = msg("[[key]]\naccess_key_id = \"AKIAROOT\"\nsecret_access_key = \"s\"\n");
        assert!(
            m.contains("duplicate access key id AKIAROOT") && m.contains("--access-key-id") && m.contains("[[key]] #1"),
            "{m}"
        );

        let m = msg(
            "[[key]]\naccess_key_id = \"D\"\nsecret_access_key = \"s\"\n[[key]]\naccess_key_id = \"D\"\nsecret_access_key = \"t\"\n",
        );
        assert!(m.contains("duplicate access key id D") && m.contains("#1") && m.contains("#2"), "{m}");

        let m = msg(
            "[[key]]\naccess_key_id = \"P\"\nsecret_access_key = \"s\"\n[[key.statement]]\neffect = \"Allow\"\naction = \"Describe*\"\nresource = \"*\"\n",
        );
        assert!(m.contains("[[key]] #1 (P)") && m.contains("statement #1") && m.contains("'Describe*'"), "{m}");

        let m = msg(
            "[[key]]\naccess_key_id = \"R\"\nsecret_access_key = \"s\"\nroot = true\n[[key.statement]]\neffect = \"Deny\"\naction = \"*\"\nresource = \"*\"\n",
        );
        assert!(m.contains("root key may do everything"), "{m}");

        let m = msg("[[key]]\naccess_key_id = \"T\"\nsecret_access_key = \"s\"\nsession_token = \"\"\n");
        assert!(m.contains("session_token is empty"), "{m}");

        let flags = CredentialStore::load(Some(("AKIA".into(), String::new())), None, dir.path()).unwrap_err();
        assert!(matches!(flags, CredentialsError::InvalidRootFlags { .. }), "{flags}");
    }
}
