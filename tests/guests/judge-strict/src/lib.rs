//! The judge's next version: twice as strict (see ../judge/src/rules.rs).

const FACTOR: u64 = 2;

include!("../../judge/src/rules.rs");
