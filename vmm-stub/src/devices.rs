//! The virtio devices of one run, each in its ABI slot (`linker::abi::slot`):
//!
//! | slot | device | guest |
//! |---|---|---|
//! | 0 `CONSOLE_STDIO` | console → host stdout (+ stdin in terminal mode) | `/dev/hvc0` |
//! | 1 `CONSOLE_STDERR` | console → host stderr | `/dev/hvc1` |
//! | 2 `CONSOLE_CONTROL` | multiport console: signal, stdin, stdout, stderr ports | `/dev/vport2p1` … `/dev/vport2p4` |
//! | 3 `ROOTFS` | block, read-only, the image's rootfs section | `/dev/vda` |
//! | 4.. | extra disks (`--smolvm-disk`, then a read-only one per `--smolvm-add` file), then 9p shares, the network, the balloon (`start.rs`) | `/dev/vdb`, ... |
//!
//! Terminal mode (stdin and stdout are terminals, see `hostio::tty`): the
//! app's stdin and stdout are `/dev/hvc0`, and the runtime config carries a
//! `tty` record. Otherwise the app's stdin, stdout and stderr are the
//! control device's ports (stdin delivers end-of-file; none is a tty) and
//! hvc0/hvc1 carry only what init prints before it moves them.
//!
//! Usage in `start.rs` (devices live on its stack or in .bss, no allocator):
//! ```ignore
//! let disks: Vec<DiskFile, MAX_EXTRA_DISKS> = /* devices::open_disk(spec) per DiskSpec, then per added file */;
//! let mut devs = Devices::new(terminal, rootfs, &disks);
//! let mut transports = devs.transports();
//! transports.add_dynamic(share);                       // per 9p share, in order
//! let mut bus = Bus::new();
//! transports.attach(&mut bus);
//! ```

use crate::bus::{slot_irq, Bus};
use crate::hostio::tty::WinSize;
use crate::options::{DiskSpec, MAX_ADDS, MAX_DISKS, MAX_SHARES};
use crate::out;
use crate::sys::cell::TakeOnce;
use crate::sys::path::{c_path, PATH_MAX};
use crate::virtio::blk::Block;
use crate::virtio::console::Console;
use crate::virtio::control::Control;
use crate::virtio::{MmioTransport, VirtioDevice};
use linker::abi::{slot, MMIO_MAX_SLOTS};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

/// Most extra disks: the data disks and one per added file.
pub const MAX_EXTRA_DISKS: usize = MAX_DISKS + MAX_ADDS;

const _: () = assert!(MAX_EXTRA_DISKS <= 12);

/// An open extra disk.
pub struct DiskFile {
    fd: OwnedFd,
    pub len: u64,
    read_only: bool,
    /// The file's read, write and execute bits (`st_mode & 0o777`).
    pub mode: u32,
}

/// Why an extra disk could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskError {
    Open(Errno),
    NotRegular,
    /// Another process (another VM), or this run (the same file given
    /// twice), holds a conflicting lock on it.
    InUse,
}

impl DiskError {
    pub fn message(self) -> &'static str {
        match self {
            DiskError::Open(Errno::NOENT) => "no such file",
            DiskError::Open(Errno::ACCESS | Errno::PERM) => "permission denied",
            DiskError::Open(Errno::ROFS) => "read-only file system (add :ro)",
            DiskError::Open(_) => "cannot open it",
            DiskError::NotRegular => "not a regular file",
            DiskError::InUse => "in use (locked by another VM, or given twice)",
        }
    }
}

