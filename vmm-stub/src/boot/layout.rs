//! Guest physical memory map at boot (all below 1 MiB except the kernel,
//! which the kernel file places at or above `KERNEL_MIN_ADDR`, and the
//! initrd, at the top of RAM).
//!
//! ```text
//! 0x0500  GDT                0x7000  boot_params (zero page)
//! 0x8ff0  boot stack top     0x9000  PML4, 0xa000 PDPT, 0xb000.. 4 PDs
//! 0x2_0000 command line      0x9_fc00.. 0x10_0000 reserved (EBDA, BIOS;
//!                            the MP table at its start: `mptable.rs`)
//! ```

pub const GDT_ADDR: u64 = 0x500;
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
pub const BOOT_STACK_TOP: u64 = 0x8ff0;
pub const PML4_ADDR: u64 = 0x9000;
pub const PDPT_ADDR: u64 = 0xa000;
pub const PD_ADDR: u64 = 0xb000;
pub const CMDLINE_ADDR: u64 = 0x2_0000;
/// Longest command line we pass, NUL included (x86 COMMAND_LINE_SIZE).
pub const CMDLINE_MAX: usize = 2048;
/// End of the low RAM e820 entry; the legacy EBDA/BIOS area follows.
pub const EBDA_START: u64 = 0x9_fc00;
/// Kernels and test guests must load at or above 1 MiB.
pub const KERNEL_MIN_ADDR: u64 = 0x10_0000;
/// The kernel loads below the virtio-mmio window (in low RAM).
pub const RAM_MAX: u64 = linker::abi::MMIO_BASE;
/// Most guest RAM the stub gives (low RAM + RAM above 4 GiB), as the
/// builder's `--mem` limit.
pub const MEM_MAX: u64 = 1 << 40;
