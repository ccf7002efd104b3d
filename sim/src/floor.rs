//! The physical-cost floor: receive, SRTP-decrypt and append, nothing else.