/// Opens a disk file: read-write (exclusive `flock`) or read-only (shared).
pub fn open_disk(spec: DiskSpec<'_>) -> Result<DiskFile, DiskError> {
    // NUL-terminated on the stack: a `&[u8]` path would make rustix allocate
    // for long paths when its `alloc` feature is on (the stub has no heap).
    let mut buf = [0; PATH_MAX];
    let path = c_path(spec.path, &mut buf).map_err(DiskError::Open)?;
    let mode = if spec.read_only { OFlags::RDONLY } else { OFlags::RDWR };
    // NONBLOCK: a FIFO is refused below instead of waiting for a writer
    // (regular files ignore the flag).
    let flags = mode | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let fd = fs::open(path, flags, Mode::empty()).map_err(DiskError::Open)?;
    let st = fs::fstat(&fd).map_err(DiskError::Open)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(DiskError::NotRegular);
    }
    let lock = if spec.read_only { FlockOperation::NonBlockingLockShared } else { FlockOperation::NonBlockingLockExclusive };
    fs::flock(&fd, lock).map_err(|_| DiskError::InUse)?;
    let len = u64::try_from(st.st_size).map_err(|_| DiskError::NotRegular)?;
    Ok(DiskFile { fd, len, read_only: spec.read_only, mode: st.st_mode & 0o777 })
}

/// The rootfs section of the image file: `(fd, offset, len)`.
pub type RootfsSection<'f> = (BorrowedFd<'f>, u64, u64);

/// Every device of the run.
pub struct Devices<'f> {
    stdio: Console<'f>,
    stderr: Console<'f>,
    control: Control<'f>,
    rootfs: Option<Block<'f>>,
    disks: heapless::Vec<Block<'f>, MAX_EXTRA_DISKS>,
}

impl<'f> Devices<'f> {
    /// `terminal`: the window size in terminal mode (`hostio::tty::enter_raw`).
    pub fn new(terminal: Option<WinSize>, rootfs: Option<RootfsSection<'f>>, disks: &'f [DiskFile]) -> Self {
        let stdin = out::stdin();
        let mut list = heapless::Vec::new();
        for (i, d) in (0..MAX_EXTRA_DISKS).zip(disks) {
            let mut id = *b"smolvm-disk0";
            id[11] = b"0123456789ab"[i % 12]; // i < MAX_EXTRA_DISKS = 12
            let _ = list.push(Block::new(d.fd.as_fd(), 0, d.len, d.read_only, &id));
        }
        Devices {
            stdio: Console::new(out::stdout(), terminal.map(|_| stdin), terminal),
            stderr: Console::new(out::stderr(), None, None),
            control: Control::new(if terminal.is_some() { None } else { Some([stdin, out::stdout(), out::stderr()]) }),
            rootfs: rootfs.map(|(fd, off, len)| Block::new(fd, off, len, true, b"smolvm-rootfs")),
            disks: list,
        }
    }

    /// Wraps each device in a virtio-mmio transport in its slot.
    pub fn transports(&mut self) -> Transports<'_> {
        let mut t = Transports { list: heapless::Vec::new(), next: slot::FIRST_DYNAMIC };
        t.put(slot::CONSOLE_STDIO, &mut self.stdio);
        t.put(slot::CONSOLE_STDERR, &mut self.stderr);
        t.put(slot::CONSOLE_CONTROL, &mut self.control);
        if let Some(r) = &mut self.rootfs {
            t.put(slot::ROOTFS, r);
        }
        for d in &mut self.disks {
            t.add_dynamic(d);
        }
        t
    }
}

/// The transports of a run, by slot, ready to attach to the [`Bus`].
pub struct Transports<'d> {
    list: heapless::Vec<(usize, MmioTransport<'d>), MMIO_MAX_SLOTS>,
    next: usize,
}

impl<'d> Transports<'d> {
    fn put(&mut self, slot: usize, dev: &'d mut dyn VirtioDevice) {
        let _ = self.list.push((slot, MmioTransport::new(dev, slot_irq(slot))));
    }

    /// Puts `dev` in the next dynamic slot (extra disks first, then 9p
    /// shares in order). Returns the slot, or `None` when all are taken.
    pub fn add_dynamic(&mut self, dev: &'d mut dyn VirtioDevice) -> Option<usize> {
        let slot = self.next;
        if slot >= MMIO_MAX_SLOTS {
            return None;
        }
        self.put(slot, dev);
        self.next = slot.wrapping_add(1); // slot < MMIO_MAX_SLOTS
        Some(slot)
    }

