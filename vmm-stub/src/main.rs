//! Process entry for the stub: `_start`, the panic handler (`rt.rs`) and
//! the `mem*` functions the compiler may call (`nolibc-mem`). Everything
//! else lives in the library.
#![no_std]
#![no_main]

mod rt;

// memcpy, memset, ...: linked for the compiler's calls, never named.
extern crate nolibc_mem;
