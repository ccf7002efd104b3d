//! The media module of reel, compiled on its own for fuzzing.
//!
//! `src/media` refers to itself as `crate::media`, so mounting it at this crate's root
//! builds exactly the code the server runs, without the server's dependencies.
#![forbid(unsafe_code)]

#[path = "../../src/media/mod.rs"]
pub mod media;
