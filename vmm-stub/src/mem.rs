//! Guest RAM: one anonymous host mapping, seen by the guest as up to two
//! ranges: `[0, LOW_END)` and, for RAM beyond that, `[4 GiB, ...)` (the
//! virtio-mmio window and the x86 legacy hole sit between them).
//!
//! This is the only module that touches guest memory. Every accessor takes
//! a guest address and a length chosen by the (hostile) guest, checks
//! `addr + len` against one RAM range with checked arithmetic, and returns
//! `None` instead of touching anything outside.
//!
//! # Why access is sound while vCPUs run
//!
//! Guest RAM is memory shared with another agent: any vCPU reads and writes
//! it at any time, concurrently with the stub's threads, as another process
//! would through a shared mapping. Rust has no model for such memory; what
//! matters is what the compiler may assume about it. A `&[u8]` or
//! `&mut [u8]` into guest RAM tells it that the bytes do not change while the
//! reference lives (or that nothing else accesses them: `noalias`), which a
//! running vCPU breaks: undefined behaviour, however short the borrow (rust-vmm
//! vm-memory: "no references or slices to volatile memory"). So:
//!
//! 1. No reference into guest RAM leaves this module, and none is made here
//!    once the RAM is registered with KVM: accessors return copies, or a
//!    [`GuestRange`] (a checked pointer and length, not a reference). The one
//!    slice, [`GuestMemory::boot_slice_mut`], exists only before
//!    [`GuestMemory::register`], when no vCPU can see the memory, and borrows
//!    the `GuestMemory` mutably, so `register` cannot run while it lives.
//! 2. Small objects (at most 8 bytes: ring indices, descriptor fields, used
//!    elements) are one volatile load or store of their width: the compiler
//!    emits exactly that access, neither dropped, repeated nor split, and
//!    x86-64 makes an aligned access of up to 8 bytes single-copy atomic
//!    (every ring field is aligned: `Queue::validate`). Neither side sees
//!    half an index.
//! 3. Everything else is `ptr::copy_nonoverlapping` between guest RAM and host
//!    memory, as vm-memory does above 8 bytes (volatile byte loops would cost
//!    the 9p and net paths their throughput). If the guest changes the bytes
//!    during the copy, each copied byte is an old or a new value: a guest
//!    racing its own request gets a garbled request, which validation then
//!    refuses like any other. What the compiler could still do to a plain
//!    copy is read guest RAM again where the code reads the host copy (memcpy
//!    forwarding), turning one fetch into two; every copy out of guest RAM
//!    therefore ends in a compiler fence, after which the compiler must
//!    assume all shared memory changed, so the host copy is the only source.
//! 4. Hence the rule for callers: a value the guest controls is read once,
//!    then validated, then used from the host copy, never re-read (the queue
//!    reads each ring index and descriptor field once; virtio-blk copies its
//!    request header, 9p the whole request, net the frame). Bytes nobody
//!    interprets (disk blocks, Twrite data, console output) need no copy.
//! 5. System calls get a [`GuestRange`] as a raw pointer and length
//!    ([`GuestRange::io`], [`crate::sys::io`]): the kernel reads or writes
//!    guest RAM itself (`copy_{from,to}_user`), as a DMA engine would: a
//!    concurrent guest write again only yields old or new bytes (on the disk,
//!    in the file), never a fault, since the pages stay mapped.
//! 6. Lifetime: a `GuestRange<'m>` borrows the `GuestMemory`, and the mapping
//!    outlives it (once registered, it is never unmapped). `discard` and
//!    `map_file` swap pages under a running guest; the range stays mapped
//!    throughout and no reference can observe the swap.
//!
//! Ordering against the other vCPUs (which ring write must be visible
//! before which) is the virtqueue's part: `virtio/queue.rs`.

use crate::sys::io::{IoBuf, IoBufMut};
use crate::sys::kvm::Vm;
use crate::sys::mm::Anon;
use core::marker::PhantomData;
use core::mem::{size_of, MaybeUninit};
use core::ptr::{self, NonNull};
use core::sync::atomic::{compiler_fence, Ordering};
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
    unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
}

