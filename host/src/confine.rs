//! Confining processes on the host: bubblewrap sandboxes and the cgroups
//! that bound them. Stage programs (`capabilities::process`) and deployed
//! instances (`target`) are both confined with these; neither depends on
//! the other.

pub mod bwrap;
pub mod cgroup;
