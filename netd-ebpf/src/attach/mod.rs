//! The entry points, one module per attach point. They hold nothing but
//! the programs: what each does is written in the mechanism modules.

mod container;
mod sock;
mod uplink;
