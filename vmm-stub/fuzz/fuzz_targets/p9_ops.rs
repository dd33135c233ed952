//! Op sequences against a writable share in a temp dir. The input drives a
//! small structured client (ops, fids, names from a dictionary that includes
//! `..`, `/`, NUL and symlinks pointing out of the share). Checks: no panic,
//! every reply well formed, and nothing outside the share ever changes.
//! Each input gets a new `Server` on a share put back as first built; the
//! tree lives on tmpfs and is reset entry by entry (only what the last
//! input changed), and the outside is compared by inode keys, with full
//! listings of both every 1024 inputs (`P9_OPS_CHECK_EVERY`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::fs;
use std::path::{Path, PathBuf};
use vmm_stub::virtio::p9::{wire::msg, Server};

const NAMES: &[&[u8]] = &[b"a", b"b", b"c", b"..", b".", b"", b"a/b", b"l_out", b"l_up", b"l_secret", b"f", b"x\0y"];
// Links point at the sibling `outside/` and `secret`, never at host system
// paths: a confinement bug must show up there, not damage the machine.
const TARGETS: &[&[u8]] = &[b"../outside", b"..", b"../secret", b"a", b""];
const FLAGS: &[u32] = &[0, 1, 2, 0o1002, 0o2001, 0o200000, 3, 0o100, 0o4010002];
const MODES: &[u32] = &[0o100644, 0o010644, 0o020666, 0o060660, 0o140777, 0, 0o755, 0o4777];

struct In<'a>(&'a [u8]);

impl In<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }
    fn fid(&mut self) -> u32 {
        u32::from(self.byte() % 8)
    }
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::from(self.byte()) % from.len()]
    }
    fn u64(&mut self) -> u64 {
        match self.byte() % 4 {
            0 => 0,
            1 => u64::from(self.byte()),
            2 => u64::from(self.byte()) << 20,
            _ => u64::MAX - u64::from(self.byte()),
        }
    }
}

#[derive(Default)]
struct B(Vec<u8>);

impl B {
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn s(mut self, v: &[u8]) -> Self {
        self = self.u16(v.len() as u16);
        self.0.extend_from_slice(v);
        self
    }
}