/// Where low RAM ends: the virtio-mmio window starts there.
pub const LOW_END: u64 = linker::abi::MMIO_BASE;
/// Where RAM above `LOW_END` continues in the guest.
pub const HIGH_BASE: u64 = 1 << 32;

/// Copies `len` bytes out of guest RAM at `src` into host memory at `dst`,
/// then fences the compiler (module docs, point 3).
///
/// # Safety
/// `src..src + len` lies inside guest RAM, `dst..dst + len` is writable host
/// memory outside it.
unsafe fn copy_out(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's contract: both ranges valid, and they cannot overlap (host memory is never guest RAM).
    unsafe { ptr::copy_nonoverlapping(src, dst, len) };
    compiler_fence(Ordering::SeqCst);
}

/// `T` at any address: a volatile access to it is one access of `T`'s size
/// (a `mov` on x86-64; single-copy atomic where the address is aligned, as
/// every ring field is).
#[repr(C, packed)]
#[derive(Clone, Copy)]
struct Unaligned<T>(T);

/// A piece of guest RAM checked once by [`GuestMemory::range`]: a host
/// pointer and a length, never a reference (module docs). Copy bytes in and
/// out with [`GuestRange::read`]/[`GuestRange::write`], or hand it to a
/// system call with [`GuestRange::io`]/[`GuestRange::io_mut`].
#[derive(Clone, Copy)]
pub struct GuestRange<'m> {
    ptr: NonNull<u8>,
    len: usize,
    _mem: PhantomData<&'m GuestMemory>,
}

impl<'m> GuestRange<'m> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first `mid` bytes and the rest, or `None` if `mid > len`.
    pub fn split_at(self, mid: usize) -> Option<(GuestRange<'m>, GuestRange<'m>)> {
        let rest = self.len.checked_sub(mid)?;
        // SAFETY: mid <= len, so `ptr + mid` stays inside the range (or one past its end).
        let tail = unsafe { self.ptr.add(mid) };
        Some((GuestRange { len: mid, ..self }, GuestRange { ptr: tail, len: rest, _mem: PhantomData }))
    }

    /// Copies the first `min(len, buf.len())` bytes into `buf`; returns how many.
    pub fn read(self, buf: &mut [u8]) -> usize {
        let n = self.len.min(buf.len());
        // SAFETY: n <= len bytes of guest RAM (checked when the range was made) into n <= buf.len() bytes of `buf`, which is host memory (no reference into guest RAM exists).
        unsafe { copy_out(self.ptr.as_ptr(), buf.as_mut_ptr(), n) };
        n
    }

    /// Copies `min(len, data.len())` bytes of `data` to the start of the
    /// range; returns how many.
    pub fn write(self, data: &[u8]) -> usize {
        let n = self.len.min(data.len());
        // SAFETY: as in `read`, the other way round.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr(), n) };
        n
    }

    /// Sets every byte of the range to `byte`.
    pub fn fill(self, byte: u8) {
        // SAFETY: `len` bytes of guest RAM from `ptr` (checked when the range was made).
        unsafe { ptr::write_bytes(self.ptr.as_ptr(), byte, self.len) };
    }

    /// The range as the source of a `write`-like system call.
    pub fn io(self) -> IoBuf<'m> {
        // SAFETY: the range lies inside the mapping, which outlives 'm (it borrows the GuestMemory, and a registered mapping is never unmapped).
        unsafe { IoBuf::from_raw(self.ptr.as_ptr(), self.len) }
    }

    /// The range as the destination of a `read`-like system call.
    pub fn io_mut(self) -> IoBufMut<'m> {
        // SAFETY: as for `io`; no Rust reference into guest RAM exists while the kernel writes it (module docs, point 1).
        unsafe { IoBufMut::from_raw(self.ptr.as_ptr(), self.len) }
    }
}

