//! Data disks (`--smolvm-disk=PATH[:ro]:/GUEST/PATH`): the file system on
//! `/dev/vdX`, found by its magic number, mounted at the guest path; a disk
//! with any other content stays a raw device. At the end every data disk is
//! unmounted, so an ext4 disk is clean (journal checkpointed) when the host
//! reads it.

use crate::mounts::{mount_failed, mount_point};
use crate::out::Line;
use crate::plan::Disk;
use crate::Fail;
use alloc::vec::Vec;
use core::ffi::CStr;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

/// The file systems a data disk may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsType {
    /// ext2/3/4 (mounted by the ext4 driver).
    Ext4,
    Squashfs,
}

impl FsType {
    fn name(self) -> &'static CStr {
        match self {
            FsType::Ext4 => c"ext4",
            FsType::Squashfs => c"squashfs",
        }
    }
}

/// Bytes read from the start of a disk to recognise its file system.
const PROBE_LEN: usize = 1082;
/// The ext2/3/4 superblock starts at 1024; its `s_magic` (0xEF53, little
/// endian) is at offset 56 in it.
const EXT_MAGIC_AT: usize = 1024 + 56;
const SQUASHFS_MAGIC: &[u8; 4] = b"hsqs";

/// The file system whose magic number `head` (the disk's first bytes) holds.
pub fn detect(head: &[u8]) -> Option<FsType> {
    if head.starts_with(SQUASHFS_MAGIC) {
        Some(FsType::Squashfs)
    } else if head.get(EXT_MAGIC_AT..EXT_MAGIC_AT + 2) == Some(&[0x53, 0xEF]) {
        Some(FsType::Ext4)
    } else {
        None
    }
}

fn probe(dev: &CStr) -> Result<Option<FsType>, Errno> {
    let fd = rustix::fs::open(dev, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let mut head = [0u8; PROBE_LEN];
    let mut got = 0;
    // A disk shorter than the probe simply has no known file system.
    while let Some(rest) = head.get_mut(got..).filter(|r| !r.is_empty()) {
        match rustix::io::pread(&fd, rest, got as u64) {
            Ok(0) => break,
            Ok(n) => got = got.saturating_add(n),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(detect(head.get(..got).unwrap_or_default()))
}

/// Mounts `disk` if it holds a known file system (creating the mount point).
pub fn mount_disk(disk: &Disk<'_>) -> Result<(), Fail> {
    let dev_path = [b"/dev/".as_slice(), disk.dev].concat();
    let what = b"a data disk";
    let dev = crate::mounts::cstr(&dev_path).map_err(|e| mount_failed(what, disk.path, e))?;
    let fs = probe(&dev).map_err(|e| Fail::new(Line::new().s("cannot read the data disk ").b(&dev_path).s(": ").e(e)))?;
    let Some(fs) = fs else {
        Line::new().s("disk ").b(&dev_path).s(": no ext4 or squashfs file system, left as a raw device").debug();
        return Ok(());
    };
    let target = mount_point(disk.path, what)?;
    // A squashfs is read-only by nature; so is a disk attached with :ro.
    let read_only = disk.read_only || fs == FsType::Squashfs;
    let flags = if read_only { MountFlags::RDONLY } else { MountFlags::empty() } | MountFlags::NODEV;
    mount(dev.as_c_str(), target.as_c_str(), fs.name(), flags, c"").map_err(|e| mount_failed(what, disk.path, e))?;
    let mode = if read_only { " (ro)" } else { " (rw)" };
    Line::new().s("mounted ").b(&dev_path).s(" (").b(fs.name().to_bytes()).s(") on ").b(disk.path).s(mode).debug();
    Ok(())
}

/// Unmounts every data disk (a `/dev/vd*` mount other than the root's
/// `/dev/vda`), innermost first; called once the app's processes are gone.
pub fn unmount_all() {
    let Ok(table) = crate::read_file("/proc/self/mounts", 1 << 20) else { return };
    for target in data_disk_targets(&table).iter().rev() {
        let done = crate::mounts::cstr(target).and_then(|t| unmount(t.as_c_str(), UnmountFlags::empty()));
        match done {
            Ok(()) => Line::new().s("unmounted ").b(target).debug(),
            Err(e) => Line::new().s("cannot unmount the data disk on ").b(target).s(": ").e(e).print(),
        }
    }
}

/// Mount points of data disks in a `/proc/self/mounts` table, in mount
/// order, with the kernel's octal escapes (`\040` for a space) decoded.
fn data_disk_targets(table: &[u8]) -> Vec<Vec<u8>> {
    let mut targets = Vec::new();
    for line in table.split(|&b| b == b'\n') {
        let mut fields = line.split(|&b| b == b' ');
        let (Some(source), Some(target)) = (fields.next(), fields.next()) else { continue };
        if source.starts_with(b"/dev/vd") && source != linker::abi::GUEST_ROOT_DEV.as_bytes() {
            targets.push(unescape(target));
        }
    }
    targets
}

/// Decodes `\ooo` octal escapes; anything else is kept as it is.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while let Some(&b) = field.get(i) {
        let octal = field.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) if b == b'\\' => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_systems_are_recognised_by_their_magic() {
        let mut ext = [0u8; PROBE_LEN];
        ext[EXT_MAGIC_AT] = 0x53;
        ext[EXT_MAGIC_AT + 1] = 0xEF;
        assert_eq!(detect(&ext), Some(FsType::Ext4));
        assert_eq!(detect(b"hsqs\x10\x00\x00\x00"), Some(FsType::Squashfs));
        assert_eq!(detect(&[0u8; PROBE_LEN]), None);
        assert_eq!(detect(&ext[..EXT_MAGIC_AT + 1]), None, "cut short");
        assert_eq!(detect(b""), None);
    }

    #[test]
    fn data_disk_mount_points_from_the_mount_table() {
        let table = b"/dev/vda /lower squashfs ro 0 0\n\
            overlay / overlay rw 0 0\n\
            /dev/vdb /data ext4 rw 0 0\n\
            smolvm0 /share 9p rw 0 0\n\
            /dev/vdc /mnt/with\\040space\\134x squashfs ro 0 0\n\
            /dev/vdd /a\\9 ext4 rw 0 0\n";
        let targets = data_disk_targets(table);
        assert_eq!(targets, vec![b"/data".to_vec(), b"/mnt/with space\\x".to_vec(), b"/a\\9".to_vec()]);
        assert!(data_disk_targets(b"").is_empty());
        assert_eq!(unescape(b"\\04"), b"\\04".to_vec(), "a cut-off escape stays");
    }
}
