//! Keeps the test suite honest: no test in the workspace passes by skipping. Scans every
//! Rust source (unit tests included) and the setup scripts for the patterns that once let
//! tests pass without running — an early `return` at a test's top, a "SKIP" message, a
//! tool probed in an `if`, a bare `#[ignore]`, a namespaced test that `--skip netns_` would
//! not exclude — and checks that `.ci/run` installs what the tests require.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

/// Compiles `re` once.
macro_rules! re {
    ($re:expr) => {{
        static RE: LazyLock<Regex> = LazyLock::new(|| Regex::new($re).unwrap());
        &*RE
    }};
}

/// Workspace directories holding Rust code (tests, unit tests, test helpers).
const RUST_DIRS: &[&str] = &["src", "tests", "media", "storage", "sim", "benches", "fuzz"];
/// This file: it spells out the patterns it forbids.
const SELF: &str = "tests/honest.rs";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        if name == "target" || name == "node_modules" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// One test function: its name, the line of `fn`, and its body lines (1-based numbers).
struct TestFn<'a> {
    name: String,
    indent: usize,
    body: Vec<(usize, &'a str)>,
}

/// The `#[test]` / `#[tokio::test]` functions of a (rustfmt-formatted) source file.
fn test_fns(src: &str) -> Vec<TestFn<'_>> {
    let attr = re!(r"^\s*#\[(tokio::)?test\b");
    let sig = re!(r"^\s*(pub )?(async )?fn (\w+)");
    let lines: Vec<&str> = src.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !attr.is_match(lines[i]) {
            i += 1;
            continue;
        }
        let Some(j) = (i..lines.len()).find(|&j| sig.is_match(lines[j])) else { break };
        let name = sig.captures(lines[j]).unwrap()[3].to_string();
        let ind = indent(lines[j]);
        let close = " ".repeat(ind) + "}";
        let mut k = j + 1;
        let mut body = Vec::new();
        while k < lines.len() && !(lines[k].starts_with(&close) && indent(lines[k]) == ind) {
            body.push((k + 1, lines[k]));
            k += 1;
        }
        out.push(TestFn { name, indent: ind, body });
        i = k;
    }
    out
}

/// Every way `src` (at `path`) lets a test pass without running, as `path:line: why`.
fn violations(path: &str, src: &str) -> Vec<String> {
    let mut found = Vec::new();
    let early_return = re!(r"\breturn\s*(;|\}|Ok\(\(\)\))|\belse\s*\{\s*return\s*\}");
    let skip_message = re!(r#""[^"]*(\bSKIP|(?i:\bskipp(ed|ing)\b))"#);
    let probed_if = re!(r"\b(if|while)\b.*(Command::new|\bwhich\(|env::var|probe::available)");
    let netns_call = re!(r#"\b(netns::run|run_in_netns|in_netns)\(\s*"(\w+)""#);
    for t in test_fns(src) {
        for &(n, line) in &t.body {
            // The test's own block and the blocks directly inside it; deeper returns belong
            // to closures and spawned tasks.
            if early_return.is_match(line) && indent(line) <= t.indent + 8 {
                found.push(format!("{path}:{n}: early return in test `{}`: {}", t.name, line.trim()));
            }
            if probed_if.is_match(line) {
                found.push(format!("{path}:{n}: test `{}` branches on a probe: {}", t.name, line.trim()));
            }
            if let Some(c) = netns_call.captures(line) {
                let passed = &c[2];
                if !t.name.starts_with("netns_") || passed != t.name {
                    found.push(format!(
                        "{path}:{n}: namespaced test `{}` must be named `netns_…` and pass its own name (got \"{passed}\")",
                        t.name
                    ));
                }
            }
        }
    }
    for (n, line) in src.lines().enumerate() {
        let n = n + 1;
        let code = line.trim_start();
        if code.starts_with("#[ignore") && !code.starts_with("#[ignore = \"") {
            found.push(format!("{path}:{n}: #[ignore] needs a reason: #[ignore = \"why\"]"));
        }
        if !code.starts_with("//") && skip_message.is_match(line) {
            found.push(format!("{path}:{n}: a SKIP message: fail with the install command instead"));
        }
    }
    found
}

#[test]
fn no_test_passes_by_skipping() {
    let root = root();
    let mut files = Vec::new();
    for d in RUST_DIRS {
        rust_files(&root.join(d), &mut files);
    }
    assert!(files.len() > 100, "scanned {} files: wrong root {}?", files.len(), root.display());
    let mut found = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        if rel == SELF {
            continue;
        }
        let src = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("read {rel}: {e}"));
        found.extend(violations(&rel, &src));
    }
    assert!(found.is_empty(), "tests that can pass without running:\n{}", found.join("\n"));
}

