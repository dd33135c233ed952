//! The stub's system interface, the bottom layer: every raw system call
//! (numbers in [`syscall`] and one helper there), the one `clone`
//! ([`thread::spawn`]), the KVM and terminal ioctls, signal handlers, the
//! process's arguments and stdio, mappings of the image file and the
//! statics written once. Every `unsafe` of the stub is in here, except
//! guest memory (`mem.rs`) and the process entry (`main.rs`/`rt.rs`);
//! the modules above get safe functions and types. Nothing in `sys`
//! imports a module above it. x86_64 Linux only.

pub mod cell;
pub mod cpu;
pub mod fd;
pub mod hash;
pub mod io;
pub mod ioctl;
pub mod kvm;
pub mod lock;
pub mod mm;
pub mod net;
pub mod path;
pub mod process;
pub mod seccomp;
pub mod signal;
pub mod spawn;
pub mod syscall;
pub mod thread;
pub mod tty;

pub use process::exit;

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("the stub runs on x86_64 Linux hosts only");
