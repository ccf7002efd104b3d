//! Headless Chromium for the browser tests: the tests/viewer scripts (playwright-core) and
//! the Debian chromium. Missing tools fail the test with the command that installs them.
//!
//! Use from a test file with `#[path = "common/browser.rs"] mod browser;` (or through `common`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// tests/viewer (its npm packages installed) and the Chromium executable to drive.
pub fn playwright() -> (PathBuf, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("viewer");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    reel::testkit::probe::require(&["node", "npm"]);
    assert!(
        Path::new(&chromium).exists(),
        "browser tests need Chromium at {chromium}: apt-get install -y chromium (or run .ci/run)"
    );
    if !dir.join("node_modules/playwright-core/package.json").is_file() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "npm ci in tests/viewer failed (run .ci/run)");
    }
    (dir, chromium)
}

/// The JSON report a tests/viewer script prints as its last stdout line; panics with the
/// script's output (and `context`, e.g. the server log) when there is none.
pub fn report(out: &std::process::Output, context: &str) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .unwrap_or_else(|_| panic!("script output: {stdout}\n{}\n{context}", String::from_utf8_lossy(&out.stderr)))
}
