//! The host's trust policy: with a policy file (`SMOLVM_TRUST` /
//! `--smolvm-trust`, else `/etc/smolvm/trust` when it exists), the image must
//! carry a signature by one of the listed keys over SHA-256 digests that
//! match every section, with zero padding between them
//! (`linker::signature`). Checked before any VM exists; a refusal is one
//! line and status 125. Without a policy, nothing changes.
//!
//! The check itself (Ed25519, SHA-256 of every section) is the cargo
//! feature `trust`. Both hashes are the host kernel's (AF_ALG,
//! `sys::hash`): a host without them refuses every image under a policy,
//! with one line naming what is missing, and never runs one unchecked.
//! A stub without the feature still finds the policy and fails closed:
//! unsigned images are refused as such, signed ones because it cannot check
//! them (docs/DEPLOY.md: images for such hosts use the checking stub).

#[cfg(feature = "trust")]
mod ed25519;

use crate::out::Line;
use crate::payload::Payload;
#[cfg(feature = "trust")]
use crate::sys::hash::Hash;
use linker::image::Kind;
#[cfg(feature = "trust")]
use linker::signature::{self, Signature};
use linker::signature::{POLICY_PATH, STUB_MARK};
use rustix::fs;
use rustix::io::Errno;

/// Found by `smolvm sign` in stubs that can run signed images.
static MARK: [u8; 24] = *STUB_MARK;
/// Policy files are a few key lines; this bounds the stack buffer.
#[cfg(feature = "trust")]
const MAX_POLICY_LEN: usize = 8192;

fn refuse(policy: &[u8], why: &str) -> ! {
    Line::new().s("trust policy ").b(policy).s(": ").s(why).fail()
}

#[cfg(feature = "trust")]
/// Reads the policy, or `None` when the default file does not exist.
fn read_policy<'b>(path: &[u8], explicit: bool, buf: &'b mut [u8; MAX_POLICY_LEN]) -> Option<&'b [u8]> {
    // NONBLOCK: opening a FIFO must not wait (forever) for a writer; only
    // a regular file is a policy.
    let fd = match fs::open(path, fs::OFlags::RDONLY | fs::OFlags::CLOEXEC | fs::OFlags::NONBLOCK, fs::Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) if !explicit => return None,
        Err(_) => refuse(path, "cannot read it, so no image is trusted"),
    };
    if !fs::fstat(&fd).is_ok_and(|st| fs::FileType::from_raw_mode(st.st_mode) == fs::FileType::RegularFile) {
        refuse(path, "not a regular file, so no image is trusted");
    }
    let mut len = 0usize;
    loop {
        let Some(rest) = buf.get_mut(len..).filter(|r| !r.is_empty()) else {
            refuse(path, "larger than 8 KiB")
        };
        match rustix::io::read(&fd, rest) {
            Ok(0) => break,
            Ok(n) => len = len.wrapping_add(n), // n <= rest.len()
            Err(Errno::INTR) => {}
            Err(_) => refuse(path, "cannot read it, so no image is trusted"),
        }
    }
    buf.get(..len)
}

#[cfg(feature = "trust")]
/// Whether `key` is listed; a malformed line refuses everything.
fn lists(policy: &[u8], path: &[u8], key: &[u8; 32]) -> bool {
    let mut found = false;
    for line in policy.split(|&b| b == b'\n') {
        match signature::parse_public_line(line) {
            Ok(k) => found |= k.as_ref() == Some(key),
            Err(()) => refuse(path, "malformed line (want `smolvm-ed25519 <64 hex digits>`)"),
        }
    }
    found
}

#[cfg(feature = "trust")]
/// Every byte before the signature: sections against their SHA-256, zero padding.
fn prefix_intact(payload: &Payload, signed_len: u64, sha256: &Hash, path: &[u8]) -> bool {
    let Ok(map) = crate::payload::Mapped::new(payload.fd(), 0, signed_len) else { return false };
    let bytes = map.bytes();
    let mut at = 0usize;
    for s in payload.image().sections().iter().filter(|s| s.kind != Kind::Signature) {
        // The reader bounded every section inside the file; `signed_len` is the signature's offset.
        let (Ok(start), Ok(end)) = (usize::try_from(s.offset), usize::try_from(s.end())) else { return false };
        let (Some(pad), Some(data)) = (bytes.get(at..start), bytes.get(start..end)) else { return false };
        let mut sum = [0u8; 32];
        digest(sha256, &[data], &mut sum, path);
        if pad.iter().any(|&b| b != 0) || sum != s.sha256 {
            return false;
        }
        at = end;
    }
    bytes.get(at..).is_some_and(|pad| pad.iter().all(|&b| b == 0))
}

