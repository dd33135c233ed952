//! Guest RAM: one anonymous host mapping, seen by the guest as up to two
//! ranges: `[0, LOW_END)` and, for RAM beyond that, `[4 GiB, ...)` (the
//! virtio-mmio window and the x86 legacy hole sit between them).
//!
//! This is the only module that dereferences guest memory. Every accessor
//! takes a guest address and a length chosen by the (hostile) guest, checks
//! `addr + len` against the RAM size with checked arithmetic, and returns
//! `None` instead of touching anything outside the mapping.
//!
//! Aliasing: the guest writes this memory only while a vCPU is inside
//! `KVM_RUN`. The stub runs its single vCPU on the thread that handles exits,
//! so while any accessor's borrow is alive the guest is stopped and the bytes
//! cannot change under Rust's feet. Code that adds a second thread touching
//! guest RAM must use the `read_*`/`write_*` copies, not the slices.

use core::ptr::NonNull;
use crate::sys::kvm::Vm;
use rustix::io::Errno;
use rustix::mm::{self, MapFlags, ProtFlags};

/// Host page size assumed by the mappings (x86_64).
pub const PAGE_SIZE: u64 = 4096;

/// A guest physical address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestAddress(pub u64);

impl GuestAddress {
    /// `self + offset`, or `None` if it wraps.
    pub fn checked_add(self, offset: u64) -> Option<GuestAddress> {
        self.0.checked_add(offset).map(GuestAddress)
    }

    pub fn raw(self) -> u64 {
        self.0
    }
}

/// Plain-old-data: any byte pattern is a valid value and the type has no
/// padding whose contents matter, so it may be copied to and from guest RAM.
///
/// # Safety
/// Implement only for `#[repr(C)]`/primitive types without references,
/// pointers, `bool`, enums or other types with invalid bit patterns.
pub unsafe trait ByteValued: Copy {}

// SAFETY: primitive integers accept every bit pattern.
unsafe impl ByteValued for u8 {}
// SAFETY: as above.
unsafe impl ByteValued for u16 {}
// SAFETY: as above.
unsafe impl ByteValued for u32 {}
// SAFETY: as above.
unsafe impl ByteValued for u64 {}
// SAFETY: arrays of POD are POD.
unsafe impl<T: ByteValued, const N: usize> ByteValued for [T; N] {}

/// Declares a `#[repr(C)]` struct of [`ByteValued`] fields without padding
/// (checked at compile time) and makes it `ByteValued` itself: a layout the
/// guest sees, such as a device's config space, written as the spec's
/// struct. Multi-byte fields are little endian, as virtio wants (the stub
/// runs on x86_64 only).
#[macro_export]
macro_rules! guest_struct {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        $vis struct $name { $($(#[$fmeta])* $fvis $field: $ty),* }
        const _: () = {
            // No padding: the size is the sum of the fields'.
            assert!(core::mem::size_of::<$name>() == 0 $(+ core::mem::size_of::<$ty>())*);
            // Every field is plain data.
            const fn byte_valued<T: $crate::mem::ByteValued>() {}
            $(byte_valued::<$ty>();)*
        };
        // SAFETY: repr(C), no padding (asserted above), and every field is ByteValued (checked above): every byte is initialised and any byte pattern is a valid value.
        unsafe impl $crate::mem::ByteValued for $name {}
    };
}

/// The bytes of `v` (for copying a [`guest_struct!`] out).
pub fn bytes_of<T: ByteValued>(v: &T) -> &[u8] {
    // SAFETY: ByteValued types have no padding and no invalid bytes, so all size_of::<T>() bytes of `v` are initialised and readable for the borrow.
    unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), core::mem::size_of::<T>()) }
}

/// Where low RAM ends: the virtio-mmio window starts there.
pub const LOW_END: u64 = linker::abi::MMIO_BASE;
/// Where RAM above `LOW_END` continues in the guest.
pub const HIGH_BASE: u64 = 1 << 32;

/// Guest RAM backed by one host mapping of `len` bytes: host offset `o`
/// is guest address `o` below `LOW_END`, `HIGH_BASE + (o - LOW_END)` above.
pub struct GuestMemory {
    base: NonNull<u8>,
    len: usize,
    /// Registered with a VM ([`GuestMemory::register`]): the mapping then
    /// stays until the process ends.
    registered: bool,
}

