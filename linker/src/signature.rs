//! The `Signature` section and the key text format, shared by `smolvm
//! sign`/`verify`/`keygen` and the stub's trust policy (`no_std`, no
//! allocation).
//!
//! # Section (112 bytes)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0  | 8  | magic `b"SMOLSIG1"` |
//! | 8  | 4  | algorithm, `1` = Ed25519 (RFC 8032, pure) |
//! | 12 | 4  | reserved, zero |
//! | 16 | 32 | the signer's public key |
//! | 48 | 64 | the signature |
//!
//! # What is signed ([`message`])
//!
//! [`DOMAIN`], then the length `L` of the signed prefix of the file (the
//! signature section's offset) as `u64` LE, then the trailer table entry of
//! every other section in file order (kind, flags, offset, length, XXH64,
//! SHA-256). A verifier checks each section's SHA-256 against its entry and
//! that every byte of `0..L` outside the sections is zero, so the signature
//! covers every byte before it; the trailer after it is checksummed and
//! re-derivable from the entries. Ed25519 is deterministic, so signing the
//! same image with the same key writes the same bytes.
//!
//! # Keys (text, one line each)
//!
//! * public: `smolvm-ed25519 <64 hex digits>[ comment]` (`KEY.pub`; a trust
//!   policy file is such lines, plus blank lines and `#` comments);
//! * secret: `smolvm-ed25519-secret <64 hex digits of the seed>`.

use crate::image::{encode_entry, Image, ImageError, Kind, ENTRY_LEN, MAX_SECTIONS, SIGNATURE_LEN};

pub const MAGIC: [u8; 8] = *b"SMOLSIG1";
pub const ALG_ED25519: u32 = 1;
/// Length of the `Signature` section.
pub const LEN: usize = SIGNATURE_LEN;
/// Domain separation: this signature means "a smolvm image", nothing else.
pub const DOMAIN: [u8; 32] = *b"smolvm image signature, v1\0\0\0\0\0\0";
/// Upper bound of [`message`]'s length.
pub const MAX_MESSAGE_LEN: usize = 32 + 8 + MAX_SECTIONS * ENTRY_LEN;
/// Bytes every stub that enforces trust policies carries, so `smolvm sign`
/// can refuse images whose stub would not even run a signed image.
pub const STUB_MARK: &[u8; 24] = b"smolvm-trust-policy-v1\0\0";
pub const PUBLIC_PREFIX: &[u8] = b"smolvm-ed25519 ";
pub const SECRET_PREFIX: &[u8] = b"smolvm-ed25519-secret ";
/// Where a host's trust policy lives unless `SMOLVM_TRUST` names another.
pub const POLICY_PATH: &str = "/etc/smolvm/trust";

/// A parsed `Signature` section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature {
    pub public_key: [u8; 32],
    pub signature: [u8; 64],
}

impl Signature {
    /// Validates the section's bytes (any other length, magic, algorithm or
    /// reserved value is refused).
    pub fn parse(b: &[u8]) -> Option<Signature> {
        let b: &[u8; LEN] = b.try_into().ok()?;
        if b[..8] != MAGIC || b[8..12] != ALG_ED25519.to_le_bytes() || b[12..16] != [0; 4] {
            return None;
        }
        let mut s = Signature { public_key: [0; 32], signature: [0; 64] };
        s.public_key.copy_from_slice(&b[16..48]);
        s.signature.copy_from_slice(&b[48..112]);
        Some(s)
    }

    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&ALG_ED25519.to_le_bytes());
        b[16..48].copy_from_slice(&self.public_key);
        b[48..112].copy_from_slice(&self.signature);
        b
    }
}

