//! Host-side tests of the 9P server against temporary directories: every op,
//! confinement (`..`, symlinks, special files, a swap race), limits and
//! malformed messages.

extern crate std;

use super::wire::{msg, Qid, Reader, MAX_MSIZE, NOFID, QTDIR, QTSYMLINK};
use super::{Server, MAX_FIDS};
use rustix::io::Errno;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::vec::Vec;
use std::{format, fs, string::String, vec};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("p9test-{}-{what}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("temp dir");
        Self(p)
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Message body builder.
#[derive(Default)]
pub struct B(pub Vec<u8>);

impl B {
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    pub fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn s(mut self, v: &[u8]) -> Self {
        self = self.u16(u16::try_from(v.len()).expect("short string"));
        self.0.extend_from_slice(v);
        self
    }
    pub fn raw(mut self, v: &[u8]) -> Self {
        self.0.extend_from_slice(v);
        self
    }
}

pub fn frame(kind: u8, tag: u16, body: &[u8]) -> Vec<u8> {
    let size = u32::try_from(7 + body.len()).expect("small");
    let mut m = Vec::new();
    m.extend_from_slice(&size.to_le_bytes());
    m.push(kind);
    m.extend_from_slice(&tag.to_le_bytes());
    m.extend_from_slice(body);
    m
}

/// A test client: sends one message, checks the reply header.
pub struct Client {
    pub server: Server,
    pub out: Vec<u8>,
}

impl Client {
    pub fn new(dir: &Path, read_only: bool) -> Self {
        let server = Server::new(dir.as_os_str().as_encoded_bytes(), read_only).expect("share opens");
        let mut c = Self { server, out: vec![0; MAX_MSIZE as usize] };
        let r = c.call(msg::TVERSION, B::default().u32(MAX_MSIZE).s(b"9P2000.L")).expect("version");
        assert_eq!(&r[..4], &MAX_MSIZE.to_le_bytes());
        c.call(msg::TATTACH, B::default().u32(0).u32(NOFID).s(b"root").s(b"").u32(0)).expect("attach");
        c
    }

    /// The raw reply to raw request bytes.
    pub fn raw(&mut self, request: &[u8]) -> Vec<u8> {
        let n = self.server.handle(request, &mut self.out);
        assert!(n >= 7 && n <= self.out.len());
        assert_eq!(&self.out[..4], &u32::try_from(n).expect("small").to_le_bytes());
        self.out[..n].to_vec()
    }

    /// Sends `kind` with `body`; the reply body, or the Rlerror errno.
    pub fn call(&mut self, kind: u8, body: B) -> Result<Vec<u8>, Errno> {
        let reply = self.raw(&frame(kind, 1, &body.0));
        assert_eq!(&reply[5..7], &[1, 0], "tag echoed");
        if reply[4] == msg::RLERROR {
            let code = u32::from_le_bytes(reply[7..11].try_into().expect("4 bytes"));
            return Err(Errno::from_raw_os_error(i32::try_from(code).expect("errno")));
        }
        assert_eq!(reply[4], kind + 1, "reply type");
        Ok(reply[7..].to_vec())
    }

    pub fn walk(&mut self, fid: u32, newfid: u32, names: &[&str]) -> Result<Vec<Qid>, Errno> {
        let mut b = B::default().u32(fid).u32(newfid).u16(u16::try_from(names.len()).expect("few"));
        for n in names {
            b = b.s(n.as_bytes());
        }
        let r = self.call(msg::TWALK, b)?;
        let mut r = Reader::new(&r);
        let n = r.u16().expect("nwqid");
        Ok((0..n).map(|_| read_qid(&mut r)).collect())
    }

    pub fn lopen(&mut self, fid: u32, flags: u32) -> Result<Qid, Errno> {
        let r = self.call(msg::TLOPEN, B::default().u32(fid).u32(flags))?;
        Ok(read_qid(&mut Reader::new(&r)))
    }

    pub fn read(&mut self, fid: u32, offset: u64, count: u32) -> Result<Vec<u8>, Errno> {
        let r = self.call(msg::TREAD, B::default().u32(fid).u64(offset).u32(count))?;
        let n = u32::from_le_bytes(r[..4].try_into().expect("count")) as usize;
        assert_eq!(r.len(), 4 + n);
        Ok(r[4..].to_vec())
    }

    pub fn write(&mut self, fid: u32, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let len = u32::try_from(data.len()).expect("small");
        let r = self.call(msg::TWRITE, B::default().u32(fid).u64(offset).u32(len).raw(data))?;
        Ok(u32::from_le_bytes(r[..4].try_into().expect("count")))
    }

    pub fn clunk(&mut self, fid: u32) -> Result<(), Errno> {
        self.call(msg::TCLUNK, B::default().u32(fid)).map(drop)
    }

    /// Walks to `path` (components) in a fresh fid, opens it read-only and
    /// returns its contents.
    pub fn cat(&mut self, fid: u32, names: &[&str]) -> Result<Vec<u8>, Errno> {
        let q = self.walk(0, fid, names)?;
        if q.len() != names.len() {
            return Err(Errno::NOENT);
        }
        let data = self.lopen(fid, 0).and_then(|_| self.read(fid, 0, 4096));
        self.clunk(fid)?;
        data
    }

    /// Names in directory fid `fid` (opened here), read `count` bytes at a time.
    pub fn list(&mut self, fid: u32, count: u32) -> Vec<String> {
        self.lopen(fid, 0).expect("open dir");
        let (mut names, mut offset) = (Vec::new(), 0);
        loop {
            let r = self.call(msg::TREADDIR, B::default().u32(fid).u64(offset).u32(count)).expect("readdir");
            let mut r = Reader::new(&r);
            let n = r.u32().expect("count") as usize;
            if n == 0 {
                break;
            }
            let mut d = Reader::new(r.bytes(n).expect("entries"));
            while d.rest() > 0 {
                read_qid(&mut d);
                offset = d.u64().expect("offset");
                d.u8().expect("type");
                names.push(String::from_utf8(d.str().expect("name").to_vec()).expect("utf8"));
            }
        }
        names.sort();
        names
    }
}

pub fn read_qid(r: &mut Reader<'_>) -> Qid {
    Qid { kind: r.u8().expect("qid"), version: r.u32().expect("qid"), path: r.u64().expect("qid") }
}

fn attr_mode_size(c: &mut Client, fid: u32) -> (u32, u64) {
    let r = c.call(msg::TGETATTR, B::default().u32(fid).u64(0x7ff)).expect("getattr");
    let mut r = Reader::new(&r);
    r.u64().expect("valid");
    read_qid(&mut r);
    let mode = r.u32().expect("mode");
    r.bytes(8 + 8 + 8).expect("uid gid nlink rdev");
    (mode, r.u64().expect("size"))
}

/// A share with `a/hello` ("hi") and `top` ("top"); the secret lives
/// outside the share, next to it.
fn fixture() -> (TempDir, PathBuf) {
    let t = TempDir::new("share");
    fs::create_dir_all(t.path("share/a")).expect("mkdir");
    fs::write(t.path("share/a/hello"), "hi").expect("write");
    fs::write(t.path("share/top"), "top").expect("write");
    fs::write(t.path("secret"), "SECRET").expect("write");
    let share = t.path("share");
    (t, share)
}

#[test]
fn version_negotiates_and_caps_msize() {
    let (_t, share) = fixture();
    let mut c = Client::new(&share, false);
    let r = c.call(msg::TVERSION, B::default().u32(8192).s(b"9P2000.L")).expect("version");
    assert_eq!(&r[..4], &8192u32.to_le_bytes());
    assert_eq!(c.server.msize(), 8192);
    let r = c.call(msg::TVERSION, B::default().u32(u32::MAX).s(b"9P2000.u")).expect("version");
    assert_eq!(&r[..4], &MAX_MSIZE.to_le_bytes());
    assert_eq!(&r[4..], b"\x07\x00unknown");
    assert_eq!(c.call(msg::TVERSION, B::default().u32(4095).s(b"9P2000.L")).err(), Some(Errno::MSGSIZE));
    // A new session dropped the old fids.
    assert_eq!(c.clunk(0), Err(Errno::BADF));
}

#[test]
fn walk_read_and_dotdot_from_root_stays_at_root() {
    let (_t, share) = fixture();
    let mut c = Client::new(&share, false);
    assert_eq!(c.cat(1, &["a", "hello"]).expect("cat"), b"hi");
    let root = c.walk(0, 2, &[]).expect("clone");
    assert!(root.is_empty());
    let up = c.walk(0, 3, &["..", "..", ".."]).expect("walk up");
    let root_qid = c.walk(0, 4, &["a", ".."]).expect("a/..")[1];
    assert_eq!(root_qid.kind, QTDIR);
    assert!(up.iter().all(|q| *q == root_qid), "'..' above the root is the root");
    assert_eq!(c.cat(5, &["..", "..", "top"]).expect("cat"), b"top");
    assert_eq!(c.cat(5, &["..", "secret"]), Err(Errno::NOENT));
    assert_eq!(c.cat(5, &["a", "..", "..", "a", "hello"]).expect("cat"), b"hi");
    // A partial walk answers the qids walked so far and creates no fid.
    let q = c.walk(0, 6, &["a", "missing", "x"]).expect("partial");
    assert_eq!(q.len(), 1);
    assert_eq!(c.clunk(6), Err(Errno::BADF));
    assert_eq!(c.walk(0, 6, &["missing"]), Err(Errno::NOENT));
    // In-place walk (newfid == fid).
    c.walk(0, 7, &[]).expect("clone");
    c.walk(7, 7, &["a"]).expect("in place");
    assert_eq!(c.walk(7, 8, &["hello"]).expect("from a").len(), 1);
}

#[test]
fn bad_names_are_refused() {
    let (_t, share) = fixture();
    let mut c = Client::new(&share, false);
    for bad in ["", ".", "a/hello", "a\0", "../secret", "/etc"] {
        assert_eq!(c.walk(0, 1, &[bad]), Err(Errno::INVAL), "{bad:?}");
        let mk = B::default().u32(0).s(bad.as_bytes()).u32(0o755).u32(0);
        assert_eq!(c.call(msg::TMKDIR, mk).err(), Some(Errno::INVAL), "{bad:?}");
    }
    let long = "x".repeat(256);
    assert_eq!(c.walk(0, 1, &[&long]), Err(Errno::NAMETOOLONG));
    let mk = B::default().u32(0).s(b"..").u32(0o755).u32(0);
    assert_eq!(c.call(msg::TMKDIR, mk).err(), Some(Errno::INVAL));
    let names: Vec<&str> = vec!["a"; 17];
    assert_eq!(c.walk(0, 1, &names), Err(Errno::INVAL), "nwname > 16");
}

#[test]
fn symlinks_are_never_followed_on_the_host() {
    let (t, share) = fixture();
    symlink("/etc", share.join("etc")).expect("symlink");
    symlink("/proc/self/root", share.join("root")).expect("symlink");
    symlink("../secret", share.join("up")).expect("symlink");
    symlink("/etc/hostname", share.join("host")).expect("symlink");
    let mut c = Client::new(&share, false);
    for (link, target) in [("etc", "/etc"), ("root", "/proc/self/root"), ("up", "../secret"), ("host", "/etc/hostname")] {
        let q = c.walk(0, 1, &[link]).expect("walk to the link itself");
        assert_eq!(q[0].kind, QTSYMLINK);
        let r = c.call(msg::TREADLINK, B::default().u32(1)).expect("readlink");
        assert_eq!(&r[2..], target.as_bytes());
        assert_eq!(c.lopen(1, 0), Err(Errno::LOOP), "a symlink is never opened");
        c.clunk(1).expect("clunk");
        assert_eq!(c.walk(0, 1, &[link, "passwd"]).map(|q| q.len()), Ok(1), "no walk through {link}");
        assert_eq!(c.clunk(1), Err(Errno::BADF));
    }
    assert_eq!(c.cat(2, &["root", "etc", "passwd"]), Err(Errno::NOENT));
    assert_eq!(c.cat(2, &["up"]), Err(Errno::LOOP));
    // Changing a link's owner/times acts on the link, not on /etc.
    let etc_before = fs::metadata("/etc").expect("etc").mtime();
    c.walk(0, 3, &["etc"]).expect("walk");
    let times = B::default().u32(3).u32(16 | 32 | 128 | 256).u32(0).u32(0).u32(0).u64(0).u64(1).u64(0).u64(1).u64(0);
    c.call(msg::TSETATTR, times).expect("utimensat on the link");
    assert_eq!(fs::metadata("/etc").expect("etc").mtime(), etc_before);
    let chmod = B::default().u32(3).u32(1).u32(0o777).u32(0).u32(0).u64(0).u64(0).u64(0).u64(0).u64(0);
    assert_eq!(c.call(msg::TSETATTR, chmod).err(), Some(Errno::OPNOTSUPP));
    assert_eq!(fs::read(t.path("secret")).expect("secret"), b"SECRET");
}

#[test]
fn file_ops_end_to_end() {
    let (_t, share) = fixture();
    let mut c = Client::new(&share, false);
    // lcreate + write + read + getattr + fsync.
    c.walk(0, 1, &[]).expect("clone");
    let r = c.call(msg::TLCREATE, B::default().u32(1).s(b"new").u32(2).u32(0o640).u32(0)).expect("lcreate");
    assert_eq!(u32::from_le_bytes(r[13..17].try_into().expect("iounit")), MAX_MSIZE - 24);
    assert_eq!(c.write(1, 0, b"hello world").expect("write"), 11);
    assert_eq!(c.read(1, 6, 100).expect("read"), b"world");
    c.call(msg::TFSYNC, B::default().u32(1).u32(0)).expect("fsync");
    c.call(msg::TFSYNC, B::default().u32(1).u32(1)).expect("fdatasync");
    assert_eq!(attr_mode_size(&mut c, 1), (0o100640, 11));
    assert_eq!(fs::read(share.join("new")).expect("host sees it"), b"hello world");
    let again = B::default().u32(0).s(b"new").u32(2).u32(0o640).u32(0);
    assert_eq!(c.call(msg::TLCREATE, again).err(), Some(Errno::EXIST), "always O_EXCL");
    // setattr: size, mode, times.
    let set = B::default().u32(1).u32(1 | 8 | 16 | 32 | 128 | 256).u32(0o600).u32(0).u32(0);
    c.call(msg::TSETATTR, set.u64(5).u64(1_000_000).u64(7).u64(2_000_000).u64(9)).expect("setattr");
    let md = fs::metadata(share.join("new")).expect("stat");
    assert_eq!((md.len(), md.permissions().mode() & 0o7777, md.atime(), md.mtime()), (5, 0o600, 1_000_000, 2_000_000));
    assert_eq!(md.mtime_nsec(), 9);
    c.clunk(1).expect("clunk");
    // lopen for append with the file's own fid.
    c.walk(0, 2, &["new"]).expect("walk");
    c.lopen(2, 1 | 0o2000).expect("open append");
    c.write(2, 0, b"!").expect("append");
    assert_eq!(fs::read(share.join("new")).expect("read"), b"hello!");
    assert_eq!(c.read(2, 0, 10), Err(Errno::BADF), "write-only fd");
    // lopen with O_TRUNC, then statfs and lock/getlock.
    c.walk(0, 3, &["new"]).expect("walk");
    c.lopen(3, 2 | 0o1000).expect("open trunc");
    assert_eq!(fs::metadata(share.join("new")).expect("stat").len(), 0);
    let r = c.call(msg::TSTATFS, B::default().u32(3)).expect("statfs");
    assert_eq!(r.len(), 4 + 4 + 8 * 6 + 4);
    let lock = B::default().u32(3).u8(1).u32(0).u64(0).u64(10).u32(42).s(b"guest");
    assert_eq!(c.call(msg::TLOCK, lock).expect("lock"), [0]);
    let get = B::default().u32(3).u8(1).u64(0).u64(10).u32(42).s(b"guest");
    let r = c.call(msg::TGETLOCK, get).expect("getlock");
    assert_eq!(r[0], 2, "unlocked");
    c.call(msg::TFLUSH, B::default().u16(1)).expect("flush");
    assert_eq!(c.call(msg::TXATTRWALK, B::default().u32(3).u32(9).s(b"user.x")).err(), Some(Errno::OPNOTSUPP));
    let xc = B::default().u32(3).s(b"user.x").u64(1).u32(0);
    assert_eq!(c.call(msg::TXATTRCREATE, xc).err(), Some(Errno::OPNOTSUPP));
    assert_eq!(c.call(msg::TAUTH, B::default().u32(9).s(b"").s(b"")).err(), Some(Errno::OPNOTSUPP));
    assert_eq!(c.call(99, B::default()).err(), Some(Errno::OPNOTSUPP));
    // A large read and write in one message each.
    // (7 header + fid, offset, count = 23 bytes before the data.)
    let big: Vec<u8> = (0..2 * MAX_MSIZE).map(|i| u8::try_from(i % 251).expect("byte")).collect();
    let most = (MAX_MSIZE - 23) as usize;
    assert_eq!(c.write(3, 0, &big[..most + 1]), Err(Errno::MSGSIZE), "over msize");
    assert_eq!(c.write(3, 0, &big[..most]).expect("big write") as usize, most);
    assert_eq!(c.write(3, most as u64, &big[most..2 * most]).expect("big write") as usize, most);
    let back = c.read(3, 0, u32::MAX).expect("big read");
    assert_eq!(back.len(), (MAX_MSIZE - 11) as usize, "capped by msize");
    assert_eq!(back[..], big[..back.len()]);
}

#[test]
fn directory_ops_end_to_end() {
    let (_t, share) = fixture();
    let mut c = Client::new(&share, false);
    let q = c.call(msg::TMKDIR, B::default().u32(0).s(b"d").u32(0o750).u32(0)).expect("mkdir");
    assert_eq!(q[0], QTDIR);
    assert!(share.join("d").is_dir());
    let q = c.call(msg::TSYMLINK, B::default().u32(0).s(b"ln").s(b"a/hello").u32(0)).expect("symlink");
    assert_eq!(q[0], QTSYMLINK);
    assert_eq!(fs::read_link(share.join("ln")).expect("link").to_str(), Some("a/hello"));
    let reg = B::default().u32(0).s(b"reg").u32(0o100644).u32(0).u32(0).u32(0);
    c.call(msg::TMKNOD, reg).expect("mknod regular");
    c.call(msg::TMKNOD, B::default().u32(0).s(b"fifo").u32(0o010644).u32(0).u32(0).u32(0)).expect("mkfifo");
    assert!(fs::symlink_metadata(share.join("fifo")).expect("fifo").file_type().is_fifo());
    for (name, mode) in [("null", 0o020666u32), ("sda", 0o060660), ("sock", 0o140777)] {
        let dev = B::default().u32(0).s(name.as_bytes()).u32(mode).u32(1).u32(3).u32(0);
        assert_eq!(c.call(msg::TMKNOD, dev).err(), Some(Errno::PERM), "{name}");
        assert!(fs::symlink_metadata(share.join(name)).is_err());
    }
    // A fifo is never opened on the host (that would block the VMM).
    c.walk(0, 1, &["fifo"]).expect("walk");
    assert_eq!(c.lopen(1, 0), Err(Errno::PERM));
    assert_eq!(c.lopen(1, 1), Err(Errno::PERM));
    c.clunk(1).expect("clunk");
    // link, renameat, rename, unlinkat, remove.
    c.walk(0, 2, &["top"]).expect("walk");
    c.walk(0, 3, &["d"]).expect("walk");
    c.call(msg::TLINK, B::default().u32(3).u32(2).s(b"top2")).expect("link");
    assert_eq!(fs::read(share.join("d/top2")).expect("linked"), b"top");
    c.call(msg::TRENAMEAT, B::default().u32(3).s(b"top2").u32(0).s(b"top3")).expect("renameat");
    assert_eq!(fs::read(share.join("top3")).expect("renamed"), b"top");
    c.call(msg::TUNLINKAT, B::default().u32(0).s(b"top3").u32(0)).expect("unlink");
    assert!(!share.join("top3").exists());
    c.call(msg::TRENAME, B::default().u32(2).u32(3).s(b"moved")).expect("rename");
    assert_eq!(fs::read(share.join("d/moved")).expect("moved"), b"top");
    assert!(!share.join("top").exists());
    assert_eq!(attr_mode_size(&mut c, 2).1, 3, "fid follows its file");
    assert_eq!(c.call(msg::TUNLINKAT, B::default().u32(0).s(b"d").u32(0)).err(), Some(Errno::ISDIR));
    assert_eq!(c.call(msg::TUNLINKAT, B::default().u32(0).s(b"d").u32(0x200)).err(), Some(Errno::NOTEMPTY));
    assert_eq!(c.call(msg::TUNLINKAT, B::default().u32(0).s(b"d").u32(0x201)).err(), Some(Errno::INVAL));
    c.call(msg::TREMOVE, B::default().u32(2)).expect("remove file");
    assert_eq!(c.clunk(2), Err(Errno::BADF), "remove clunks");
    c.call(msg::TREMOVE, B::default().u32(3)).expect("remove dir");
    assert!(!share.join("d").exists());
    c.walk(0, 4, &[]).expect("clone root");
    assert_eq!(c.call(msg::TREMOVE, B::default().u32(4)).err(), Some(Errno::BUSY), "root has no name");
    assert_eq!(c.clunk(4), Err(Errno::BADF));
    // readdir with a tiny count still lists everything, once.
    c.walk(0, 5, &[]).expect("clone");
    let names = c.list(5, 40);
    assert_eq!(names, [".", "..", "a", "fifo", "ln", "reg"]);
    c.walk(0, 6, &[]).expect("clone");
    assert_eq!(c.list(6, 8192), names);
}

#[test]
fn many_entries_list_exactly_once() {
    let (_t, share) = fixture();
    for i in 0..500 {
        fs::write(share.join(format!("f{i:03}-{}", "x".repeat(i % 200))), "").expect("create");
    }
    let mut c = Client::new(&share, false);
    c.walk(0, 1, &[]).expect("clone");
    let names = c.list(1, 4096);
    assert_eq!(names.len(), 504);
    let mut dedup = names.clone();
    dedup.dedup();
    assert_eq!(dedup, names);
}

#[test]
fn read_only_share_refuses_every_change() {
    let (_t, share) = fixture();
    let mut c = Client::new(&share, true);
    assert_eq!(c.cat(1, &["a", "hello"]).expect("reads work"), b"hi");
    c.walk(0, 2, &["top"]).expect("walk");
    for flags in [1, 2, 0o1000] {
        assert_eq!(c.lopen(2, flags), Err(Errno::ROFS), "flags {flags:o}");
    }
    c.lopen(2, 0).expect("read-only open");
    assert_eq!(c.write(2, 0, b"x"), Err(Errno::ROFS));
    let refused = [
        (msg::TLCREATE, B::default().u32(0).s(b"n").u32(0).u32(0o644).u32(0)),
        (msg::TMKDIR, B::default().u32(0).s(b"n").u32(0o755).u32(0)),
        (msg::TSYMLINK, B::default().u32(0).s(b"n").s(b"t").u32(0)),
        (msg::TMKNOD, B::default().u32(0).s(b"n").u32(0o100644).u32(0).u32(0).u32(0)),
        (msg::TLINK, B::default().u32(0).u32(2).s(b"n")),
        (msg::TRENAMEAT, B::default().u32(0).s(b"top").u32(0).s(b"n")),
        (msg::TRENAME, B::default().u32(2).u32(0).s(b"n")),
        (msg::TUNLINKAT, B::default().u32(0).s(b"top").u32(0)),
        (msg::TSETATTR, B::default().u32(2).u32(8).u32(0).u32(0).u32(0).u64(0).u64(0).u64(0).u64(0).u64(0)),
        (msg::TREMOVE, B::default().u32(2)),
    ];
    for (kind, body) in refused {
        assert_eq!(c.call(kind, body).err(), Some(Errno::ROFS), "type {kind}");
    }
    assert_eq!(fs::read(share.join("top")).expect("intact"), b"top");
    assert_eq!(fs::read_dir(&share).expect("list").count(), 2);
}

#[test]
fn fid_exhaustion_is_an_error_and_other_fids_keep_working() {
    let (_t, share) = fixture();
    let mut c = Client::new(&share, false);
    for fid in 1..u32::try_from(MAX_FIDS).expect("small") {
        c.walk(0, fid, &["a"]).expect("walk");
    }
    assert_eq!(c.walk(0, 5000, &["top"]), Err(Errno::MFILE));
    let attach = B::default().u32(5001).u32(NOFID).s(b"").s(b"").u32(0);
    assert_eq!(c.call(msg::TATTACH, attach).err(), Some(Errno::MFILE));
    assert_eq!(c.walk(0, 1, &[]), Err(Errno::INVAL), "fid in use");
    assert_eq!(c.walk(7, 7, &["hello"]).expect("in place still works").len(), 1);
    assert_eq!(attr_mode_size(&mut c, 7).1, 2);
    c.clunk(3).expect("clunk");
    assert_eq!(c.cat(5000, &["top"]).expect("a slot freed"), b"top");
}

#[test]
fn malformed_messages_are_answered_not_fatal() {
    let (_t, share) = fixture();
    let mut c = Client::new(&share, false);
    let mut out = [0u8; 64];
    // Size < 7, truncated buffers, size beyond the bytes and beyond msize.
    for req in [&[][..], &[1, 0, 0, 0], &[3, 0, 0, 0, 120, 1, 0], &[9, 0, 0, 0, 120, 1, 0]] {
        let n = c.server.handle(req, &mut out);
        assert_eq!((n, out[4]), (11, msg::RLERROR), "{req:?}");
    }
    let mut huge = frame(msg::TWRITE, 1, &[0; 64]);
    huge[..4].copy_from_slice(&(MAX_MSIZE + 1).to_le_bytes());
    huge.resize(MAX_MSIZE as usize + 1, 0);
    let n = c.server.handle(&huge, &mut out);
    assert_eq!((n, u32::from_le_bytes(out[7..11].try_into().expect("errno"))), (11, 90)); // EMSGSIZE
    // Strings that claim to run past the end.
    let walk = B::default().u32(0).u32(1).u16(1).u16(500).raw(b"abc");
    assert_eq!(c.call(msg::TWALK, walk).err(), Some(Errno::PROTO));
    let attach = B::default().u32(9).u32(NOFID).u16(0xffff);
    assert_eq!(c.call(msg::TATTACH, attach).err(), Some(Errno::PROTO));
    // Twrite whose count exceeds the data present (and msize).
    c.walk(0, 2, &["top"]).expect("walk");
    c.lopen(2, 2).expect("open");
    let w = B::default().u32(2).u64(0).u32(u32::MAX).raw(b"abc");
    assert_eq!(c.call(msg::TWRITE, w).err(), Some(Errno::PROTO));
    assert_eq!(fs::read(share.join("top")).expect("intact"), b"top");
    // Truncated fixed fields, every op type.
    for kind in 0..=255u8 {
        let r = c.raw(&frame(kind, 1, &[1, 0]));
        assert!(r[4] == msg::RLERROR || r[4] == kind.wrapping_add(1), "type {kind}");
    }
    // A response buffer too small for anything but Rlerror.
    let req = frame(msg::TREAD, 1, &B::default().u32(2).u64(0).u32(100).0);
    let n = c.server.handle(&req, &mut out[..12]);
    assert_eq!((n, out[4], out[11]), (12, msg::TREAD + 1, b't'), "a 1-byte read fits");
    let n = c.server.handle(&frame(msg::TGETATTR, 1, &B::default().u32(2).u64(0).0), &mut out[..20]);
    assert_eq!((n, out[4]), (11, msg::RLERROR));
    assert_eq!(c.server.handle(&req, &mut out[..10]), 0);
    // Still serving afterwards.
    assert_eq!(c.cat(3, &["a", "hello"]).expect("cat"), b"hi");
}

#[test]
fn vanished_share_gives_errors_not_crashes() {
    let (t, share) = fixture();
    let mut c = Client::new(&share, false);
    c.walk(0, 1, &["a"]).expect("walk");
    c.walk(0, 2, &["a", "hello"]).expect("walk");
    c.lopen(2, 0).expect("open");
    fs::remove_dir_all(&share).expect("remove share");
    assert_eq!(c.read(2, 0, 10).expect("open file survives"), b"hi");
    assert_eq!(c.walk(1, 3, &["hello"]), Err(Errno::NOENT));
    let mk = B::default().u32(0).s(b"x").u32(0o755).u32(0);
    assert_eq!(c.call(msg::TMKDIR, mk).err(), Some(Errno::NOENT));
    c.walk(0, 4, &[]).expect("clone of a deleted root");
    // Whatever the host answers for a deleted directory, the server answers too.
    let _ = c.lopen(4, 0);
    let _ = c.call(msg::TREADDIR, B::default().u32(4).u64(0).u32(4096));
    assert!(c.call(msg::TREMOVE, B::default().u32(1)).is_err());
    c.walk(0, 5, &["..", ".."]).expect("root stays root");
    assert!(!share.exists() && t.0.exists(), "nothing recreated");
}

/// One thread keeps swapping `share/d` between a real directory and a
/// symlink to the directory outside; the walker must never read outside.
#[test]
fn swap_race_never_escapes() {
    let t = TempDir::new("race");
    let share = t.path("share");
    fs::create_dir_all(share.join("real")).expect("mkdir");
    fs::create_dir_all(t.path("outside")).expect("mkdir");
    fs::write(share.join("real/x"), "inside").expect("write");
    fs::write(t.path("outside/x"), "OUTSIDE").expect("write");
    fs::rename(share.join("real"), share.join("d")).expect("rename");
    symlink(t.path("outside"), share.join("alt")).expect("symlink");
    let stop = AtomicBool::new(false);
    let swaps = AtomicUsize::new(0);
    let (mut inside, mut refused) = (0u32, 0u32);
    std::thread::scope(|s| {
        s.spawn(|| {
            let dir = rustix::fs::open(share.as_os_str().as_encoded_bytes(), rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).expect("open");
            while !stop.load(Ordering::Relaxed) {
                rustix::fs::renameat_with(&dir, "d", &dir, "alt", rustix::fs::RenameFlags::EXCHANGE).expect("swap");
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        });
        let mut c = Client::new(&share, false);
        for i in 0..100_000u32 {
            let path: &[&str] = if i % 2 == 0 { &["d", "x"] } else { &["d", "..", "d", "x"] };
            match c.cat(1, path) {
                Ok(data) => {
                    assert_eq!(data, b"inside", "escaped on iteration {i}");
                    inside += 1;
                }
                Err(e) => {
                    assert!(matches!(e, Errno::NOENT | Errno::LOOP | Errno::NOTDIR), "{e:?}");
                    refused += 1;
                }
            }
            let _ = c.clunk(1);
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(inside > 0 && refused > 0, "both states seen: {inside} inside, {refused} refused");
    assert!(swaps.load(Ordering::Relaxed) > 100, "the swapper ran");
}

#[test]
fn symlink_targets_up_to_path_max_are_stored_longer_or_nul_refused() {
    let (_t, share) = fixture();
    let mut c = Client::new(&share, false);
    let long = vec![b'a'; 4095];
    c.call(msg::TSYMLINK, B::default().u32(0).s(b"long").s(&long).u32(0)).expect("a 4095-byte target");
    assert_eq!(fs::read_link(share.join("long")).expect("link").as_os_str().len(), 4095);
    let too_long = vec![b'a'; 4096];
    let r = c.call(msg::TSYMLINK, B::default().u32(0).s(b"l2").s(&too_long).u32(0));
    assert_eq!(r.err(), Some(Errno::NAMETOOLONG));
    let r = c.call(msg::TSYMLINK, B::default().u32(0).s(b"l3").s(b"a\0b").u32(0));
    assert_eq!(r.err(), Some(Errno::INVAL));
    assert!(fs::symlink_metadata(share.join("l2")).is_err() && fs::symlink_metadata(share.join("l3")).is_err());
}
