//! Everything between "here is a kernel file" and "the vCPU may run".

pub mod bzimage;
pub mod cpu;
pub mod elf;
pub mod layout;
pub mod load;
pub mod mptable;
pub mod params;
