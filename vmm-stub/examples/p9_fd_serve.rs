//! Serves a directory with the 9P server over stdin/stdout, for Linux's
//! `trans=fd` client: checks the server against the real kernel v9fs client
//! without a VM (e.g. inside the lab's L1, whose kernel has 9pnet_fd).
//!
//!     p9_fd_serve DIR [ro] 0<>requests.fifo 1<>replies.fifo &
//!     mount -t 9p -o trans=fd,rfdno=3,wfdno=4,version=9p2000.L x MNT 3<>replies.fifo 4<>requests.fifo
//!
//! or, with `P9_UNIX=SOCKET p9_fd_serve DIR &`, `mount -t 9p -o trans=unix SOCKET MNT`.
//! (With fifos, Linux 6.1's trans_fd loses the reply to a request larger
//! than the pipe buffer; sockets do not have that problem.)

use std::io::{Read, Write};
use vmm_stub::virtio::p9::{wire::MAX_MSIZE, Server};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: p9_fd_serve DIR [ro]");
    let ro = args.next().as_deref() == Some("ro");
    let mut server = Server::new(dir.as_bytes(), ro).expect("share");
    // P9_UNIX=PATH: accept one connection on a unix socket (`trans=unix`)
    // instead of serving stdin/stdout.
    let (mut input, mut output): (Box<dyn Read>, Box<dyn Write>) = match std::env::var_os("P9_UNIX") {
        Some(path) => {
            let _ = std::fs::remove_file(&path);
            let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
            let (conn, _) = listener.accept().expect("accept");
            (Box::new(conn.try_clone().expect("clone")), Box::new(conn))
        }
        None => (Box::new(std::io::stdin().lock()), Box::new(std::io::stdout().lock())),
    };
    let mut req = vec![0u8; MAX_MSIZE as usize];
    let mut reply = vec![0u8; MAX_MSIZE as usize];
    let trace = std::env::var_os("P9_TRACE").is_some();
    loop {
        if input.read_exact(&mut req[..4]).is_err() {
            return; // unmounted
        }
        let size = u32::from_le_bytes(req[..4].try_into().expect("4 bytes")) as usize;
        let size = size.clamp(4, req.len());
        input.read_exact(&mut req[4..size]).expect("request body");
        let n = server.handle(&req[..size], &mut reply);
        if trace {
            let errno = if reply[4] == 7 { u32::from_le_bytes(reply[7..11].try_into().expect("errno")) } else { 0 };
            eprintln!("T{} {size} -> R{} {n} errno {errno}", req[4], reply[4]);
        }
        output.write_all(&reply[..n]).expect("reply");
        output.flush().expect("flush");
    }
}
