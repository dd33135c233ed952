//! Puts the kernel into guest RAM: ELF `vmlinux` segments are mapped
//! copy-on-write straight from the image file where file offset and load
//! address agree modulo the page size (the kernel's pages then come from the
//! page cache, shared by every VM of the image), the unaligned head and tail
//! of each segment are read with `pread`; a bzImage's protected-mode code is
//! read to its preferred load address.

use super::bzimage::{self, BzError, BzImage, HDR_START, MAX_HDR_END};
use super::elf::{self, ElfError};
use super::layout::{KERNEL_MIN_ADDR, RAM_MAX};
use crate::mem::{GuestAddress, GuestMemory, PAGE_SIZE};
use crate::payload::pread_exact;
use rustix::fd::BorrowedFd;
use rustix::io::Errno;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    Elf(ElfError),
    Bz(BzError),
    /// Neither ELF nor bzImage.
    UnknownFormat,
    /// The kernel does not fit in guest RAM.
    TooSmall,
    Io(Errno),
}

impl LoadError {
    pub fn message(self) -> &'static str {
        match self {
            LoadError::Elf(e) => e.message(),
            LoadError::Bz(e) => e.message(),
            LoadError::UnknownFormat => "kernel: neither an ELF vmlinux nor a bzImage",
            LoadError::TooSmall => "kernel: does not fit in guest memory",
            LoadError::Io(_) => "kernel: cannot read it from the image file",
        }
    }
}

/// The kernel as loaded.
pub struct Kernel {
    pub entry: u64,
    /// One past the highest byte the kernel occupies (initrd goes above).
    pub end: u64,
    /// For a bzImage: its setup header, copied into `boot_params`.
    pub bz: Option<(BzImage, [u8; MAX_HDR_END - HDR_START])>,
}

/// Where the kernel file lies: `len` bytes at `offset` of `fd`.
#[derive(Clone, Copy)]
pub struct KernelFile<'a> {
    pub fd: BorrowedFd<'a>,
    pub offset: u64,
    pub len: u64,
}

impl KernelFile<'_> {
    fn read(&self, mem: &GuestMemory, addr: u64, file_off: u64, len: u64) -> Result<(), LoadError> {
        if len == 0 {
            return Ok(());
        }
        let dst = mem.range(GuestAddress(addr), len).ok_or(LoadError::Elf(ElfError::BadSegment))?;
        // Offsets inside the kernel section (validated by its parser), which lies inside the file.
        crate::sys::io::pread_exact(self.fd, dst.io_mut(), self.offset.wrapping_add(file_off)).map_err(LoadError::Io)
    }
}

pub fn load(mem: &GuestMemory, file: KernelFile<'_>) -> Result<Kernel, LoadError> {
    let mut head = [0u8; elf::HEAD_LEN];
    let head_len = file.len.min(elf::HEAD_LEN as u64) as usize;
    let head = head.get_mut(..head_len).unwrap_or_default();
    pread_exact(file.fd, head, file.offset).map_err(LoadError::Io)?;
    let head = &*head;
    if elf::is_elf(head) {
        load_elf(mem, file, head)
    } else if bzimage::is_bzimage(head) {
        load_bzimage(mem, file, head)
    } else {
        Err(LoadError::UnknownFormat)
    }
}

fn load_elf(mem: &GuestMemory, file: KernelFile<'_>, head: &[u8]) -> Result<Kernel, LoadError> {
    let image = elf::parse(head, file.len, KERNEL_MIN_ADDR, RAM_MAX).map_err(LoadError::Elf)?;
    if image.end() > mem.low_len() {
        return Err(LoadError::TooSmall);
    }
    // elf::parse checked offset + file_len <= file.len (inside the image
    // file) and addr + mem_len <= RAM_MAX, file_len <= mem_len: no sum
    // below wraps.
    for s in &image.segments {
        let file_abs = file.offset.wrapping_add(s.offset);
        let end = s.addr.wrapping_add(s.file_len);
        let (map_start, map_end) = if file_abs % PAGE_SIZE == s.addr % PAGE_SIZE {
            (s.addr.wrapping_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1), end & !(PAGE_SIZE - 1))
        } else {
            (end, end)
        };
        if map_end > map_start {
            // addr <= map_start < map_end <= end.
            let off = file_abs.wrapping_add(map_start.wrapping_sub(s.addr));
            mem.map_file(GuestAddress(map_start), map_end.wrapping_sub(map_start), file.fd, off)
                .map_err(LoadError::Io)?;
            file.read(mem, s.addr, s.offset, map_start.wrapping_sub(s.addr))?;
            let tail_off = s.offset.wrapping_add(map_end.wrapping_sub(s.addr));
            file.read(mem, map_end, tail_off, end.wrapping_sub(map_end))?;
        } else {
            file.read(mem, s.addr, s.offset, s.file_len)?;
        }
        // [end, addr + mem_len) is .bss: still the fresh anonymous (zero)
        // memory, as no mapping above extends past `end`.
    }
    Ok(Kernel { entry: image.entry, end: image.end(), bz: None })
}