/// The scanner itself catches each pattern (so the test above cannot pass by matching nothing).
#[test]
fn the_scanner_catches_each_skip_pattern() {
    let cases = [
        ("#[test]\nfn t() {\n    if !tools() {\n        return;\n    }\n}\n", "early return"),
        ("#[tokio::test]\nasync fn t() {\n    let Some(x) = f() else { return };\n}\n", "early return"),
        ("#[test]\nfn t() -> anyhow::Result<()> {\n    if x {\n        return Ok(());\n    }\n}\n", "early return"),
        ("#[test]\nfn t() {\n    if Command::new(\"ffprobe\").output().is_ok() {\n    }\n}\n", "branches on a probe"),
        ("#[test]\nfn t() {\n    if std::env::var(\"CI\").is_err() {}\n}\n", "branches on a probe"),
        ("#[test]\n#[ignore]\nfn t() {}\n", "needs a reason"),
        ("fn f() {\n    eprintln!(\"SKIP: no ffprobe\");\n}\n", "SKIP message"),
        ("fn f() {\n    println!(\"skipping: no chromium\");\n}\n", "SKIP message"),
        ("#[test]\nfn cam() {\n    netns::run(\"cam\", |ns| go(ns));\n}\n", "must be named `netns_"),
        ("#[test]\nfn netns_cam() {\n    run_in_netns(\"netns_other\", go);\n}\n", "pass its own name"),
    ];
    for (src, want) in cases {
        let found = violations("case.rs", src);
        assert!(found.iter().any(|v| v.contains(want)), "`{want}` not reported for:\n{src}\ngot {found:?}");
    }
    let fine = "#[test]\nfn netns_cam() {\n    netns::run(\"netns_cam\", |ns| {\n        tokio::spawn(async move {\n            loop {\n                if done() {\n                    return;\n                }\n            }\n        });\n    });\n}\n#[ignore = \"spawned by another test\"]\nfn g() {}\n";
    assert_eq!(violations("fine.rs", fine), Vec::<String>::new());
}

/// Every tool a test requires through `probe::require` is one `.ci/run` installs, and
/// `.ci/run` ends in the README's test command.
#[test]
fn ci_run_installs_what_the_tests_require() {
    let root = root();
    let ci = std::fs::read_to_string(root.join(".ci/run")).expect(".ci/run");
    let install = std::fs::read_to_string(root.join("tests/e2e/install.sh")).expect("tests/e2e/install.sh");
    let setup = format!("{ci}\n{install}");
    let probe = std::fs::read_to_string(root.join("src/testkit/probe.rs")).expect("probe.rs");
    let pair = Regex::new(r#"\("(\w+)", "([^"]+)"\)"#).unwrap();
    let mut checked = 0;
    for c in pair.captures_iter(&probe) {
        let (tool, command) = (&c[1], &c[2]);
        // The first package the install command names must be installed.
        let package =
            command.split_whitespace().find(|w| !w.starts_with('-') && !matches!(*w, "apt-get" | "install")).unwrap();
        assert!(setup.contains(package), "`{tool}` needs `{package}` ({command}), which .ci/run never installs");
        checked += 1;
    }
    assert!(checked >= 7, "parsed {checked} install commands from probe.rs");
    let last = ci.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    assert_eq!(last.trim(), "cargo test --workspace --locked", ".ci/run ends by running the whole suite");
}
