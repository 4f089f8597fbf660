//! The local deployment target (issue 5, in progress): a long-lived process
//! that supervises service instances and routes traffic to them. So far:
//! the per-service weighted router ([`router`]) and what it measures
//! ([`metrics`]).

pub mod metrics;
pub mod router;
