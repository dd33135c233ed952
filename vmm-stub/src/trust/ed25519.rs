//! Ed25519 signature verification (RFC 8032), written for size: the field
//! and group arithmetic of TweetNaCl (public domain; 16 limbs of 16 bits in
//! i64, bounds as proven there), verification only, no tables. Not constant
//! time, which verification of public data does not need. Measured in the
//! stub: this verifier with a SHA-512 costs 6,680 B, ed25519-compact's
//! verify 52,744 B, ed25519-dalek's no_std verify_strict 57,728 B; its speed
//! (about 34 M instructions, a few ms) is small next to hashing the image.
//! The SHA-512 of `R || A || message` is the caller's (the kernel's).
//!
//! Checked against RFC 8032's test vectors and, property-wise, against
//! ed25519-dalek's `verify_strict` (the builder's crate) in the tests below.
//! Like `verify_strict` it refuses non-canonical `S`; unlike it, it accepts
//! small-order keys, which only a trust policy could list.
//!
//! Limb arithmetic wraps explicitly: the stub keeps overflow checks on, and
//! TweetNaCl's bounds keep every value far inside i64.

type Gf = [i64; 16];
type Point = [Gf; 4];

const GF0: Gf = [0; 16];
const GF1: Gf = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const D: [u16; 16] = [
    0x78a3, 0x1359, 0x4dca, 0x75eb, 0xd8ab, 0x4141, 0x0a4d, 0x0070, 0xe898, 0x7779, 0x4079, 0x8cc7, 0xfe73, 0x2b6f, 0x6cee,
    0x5203,
];
const D2: [u16; 16] = [
    0xf159, 0x26b2, 0x9b94, 0xebd6, 0xb156, 0x8283, 0x149a, 0x00e0, 0xd130, 0xeef3, 0x80f2, 0x198e, 0xfce7, 0x56df, 0xd9dc,
    0x2406,
];
const BX: [u16; 16] = [
    0xd51a, 0x8f25, 0x2d60, 0xc956, 0xa7b2, 0x9525, 0xc760, 0x692c, 0xdc5c, 0xfdd6, 0xe231, 0xc0a4, 0x53fe, 0xcd6e, 0x36d3,
    0x2169,
];
const BY: [u16; 16] = [
    0x6658, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666,
    0x6666,
];
/// sqrt(-1) mod p.
const SQRT_M1: [u16; 16] = [
    0xa0b0, 0x4a0e, 0x1b27, 0xc4ee, 0xe478, 0xad2f, 0x1806, 0x2f43, 0xd7a7, 0x3dfb, 0x0099, 0x2b4d, 0xdf0b, 0x4fc1, 0x2480,
    0x2b83,
];
/// The group order L, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0x10,
];

/// Constants are kept as 16-bit limbs (a quarter of the bytes) and widened on use.
fn gf(c: &[u16; 16]) -> Gf {
    let mut o = GF0;
    for (x, &v) in o.iter_mut().zip(c) {
        *x = i64::from(v);
    }
    o
}

fn carry(o: &mut Gf) {
    for i in 0..16 {
        o[i] = o[i].wrapping_add(1 << 16);
        let c = o[i] >> 16;
        let c1 = c.wrapping_sub(1);
        if i < 15 {
            o[i + 1] = o[i + 1].wrapping_add(c1);
        } else {
            o[0] = o[0].wrapping_add(c1.wrapping_mul(38));
        }
        o[i] = o[i].wrapping_sub(c << 16);
    }
}

fn pack_gf(n: &Gf) -> [u8; 32] {
    let mut t = *n;
    carry(&mut t);
    carry(&mut t);
    carry(&mut t);
    let mut m = GF0;
    for _ in 0..2 {
        m[0] = t[0].wrapping_sub(0xffed);
        for i in 1..15 {
            m[i] = t[i].wrapping_sub(0xffff).wrapping_sub((m[i - 1] >> 16) & 1);
            m[i - 1] &= 0xffff;
        }
        m[15] = t[15].wrapping_sub(0x7fff).wrapping_sub((m[14] >> 16) & 1);
        let b = (m[15] >> 16) & 1;
        m[14] &= 0xffff;
        // No borrow out of the top: t - p is the smaller representative.
        if b == 0 {
            t = m;
        }
    }
    let mut o = [0u8; 32];
    for (i, v) in t.iter().enumerate() {
        // Limbs are 16-bit after the carries: the casts keep their bytes.
        o[2 * i] = *v as u8;
        o[2 * i + 1] = (*v >> 8) as u8;
    }
    o
}

