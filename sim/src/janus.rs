//! Janus VideoRoom (recording on) as the side-by-side baseline recorder.