    /// Attaches every transport to `bus`.
    pub fn attach<'b>(&'b mut self, bus: &mut Bus<'b>) {
        for (slot, t) in &mut self.list {
            bus.attach(*slot, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_and_locks_disks() {
        let p = std::env::temp_dir().join(format!("smolvm-disk-{}", std::process::id()));
        std::fs::write(&p, [0u8; 4096]).expect("write");
        let path = p.as_os_str().as_encoded_bytes();
        let d = open_disk(DiskSpec { path, read_only: false, guest: None }).expect("open");
        assert_eq!(d.len, 4096);
        // A second writer or reader is refused while the first holds it.
        assert_eq!(open_disk(DiskSpec { path, read_only: false, guest: None }).err(), Some(DiskError::InUse));
        assert_eq!(open_disk(DiskSpec { path, read_only: true, guest: None }).err(), Some(DiskError::InUse));
        drop(d);
        let a = open_disk(DiskSpec { path, read_only: true, guest: None }).expect("shared");
        let b = open_disk(DiskSpec { path, read_only: true, guest: None }).expect("shared");
        drop((a, b));
        std::fs::remove_file(&p).expect("rm");
        assert_eq!(open_disk(DiskSpec { path, read_only: true, guest: None }).err(), Some(DiskError::Open(Errno::NOENT)));
        assert_eq!(open_disk(DiskSpec { path: b"/", read_only: true, guest: None }).err(), Some(DiskError::NotRegular));
        assert_eq!(open_disk(DiskSpec { path: b"/dev/null", read_only: true, guest: None }).err(), Some(DiskError::NotRegular));
        // A FIFO without a writer: refused at once, not waited on.
        let fifo = std::env::temp_dir().join(format!("smolvm-fifo-{}", std::process::id()));
        fs::mknodat(fs::CWD, &fifo, FileType::Fifo, Mode::from_raw_mode(0o600), 0).expect("mkfifo");
        let path = fifo.as_os_str().as_encoded_bytes();
        assert_eq!(open_disk(DiskSpec { path, read_only: true, guest: None }).err(), Some(DiskError::NotRegular));
        std::fs::remove_file(&fifo).expect("rm");
    }

    #[test]
    fn devices_take_their_abi_slots() {
        let (r, _w) = rustix::pipe::pipe().expect("pipe");
        let p = std::env::temp_dir().join(format!("smolvm-disks-{}", std::process::id()));
        std::fs::write(&p, [0u8; 4096]).expect("write");
        let path = p.as_os_str().as_encoded_bytes();
        let disks = [open_disk(DiskSpec { path, read_only: true, guest: None }).expect("open")];
        std::fs::remove_file(&p).expect("rm");
        let mut devs = Devices::new(None, Some((r.as_fd(), 0, 4096)), &disks);
        let mut t = devs.transports();
        let mut bus = Bus::new();
        t.attach(&mut bus);
        assert!(bus.present().eq([0, 1, 2, 3, 4]));
        drop(bus);
        let mut none: [DiskFile; 0] = [];
        let mut devs = Devices::new(Some((24, 80)), None, &mut none);
        let mut t = devs.transports();
        let mut bus = Bus::new();
        t.attach(&mut bus);
        assert!(bus.present().eq([0, 1, 2]));
    }
}

/// The 9p share devices (12 KiB each, mostly the fid table). They live in
/// .bss, whose pages cost nothing until used: as a local of `start` the
/// vector's frame was probed page by page, ~0.3 MiB of dirty stack in
/// every VM, with or without shares.
static SHARE_SLOTS: TakeOnce<heapless::Vec<crate::virtio::p9::P9Device, MAX_SHARES>> = TakeOnce::new(heapless::Vec::new());

/// The storage for the share devices; `None` after the first call.
pub fn share_slots() -> Option<&'static mut heapless::Vec<crate::virtio::p9::P9Device, MAX_SHARES>> {
    SHARE_SLOTS.take()
}
