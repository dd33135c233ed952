//! bzImage via the 64-bit boot protocol (Documentation/x86/boot.rst): the
//! setup header is validated with checked arithmetic, the protected-mode
//! part is loaded at its preferred address and entered at `+0x200`.

/// Offsets in the file (= in `boot_params`) of the setup header fields.
pub const HDR_START: usize = 0x1f1;
const SETUP_SECTS: usize = 0x1f1;
const BOOT_FLAG: usize = 0x1fe;
const JUMP_LEN: usize = 0x201;
const HEADER: usize = 0x202;
const VERSION: usize = 0x206;
const LOADFLAGS: usize = 0x211;
const INITRD_ADDR_MAX: usize = 0x22c;
const KERNEL_ALIGNMENT: usize = 0x230;
const RELOCATABLE: usize = 0x234;
const XLOADFLAGS: usize = 0x236;
const CMDLINE_SIZE: usize = 0x238;
const PREF_ADDRESS: usize = 0x258;
const INIT_SIZE: usize = 0x260;

const LOADED_HIGH: u8 = 1;
const XLF_KERNEL_64: u16 = 1;
/// 2.12: xloadflags (64-bit entry is declared) and everything before.
const MIN_VERSION: u16 = 0x020c;
/// Offset of `startup_64` from the start of the protected-mode code.
const STARTUP_64_OFFSET: u64 = 0x200;
/// The largest setup header we copy (ends well before 0x290 in 2.15).
pub const MAX_HDR_END: usize = 0x290;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BzImage {
    /// File offset of the protected-mode code (after the real-mode setup).
    pub setup_len: u64,
    /// Its length.
    pub payload_len: u64,
    /// Guest physical load address of the protected-mode code.
    pub load_addr: u64,
    /// The 64-bit entry point.
    pub entry: u64,
    /// One past the highest address the kernel uses while decompressing.
    pub end: u64,
    /// `[HDR_START, hdr_end)` of the file is copied into `boot_params`.
    pub hdr_end: usize,
    pub initrd_addr_max: u32,
    pub cmdline_size: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BzError {
    /// No `HdrS` / 0xAA55 signature.
    NotBzImage,
    /// Boot protocol older than 2.12 or no 64-bit entry.
    TooOld,
    /// Setup sizes, load address or alignment do not add up.
    BadHeader,
    /// Kernel does not fit in guest memory.
    TooBig,
}

impl BzError {
    pub fn message(self) -> &'static str {
        match self {
            BzError::NotBzImage => "kernel: not a bzImage (no HdrS setup header)",
            BzError::TooOld => "kernel: bzImage boot protocol < 2.12 or no 64-bit entry",
            BzError::BadHeader => "kernel: bzImage setup header is inconsistent",
            BzError::TooBig => "kernel: bzImage does not fit in guest memory (raise --smolvm-mem)",
        }
    }
}

fn u8_at(b: &[u8], at: usize) -> Option<u8> {
    b.get(at).copied()
}
fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Whether `head` carries a bzImage setup header signature.
pub fn is_bzimage(head: &[u8]) -> bool {
    u16_at(head, BOOT_FLAG) == Some(0xaa55) && head.get(HEADER..HEADER + 4) == Some(b"HdrS")
}