/// One message built from the input into `b`: (type, message).
fn op(i: &mut In<'_>, b: B) -> (u8, B) {
    match i.byte() % 25 {
        0 => {
            let (fid, newfid, n) = (i.fid(), i.fid(), i.byte() % 4);
            let mut b = b.u32(fid).u32(newfid).u16(u16::from(n));
            for _ in 0..n {
                b = b.s(i.pick(NAMES));
            }
            (msg::TWALK, b)
        }
        1 => (msg::TLOPEN, b.u32(i.fid()).u32(i.pick(FLAGS))),
        2 => (msg::TLCREATE, b.u32(i.fid()).s(i.pick(NAMES)).u32(i.pick(FLAGS)).u32(i.pick(MODES)).u32(0)),
        3 => (msg::TREAD, b.u32(i.fid()).u64(i.u64()).u32(u32::from(i.byte()) * 64)),
        4 => {
            let (fid, off, n) = (i.fid(), i.u64(), usize::from(i.byte() % 64));
            let data: Vec<u8> = (0..n).map(|_| i.byte()).collect();
            let mut b = b.u32(fid).u64(off).u32(n as u32);
            b.0.extend_from_slice(&data);
            (msg::TWRITE, b)
        }
        5 => (msg::TCLUNK, b.u32(i.fid())),
        6 => (msg::TREMOVE, b.u32(i.fid())),
        7 => (msg::TREADDIR, b.u32(i.fid()).u64(i.u64()).u32(u32::from(i.byte()) * 16)),
        8 => (msg::TMKDIR, b.u32(i.fid()).s(i.pick(NAMES)).u32(i.pick(MODES)).u32(0)),
        9 => (msg::TSYMLINK, b.u32(i.fid()).s(i.pick(NAMES)).s(i.pick(TARGETS)).u32(0)),
        10 => (msg::TMKNOD, b.u32(i.fid()).s(i.pick(NAMES)).u32(i.pick(MODES)).u32(1).u32(3).u32(0)),
        11 => (msg::TREADLINK, b.u32(i.fid())),
        12 => (msg::TLINK, b.u32(i.fid()).u32(i.fid()).s(i.pick(NAMES))),
        13 => (msg::TRENAME, b.u32(i.fid()).u32(i.fid()).s(i.pick(NAMES))),
        14 => (msg::TRENAMEAT, b.u32(i.fid()).s(i.pick(NAMES)).u32(i.fid()).s(i.pick(NAMES))),
        15 => (msg::TUNLINKAT, b.u32(i.fid()).s(i.pick(NAMES)).u32(u32::from(i.byte() % 2) * 0x200)),
        16 => (msg::TGETATTR, b.u32(i.fid()).u64(0x7ff)),
        17 => {
            let b = b.u32(i.fid()).u32(u32::from(i.byte()) | u32::from(i.byte() % 2) << 8);
            let b = b.u32(i.pick(MODES)).u32(0).u32(0).u64(i.u64() % 4096);
            (msg::TSETATTR, b.u64(i.u64()).u64(i.u64()).u64(i.u64()).u64(i.u64()))
        }
        18 => (msg::TSTATFS, b.u32(i.fid())),
        19 => (msg::TFSYNC, b.u32(i.fid()).u32(u32::from(i.byte() % 2))),
        20 => (msg::TLOCK, b.u32(i.fid()).u8(i.byte() % 4).u32(0).u64(i.u64()).u64(i.u64()).u32(1).s(b"c")),
        21 => (msg::TGETLOCK, b.u32(i.fid()).u8(i.byte() % 4).u64(0).u64(0).u32(1).s(b"c")),
        22 => (msg::TXATTRWALK, b.u32(i.fid()).u32(i.fid()).s(b"user.x")),
        23 => (msg::TVERSION, b.u32(i.pick(&[4095, 4096, 8192, 1 << 17, u32::MAX])).s(b"9P2000.L")),
        _ => (msg::TATTACH, b.u32(i.fid()).u32(u32::MAX).s(b"").s(b"").u32(0)),
    }
}

/// An empty message in a reused buffer: room for the header, then the body.
fn blank(mut buf: Vec<u8>) -> B {
    buf.clear();
    buf.extend_from_slice(&[0; 7]);
    B(buf)
}

/// Fills in the header (size, type, tag 7).
fn framed(kind: u8, B(mut m): B) -> Vec<u8> {
    let size = (m.len() as u32).to_le_bytes();
    m[..4].copy_from_slice(&size);
    m[4] = kind;
    m[5..7].copy_from_slice(&[7, 0]);
    m
}

/// `(names, contents)` of everything directly under `dir` except the share.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut v: Vec<_> = fs::read_dir(dir)
        .expect("list")
        .flatten()
        .filter(|e| e.file_name() != "share")
        .map(|e| {
            let md = fs::symlink_metadata(e.path()).expect("stat");
            let data = if md.is_file() { fs::read(e.path()).expect("read") } else { Vec::new() };
            (e.file_name().to_string_lossy().into_owned(), data, md.mode())
        })
        .collect();
    v.sort();
    v
}

/// One entry of a tree: path, mode, owner, group, link count, and the
/// bytes of a file or the target of a symlink.
type Entry = (PathBuf, u32, u32, u32, u64, Vec<u8>);

/// Everything below `dir` (but times and inode numbers), sorted.
fn layout(dir: &Path) -> Vec<Entry> {
    use std::os::unix::fs::MetadataExt;
    let mut v = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).expect("list").flatten() {
            let (path, m) = (e.path(), e.metadata().expect("stat"));
            let data = if m.is_file() {
                fs::read(&path).expect("read")
            } else if m.is_symlink() {
                fs::read_link(&path).expect("readlink").into_os_string().into_encoded_bytes()
            } else {
                Vec::new()
            };
            if m.is_dir() {
                todo.push(path.clone());
            }
            v.push((path.strip_prefix(dir).expect("below").to_path_buf(), m.mode(), m.uid(), m.gid(), m.nlink(), data));
        }
    }
    v.sort();
    v
}

