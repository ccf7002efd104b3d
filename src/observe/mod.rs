//! Observability: Prometheus metrics and the control-plane audit log.

pub mod audit;
pub mod metrics;
