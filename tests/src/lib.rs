//! smolvm end-to-end tests: helpers shared by the files in `tests/`.

pub mod lab;
pub mod prereq;
pub mod product;
pub mod qemu;
pub mod registry;
