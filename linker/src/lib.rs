//! The smolvm image format and every constant the host (stub, builder) and the
//! guest (smol-init) must agree on. The core is `no_std` and allocation-free so
//! the stub can link it; the `std` feature adds the writers used by the builder.
#![cfg_attr(not(feature = "std"), no_std)]

pub mod abi;
pub mod config;
pub mod cpio;
pub mod disk;
pub mod image;
pub mod sha256;
pub mod signature;
#[cfg(feature = "std")]
pub mod testing;
pub mod warm;
#[cfg(feature = "std")]
pub mod write;
pub mod xxh64;
