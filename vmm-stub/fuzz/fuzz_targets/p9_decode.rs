//! Arbitrary bytes as one 9P request to a read-only share: the server never
//! panics, never writes past the reply buffer, and always answers a
//! well-formed reply (the request's type + 1, or Rlerror) with the request's
//! tag whenever the header was readable; and the device's zero-copy Twrite
//! check (`wire::WriteOp::parse`) accepts exactly what `handle` accepts.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::{Mutex, OnceLock};
use vmm_stub::virtio::p9::{wire, Server};

fn server() -> &'static Mutex<Server> {
    static S: OnceLock<Mutex<Server>> = OnceLock::new();
    S.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("p9-fuzz-decode-{}", std::process::id()));
        let _ = std::fs::create_dir_all(dir.join("a"));
        let _ = std::fs::write(dir.join("a/file"), "data");
        let _ = std::os::unix::fs::symlink("/etc", dir.join("l"));
        Mutex::new(Server::new(dir.as_os_str().as_encoded_bytes(), true).expect("share"))
    })
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the reply room, so small buffers get exercised too.
    let Some((&room, request)) = data.split_first() else { return };
    let room = if room < 128 { usize::from(room) } else { wire::MAX_MSIZE as usize };
    let mut reply = vec![0u8; room];
    let mut s = server().lock().expect("lock");
    // A fresh session with fid 0 attached, so each input starts alike
    // (checked: a failed set-up would make every later assert vacuous).
    let mut scratch = [0u8; 64];
    let n = s.handle(&session::VERSION, &mut scratch);
    assert_eq!(scratch[..n], session::RVERSION, "Rversion: msize 8192, 9P2000.L");
    let n = s.handle(&session::ATTACH, &mut scratch);
    assert_eq!(n, 7 + wire::QID_LEN, "Rattach: header and the root's qid");
    assert_eq!(scratch[..7], [20, 0, 0, 0, wire::msg::TATTACH + 1, 1, 0], "Rattach, tag 1");
    assert_eq!(scratch[7], wire::QTDIR, "the share root is a directory");
    let n = s.handle(request, &mut reply);
    assert!(n <= room);
    if n == 0 {
        assert!(room < 11);
        return;
    }
    assert_eq!(u32::from_le_bytes(reply[..4].try_into().unwrap()) as usize, n);
    if request.len() >= 7 {
        assert_eq!(reply[5..7], request[5..7], "tag echoed");
        assert!(reply[4] == wire::msg::RLERROR || reply[4] == request[4].wrapping_add(1));
    }
    // The device's zero-copy Twrite path takes exactly the Twrites this
    // copying path accepts, which on this read-only share end in EROFS.
    if request.get(4) == Some(&wire::msg::TWRITE) {
        let head = request.get(..wire::TWRITE_HEAD).and_then(|h| h.try_into().ok());
        let direct = head.and_then(|h| wire::WriteOp::parse(h, request.len() as u64, s.msize())).is_some();
        let erofs = reply[4] == wire::msg::RLERROR && reply[7..11] == 30u32.to_le_bytes();
        assert_eq!(direct, erofs, "WriteOp::parse agrees with Server::handle");
    }
});

/// Tversion(msize 8192, "9P2000.L") and Tattach(fid 0, afid NOFID, "", "", 0).
mod session {
    pub const VERSION: [u8; 21] = [21, 0, 0, 0, 100, 0xff, 0xff, 0, 0x20, 0, 0, 8, 0, b'9', b'P', b'2', b'0', b'0', b'0', b'.', b'L'];
    /// The reply: Rversion, NOTAG, msize 8192 (the server allows more), "9P2000.L".
    pub const RVERSION: [u8; 21] = [21, 0, 0, 0, 101, 0xff, 0xff, 0, 0x20, 0, 0, 8, 0, b'9', b'P', b'2', b'0', b'0', b'0', b'.', b'L'];
    pub const ATTACH: [u8; 23] = [23, 0, 0, 0, 104, 1, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0];
}
