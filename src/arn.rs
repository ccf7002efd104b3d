//! ARNs of channels and streams (kvs-api §1.4).
//!
//! INTERFACE SKELETON — the control-plane helper fills this in.
