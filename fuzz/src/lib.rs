//! A small in-process mutation fuzzer for flannel-rs.
//!
//! Only the stable toolchain is available, so instead of libFuzzer's coverage feedback each
//! target reports an *outcome* (which error it produced, or which shape of success); an input
//! that reaches an outcome not seen before joins the corpus. That steers mutation towards the
//! distinct rejection paths of a parser, which is where its bugs live. A panic, or a broken
//! invariant a target checks (a round trip, a well-formed CNI error), is a crash.

pub mod engine;
pub mod json_mutate;
pub mod mutate;
pub mod targets;

pub use engine::{run, Crash, Outcome};
pub use targets::{all, find, Target};