impl GuestMemory {
    /// Maps `len` bytes (rounded up to a page) of anonymous, zeroed memory.
    /// `MAP_NORESERVE`: pages the guest never touches cost nothing.
    ///
    /// The mapping starts on a 2 MiB boundary, as guest address 0 does: where
    /// the host backs it with transparent huge pages, KVM can then map the
    /// guest 2 MiB at a time (one nested page fault, not 512), as QEMU does.
    /// In the KVM lab (THP `always` in L1) that made the first read of a disk
    /// 3.5x faster (every page the guest's page cache fills is a first touch)
    /// and an idle Linux VM ~2.4 MiB bigger (whole huge pages). No
    /// `MADV_HUGEPAGE` (QEMU's choice): where THP is `madvise` the RAM stays
    /// in 4 KiB pages. Measured there (L1 switched to `madvise`): first
    /// reads 12 MB/s without it, 35 with; idle VM PSS 12.4 MiB vs 18.9.
    pub fn new(len: u64) -> Result<GuestMemory, Errno> {
        const HUGE: usize = 2 << 20;
        let len = usize::try_from(len).map_err(|_| Errno::NOMEM)?;
        let len = len.checked_next_multiple_of(4096).ok_or(Errno::NOMEM)?;
        if len == 0 {
            return Err(Errno::INVAL);
        }
        let span = len.checked_add(HUGE).ok_or(Errno::NOMEM)?;
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses aliases nothing; we own it until `drop` unmaps it.
        let ptr = unsafe {
            mm::mmap_anonymous(
                core::ptr::null_mut(),
                span,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )?
        };
        let head = (ptr as usize).next_multiple_of(HUGE) - ptr as usize;
        let ptr = ptr.cast::<u8>();
        // SAFETY: `[ptr, ptr + head)` and `[ptr + head + len, ptr + span)` are the two ends of the fresh mapping above that `self` will not use (head + len <= span).
        unsafe {
            let _ = mm::munmap(ptr.cast(), head);
            let _ = mm::munmap(ptr.add(head + len).cast(), span - head - len);
        }
        // SAFETY: head <= HUGE, so `ptr + head` stays inside the mapping.
        let base = NonNull::new(unsafe { ptr.add(head) }).ok_or(Errno::NOMEM)?;
        Ok(GuestMemory { base, len, registered: false })
    }

    /// Size of guest RAM in bytes.
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// Bytes of RAM at `[0, low_len)`: where the kernel and initrd go.
    pub fn low_len(&self) -> u64 {
        self.len().min(LOW_END)
    }