/// Parses the first bytes of a `file_len`-byte bzImage; the kernel must fit
/// in `[min_addr, max_addr)`.
pub fn parse(head: &[u8], file_len: u64, min_addr: u64, max_addr: u64) -> Result<BzImage, BzError> {
    if !is_bzimage(head) {
        return Err(BzError::NotBzImage);
    }
    let bad = BzError::BadHeader;
    let version = u16_at(head, VERSION).ok_or(bad)?;
    let xloadflags = u16_at(head, XLOADFLAGS).ok_or(bad)?;
    if version < MIN_VERSION || xloadflags & XLF_KERNEL_64 == 0 {
        return Err(BzError::TooOld);
    }
    if u8_at(head, LOADFLAGS).ok_or(bad)? & LOADED_HIGH == 0 {
        return Err(bad);
    }
    let hdr_end = 0x202 + usize::from(u8_at(head, JUMP_LEN).ok_or(bad)?);
    if hdr_end > MAX_HDR_END || hdr_end < INIT_SIZE + 4 {
        return Err(bad);
    }
    let sects = match u8_at(head, SETUP_SECTS).ok_or(bad)? {
        0 => 4,
        n => u64::from(n),
    };
    let setup_len = (sects + 1) * 512;
    let payload_len = file_len.checked_sub(setup_len).filter(|&n| n > 0).ok_or(bad)?;
    let align = u64::from(u32_at(head, KERNEL_ALIGNMENT).ok_or(bad)?);
    let pref = u64_at(head, PREF_ADDRESS).ok_or(bad)?;
    let relocatable = u8_at(head, RELOCATABLE).ok_or(bad)? != 0;
    // A relocatable kernel may go anywhere aligned; we still use its
    // preferred address, which is aligned by construction.
    if !align.is_power_of_two() || (relocatable && pref % align != 0) || pref < min_addr {
        return Err(bad);
    }
    let init_size = u64::from(u32_at(head, INIT_SIZE).ok_or(bad)?);
    let end = pref.checked_add(payload_len.max(init_size)).ok_or(BzError::TooBig)?;
    if end > max_addr {
        return Err(BzError::TooBig);
    }
    Ok(BzImage {
        setup_len,
        payload_len,
        load_addr: pref,
        entry: pref.wrapping_add(STARTUP_64_OFFSET), // pref <= end <= max_addr
        end,
        hdr_end,
        initrd_addr_max: u32_at(head, INITRD_ADDR_MAX).ok_or(bad)?,
        cmdline_size: u32_at(head, CMDLINE_SIZE).ok_or(bad)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> std::vec::Vec<u8> {
        let mut h = std::vec![0u8; 4096];
        h[SETUP_SECTS] = 27;
        h[BOOT_FLAG..BOOT_FLAG + 2].copy_from_slice(&0xaa55u16.to_le_bytes());
        h[JUMP_LEN] = 0x6a;
        h[HEADER..HEADER + 4].copy_from_slice(b"HdrS");
        h[VERSION..VERSION + 2].copy_from_slice(&0x020fu16.to_le_bytes());
        h[LOADFLAGS] = LOADED_HIGH;
        h[INITRD_ADDR_MAX..INITRD_ADDR_MAX + 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        h[KERNEL_ALIGNMENT..KERNEL_ALIGNMENT + 4].copy_from_slice(&0x20_0000u32.to_le_bytes());
        h[RELOCATABLE] = 1;
        h[XLOADFLAGS..XLOADFLAGS + 2].copy_from_slice(&0x7fu16.to_le_bytes());
        h[CMDLINE_SIZE..CMDLINE_SIZE + 4].copy_from_slice(&2047u32.to_le_bytes());
        h[PREF_ADDRESS..PREF_ADDRESS + 8].copy_from_slice(&0x100_0000u64.to_le_bytes());
        h[INIT_SIZE..INIT_SIZE + 4].copy_from_slice(&0x80_0000u32.to_le_bytes());
        h
    }

    #[test]
    fn parses_a_6_1_style_header() {
        let b = parse(&header(), 0x20_0000, 0x10_0000, 1 << 30).expect("valid");
        assert_eq!(b.setup_len, 28 * 512);
        assert_eq!(b.payload_len, 0x20_0000 - 28 * 512);
        assert_eq!(b.load_addr, 0x100_0000);
        assert_eq!(b.entry, 0x100_0200);
        assert_eq!(b.end, 0x180_0000);
        assert_eq!(b.hdr_end, 0x26c);
        assert_eq!(b.cmdline_size, 2047);
    }

    #[test]
    fn real_bzimage_if_present() {
        let path = "/root/kbuild-scratch/linux-source-6.1/arch/x86/boot/bzImage";
        let Ok(bytes) = std::fs::read(path) else { return };
        let b = parse(&bytes[..4096], bytes.len() as u64, 0x10_0000, 1 << 30).expect("parses");
        assert_eq!(b.load_addr, 0x100_0000);
    }

    #[test]
    fn hostile_headers_are_refused() {
        let p = |h: &[u8], len| parse(h, len, 0x10_0000, 64 << 20);
        assert_eq!(p(&[0u8; 4096], 1 << 20), Err(BzError::NotBzImage));
        let mut h = header();
        h[VERSION] = 0x0b;
        assert_eq!(p(&h, 1 << 20), Err(BzError::TooOld));
        let mut h = header();
        h[XLOADFLAGS] = 0;
        assert_eq!(p(&h, 1 << 20), Err(BzError::TooOld));
        let mut h = header();
        h[LOADFLAGS] = 0;
        assert_eq!(p(&h, 1 << 20), Err(BzError::BadHeader));
        assert_eq!(p(&header(), 28 * 512), Err(BzError::BadHeader));
        let mut h = header();
        h[JUMP_LEN] = 0xff;
        assert_eq!(p(&h, 1 << 20), Err(BzError::BadHeader));
        let mut h = header();
        h[PREF_ADDRESS..PREF_ADDRESS + 8].copy_from_slice(&(u64::MAX - 0x1000).to_le_bytes());
        h[RELOCATABLE] = 0;
        assert_eq!(p(&h, 1 << 20), Err(BzError::TooBig));
        let mut h = header();
        h[PREF_ADDRESS..PREF_ADDRESS + 8].copy_from_slice(&0x1234u64.to_le_bytes());
        assert_eq!(p(&h, 1 << 20), Err(BzError::BadHeader));
        let mut h = header();
        h[INIT_SIZE..INIT_SIZE + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(p(&h, 1 << 20), Err(BzError::TooBig));
        assert_eq!(p(&header(), u64::MAX), Err(BzError::TooBig));
    }
}
