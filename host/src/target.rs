//! The local deployment target: a long-lived process ([`daemon`]) that
//! supervises service instances ([`supervisor`]: processes, or containers
//! through [`podman`]), routes traffic to them by
//! weight ([`router`]), measures it ([`metrics`]) and remembers its
//! releases across restarts ([`state`]). `weir run` and the `weir target`
//! commands drive it through [`client`] over the control API ([`api`]).

pub mod api;
pub mod client;
pub mod daemon;
pub mod instance_sandbox;
pub mod metrics;
pub mod podman;
pub mod router;
pub mod state;
pub mod supervisor;