#[cfg(feature = "trust")]
/// The kernel's hash `name`, or a refusal naming what the host lacks.
fn kernel_hash(name: &str, path: &[u8]) -> Hash {
    Hash::open(name).unwrap_or_else(|e| cannot_hash(name, e, path))
}

#[cfg(feature = "trust")]
/// The digest of `parts` in a row into `out`; a failure refuses.
fn digest(hash: &Hash, parts: &[&[u8]], out: &mut [u8], path: &[u8]) {
    if let Err(e) = parts.iter().try_for_each(|p| hash.update(p)).and_then(|()| hash.finish(out)) {
        cannot_hash("hash", e, path)
    }
}

#[cfg(feature = "trust")]
fn cannot_hash(name: &str, e: Errno, path: &[u8]) -> ! {
    Line::new()
        .s("trust policy ")
        .b(path)
        .s(": no image is trusted, the host kernel's AF_ALG ")
        .s(name)
        .s(" failed")
        .errno(e)
        .s("); checking signatures needs CONFIG_CRYPTO_USER_API_HASH (modprobe algif_hash) with sha256 and sha512")
        .fail()
}

/// Applies the policy (see the module doc); returns only if the image may run.
#[cfg(feature = "trust")]
#[inline(never)]
pub fn enforce(payload: &Payload, explicit: Option<&[u8]>) {
    core::hint::black_box(&MARK);
    let path = explicit.unwrap_or(POLICY_PATH.as_bytes());
    let mut buf = [0u8; MAX_POLICY_LEN];
    let Some(policy) = read_policy(path, explicit.is_some(), &mut buf) else { return };
    let Some(section) = payload.section(Kind::Signature) else {
        refuse(path, "this image is not signed (sign it with `smolvm sign --key KEY`)")
    };
    let mut raw = [0u8; signature::LEN];
    let sig = payload.read(&section, 0, &mut raw).ok().and_then(|()| Signature::parse(&raw));
    let Some(sig) = sig else { refuse(path, "the image's signature section is malformed") };
    if !lists(policy, path, &sig.public_key) {
        refuse(path, "the image is signed by a key it does not list");
    }
    check_signature(payload, &sig, section.offset, path);
}

/// Without the verifier: a policy that exists refuses every image, naming
/// why (see the module doc); returns only when there is no policy.
#[cfg(not(feature = "trust"))]
pub fn enforce(payload: &Payload, explicit: Option<&[u8]>) {
    core::hint::black_box(&MARK);
    let path = explicit.unwrap_or(POLICY_PATH.as_bytes());
    match fs::access(path, fs::Access::EXISTS) {
        Ok(()) => {}
        Err(Errno::NOENT) if explicit.is_none() => return,
        Err(_) => refuse(path, "cannot read it, so no image is trusted"),
    }
    if payload.section(Kind::Signature).is_none() {
        refuse(path, "this image is not signed (sign it with `smolvm sign --key KEY`)");
    }
    refuse(path, "this image's stub cannot check signatures (built without them: see docs/DEPLOY.md), so it runs nothing under a policy")
}

/// Refuses unless the signature is valid and every signed byte is intact.
/// Kept out of `start::main` (it runs only under a policy).
#[cfg(feature = "trust")]
#[inline(never)]
fn check_signature(payload: &Payload, sig: &Signature, signed_len: u64, path: &[u8]) {
    let (sha512, sha256) = (kernel_hash("sha512", path), kernel_hash("sha256", path));
    let mut msg = [0u8; signature::MAX_MESSAGE_LEN];
    let valid = signature::message(payload.image(), signed_len, &mut msg).is_some_and(|m| {
        // Ed25519's challenge: SHA-512(R || A || message).
        let mut h = [0u8; 64];
        digest(&sha512, &[&sig.signature[..32], &sig.public_key, m], &mut h, path);
        ed25519::verify(&sig.public_key, &sig.signature, &h)
    });
    if !valid || !prefix_intact(payload, signed_len, &sha256, path) {
        crate::out::fail("image signature does not match its contents (altered or corrupted); refusing to run it");
    }
}