/// Guest RAM backed by one host mapping of `len` bytes: host offset `o`
/// is guest address `o` below `LOW_END`, `HIGH_BASE + (o - LOW_END)` above.
pub struct GuestMemory {
    ram: Anon,
    /// Registered with a VM ([`GuestMemory::register`]): vCPUs may access it,
    /// and the mapping stays until the process ends.
    registered: bool,
}

// SAFETY: the mapping is process-wide memory that no thread owns, and every `&self` method only copies through raw pointers (volatile or memcpy + fence) or hands raw pointers to the kernel; its address and size never change. Threads that share it race on guest bytes exactly as the guest does, which the module docs argue is sound; the stub orders its own threads' ring accesses (one device serves a queue at a time).
unsafe impl Sync for GuestMemory {}
// SAFETY: as for Sync: nothing in it belongs to the creating thread.
unsafe impl Send for GuestMemory {}

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
        let len = usize::try_from(len).map_err(|_| Errno::NOMEM)?;
        Ok(GuestMemory { ram: Anon::new(len, 2 << 20)?, registered: false })
    }

    /// Size of guest RAM in bytes.
    pub fn len(&self) -> u64 {
        self.ram.len() as u64
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
        self.ram.is_empty()
    }

    /// Host virtual address of guest address 0.
    fn host_base(&self) -> u64 {
        self.ram.as_ptr() as u64
    }

    /// The host offset of `[addr, addr + len)`, if it lies inside one RAM
    /// range (never across the hole).
    fn offset(&self, addr: GuestAddress, len: u64) -> Option<usize> {
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
        (end <= self.ram.len()).then_some(start)
    }

    /// `[addr, addr + len)` of guest RAM, checked once here, or `None` if any
    /// byte is outside RAM. Devices validate guest buffers with it.
    pub fn range(&self, addr: GuestAddress, len: u64) -> Option<GuestRange<'_>> {
        let start = self.offset(addr, len)?;
        let len = usize::try_from(len).ok()?;
        // SAFETY: start + len <= the mapping's size (checked by `offset`), so the pointer stays inside it (or one past its end when len is 0).
        let ptr = NonNull::new(unsafe { self.ram.as_ptr().add(start) })?;
        Some(GuestRange { ptr, len, _mem: PhantomData })
    }

    /// Copies `buf.len()` bytes from guest RAM at `addr` into `buf`.
    pub fn read_slice(&self, addr: GuestAddress, buf: &mut [u8]) -> Option<()> {
        self.range(addr, buf.len() as u64)?.read(buf);
        Some(())
    }

    /// Copies `data` into guest RAM at `addr`.
    pub fn write_slice(&self, addr: GuestAddress, data: &[u8]) -> Option<()> {
        self.range(addr, data.len() as u64)?.write(data);
        Some(())
    }

    /// Reads a `T` from `addr` (no alignment required): one volatile load
    /// when `T` is at most 8 bytes (module docs, point 2), else a copy.
    pub fn read_obj<T: ByteValued>(&self, addr: GuestAddress) -> Option<T> {
        let p = self.range(addr, size_of::<T>() as u64)?.ptr.as_ptr();
        if size_of::<T>() <= 8 {
            // SAFETY: size_of::<T>() bytes of guest RAM at `p` (checked); `Unaligned<T>` needs no alignment, and any bit pattern is a valid `T` (ByteValued).
            return Some(unsafe { p.cast::<Unaligned<T>>().read_volatile().0 });
        }
        let mut v = MaybeUninit::<T>::uninit();
        // SAFETY: size_of::<T>() bytes of guest RAM into `v`, host memory of that size; the copy initialises every byte and any bit pattern is a valid `T`.
        Some(unsafe {
            copy_out(p, v.as_mut_ptr().cast(), size_of::<T>());
            v.assume_init()
        })
    }

    /// Writes `val` to `addr` (no alignment required): one volatile store
    /// when `T` is at most 8 bytes, else a copy.
    pub fn write_obj<T: ByteValued>(&self, addr: GuestAddress, val: T) -> Option<()> {
        let r = self.range(addr, size_of::<T>() as u64)?;
        if size_of::<T>() <= 8 {
            // SAFETY: size_of::<T>() bytes of guest RAM at `ptr` (checked); `Unaligned<T>` needs no alignment.
            unsafe { r.ptr.as_ptr().cast::<Unaligned<T>>().write_volatile(Unaligned(val)) };
        } else {
            r.write(bytes_of(&val));
        }
        Some(())
    }

    /// `[addr, addr + len)` as a slice, for building boot data in place (the
    /// runtime cpio): only before [`GuestMemory::register`], while no vCPU
    /// can see the memory (module docs, point 1); `None` after, or outside RAM.
    pub fn boot_slice_mut(&mut self, addr: GuestAddress, len: u64) -> Option<&mut [u8]> {
        let r = self.range(addr, len).filter(|_| !self.registered)?;
        // SAFETY: inside the mapping (checked); not registered, so only this process sees the memory, and `&mut self` makes this the only borrow of it until the slice is gone (`register` needs `&mut self` too).
        Some(unsafe { core::slice::from_raw_parts_mut(r.ptr.as_ptr(), r.len) })
    }

    /// Replaces guest RAM `[addr, addr + len)` with a private (copy-on-write)
    /// mapping of `fd` at `offset`: the kernel's pages come straight from the
    /// page cache, shared between every VM started from the same image.
    /// `addr`, `offset` and `len` must be page aligned.
    pub fn map_file(&self, addr: GuestAddress, len: u64, fd: rustix::fd::BorrowedFd<'_>, offset: u64) -> Result<(), Errno> {
        let aligned = |v: u64| v % PAGE_SIZE == 0;
        if !aligned(addr.0) || !aligned(len) || !aligned(offset) || len == 0 {
            return Err(Errno::INVAL);
        }
        let r = self.range(addr, len).ok_or(Errno::INVAL)?;
        // SAFETY: `r` lies inside our own mapping, so MAP_FIXED replaces only pages this object owns, atomically (they stay mapped); no reference into them exists (module docs).
        unsafe {
            mm::mmap(r.ptr.as_ptr().cast(), r.len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE | MapFlags::FIXED, fd, offset)?;
        }
        Ok(())
    }

    /// Gives `[addr, addr + len)` back to the host (free page reporting):
    /// the guest reads zeros there afterwards (the image's bytes where a
    /// section is mapped from the file). `None` unless the range is page
    /// aligned, non-empty and inside one RAM range.
    pub fn discard(&self, addr: GuestAddress, len: u64) -> Option<()> {
        if addr.0 % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 || len == 0 {
            return None;
        }
        let r = self.range(addr, len)?;
        // SAFETY: `r` lies inside this mapping (checked) and starts on a page (the mapping is 2 MiB aligned, RAM ranges start on pages); no reference into guest RAM exists (module docs).
        unsafe { crate::sys::mm::discard(r.ptr.as_ptr(), r.len) }.ok()
    }

    /// Makes this memory `vm`'s RAM (one memory slot per range of
    /// [`GuestMemory::ranges`]). From then on the mapping is never unmapped,
    /// even when `self` is dropped: the VM may outlive it (the reaper keeps
    /// the VM until the process ends).
    pub fn register(&mut self, vm: &Vm) -> Result<(), Errno> {
        self.registered = true;
        self.ram.keep();
        for (slot, (gpa, size, host)) in [0, 1].into_iter().zip(self.ranges()).filter(|(_, r)| r.1 > 0) {
            // SAFETY: `host..host + size` is part of this mapping, which stays mapped for the rest of the process (`keep`); the host touches it only as the module docs allow.
            unsafe { vm.set_user_memory_region(slot, gpa, size, host) }?;
        }
        Ok(())
    }
}