/// The signed bytes for `image`: its sections other than `Signature`,
/// covering the file up to `signed_len` (the signature section's offset).
/// `None` if a section reaches past `signed_len`.
pub fn message<'b>(image: &Image, signed_len: u64, buf: &'b mut [u8; MAX_MESSAGE_LEN]) -> Option<&'b [u8]> {
    buf[..32].copy_from_slice(&DOMAIN);
    buf[32..40].copy_from_slice(&signed_len.to_le_bytes());
    let mut n = 40;
    for s in image.sections().iter().filter(|s| s.kind != Kind::Signature) {
        if s.end() > signed_len {
            return None;
        }
        buf.get_mut(n..n + ENTRY_LEN)?.copy_from_slice(&encode_entry(s));
        n += ENTRY_LEN;
    }
    buf.get(..n)
}

/// Where the signed prefix ends: the signature section's offset, or the
/// trailer's for an unsigned image.
pub fn signed_len(image: &Image) -> Result<u64, ImageError> {
    match image.section(Kind::Signature) {
        Some(s) => Ok(s.offset),
        None => crate::image::trailer_offset(image.file_len()),
    }
}

fn hex_nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// 64 hex digits after `prefix`, then the end or whitespace and a comment.
fn key_after(line: &[u8], prefix: &[u8]) -> Option<[u8; 32]> {
    let rest = line.strip_prefix(prefix)?;
    let (digits, tail) = rest.split_at_checked(64)?;
    if tail.first().is_some_and(|c| !c.is_ascii_whitespace()) {
        return None;
    }
    let mut key = [0u8; 32];
    for (k, pair) in key.iter_mut().zip(digits.chunks_exact(2)) {
        *k = hex_nibble(pair[0])? << 4 | hex_nibble(pair[1])?;
    }
    Some(key)
}

/// One line of a public key file or trust policy: `Ok(None)` for a blank or
/// `#` comment line, `Err(())` for anything malformed.
#[allow(clippy::result_unit_err)]
pub fn parse_public_line(line: &[u8]) -> Result<Option<[u8; 32]>, ()> {
    let line = line.trim_ascii();
    if line.is_empty() || line[0] == b'#' {
        return Ok(None);
    }
    key_after(line, PUBLIC_PREFIX).map(Some).ok_or(())
}

/// The seed in a secret key line.
pub fn parse_secret_line(line: &[u8]) -> Option<[u8; 32]> {
    key_after(line.trim_ascii(), SECRET_PREFIX)
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn section_round_trips_and_refuses_variants() {
        let s = Signature { public_key: [7; 32], signature: [9; 64] };
        let b = s.encode();
        assert_eq!(Signature::parse(&b), Some(s));
        for at in [0, 8, 12, 15] {
            let mut bad = b;
            bad[at] ^= 1;
            assert_eq!(Signature::parse(&bad), None, "byte {at}");
        }
        assert_eq!(Signature::parse(&b[..111]), None);
    }

    #[test]
    fn key_lines() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let want = {
            let mut k = [0u8; 32];
            for (i, k) in k.iter_mut().enumerate() {
                *k = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex");
            }
            k
        };
        let line = std::format!("smolvm-ed25519 {hex} builder@ci");
        assert_eq!(parse_public_line(line.as_bytes()), Ok(Some(want)));
        assert_eq!(parse_public_line(std::format!("  smolvm-ed25519 {hex}\r").as_bytes()), Ok(Some(want)));
        assert_eq!(parse_public_line(b"   "), Ok(None));
        assert_eq!(parse_public_line(b"# a comment"), Ok(None));
        assert_eq!(parse_public_line(std::format!("smolvm-ed25519 {hex}0").as_bytes()), Err(()));
        assert_eq!(parse_public_line(std::format!("smolvm-ed25519 {}", &hex[1..]).as_bytes()), Err(()));
        assert_eq!(parse_public_line(std::format!("ssh-ed25519 {hex}").as_bytes()), Err(()));
        assert_eq!(parse_public_line(std::format!("smolvm-ed25519 {}g", &hex[..63]).as_bytes()), Err(()));
        assert_eq!(parse_secret_line(std::format!("smolvm-ed25519-secret {hex}\n").as_bytes()), Some(want));
        assert_eq!(parse_secret_line(line.as_bytes()), None);
    }
}
