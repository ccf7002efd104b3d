//! One simulated camera: a str0m peer publishing the fixture H.264 + Opus in real time.