#[cfg(any(test, feature = "test-utils"))]
impl GuestMemory {
    /// Test helper: a copy of `[addr, addr + len)`.
    pub fn to_vec(&self, addr: GuestAddress, len: u64) -> Option<std::vec::Vec<u8>> {
        let mut v = std::vec![0; usize::try_from(len).ok()?];
        self.read_slice(addr, &mut v)?;
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_stay_inside_ram() {
        let m = GuestMemory::new(8192).expect("mmap");
        assert_eq!(m.len(), 8192);
        assert_eq!(m.host_base() % (2 << 20), 0, "2 MiB aligned (huge pages)");
        assert!(m.write_obj(GuestAddress(8188), 0xdead_beefu32).is_some());
        assert_eq!(m.read_obj::<u32>(GuestAddress(8188)), Some(0xdead_beef));
        assert!(m.write_obj(GuestAddress(8189), 0u32).is_none());
        assert!(m.read_obj::<u64>(GuestAddress(u64::MAX - 3)).is_none());
        assert!(m.range(GuestAddress(0), 8193).is_none());
        assert!(m.range(GuestAddress(1), u64::MAX).is_none());
        assert!(m.range(GuestAddress(u64::MAX), 1).is_none());
        let mut buf = [0u8; 4];
        m.read_slice(GuestAddress(8188), &mut buf).expect("inside");
        assert_eq!(buf, 0xdead_beefu32.to_le_bytes());
        assert!(m.write_slice(GuestAddress(8190), &buf).is_none());
        assert!(m.read_slice(GuestAddress(8190), &mut buf).is_none());
    }

    #[test]
    fn ranges_at_the_edges_of_ram() {
        let m = GuestMemory::new(8192).expect("mmap");
        // The last byte, the whole of RAM, and empty ranges up to the end.
        assert_eq!(m.range(GuestAddress(8191), 1).map(|r| r.len()), Some(1));
        assert_eq!(m.range(GuestAddress(0), 8192).map(|r| r.len()), Some(8192));
        assert!(m.range(GuestAddress(8192), 0).is_some_and(|r| r.is_empty()));
        assert!(m.range(GuestAddress(0), 0).is_some());
        // One byte too far, an empty range past the end, wrap-around.
        assert!(m.range(GuestAddress(8191), 2).is_none());
        assert!(m.range(GuestAddress(8193), 0).is_none());
        assert!(m.range(GuestAddress(u64::MAX), 0).is_none());
        assert!(m.range(GuestAddress(u64::MAX), 2).is_none());
        assert!(m.range(GuestAddress(4096), u64::MAX - 4095).is_none());
        assert!(m.range(GuestAddress(1 << 63), 1 << 63).is_none());
    }

    #[test]
    fn range_copies_split_and_fill() {
        let m = GuestMemory::new(8192).expect("mmap");
        let r = m.range(GuestAddress(100), 8).expect("inside");
        assert_eq!(r.write(b"0123456789"), 8, "only what fits");
        let (a, b) = r.split_at(3).expect("3 <= 8");
        assert_eq!((a.len(), b.len()), (3, 5));
        let mut out = [0u8; 10];
        assert_eq!(b.read(&mut out), 5);
        assert_eq!(&out[..5], b"34567");
        assert_eq!(a.read(&mut out[..2]), 2, "only what the buffer holds");
        assert_eq!(&out[..2], b"01");
        assert!(r.split_at(9).is_none());
        let (all, none) = r.split_at(8).expect("at the end");
        assert_eq!((all.len(), none.len()), (8, 0));
        b.fill(0xee);
        assert_eq!(m.to_vec(GuestAddress(100), 9).expect("ram"), b"012\xee\xee\xee\xee\xee\0");
        // Empty ranges copy nothing.
        assert_eq!(none.write(b"x"), 0);
        assert_eq!(none.read(&mut out), 0);
    }

    #[test]
    fn ranges_reach_files_through_system_calls() {
        use crate::sys::io;
        use std::os::fd::AsFd;
        let m = GuestMemory::new(8192).expect("mmap");
        let (rd, wr) = rustix::pipe::pipe().expect("pipe");
        m.write_slice(GuestAddress(4000), b"guest bytes").expect("ram");
        let src = m.range(GuestAddress(4000), 11).expect("ram");
        assert_eq!(io::write(wr.as_fd(), src.io()), Ok(11));
        let dst = m.range(GuestAddress(8192 - 11), 11).expect("ram");
        assert_eq!(io::read(rd.as_fd(), dst.io_mut()), Ok(11));
        assert_eq!(m.to_vec(GuestAddress(8192 - 11), 11).expect("ram"), b"guest bytes");
    }

    #[test]
    fn objects_use_whole_aligned_accesses_or_copies() {
        let m = GuestMemory::new(4096).expect("mmap");
        // Aligned (volatile) and unaligned (copied) round trips agree.
        for addr in [8, 3] {
            m.write_obj(GuestAddress(addr), 0x0102_0304_0506_0708u64).expect("inside");
            assert_eq!(m.read_obj::<u64>(GuestAddress(addr)), Some(0x0102_0304_0506_0708));
            assert_eq!(m.read_obj::<u8>(GuestAddress(addr)), Some(8));
            assert_eq!(m.read_obj::<u16>(GuestAddress(addr + 1)), Some(0x0607));
        }
        // Larger than 8 bytes: copied.
        let big = [0x1111_2222_3333_4444u64, 5, 6];
        m.write_obj(GuestAddress(64), big).expect("inside");
        assert_eq!(m.read_obj::<[u64; 3]>(GuestAddress(64)), Some(big));
        assert!(m.read_obj::<[u64; 3]>(GuestAddress(4096 - 16)).is_none());
    }

    #[test]
    fn shared_between_threads() {
        fn sync_and_send<T: Sync + Send>(_: &T) {}
        let m = GuestMemory::new(1 << 16).expect("mmap");
        sync_and_send(&m);
        // Two threads write their own halves through `&GuestMemory`.
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let m = &m;
                s.spawn(move || {
                    for i in 0..4096u64 {
                        m.write_obj(GuestAddress(t * 0x8000 + i * 8), i ^ t).expect("ram");
                    }
                });
            }
        });
        for t in 0..2u64 {
            assert_eq!(m.read_obj::<u64>(GuestAddress(t * 0x8000 + 4095 * 8)), Some(4095 ^ t));
        }
    }

    #[test]
    fn ram_above_the_hole_continues_at_4_gib() {
        let len = LOW_END + 3 * PAGE_SIZE;
        let m = GuestMemory::new(len).expect("mmap (NORESERVE)");
        assert_eq!(m.low_len(), LOW_END);
        let r = m.ranges();
        assert_eq!((r[0].0, r[0].1, r[1].0, r[1].1), (0, LOW_END, HIGH_BASE, 3 * PAGE_SIZE));
        assert_eq!(r[1].2 - r[0].2, LOW_END);
        m.write_obj(GuestAddress(LOW_END - 8), 1u64).expect("top of low RAM");
        m.write_obj(GuestAddress(HIGH_BASE), 2u64).expect("start of high RAM");
        m.write_obj(GuestAddress(HIGH_BASE + 3 * PAGE_SIZE - 8), 3u64).expect("end of high RAM");
        assert_eq!(m.read_obj::<u64>(GuestAddress(LOW_END - 8)), Some(1));
        assert_eq!(m.read_obj::<u64>(GuestAddress(HIGH_BASE)), Some(2));
        // Guest 4 GiB is host offset LOW_END: right after low RAM in the mapping.
        assert_eq!(m.offset(GuestAddress(HIGH_BASE), 8), Some(LOW_END as usize));
        assert_eq!(m.offset(GuestAddress(LOW_END - 8), 8), Some(LOW_END as usize - 8));
        // The hole, ranges across it, and past the end are not RAM.
        assert!(m.range(GuestAddress(LOW_END), 1).is_none());
        assert!(m.range(GuestAddress(LOW_END + 1), 0).is_none(), "empty, but in the hole");
        assert!(m.range(GuestAddress(HIGH_BASE - 1), 0).is_none());
        assert!(m.range(GuestAddress(LOW_END - 4), 8).is_none());
        assert!(m.range(GuestAddress(HIGH_BASE - 1), 2).is_none());
        assert!(m.range(GuestAddress(0), HIGH_BASE + 8).is_none());
        assert!(m.range(GuestAddress(HIGH_BASE + 3 * PAGE_SIZE - 4), 8).is_none());
        assert!(m.range(GuestAddress(HIGH_BASE + 3 * PAGE_SIZE), 1).is_none());
        assert!(m.range(GuestAddress(u64::MAX - 2), 4).is_none());
        // Both edges of each range hold, empty ranges included.
        assert!(m.range(GuestAddress(LOW_END), 0).is_some(), "empty, at the end of low RAM");
        assert!(m.range(GuestAddress(HIGH_BASE), 3 * PAGE_SIZE).is_some());
        assert!(m.range(GuestAddress(HIGH_BASE + 3 * PAGE_SIZE), 0).is_some());
        // Without high RAM nothing answers at 4 GiB.
        let small = GuestMemory::new(8192).expect("mmap");
        assert_eq!(small.ranges()[1].1, 0);
        assert!(small.range(GuestAddress(HIGH_BASE), 1).is_none());
        assert!(small.range(GuestAddress(HIGH_BASE), 0).is_none());
    }

    #[test]
    fn boot_slices_only_before_registration() {
        let mut m = GuestMemory::new(8192).expect("mmap");
        m.boot_slice_mut(GuestAddress(10), 3).expect("unregistered").copy_from_slice(b"abc");
        assert_eq!(m.to_vec(GuestAddress(10), 3).expect("ram"), b"abc");
        assert!(m.boot_slice_mut(GuestAddress(8190), 3).is_none(), "outside");
        m.registered = true;
        assert!(m.boot_slice_mut(GuestAddress(10), 3).is_none(), "a vCPU may run");
    }

    #[test]
    fn map_file_checks_alignment_and_bounds() {
        let m = GuestMemory::new(3 * 4096).expect("mmap");
        let f = rustix::fs::open("/proc/self/exe", rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty())
            .expect("exe");
        use rustix::fd::AsFd;
        assert_eq!(m.map_file(GuestAddress(1), 4096, f.as_fd(), 0), Err(Errno::INVAL));
        assert_eq!(m.map_file(GuestAddress(8192), 8192, f.as_fd(), 0), Err(Errno::INVAL));
        m.map_file(GuestAddress(4096), 4096, f.as_fd(), 0).expect("map");
        assert_eq!(m.to_vec(GuestAddress(4096), 4).expect("ram"), b"\x7fELF");
        // Private: writes do not reach the file.
        m.write_obj(GuestAddress(4096), 0u8).expect("cow");
        assert_eq!(m.read_obj::<u8>(GuestAddress(4096)), Some(0));
    }

    #[test]
    fn discard_zeroes_only_aligned_pages_inside_ram() {
        let m = GuestMemory::new(4 * 4096).expect("mmap");
        m.write_slice(GuestAddress(4096), &[7; 8192]).expect("inside");
        for (addr, len) in [(4097, 4096), (4096, 100), (4096, 0), (12288, 8192), (u64::MAX - 4095, 4096), (HIGH_BASE, 4096)] {
            assert!(m.discard(GuestAddress(addr), len).is_none(), "{addr:#x}+{len:#x}");
        }
        assert_eq!(m.read_obj::<u8>(GuestAddress(4096)), Some(7), "refused ranges keep their bytes");
        m.discard(GuestAddress(4096), 4096).expect("aligned, inside");
        assert_eq!(m.to_vec(GuestAddress(4096), 4096).expect("ram"), [0u8; 4096]);
        assert_eq!(m.read_obj::<u8>(GuestAddress(8192)), Some(7), "the next page is untouched");
    }
}
