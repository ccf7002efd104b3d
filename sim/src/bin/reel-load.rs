//! reel-load: N simulated camera masters against a running reel (see `--help`).

fn main() {
    eprintln!("reel-load: not built yet");
    std::process::exit(2);
}