type Snapshot = (Vec<(String, Vec<u8>, u32)>, Vec<(String, Vec<u8>, u32)>);

/// Everything `lstat` says about an inode but its access time. Equal keys
/// mean an unchanged inode: any change to a file's bytes, a directory's
/// entries (tmpfs also counts them in the size), mode, owner, link count or
/// times sets a new ctime, and the inode number changes if it was replaced.
type Key = [i64; 11];

fn key(path: &Path) -> Option<Key> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::symlink_metadata(path).ok()?;
    let u = |v: u64| v as i64;
    Some([
        u(m.dev()),
        u(m.ino()),
        i64::from(m.mode()),
        u(m.nlink()),
        i64::from(m.uid()),
        i64::from(m.gid()),
        u(m.size()),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ])
}

/// `f` still holds exactly "file" (read without `fs::read`'s extra stat).
fn holds_file(path: &Path) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 5];
    let Ok(mut f) = fs::File::open(path) else { return false };
    matches!(f.read(&mut buf), Ok(4)) && &buf[..4] == b"file" && matches!(f.read(&mut buf), Ok(0))
}

/// The share's initial entries: name and how to make it.
const PRISTINE: &[(&str, Option<&str>)] =
    &[("a", None), ("f", None), ("l_out", Some("../outside")), ("l_up", Some("..")), ("l_secret", Some("../secret"))];

/// The test tree, built once per process: `base/{secret, outside/secret}`
/// must never change; `base/share` is served and put back as first built
/// before each input, entry by entry (only what the last input changed).
struct Tree {
    share: PathBuf,
    /// `base`, `base/secret`, `base/outside`, `base/outside/secret`.
    outside: [PathBuf; 4],
    outside_keys: [Option<Key>; 4],
    /// The full listing-and-contents snapshot of the outside, checked
    /// every `full_check_every()` inputs as well (the keys already imply it).
    outside_full: Snapshot,
    /// Keys of the share's entries as last (re)built, by `PRISTINE` index.
    share_keys: Vec<Option<Key>>,
    /// Mode, owner and group of the share's root as made.
    root_attrs: (u32, u32, u32),
    /// `layout(share)` as first built: every `full_check_every()` inputs the
    /// reset share is compared with it.
    share_layout: Vec<Entry>,
    runs: u64,
}

/// How often the full checks run (the share's layout after a reset, the
/// outside's listing and bytes); `P9_OPS_CHECK_EVERY=1` checks every input
/// (to validate the reset and the keys).
fn full_check_every() -> u64 {
    static N: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::env::var("P9_OPS_CHECK_EVERY").ok().and_then(|v| v.parse().ok()).unwrap_or(1024).max(1))
}

