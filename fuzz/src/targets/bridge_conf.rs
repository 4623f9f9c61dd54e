//! The bridge plugin is a binary crate; its config decoder is compiled in from its sources
//! (self-contained apart from `crate::godecode`, which lib.rs provides) so the fuzzer
//! exercises exactly the shipped code.

#[path = "../../../plugins/bridge/src/config.rs"]
#[allow(dead_code)]
pub mod config;