fn parity(a: &Gf) -> u8 {
    pack_gf(a)[0] & 1
}

fn unpack_gf(n: &[u8; 32]) -> Gf {
    let mut o = GF0;
    for (i, v) in o.iter_mut().enumerate() {
        *v = i64::from(n[2 * i]) | i64::from(n[2 * i + 1]) << 8;
    }
    o[15] &= 0x7fff;
    o
}

fn add(a: &Gf, b: &Gf) -> Gf {
    let mut o = GF0;
    for i in 0..16 {
        o[i] = a[i].wrapping_add(b[i]);
    }
    o
}

fn sub(a: &Gf, b: &Gf) -> Gf {
    let mut o = GF0;
    for i in 0..16 {
        o[i] = a[i].wrapping_sub(b[i]);
    }
    o
}

fn mul(a: &Gf, b: &Gf) -> Gf {
    let mut t = [0i64; 31];
    for i in 0..16 {
        for j in 0..16 {
            t[i + j] = t[i + j].wrapping_add(a[i].wrapping_mul(b[j]));
        }
    }
    for i in 0..15 {
        t[i] = t[i].wrapping_add(t[i + 16].wrapping_mul(38));
    }
    let mut o = GF0;
    o.copy_from_slice(&t[..16]);
    carry(&mut o);
    carry(&mut o);
    o
}

fn square(a: &Gf) -> Gf {
    mul(a, a)
}

/// `a` to the power whose bits `top..=0` are all 1 except those set in
/// `zeros` (bits 0..8): square and multiply, one pass for both exponents below.
fn pow(a: &Gf, top: u32, zeros: u8) -> Gf {
    let mut c = *a;
    for i in (0..=top).rev() {
        c = square(&c);
        if i >= 8 || zeros >> i & 1 == 0 {
            c = mul(&c, a);
        }
    }
    c
}

/// a^(2^255 - 21) = 1/a (254 more ones after the leading one, zeros at bits 2 and 4).
fn invert(a: &Gf) -> Gf {
    pow(a, 253, 0b10100)
}

/// a^((p - 5) / 8) = a^(2^252 - 3), for the square root in point decoding.
fn pow2523(a: &Gf) -> Gf {
    pow(a, 250, 0b10)
}

fn point_add(p: &mut Point, q: &Point) {
    let a = mul(&sub(&p[1], &p[0]), &sub(&q[1], &q[0]));
    let b = mul(&add(&p[0], &p[1]), &add(&q[0], &q[1]));
    let c = mul(&mul(&p[3], &q[3]), &gf(&D2));
    let d = mul(&p[2], &q[2]);
    let d = add(&d, &d);
    let (e, f, g, h) = (sub(&b, &a), sub(&d, &c), add(&d, &c), add(&b, &a));
    *p = [mul(&e, &f), mul(&h, &g), mul(&g, &f), mul(&e, &h)];
}

fn pack_point(p: &Point) -> [u8; 32] {
    let zi = invert(&p[2]);
    let (x, y) = (mul(&p[0], &zi), mul(&p[1], &zi));
    let mut r = pack_gf(&y);
    r[31] ^= parity(&x) << 7;
    r
}

/// a·qa + b·qb for 256-bit little-endian scalars, in one double-and-add
/// pass (Straus). Not constant time: the scalars and points are public.
fn double_scalar_mul(a: &[u8; 32], qa: &Point, b: &[u8; 32], qb: &Point) -> Point {
    let mut p: Point = [GF0, GF1, GF1, GF0];
    for i in (0..256).rev() {
        let pp = p;
        point_add(&mut p, &pp);
        for (s, q) in [(a, qa), (b, qb)] {
            if (s[i / 8] >> (i & 7)) & 1 == 1 {
                point_add(&mut p, q);
            }
        }
    }
    p
}