impl Tree {
    fn new() -> Self {
        // tmpfs when there is one.
        let tmp = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let base = tmp.join(format!("p9-fuzz-ops-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("outside")).expect("mkdir");
        fs::write(base.join("outside/secret"), "SECRET").expect("write");
        fs::write(base.join("secret"), "SECRET").expect("write");
        fs::create_dir(base.join("share")).expect("mkdir");
        // Later changes get a later ctime even on a coarse (per tick) clock.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let outside = [base.clone(), base.join("secret"), base.join("outside"), base.join("outside/secret")];
        let outside_keys = outside.each_ref().map(|p| key(p));
        let outside_full = (snapshot(&base), snapshot(&outside[2]));
        let root = fs::metadata(base.join("share")).expect("share");
        let root_attrs = { use std::os::unix::fs::MetadataExt; (root.mode(), root.uid(), root.gid()) };
        let share_keys = vec![None; PRISTINE.len()];
        let mut t = Tree {
            share: base.join("share"),
            outside,
            outside_keys,
            outside_full,
            share_keys,
            root_attrs,
            share_layout: Vec::new(),
            runs: 0,
        };
        t.reset();
        t.share_layout = layout(&t.share);
        t
    }

    /// Puts the share back as first built: removes what the last input
    /// added, rebuilds what it changed (compared by key, and the file's
    /// bytes too: a same-size rewrite within one clock tick of its creation
    /// keeps the key), restores the root's mode and owner.
    fn reset(&mut self) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let root = fs::symlink_metadata(&self.share).expect("share");
        let (mode, uid, gid) = self.root_attrs;
        if root.mode() != mode {
            fs::set_permissions(&self.share, fs::Permissions::from_mode(mode)).expect("chmod");
        }
        if (root.uid(), root.gid()) != (uid, gid) {
            std::os::unix::fs::chown(&self.share, Some(uid), Some(gid)).expect("chown");
        }
        let mut intact = vec![false; PRISTINE.len()];
        for e in fs::read_dir(&self.share).expect("list").flatten() {
            let path = e.path();
            let i = PRISTINE.iter().position(|(n, _)| e.file_name() == *n);
            if let Some(i) = i {
                let same = self.share_keys[i].is_some() && key(&path) == self.share_keys[i];
                if same && (PRISTINE[i].0 != "f" || holds_file(&path)) {
                    intact[i] = true;
                    continue;
                }
            }
            let removed = match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
            removed.expect("remove");
        }
        for (i, &(name, link)) in PRISTINE.iter().enumerate() {
            if intact[i] {
                continue;
            }
            let path = self.share.join(name);
            match (name, link) {
                ("a", _) => fs::create_dir(&path).expect("mkdir"),
                (_, None) => fs::write(&path, "file").expect("write"),
                (_, Some(to)) => std::os::unix::fs::symlink(to, &path).expect("symlink"),
            }
            self.share_keys[i] = key(&path);
        }
    }

    /// Nothing outside the share changed.
    fn check_outside(&mut self) {
        let keys = self.outside.each_ref().map(|p| key(p));
        if keys != self.outside_keys || self.runs % full_check_every() == 0 {
            let after = (snapshot(&self.outside[0]), snapshot(&self.outside[2]));
            assert_eq!(self.outside_full, after, "something outside the share changed");
            assert_eq!(self.outside_keys, keys, "an inode outside the share changed");
        }
        self.runs += 1;
    }
}

thread_local! {
    static TREE: std::cell::RefCell<Tree> = std::cell::RefCell::new(Tree::new());
    // Reused: a fresh 128 KiB buffer per input cost more than the ops.
    static REPLY: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 1 << 17]);
}

fuzz_target!(|data: &[u8]| {
    TREE.with(|t| {
        let mut tree = t.borrow_mut();
        tree.reset();
        if tree.runs % full_check_every() == 0 && !tree.share_layout.is_empty() {
            assert_eq!(tree.share_layout, layout(&tree.share), "reset left the share different from new");
        }
        // A new server per input, as a new VM would start it.
        let mut server = Server::new(tree.share.as_os_str().as_encoded_bytes(), false).expect("share");
        REPLY.with(|r| serve(&mut server, &mut r.borrow_mut(), data));
        drop(server);
        tree.check_outside();
    });
});

fn serve(server: &mut Server, reply: &mut [u8], data: &[u8]) {
    let mut input = In(data);
    // One buffer for every message (built and sent one at a time: the
    // input alone decides them, not the replies).
    let mut m = Vec::with_capacity(256);
    for sent in 0.. {
        let (kind, b) = match sent {
            0 => (msg::TVERSION, blank(m).u32(1 << 17).s(b"9P2000.L")),
            1 => (msg::TATTACH, blank(m).u32(0).u32(u32::MAX).s(b"").s(b"").u32(0)),
            _ if input.0.is_empty() || sent == 64 => break,
            _ => op(&mut input, blank(m)),
        };
        m = framed(kind, b);
        let n = server.handle(&m, reply);
        assert!(n >= 7 && n <= reply.len(), "empty replies (Rclunk) are 7 bytes");
        assert_eq!(u32::from_le_bytes(reply[..4].try_into().unwrap()) as usize, n);
        assert!(reply[4] == msg::RLERROR || reply[4] == m[4] + 1, "reply type");
        assert_eq!(reply[5..7], [7, 0], "tag");
    }
}
