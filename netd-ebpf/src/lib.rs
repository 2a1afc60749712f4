//! The library target exists so that tools can type-check the crate; the
//! programs themselves live in the `netd` binary (src/main.rs).
#![no_std]