/// The negation of the point encoded in `bytes`, or `None` if it is not on the curve.
fn decode_negated(bytes: &[u8; 32]) -> Option<Point> {
    let y = unpack_gf(bytes);
    let num = square(&y);
    let den = mul(&num, &gf(&D));
    let num = sub(&num, &GF1);
    let den = add(&GF1, &den);
    let den2 = square(&den);
    let den4 = square(&den2);
    let den6 = mul(&den4, &den2);
    let t = mul(&mul(&den6, &num), &den);
    let t = mul(&mul(&pow2523(&t), &num), &den);
    let mut x = mul(&mul(&t, &den), &den);
    // `x` squared times `den` must be `num` (after fixing the root's sign).
    let fits = |x: &Gf| pack_gf(&mul(&square(x), &den)) == pack_gf(&num);
    if !fits(&x) {
        x = mul(&x, &gf(&SQRT_M1));
    }
    if !fits(&x) {
        return None;
    }
    if parity(&x) == bytes[31] >> 7 {
        x = sub(&GF0, &x);
    }
    Some([x, y, GF1, mul(&x, &y)])
}

/// `x` (a 512-bit little-endian number in 64 byte-sized limbs) mod L.
fn mod_l(x: &mut [i64; 64]) -> [u8; 32] {
    // From the top limb down: subtract x[i]·16·L·2^(8(i-32)) (the top term
    // of 16·L is 2^256, so x[i] drops out) from x[i-32..i-12], carrying;
    // L's bytes 20..31 below its top are zero. Slices and zips rather than
    // computed indices: no bounds-check panics.
    for i in (32..64).rev() {
        let (low, high) = x.split_at_mut(i);
        let (Some(xi), Some(window)) = (high.first_mut(), low.get_mut(i - 32..=i - 12)) else { continue };
        let Some((last, fold)) = window.split_last_mut() else { continue };
        let mut c = 0i64;
        for (xj, &lj) in fold.iter_mut().zip(&L) {
            *xj = xj.wrapping_add(c.wrapping_sub(16i64.wrapping_mul(*xi).wrapping_mul(i64::from(lj))));
            c = xj.wrapping_add(128) >> 8;
            *xj = xj.wrapping_sub(c << 8);
        }
        *last = last.wrapping_add(c);
        *xi = 0;
    }
    // x[31]'s top bits, then the carry out of byte 31, times L.
    let top = x[31] >> 4;
    let mut c = 0i64;
    for (xj, &lj) in x.iter_mut().zip(&L) {
        *xj = xj.wrapping_add(c.wrapping_sub(top.wrapping_mul(i64::from(lj))));
        c = *xj >> 8;
        *xj &= 255;
    }
    for (xj, &lj) in x.iter_mut().zip(&L) {
        *xj = xj.wrapping_sub(c.wrapping_mul(i64::from(lj)));
    }
    let mut r = [0u8; 32];
    for i in 0..32 {
        x[i + 1] = x[i + 1].wrapping_add(x[i] >> 8);
        // Masked to a byte.
        r[i] = (x[i] & 255) as u8;
    }
    r
}

/// `s < L`, both little-endian.
fn is_canonical(s: &[u8]) -> bool {
    for i in (0..32).rev() {
        if s[i] != L[i] {
            return s[i] < L[i];
        }
    }
    false
}

