//! The local deployment target (issue 5, in progress): a long-lived process
//! that supervises service instances and routes traffic to them. So far:
//! the per-service weighted router ([`router`]), what it measures
//! ([`metrics`]), and the instances behind it ([`supervisor`]).

pub mod metrics;
pub mod router;
pub mod supervisor;
