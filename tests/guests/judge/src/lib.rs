//! The first version of the judge (see rules.rs).

const FACTOR: u64 = 1;

include!("rules.rs");
