//! virtio-9p: a 9P2000.L file server for one shared host directory.
//!
//! The server is transport-agnostic: [`Server::handle`] takes one request
//! and writes one reply into fixed buffers of at most [`wire::MAX_MSIZE`]
//! bytes. Nothing is allocated; the fid table has a fixed number of slots.
//! The same code builds for the no_std stub and, for tests and fuzzing, std.
//!
//! Confinement (see `host.rs`): fids hold fds, never paths; every guest name
//! is one checked component looked up without following symlinks; `..` never
//! leaves the share root; special files are never opened; a read-only share
//! answers `EROFS` to every change.

mod attr;
mod device;
mod dir;
mod fids;
mod file;
mod host;
mod server;
pub mod wire;

#[cfg(test)]
mod tests;

pub use device::P9Device;
pub use fids::MAX_FIDS;
pub use server::Server;