    /// The guest ranges `(guest address, size, host address)` of RAM, for
    /// KVM's memory slots and the e820 map: low RAM, then high RAM (size 0
    /// when the guest has none).
    pub fn ranges(&self) -> [(u64, u64, u64); 2] {
        let base = self.host_base();
        [(0, self.low_len(), base), (HIGH_BASE, self.len() - self.low_len(), base + LOW_END)]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Host virtual address of guest address 0.
    fn host_base(&self) -> u64 {
        self.base.as_ptr() as u64
    }

    /// The host index range of `[addr, addr + len)`, if it lies inside one
    /// RAM range (never across the hole). Devices use it to validate guest
    /// buffers before any access.
    pub fn checked_range(&self, addr: GuestAddress, len: u64) -> Option<core::ops::Range<usize>> {
        let end = addr.0.checked_add(len)?;
        let offset = if end <= self.low_len() {
            addr.0
        } else if addr.0 >= HIGH_BASE && self.len() > LOW_END {
            addr.0 - HIGH_BASE + LOW_END
        } else {
            return None;
        };
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        (end <= self.len).then_some(start..end)
    }

    /// `[addr, addr + len)` of guest RAM, or `None` if any byte is outside.
    pub fn slice(&self, addr: GuestAddress, len: u64) -> Option<&[u8]> {
        let r = self.checked_range(addr, len)?;
        // SAFETY: `r` lies inside the live mapping (checked above); the guest cannot write while we hold `&self` (module docs: single vCPU thread).
        Some(unsafe { core::slice::from_raw_parts(self.base.as_ptr().add(r.start), r.len()) })
    }

    /// Mutable `[addr, addr + len)` of guest RAM, or `None` if outside.
    pub fn slice_mut(&mut self, addr: GuestAddress, len: u64) -> Option<&mut [u8]> {
        let r = self.checked_range(addr, len)?;
        // SAFETY: inside the mapping (checked), and `&mut self` makes this the only host reference into guest RAM.
        Some(unsafe { core::slice::from_raw_parts_mut(self.base.as_ptr().add(r.start), r.len()) })
    }

    /// Copies `buf.len()` bytes from guest RAM at `addr` into `buf`.
    pub fn read_slice(&self, addr: GuestAddress, buf: &mut [u8]) -> Option<()> {
        buf.copy_from_slice(self.slice(addr, buf.len() as u64)?);
        Some(())
    }

    /// Copies `buf` into guest RAM at `addr`.
    pub fn write_slice(&mut self, addr: GuestAddress, buf: &[u8]) -> Option<()> {
        self.slice_mut(addr, buf.len() as u64)?.copy_from_slice(buf);
        Some(())
    }

    /// Reads a `T` from `addr` (no alignment required).
    pub fn read_obj<T: ByteValued>(&self, addr: GuestAddress) -> Option<T> {
        let bytes = self.slice(addr, core::mem::size_of::<T>() as u64)?;
        // SAFETY: `bytes` holds exactly size_of::<T>() readable bytes and any bit pattern is a valid `T` (ByteValued); read_unaligned needs no alignment.
        Some(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
    }

    /// Writes `val` to `addr` (no alignment required).
    pub fn write_obj<T: ByteValued>(&mut self, addr: GuestAddress, val: T) -> Option<()> {
        let bytes = self.slice_mut(addr, core::mem::size_of::<T>() as u64)?;
        // SAFETY: `bytes` holds exactly size_of::<T>() writable bytes.
        unsafe { bytes.as_mut_ptr().cast::<T>().write_unaligned(val) };
        Some(())
    }

    /// Replaces guest RAM `[addr, addr + len)` with a private (copy-on-write)
    /// mapping of `fd` at `offset`: the kernel's pages come straight from the
    /// page cache, shared between every VM started from the same image.
    /// `addr`, `offset` and `len` must be page aligned.
    pub fn map_file(
        &mut self,
        addr: GuestAddress,
        len: u64,
        fd: rustix::fd::BorrowedFd<'_>,
        offset: u64,
    ) -> Result<(), Errno> {
        let aligned = |v: u64| v % PAGE_SIZE == 0;
        if !aligned(addr.0) || !aligned(len) || !aligned(offset) || len == 0 {
            return Err(Errno::INVAL);
        }
        let r = self.checked_range(addr, len).ok_or(Errno::INVAL)?;
        // SAFETY: `r` lies inside our own mapping, so MAP_FIXED replaces only pages this object owns; `&mut self` guarantees no live borrow into them.
        unsafe {
            mm::mmap(
                self.base.as_ptr().add(r.start).cast(),
                r.len(),
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::FIXED,
                fd,
                offset,
            )?;
        }
        Ok(())
    }
}

impl GuestMemory {
    /// Gives `[addr, addr + len)` back to the host (free page reporting):
    /// the guest reads zeros there afterwards (the image's bytes where a
    /// section is mapped from the file). `None` unless the range is page
    /// aligned, non-empty and inside one RAM range.
    pub fn discard(&mut self, addr: GuestAddress, len: u64) -> Option<()> {
        if addr.0 % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 || len == 0 {
            return None;
        }
        let r = self.checked_range(addr, len)?;
        // SAFETY: `r` lies inside this mapping (checked) and starts on a page (the mapping is 2 MiB aligned, RAM ranges start on pages); `&mut self` means no host borrow into guest RAM is alive.
        unsafe { crate::sys::mm::discard(self.base.as_ptr().add(r.start), r.len()) }.ok()
    }
}

impl GuestMemory {
    /// Makes this memory `vm`'s RAM (one memory slot per range of
    /// [`GuestMemory::ranges`]). From then on the mapping is never unmapped,
    /// even when `self` is dropped: the VM may outlive it (the reaper keeps
    /// the VM until the process ends).
    pub fn register(&mut self, vm: &Vm) -> Result<(), Errno> {
        self.registered = true;
        for (slot, (gpa, size, host)) in [0, 1].into_iter().zip(self.ranges()).filter(|(_, r)| r.1 > 0) {
            // SAFETY: `host..host + size` is part of this mapping, which stays mapped for the rest of the process (`registered`, see Drop); the host touches it only through this object's checked accessors.
            unsafe { vm.set_user_memory_region(slot, gpa, size, host) }?;
        }
        Ok(())
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        if self.registered {
            return; // a VM may still use it (see `register`)
        }
        // SAFETY: `base`/`len` describe the mapping created in `new`, and no borrow of it can outlive `self`.
        let _ = unsafe { mm::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_stay_inside_ram() {
        let mut m = GuestMemory::new(8192).expect("mmap");
        assert_eq!(m.len(), 8192);
        assert_eq!(m.host_base() % (2 << 20), 0, "2 MiB aligned (huge pages)");
        assert!(m.write_obj(GuestAddress(8188), 0xdead_beefu32).is_some());
        assert_eq!(m.read_obj::<u32>(GuestAddress(8188)), Some(0xdead_beef));
        assert!(m.write_obj(GuestAddress(8189), 0u32).is_none());
        assert!(m.read_obj::<u64>(GuestAddress(u64::MAX - 3)).is_none());
        assert!(m.slice(GuestAddress(0), 8193).is_none());
        assert!(m.slice(GuestAddress(8192), 0).is_some());
        assert!(m.slice(GuestAddress(1), u64::MAX).is_none());
        assert!(m.checked_range(GuestAddress(u64::MAX), 1).is_none());
        let mut buf = [0u8; 4];
        m.read_slice(GuestAddress(8188), &mut buf).expect("inside");
        assert_eq!(buf, 0xdead_beefu32.to_le_bytes());
        assert!(m.write_slice(GuestAddress(8190), &buf).is_none());
    }

    #[test]
    fn ram_above_the_hole_continues_at_4_gib() {
        let len = LOW_END + 3 * PAGE_SIZE;
        let mut m = GuestMemory::new(len).expect("mmap (NORESERVE)");
        assert_eq!(m.low_len(), LOW_END);
        let r = m.ranges();
        assert_eq!((r[0].0, r[0].1, r[1].0, r[1].1), (0, LOW_END, HIGH_BASE, 3 * PAGE_SIZE));
        assert_eq!(r[1].2 - r[0].2, LOW_END);
        m.write_obj(GuestAddress(LOW_END - 8), 1u64).expect("top of low RAM");
        m.write_obj(GuestAddress(HIGH_BASE), 2u64).expect("start of high RAM");
        m.write_obj(GuestAddress(HIGH_BASE + 3 * PAGE_SIZE - 8), 3u64).expect("end of high RAM");
        assert_eq!(m.read_obj::<u64>(GuestAddress(LOW_END - 8)), Some(1));
        assert_eq!(m.read_obj::<u64>(GuestAddress(HIGH_BASE)), Some(2));
        assert_eq!(m.checked_range(GuestAddress(HIGH_BASE), 8), Some(LOW_END as usize..LOW_END as usize + 8));
        // The hole, ranges across it, and past the end are not RAM.
        assert!(m.slice(GuestAddress(LOW_END), 1).is_none());
        assert!(m.slice(GuestAddress(LOW_END - 4), 8).is_none());
        assert!(m.slice(GuestAddress(HIGH_BASE - 1), 2).is_none());
        assert!(m.slice(GuestAddress(0), HIGH_BASE + 8).is_none());
        assert!(m.slice(GuestAddress(HIGH_BASE + 3 * PAGE_SIZE - 4), 8).is_none());
        assert!(m.slice(GuestAddress(HIGH_BASE + 3 * PAGE_SIZE), 1).is_none());
        assert!(m.slice(GuestAddress(u64::MAX - 2), 4).is_none());
        // Without high RAM nothing answers at 4 GiB.
        let small = GuestMemory::new(8192).expect("mmap");
        assert_eq!(small.ranges()[1].1, 0);
        assert!(small.slice(GuestAddress(HIGH_BASE), 1).is_none());
    }

    #[test]
    fn unaligned_objects_round_trip() {
        let mut m = GuestMemory::new(4096).expect("mmap");
        m.write_obj(GuestAddress(3), 0x0102_0304_0506_0708u64).expect("inside");
        assert_eq!(m.read_obj::<u64>(GuestAddress(3)), Some(0x0102_0304_0506_0708));
        assert_eq!(m.read_obj::<u8>(GuestAddress(3)), Some(8));
    }

    #[test]
    fn map_file_checks_alignment_and_bounds() {
        let mut m = GuestMemory::new(3 * 4096).expect("mmap");
        let f = rustix::fs::open("/proc/self/exe", rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty())
            .expect("exe");
        use rustix::fd::AsFd;
        assert_eq!(m.map_file(GuestAddress(1), 4096, f.as_fd(), 0), Err(Errno::INVAL));
        assert_eq!(m.map_file(GuestAddress(8192), 8192, f.as_fd(), 0), Err(Errno::INVAL));
        m.map_file(GuestAddress(4096), 4096, f.as_fd(), 0).expect("map");
        assert_eq!(m.slice(GuestAddress(4096), 4), Some(&b"\x7fELF"[..]));
        // Private: writes do not reach the file.
        m.write_obj(GuestAddress(4096), 0u8).expect("cow");
        assert_eq!(m.read_obj::<u8>(GuestAddress(4096)), Some(0));
    }

    #[test]
    fn discard_zeroes_only_aligned_pages_inside_ram() {
        let mut m = GuestMemory::new(4 * 4096).expect("mmap");
        m.write_slice(GuestAddress(4096), &[7; 8192]).expect("inside");
        for (addr, len) in [(4097, 4096), (4096, 100), (4096, 0), (12288, 8192), (u64::MAX - 4095, 4096), (HIGH_BASE, 4096)] {
            assert!(m.discard(GuestAddress(addr), len).is_none(), "{addr:#x}+{len:#x}");
        }
        assert_eq!(m.read_obj::<u8>(GuestAddress(4096)), Some(7), "refused ranges keep their bytes");
        m.discard(GuestAddress(4096), 4096).expect("aligned, inside");
        assert_eq!(m.slice(GuestAddress(4096), 4096), Some(&[0u8; 4096][..]));
        assert_eq!(m.read_obj::<u8>(GuestAddress(8192)), Some(7), "the next page is untouched");
    }
}
