//! Networking set-up for one run: which backend (from the options and the
//! manifest), starting it (passt or a TAP), and what the guest is told
//! (the runtime config's `ip` and `dns` records). The device is
//! `virtio::net`.

pub mod passt;
pub mod spec;
