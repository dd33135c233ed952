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
    fn read(&self, mem: &mut GuestMemory, addr: u64, file_off: u64, len: u64) -> Result<(), LoadError> {
        if len == 0 {
            return Ok(());
        }
        let dst = mem.slice_mut(GuestAddress(addr), len).ok_or(LoadError::Elf(ElfError::BadSegment))?;
        pread_exact(self.fd, dst, self.offset + file_off).map_err(LoadError::Io)
    }
}

pub fn load(mem: &mut GuestMemory, file: KernelFile<'_>) -> Result<Kernel, LoadError> {
    let mut head = [0u8; elf::HEAD_LEN];
    let head_len = file.len.min(elf::HEAD_LEN as u64) as usize;
    pread_exact(file.fd, &mut head[..head_len], file.offset).map_err(LoadError::Io)?;
    let head = &head[..head_len];
    if elf::is_elf(head) {
        load_elf(mem, file, head)
    } else if bzimage::is_bzimage(head) {
        load_bzimage(mem, file, head)
    } else {
        Err(LoadError::UnknownFormat)
    }
}

fn load_elf(mem: &mut GuestMemory, file: KernelFile<'_>, head: &[u8]) -> Result<Kernel, LoadError> {
    let image = elf::parse(head, file.len, KERNEL_MIN_ADDR, RAM_MAX).map_err(LoadError::Elf)?;
    if image.end() > mem.len() {
        return Err(LoadError::TooSmall);
    }
    for s in &image.segments {
        let file_abs = file.offset + s.offset;
        let end = s.addr + s.file_len;
        let (map_start, map_end) = if file_abs % PAGE_SIZE == s.addr % PAGE_SIZE {
            (s.addr.next_multiple_of(PAGE_SIZE), end / PAGE_SIZE * PAGE_SIZE)
        } else {
            (end, end)
        };
        if map_end > map_start {
            let off = file_abs + (map_start - s.addr);
            mem.map_file(GuestAddress(map_start), map_end - map_start, file.fd, off)
                .map_err(LoadError::Io)?;
            file.read(mem, s.addr, s.offset, map_start - s.addr)?;
            file.read(mem, map_end, s.offset + (map_end - s.addr), end - map_end)?;
        } else {
            file.read(mem, s.addr, s.offset, s.file_len)?;
        }
        // [end, addr + mem_len) is .bss: still the fresh anonymous (zero)
        // memory, as no mapping above extends past `end`.
    }
    Ok(Kernel { entry: image.entry, end: image.end(), bz: None })
}

fn load_bzimage(mem: &mut GuestMemory, file: KernelFile<'_>, head: &[u8]) -> Result<Kernel, LoadError> {
    let bz = bzimage::parse(head, file.len, KERNEL_MIN_ADDR, RAM_MAX).map_err(LoadError::Bz)?;
    if bz.end > mem.len() {
        return Err(LoadError::TooSmall);
    }
    file.read(mem, bz.load_addr, bz.setup_len, bz.payload_len)?;
    let mut hdr = [0u8; MAX_HDR_END - HDR_START];
    let n = bz.hdr_end - HDR_START;
    hdr[..n].copy_from_slice(&head[HDR_START..bz.hdr_end]);
    Ok(Kernel { entry: bz.entry, end: bz.end, bz: Some((bz, hdr)) })
}
