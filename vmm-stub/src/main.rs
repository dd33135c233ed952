//! Process entry for the stub: `_start`, the panic handler and the memory
//! functions the compiler may call. Everything else lives in the library.
#![no_std]
#![no_main]

fn main_entry(_args: &[*const u8], _env: *const *const u8) -> u8 {
    0
}

mod rt;
