//! Every committed fuzz seed (`fuzz/seeds/<target>/`) runs through its target on stable
//! Rust: a cheap regression check of the fuzz targets over reel's own parsers, including
//! the inputs that once found bugs.

use std::path::Path;

#[test]
fn every_seed_runs_through_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (name, target) in reel::fuzz_api::TARGETS {
        let dir = root.join(name);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "target {name} panicked on {}", path.display());
            n += 1;
        }
        assert!(n > 0, "no seeds for target {name} in {}", dir.display());
    }
}