fn load_bzimage(mem: &GuestMemory, file: KernelFile<'_>, head: &[u8]) -> Result<Kernel, LoadError> {
    let bz = bzimage::parse(head, file.len, KERNEL_MIN_ADDR, RAM_MAX).map_err(LoadError::Bz)?;
    if bz.end > mem.low_len() {
        return Err(LoadError::TooSmall);
    }
    file.read(mem, bz.load_addr, bz.setup_len, bz.payload_len)?;
    let mut hdr = [0u8; MAX_HDR_END - HDR_START];
    // bzimage::parse checked HDR_START < hdr_end <= MAX_HDR_END and that the
    // file is longer than the setup (>= 2560 bytes): `head` holds the header.
    let src = &head[HDR_START..bz.hdr_end];
    hdr[..src.len()].copy_from_slice(src);
    Ok(Kernel { entry: bz.entry, end: bz.end, bz: Some((bz, hdr)) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::elf::{tests::build, Segment};
    use std::os::fd::AsFd;

    /// A kernel file: ELF headers, then each segment's bytes at its offset.
    fn kernel_file(entry: u64, segs: &[Segment], fill: &[u8]) -> std::fs::File {
        let mut bytes = build(entry, &segs.iter().map(|s| (1, *s)).collect::<Vec<_>>());
        for (i, s) in segs.iter().enumerate() {
            let end = (s.offset + s.file_len) as usize;
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            for (j, b) in bytes[s.offset as usize..end].iter_mut().enumerate() {
                *b = fill[i].wrapping_add(j as u8);
            }
        }
        bytes.resize(bytes.len() + 4096, 0xee); // trailing bytes that must not leak into .bss
        let path = std::env::temp_dir().join(format!("vmm-stub-load-{}-{entry:x}", std::process::id()));
        std::fs::write(&path, &bytes).expect("write");
        let f = std::fs::File::open(&path).expect("open");
        let _ = std::fs::remove_file(&path);
        f
    }

    #[test]
    fn elf_segments_land_byte_exact_mapped_or_read() {
        // Segment 0: page-congruent (mapped, with unaligned head and tail);
        // segment 1: not congruent (read); both followed by .bss.
        let segs = [
            Segment { offset: 0x1100, addr: 0x20_0100, file_len: 0x2345, mem_len: 0x3000 },
            Segment { offset: 0x4010, addr: 0x30_0000, file_len: 0x1800, mem_len: 0x2800 },
        ];
        let f = kernel_file(0x20_0100, &segs, &[1, 2]);
        let len = f.metadata().expect("stat").len();
        let mem = GuestMemory::new(8 << 20).expect("mmap");
        let k = load(&mem, KernelFile { fd: f.as_fd(), offset: 0, len }).expect("loads");
        assert_eq!((k.entry, k.end), (0x20_0100, 0x30_2800));
        for (i, s) in segs.iter().enumerate() {
            let got = mem.to_vec(GuestAddress(s.addr), s.mem_len).expect("in ram");
            for (j, &b) in got.iter().enumerate() {
                let want = if (j as u64) < s.file_len { (i as u8 + 1).wrapping_add(j as u8) } else { 0 };
                assert_eq!(b, want, "segment {i} byte {j:#x}");
            }
        }
        // Nothing before the first segment in its page came from the file.
        assert!(mem.to_vec(GuestAddress(0x20_0000), 0x100).expect("ram").iter().all(|&b| b == 0));
    }

    #[test]
    fn kernels_larger_than_ram_are_too_small_errors() {
        let segs = [Segment { offset: 0x1000, addr: 0x20_0000, file_len: 0x1000, mem_len: 0x10_0000 }];
        let f = kernel_file(0x20_0000, &segs, &[7]);
        let len = f.metadata().expect("stat").len();
        let mem = GuestMemory::new(0x28_0000).expect("mmap");
        let r = load(&mem, KernelFile { fd: f.as_fd(), offset: 0, len });
        assert_eq!(r.err(), Some(LoadError::TooSmall));
    }
}
