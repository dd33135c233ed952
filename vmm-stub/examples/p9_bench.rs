//! Host-side throughput of the 9P server loop (no VM, no virtio): sequential
//! write/read MB/s with msize-sized messages, and small-file
//! create/stat/unlink ops/s, against a directory (default: a fresh one in
//! $TMPDIR; `P9_BENCH_DIR` to choose the filesystem).
//!
//!     cargo run --release -p vmm-stub --example p9_bench [MiB]

use std::time::Instant;
use vmm_stub::virtio::p9::{wire::msg, wire::MAX_MSIZE, Server};

struct Client {
    server: Server,
    reply: Vec<u8>,
    req: Vec<u8>,
}

impl Client {
    /// Sends one message; panics on Rlerror (a benchmark of failures is useless).
    fn call(&mut self, kind: u8, body: &[u8]) -> &[u8] {
        self.req.clear();
        self.req.extend_from_slice(&((7 + body.len()) as u32).to_le_bytes());
        self.req.push(kind);
        self.req.extend_from_slice(&[1, 0]);
        self.req.extend_from_slice(body);
        let n = self.server.handle(&self.req, &mut self.reply);
        assert_eq!(self.reply[4], kind + 1, "op {kind} failed: {:?}", &self.reply[..n]);
        &self.reply[7..n]
    }
}

fn s(v: &mut Vec<u8>, text: &[u8]) {
    v.extend_from_slice(&(text.len() as u16).to_le_bytes());
    v.extend_from_slice(text);
}

fn body(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn main() {
    let mib: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(512);
    let dir = std::env::var_os("P9_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("p9-bench-{}", std::process::id())));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let server = Server::new(dir.as_os_str().as_encoded_bytes(), false).expect("share");
    let mut c = Client { server, reply: vec![0; MAX_MSIZE as usize], req: Vec::new() };
    let mut v = MAX_MSIZE.to_le_bytes().to_vec();
    s(&mut v, b"9P2000.L");
    c.call(msg::TVERSION, &v);
    let mut v = body(&[&0u32.to_le_bytes(), &u32::MAX.to_le_bytes()]);
    s(&mut v, b"");
    s(&mut v, b"");
    v.extend_from_slice(&0u32.to_le_bytes());
    c.call(msg::TATTACH, &v);

    // Sequential write then read of one file, one msize message at a time.
    let chunk = (MAX_MSIZE - 24) as usize;
    let total = mib << 20;
    let mut v = body(&[&0u32.to_le_bytes(), &1u32.to_le_bytes(), &0u16.to_le_bytes()]);
    c.call(msg::TWALK, &v);
    v = 1u32.to_le_bytes().to_vec();
    s(&mut v, b"big");
    v.extend_from_slice(&body(&[&2u32.to_le_bytes(), &0o644u32.to_le_bytes(), &0u32.to_le_bytes()]));
    c.call(msg::TLCREATE, &v);
    let data = vec![0x5au8; chunk];
    let t = Instant::now();
    let mut off = 0u64;
    while off < total {
        let mut w = body(&[&1u32.to_le_bytes(), &off.to_le_bytes(), &(chunk as u32).to_le_bytes()]);
        w.extend_from_slice(&data);
        c.call(msg::TWRITE, &w);
        off += chunk as u64;
    }
    let write_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut off = 0u64;
    while off < total {
        let r = c.call(msg::TREAD, &body(&[&1u32.to_le_bytes(), &off.to_le_bytes(), &(chunk as u32).to_le_bytes()]));
        off += u64::from(u32::from_le_bytes(r[..4].try_into().expect("count")));
    }
    let read_s = t.elapsed().as_secs_f64();
    c.call(msg::TCLUNK, &1u32.to_le_bytes());
    let mb = off as f64 / 1e6;
    println!("seq write: {:.0} MB/s ({mb:.0} MB, {} KiB messages)", mb / write_s, chunk / 1024);
    println!("seq read:  {:.0} MB/s", mb / read_s);

    // Small files: create (walk+lcreate+clunk), stat (walk+getattr+clunk), unlink.
    let n = 5000u32;
    let name = |i: u32| format!("f{i}").into_bytes();
    let t = Instant::now();
    for i in 0..n {
        c.call(msg::TWALK, &body(&[&0u32.to_le_bytes(), &2u32.to_le_bytes(), &0u16.to_le_bytes()]));
        let mut v = 2u32.to_le_bytes().to_vec();
        s(&mut v, &name(i));
        v.extend_from_slice(&body(&[&1u32.to_le_bytes(), &0o644u32.to_le_bytes(), &0u32.to_le_bytes()]));
        c.call(msg::TLCREATE, &v);
        c.call(msg::TCLUNK, &2u32.to_le_bytes());
    }
    let create = f64::from(n) / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..n {
        let mut v = body(&[&0u32.to_le_bytes(), &2u32.to_le_bytes(), &1u16.to_le_bytes()]);
        s(&mut v, &name(i));
        c.call(msg::TWALK, &v);
        c.call(msg::TGETATTR, &body(&[&2u32.to_le_bytes(), &0x7ffu64.to_le_bytes()]));
        c.call(msg::TCLUNK, &2u32.to_le_bytes());
    }
    let stat = f64::from(n) / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..n {
        let mut v = 0u32.to_le_bytes().to_vec();
        s(&mut v, &name(i));
        v.extend_from_slice(&0u32.to_le_bytes());
        c.call(msg::TUNLINKAT, &v);
    }
    let unlink = f64::from(n) / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..n {
        c.call(msg::TGETATTR, &body(&[&0u32.to_le_bytes(), &0x7ffu64.to_le_bytes()]));
    }
    let getattr = f64::from(n) / t.elapsed().as_secs_f64();
    println!("small files ({n}): create {create:.0}/s (3 msgs each), stat {stat:.0}/s (3 msgs), unlink {unlink:.0}/s");
    println!("Tgetattr round trip: {getattr:.0} ops/s");
    let _ = std::fs::remove_file(dir.join("big"));
    if std::env::var_os("P9_BENCH_DIR").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