/// Whether `sig` (`R || S`) is a valid Ed25519 signature by `public_key`
/// of the message whose challenge is `h` = SHA-512(`R || A || message`),
/// hashed by the caller (the host kernel's SHA-512 in the stub).
pub fn verify(public_key: &[u8; 32], sig: &[u8; 64], h: &[u8; 64]) -> bool {
    let Some(neg_a) = decode_negated(public_key) else { return false };
    let (r, s) = sig.split_at(32);
    if !is_canonical(s) {
        return false;
    }
    let mut wide = [0i64; 64];
    for (x, &b) in wide.iter_mut().zip(h) {
        *x = i64::from(b);
    }
    let k = mod_l(&mut wide);
    let mut s32 = [0u8; 32];
    s32.copy_from_slice(s);
    // [S]B - [k]A must encode to R.
    let (bx, by) = (gf(&BX), gf(&BY));
    let base: Point = [bx, by, GF1, mul(&bx, &by)];
    pack_point(&double_scalar_mul(&s32, &base, &k, &neg_a)) == r
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey, Verifier};
    use sha2::Digest;

    /// The stub's use: the challenge hash of `R || A || msg`, then the check.
    fn verify(pk: &[u8; 32], sig: &[u8; 64], msg: &[u8]) -> bool {
        let h: [u8; 64] = sha2::Sha512::new().chain_update(&sig[..32]).chain_update(pk).chain_update(msg).finalize().into();
        super::verify(pk, sig, &h)
    }

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        let v: Vec<u8> = (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect();
        v.try_into().expect("length")
    }

    /// RFC 8032 section 7.1, tests 1, 2, 3 and SHA(abc).
    #[test]
    fn rfc8032_vectors() {
        let cases: [(&str, &str, &str); 4] = [
            (
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                "72",
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
            (
                "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
                "af82",
                "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
            ),
            (
                "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
                "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
            ),
        ];
        for (pk, msg, sig) in cases {
            let (pk, sig) = (unhex::<32>(pk), unhex::<64>(sig));
            let msg: Vec<u8> = (0..msg.len()).step_by(2).map(|i| u8::from_str_radix(&msg[i..i + 2], 16).expect("hex")).collect();
            assert!(verify(&pk, &sig, &msg));
            let mut bad = sig;
            bad[63] ^= 0x01;
            assert!(!verify(&pk, &bad, &msg));
        }
    }

    /// A small deterministic generator, so failures reproduce.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Property: on random keys, messages and single-bit or byte mutations
    /// of key, signature or message, this verifier and ed25519-dalek agree.
    #[test]
    fn agrees_with_ed25519_dalek() {
        let mut st = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..48 {
            let mut seed = [0u8; 32];
            seed.iter_mut().for_each(|b| *b = next(&mut st) as u8);
            let key = SigningKey::from_bytes(&seed);
            let pk = key.verifying_key().to_bytes();
            let len = (next(&mut st) % linker::signature::MAX_MESSAGE_LEN as u64) as usize;
            let msg: Vec<u8> = (0..len).map(|_| next(&mut st) as u8).collect();
            let sig = key.sign(&msg).to_bytes();
            assert!(verify(&pk, &sig, &msg), "round {round}: valid signature refused");
            for _ in 0..4 {
                let (mut pk2, mut sig2, mut msg2) = (pk, sig, msg.clone());
                let what = next(&mut st) % 3;
                let r = next(&mut st);
                match what {
                    0 => pk2[(r % 32) as usize] ^= 1 << (r >> 8) % 8,
                    1 => sig2[(r % 64) as usize] ^= 1 << (r >> 8) % 8,
                    _ if !msg2.is_empty() => {
                        let i = (r as usize) % msg2.len();
                        msg2[i] = msg2[i].wrapping_add(1 + (r >> 8) as u8 % 255);
                    }
                    _ => msg2.push(0),
                }
                let theirs = ed25519_dalek::VerifyingKey::from_bytes(&pk2)
                    .map(|k| k.verify(&msg2, &ed25519_dalek::Signature::from_bytes(&sig2)).is_ok())
                    .unwrap_or(false);
                assert_eq!(verify(&pk2, &sig2, &msg2), theirs, "round {round}, mutation {what}");
            }
        }
    }

    #[test]
    fn non_canonical_s_is_refused() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let pk = key.verifying_key().to_bytes();
        let mut sig = key.sign(b"m").to_bytes();
        // S + L is the same scalar, but not the canonical encoding.
        let mut c = 0u16;
        for i in 0..32 {
            let v = u16::from(sig[32 + i]) + u16::from(super::L[i]) + c;
            sig[32 + i] = v as u8;
            c = v >> 8;
        }
        assert!(!verify(&pk, &sig, b"m"));
    }
}
