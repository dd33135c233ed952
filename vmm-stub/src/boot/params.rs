//! The `boot_params` "zero page" of the x86 boot protocol
//! (arch/x86/include/uapi/asm/bootparam.h): e820 map, command line and
//! initrd location, and the setup header.

use super::bzimage::HDR_START;

/// Size of `struct boot_params`.
pub const LEN: usize = 4096;
const E820_ENTRIES: usize = 0x1e8;
const E820_TABLE: usize = 0x2d0;
const E820_MAX: usize = 128;
const BOOT_FLAG: usize = 0x1fe;
const HEADER: usize = 0x202;
const VERSION: usize = 0x206;
const TYPE_OF_LOADER: usize = 0x210;
const LOADFLAGS: usize = 0x211;
const RAMDISK_IMAGE: usize = 0x218;
const RAMDISK_SIZE: usize = 0x21c;
const CMD_LINE_PTR: usize = 0x228;
const KERNEL_ALIGNMENT: usize = 0x230;
const CMDLINE_SIZE: usize = 0x238;
const EXT_RAMDISK_IMAGE: usize = 0x0c0;
const EXT_RAMDISK_SIZE: usize = 0x0c4;
const EXT_CMD_LINE_PTR: usize = 0x0c8;

pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

/// A zero page being filled in.
pub struct BootParams {
    page: [u8; LEN],
}

impl Default for BootParams {
    fn default() -> Self {
        Self::new()
    }
}

impl BootParams {
    pub fn new() -> BootParams {
        BootParams { page: [0; LEN] }
    }

    /// Copies `bytes` to offset `at`, cut at the end of the page (every
    /// field written lies inside it: constant offsets, at most E820_MAX
    /// e820 entries, a setup header of at most a page).
    fn put(&mut self, at: usize, bytes: &[u8]) {
        for (d, &b) in self.page.iter_mut().skip(at).zip(bytes) {
            *d = b;
        }
    }

    /// Copies a bzImage's setup header (`file[HDR_START..hdr_end]`).
    pub fn set_setup_header(&mut self, hdr: &[u8]) {
        self.put(HDR_START, hdr);
    }

    /// For an ELF vmlinux (no setup header in the file): the fields a
    /// boot loader provides, as the 2.15 protocol describes them.
    pub fn set_minimal_header(&mut self) {
        self.put(BOOT_FLAG, &0xaa55u16.to_le_bytes());
        self.put(HEADER, b"HdrS");
        self.put(VERSION, &0x020fu16.to_le_bytes());
        self.put(LOADFLAGS, &[1]); // LOADED_HIGH
        self.put(KERNEL_ALIGNMENT, &0x100_0000u32.to_le_bytes());
    }

    /// Loader type 0xff (undefined), command line and initrd location.
    pub fn set_loader_fields(&mut self, cmdline: u64, cmdline_len: u32, initrd: u64, initrd_len: u64) {
        self.page[TYPE_OF_LOADER] = 0xff;
        let lo = |v: u64| (v & 0xffff_ffff) as u32;
        let hi = |v: u64| (v >> 32) as u32;
        self.put(CMD_LINE_PTR, &lo(cmdline).to_le_bytes());
        self.put(EXT_CMD_LINE_PTR, &hi(cmdline).to_le_bytes());
        self.put(CMDLINE_SIZE, &cmdline_len.to_le_bytes());
        self.put(RAMDISK_IMAGE, &lo(initrd).to_le_bytes());
        self.put(EXT_RAMDISK_IMAGE, &hi(initrd).to_le_bytes());
        self.put(RAMDISK_SIZE, &lo(initrd_len).to_le_bytes());
        self.put(EXT_RAMDISK_SIZE, &hi(initrd_len).to_le_bytes());
    }

    /// Appends an e820 entry; `false` when the table is full.
    pub fn add_e820(&mut self, addr: u64, size: u64, kind: u32) -> bool {
        let n = usize::from(self.page[E820_ENTRIES]);
        if n >= E820_MAX {
            return false;
        }
        let at = E820_TABLE + n * 20;
        self.put(at, &addr.to_le_bytes());
        self.put(at + 8, &size.to_le_bytes());
        self.put(at + 16, &kind.to_le_bytes());
        self.page[E820_ENTRIES] = (n + 1) as u8;
        true
    }

    pub fn as_bytes(&self) -> &[u8; LEN] {
        &self.page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_land_at_the_documented_offsets() {
        let mut p = BootParams::new();
        p.set_minimal_header();
        p.set_loader_fields(0x2_0000, 2048, 0x1_2345_6000, 0x1000);
        assert!(p.add_e820(0, 0x9fc00, E820_RAM));
        assert!(p.add_e820(0x10_0000, 0x700_0000, E820_RAM));
        let b = p.as_bytes();
        assert_eq!(&b[0x202..0x206], b"HdrS");
        assert_eq!(b[0x1e8], 2);
        assert_eq!(&b[0x2d0 + 20..0x2d0 + 28], &0x10_0000u64.to_le_bytes());
        assert_eq!(&b[0x2d0 + 36..0x2d0 + 40], &1u32.to_le_bytes());
        assert_eq!(&b[0x218..0x21c], &0x2345_6000u32.to_le_bytes());
        assert_eq!(&b[0xc0..0xc4], &1u32.to_le_bytes());
        assert_eq!(&b[0x228..0x22c], &0x2_0000u32.to_le_bytes());
        assert_eq!(b[0x210], 0xff);
    }

    #[test]
    fn setup_header_is_copied_and_cut_at_the_page_end() {
        let mut p = BootParams::new();
        p.set_setup_header(&[7; 3]);
        assert_eq!(&p.as_bytes()[HDR_START - 1..HDR_START + 4], &[0, 7, 7, 7, 0]);
        p.set_setup_header(&[9; 2 * LEN]);
        assert!(p.as_bytes()[HDR_START..].iter().all(|&b| b == 9));
        assert!(p.as_bytes()[..HDR_START].iter().all(|&b| b == 0));
    }

    #[test]
    fn e820_table_is_bounded() {
        let mut p = BootParams::new();
        for i in 0..128 {
            assert!(p.add_e820(i, 1, E820_RAM));
        }
        assert!(!p.add_e820(0, 1, E820_RAM));
    }
}
