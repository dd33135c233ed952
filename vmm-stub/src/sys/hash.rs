//! SHA-256 and SHA-512 by the host kernel (AF_ALG hash sockets, the
//! kernel's crypto API): `socket(AF_ALG, SOCK_SEQPACKET)`, `bind` to
//! `{"hash", name}`, `accept` an operation socket; data sent with
//! `MSG_MORE` is hashed, a `read` finishes and returns the digest. The
//! trust check uses it instead of hand-written hashes: far fewer bytes in
//! the stub and the kernel's fast code (SSSE3/AVX/SHA-NI). Hosts whose
//! kernel lacks `CONFIG_CRYPTO_USER_API_HASH` (module `algif_hash`) fail
//! `socket` with `EAFNOSUPPORT`; a missing algorithm fails `bind` with
//! `ENOENT`. Used only before the seccomp filter exists (docs/SECURITY.md).

use super::syscall::{syscall, SYS_BIND};
use rustix::fd::{AsRawFd, OwnedFd};
use rustix::io::Errno;
use rustix::net::{self, AddressFamily, SendFlags, SocketFlags, SocketType};

/// `AF_ALG` (rustix names it on Fuchsia only).
const AF_ALG: u16 = 38;

/// `struct sockaddr_alg` (linux/if_alg.h), 88 bytes.
#[repr(C)]
struct SockaddrAlg {
    family: u16,
    kind: [u8; 14],
    feat: u32,
    mask: u32,
    name: [u8; 64],
}
static_assertions::const_assert_eq!(core::mem::size_of::<SockaddrAlg>(), 88);

/// One kernel hash (its operation socket), reused digest after digest.
pub struct Hash {
    op: OwnedFd,
}

impl Hash {
    /// The kernel's hash `name` ("sha256", "sha512"; at most 63 bytes).
    pub fn open(name: &str) -> Result<Hash, Errno> {
        let alg = net::socket_with(AddressFamily::from_raw(AF_ALG), SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
        let mut addr = SockaddrAlg { family: AF_ALG, kind: *b"hash\0\0\0\0\0\0\0\0\0\0", feat: 0, mask: 0, name: [0; 64] };
        // The last byte stays NUL.
        for (d, &s) in addr.name.iter_mut().take(63).zip(name.as_bytes()) {
            *d = s;
        }
        // SAFETY: bind reads `size_of::<SockaddrAlg>()` bytes at the pointer: `addr`, a complete `sockaddr_alg` alive across the call.
        unsafe {
            syscall(SYS_BIND, [alg.as_raw_fd().cast_unsigned() as usize, (&raw const addr) as usize, core::mem::size_of::<SockaddrAlg>(), 0])
        }?;
        Ok(Hash { op: net::accept_with(&alg, SocketFlags::CLOEXEC)? })
    }

    /// Adds `data` to the digest in progress.
    pub fn update(&self, mut data: &[u8]) -> Result<(), Errno> {
        while !data.is_empty() {
            match net::send(&self.op, data, SendFlags::MORE) {
                Ok(0) => return Err(Errno::IO),
                Ok(n) => data = data.get(n..).unwrap_or_default(),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Finishes the digest of everything added since the last one (none: the
    /// empty input's) into `out`, which must be the digest's size.
    pub fn finish(&self, out: &mut [u8]) -> Result<(), Errno> {
        loop {
            match rustix::io::read(&self.op, &mut *out) {
                Ok(n) if n == out.len() => return Ok(()),
                Ok(_) => return Err(Errno::IO),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Hash;
    use rustix::io::Errno;

    /// Agrees with the builder's SHA-256 and with sha2's SHA-512, across
    /// block edges and pieces, digest after digest on one socket. Hosts
    /// without AF_ALG hashing skip (the stub then fails closed: trust tests).
    #[test]
    fn kernel_digests_match() {
        let (h256, h512) = match (Hash::open("sha256"), Hash::open("sha512")) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("SKIPPED: no AF_ALG hashing on this host ({e:?})");
                return;
            }
        };
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 31 + i / 7) as u8).collect();
        for len in [0, 1, 55, 56, 63, 64, 65, 111, 112, 127, 128, 129, 1000, 70_000] {
            let mut d = [0u8; 32];
            h256.update(&data[..len / 2]).expect("send");
            h256.update(&data[len / 2..len]).expect("send");
            h256.finish(&mut d).expect("read");
            assert_eq!(d, linker::sha256::sha256(&data[..len]), "sha256, length {len}");
            let mut d = [0u8; 64];
            h512.update(&data[..len]).expect("send");
            h512.finish(&mut d).expect("read");
            use sha2::Digest;
            assert_eq!(d[..], sha2::Sha512::digest(&data[..len])[..], "sha512, length {len}");
        }
        assert!(matches!(Hash::open("no-such-hash"), Err(Errno::NOENT)));
    }
}
