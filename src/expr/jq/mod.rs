//! jq, with jaq: compiling text to a filter with readable errors (`compile`), running a
//! filter on one input inside the sandbox (`eval`), and its values as JSON (`value`).

pub mod compile;
pub mod eval;
mod value;

// `eval` answers in the sandbox's frames; the fuzz target includes these files by path
// beside its own copy of `protocol`, so they name it as a sibling.
use super::protocol;
