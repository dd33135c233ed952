//! vmm-stub: the runtime half of smolvm. A `no_std`, libc-free KVM monitor
//! that boots the kernel embedded in its own image file. The library holds
//! every module (unit-tested on the host); `main.rs` is only the process
//! entry point, panic handler and the `mem*` functions.
#![cfg_attr(not(test), no_std)]

pub mod boot;
pub mod bus;
pub mod cmdline;
pub mod devices;
pub mod harden;
pub mod hostio;
pub mod info;
pub mod mem;
pub mod network;
pub mod options;
pub mod out;
pub mod payload;
pub mod reaper;
pub mod seccomp;
pub mod serial;
pub mod start;
pub mod sys;
pub mod virtio;
pub mod vmm;
