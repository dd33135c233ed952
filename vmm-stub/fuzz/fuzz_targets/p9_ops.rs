//! Op sequences against a writable share in a temp dir. The input drives a
//! small structured client (ops, fids, names from a dictionary that includes
//! `..`, `/`, NUL and symlinks pointing out of the share). Checks: no panic,
//! every reply well formed, and nothing outside the share ever changes.
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

/// One message built from the input: (type, body).
fn op(i: &mut In<'_>) -> (u8, B) {
    let b = B::default();
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

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = ((7 + body.len()) as u32).to_le_bytes().to_vec();
    m.push(kind);
    m.extend_from_slice(&[7, 0]);
    m.extend_from_slice(body);
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

fn base() -> PathBuf {
    // tmpfs when there is one: each run rebuilds the tree.
    let tmp = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    tmp.join(format!("p9-fuzz-ops-{}", std::process::id()))
}

type Snapshot = (Vec<(String, Vec<u8>, u32)>, Vec<(String, Vec<u8>, u32)>);

/// The outside of the share as first built; it must never change, so it is
/// taken once rather than per input.
fn outside_before(base: &Path) -> &'static Snapshot {
    static S: std::sync::OnceLock<Snapshot> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        fs::create_dir_all(base.join("outside")).expect("mkdir");
        fs::write(base.join("outside/secret"), "SECRET").expect("write");
        fs::write(base.join("secret"), "SECRET").expect("write");
        (snapshot(base), snapshot(&base.join("outside")))
    })
}

thread_local! {
    // Reused: a fresh 128 KiB buffer per input cost more than the ops.
    static REPLY: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 1 << 17]);
}

fuzz_target!(|data: &[u8]| {
    let base = base();
    let share = base.join("share");
    let _ = fs::remove_dir_all(&share);
    let before = outside_before(&base);
    fs::create_dir_all(share.join("a")).expect("mkdir");
    fs::write(share.join("f"), "file").expect("write");
    std::os::unix::fs::symlink("../outside", share.join("l_out")).expect("symlink");
    std::os::unix::fs::symlink("..", share.join("l_up")).expect("symlink");
    std::os::unix::fs::symlink("../secret", share.join("l_secret")).expect("symlink");

    let mut server = Server::new(share.as_os_str().as_encoded_bytes(), false).expect("share");
    REPLY.with(|r| serve(&mut server, &mut r.borrow_mut(), data));
    drop(server);
    let after = (snapshot(&base), snapshot(&base.join("outside")));
    assert_eq!(*before, after, "something outside the share changed");
});

fn serve(server: &mut Server, reply: &mut [u8], data: &[u8]) {
    let mut input = In(data);
    let mut msgs = vec![
        frame(msg::TVERSION, &B::default().u32(1 << 17).s(b"9P2000.L").0),
        frame(msg::TATTACH, &B::default().u32(0).u32(u32::MAX).s(b"").s(b"").u32(0).0),
    ];
    while !input.0.is_empty() && msgs.len() < 64 {
        let (kind, body) = op(&mut input);
        msgs.push(frame(kind, &body.0));
    }
    for m in &msgs {
        let n = server.handle(m, reply);
        assert!(n >= 7 && n <= reply.len(), "empty replies (Rclunk) are 7 bytes");
        assert_eq!(u32::from_le_bytes(reply[..4].try_into().unwrap()) as usize, n);
        assert!(reply[4] == msg::RLERROR || reply[4] == m[4] + 1, "reply type");
        assert_eq!(reply[5..7], [7, 0], "tag");
    }
}
