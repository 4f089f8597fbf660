//! Plugin authoring: `weir plugin new` writes a project that builds and
//! runs as it is ([`scaffold`]); `weir plugin build` builds one into a
//! component and says how to pin it ([`compile`]; Python and JavaScript
//! through [`componentize`]).

pub mod compile;
pub mod componentize;
pub mod scaffold;
