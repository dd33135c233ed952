//! XXH64 (seed 0): the image's fast digest. Cheap enough for the stub to
//! check the sections it reads on every start, strong enough to catch
//! corruption (not tampering: `smolvm verify` checks SHA-256 for that).
//! Streaming, `no_std`, no allocation; matches the reference implementation.

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

// The stub is built with opt-level "z": without `inline(always)` the hot
// loop calls these and runs ~4x slower.
#[inline(always)]
fn round(acc: u64, lane: u64) -> u64 {
    acc.wrapping_add(lane.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn merge(acc: u64, v: u64) -> u64 {
    (acc ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4)
}

/// Incremental XXH64 state: feed any split of the input, same result.
#[derive(Clone, Copy)]
pub struct Xxh64 {
    v: [u64; 4],
    total: u64,
    buf: [u8; 32],
    buf_len: usize,
}

impl Default for Xxh64 {
    fn default() -> Self {
        Self::new()
    }
}

impl Xxh64 {
    pub const fn new() -> Self {
        Xxh64 {
            v: [P1.wrapping_add(P2), P2, 0, 0u64.wrapping_sub(P1)],
            total: 0,
            buf: [0; 32],
            buf_len: 0,
        }
    }

    #[inline(always)]
    fn stripe(&mut self, s: &[u8; 32]) {
        let lane = |i: usize| {
            u64::from_le_bytes([
                s[i],
                s[i + 1],
                s[i + 2],
                s[i + 3],
                s[i + 4],
                s[i + 5],
                s[i + 6],
                s[i + 7],
            ])
        };
        self.v[0] = round(self.v[0], lane(0));
        self.v[1] = round(self.v[1], lane(8));
        self.v[2] = round(self.v[2], lane(16));
        self.v[3] = round(self.v[3], lane(24));
    }

    pub fn update(&mut self, mut data: &[u8]) {
        // usize -> u64 is lossless on every supported target.
        self.total = self.total.wrapping_add(data.len() as u64);
        if self.buf_len > 0 {
            let take = (32 - self.buf_len).min(data.len());
            self.buf[self.buf_len..self.buf_len + take].copy_from_slice(&data[..take]);
            self.buf_len += take;
            data = &data[take..];
            if self.buf_len < 32 {
                return;
            }
            let buf = self.buf;
            self.stripe(&buf);
            self.buf_len = 0;
        }
        let mut chunks = data.chunks_exact(32);
        for s in &mut chunks {
            if let Ok(s) = <&[u8; 32]>::try_from(s) {
                self.stripe(s);
            }
        }
        let rest = chunks.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buf_len = rest.len();
    }

    pub fn finish(&self) -> u64 {
        self.finish_with(self.buf.get(..self.buf_len).unwrap_or(&[]))
    }

    /// The digest, given the bytes past the last whole stripe.
    fn finish_with(&self, mut tail: &[u8]) -> u64 {
        let [v1, v2, v3, v4] = self.v;
        let mut h = if self.total >= 32 {
            let h = v1
                .rotate_left(1)
                .wrapping_add(v2.rotate_left(7))
                .wrapping_add(v3.rotate_left(12))
                .wrapping_add(v4.rotate_left(18));
            merge(merge(merge(merge(h, v1), v2), v3), v4)
        } else {
            v3.wrapping_add(P5)
        };
        h = h.wrapping_add(self.total);
        while let Some((b, rest)) = tail.split_first_chunk::<8>() {
            h = (h ^ round(0, u64::from_le_bytes(*b)))
                .rotate_left(27)
                .wrapping_mul(P1)
                .wrapping_add(P4);
            tail = rest;
        }
        if let Some((b, rest)) = tail.split_first_chunk::<4>() {
            h = (h ^ u64::from(u32::from_le_bytes(*b)).wrapping_mul(P1))
                .rotate_left(23)
                .wrapping_mul(P2)
                .wrapping_add(P3);
            tail = rest;
        }
        for &b in tail {
            h = (h ^ u64::from(b).wrapping_mul(P5))
                .rotate_left(11)
                .wrapping_mul(P1);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(P2);
        h ^= h >> 29;
        h = h.wrapping_mul(P3);
        h ^ (h >> 32)
    }
}

/// XXH64 of one buffer (no staging buffer: the stub's copy stays small).
pub fn xxh64(data: &[u8]) -> u64 {
    let mut s = Xxh64::new();
    s.total = data.len() as u64;
    let mut chunks = data.chunks_exact(32);
    for c in &mut chunks {
        if let Ok(c) = <&[u8; 32]>::try_from(c) {
            s.stripe(c);
        }
    }
    s.finish_with(chunks.remainder())
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    fn samples() -> [(std::vec::Vec<u8>, u64); 5] {
        let mut long = std::vec::Vec::new();
        for _ in 0..5 {
            long.extend(0..=255u8);
        }
        let mut mid = b"0123456789abcdef".repeat(4);
        mid.extend_from_slice(b"xyz");
        // Reference values from the `xxhash` Python package (xxh64, seed 0).
        [
            (b"".to_vec(), 0xef46_db37_51d8_e999),
            (b"a".to_vec(), 0xd24e_c4f1_a98c_6e5b),
            (b"abc".to_vec(), 0x44bc_2cf5_ad77_0999),
            (mid, 0x98ad_8ff4_ba17_6c8f),
            (long, 0xafc1_84ad_7938_a354),
        ]
    }

    #[test]
    fn matches_reference_values() {
        for (data, want) in samples() {
            assert_eq!(xxh64(&data), want, "len {}", data.len());
        }
    }

    #[test]
    fn any_split_gives_the_same_digest() {
        for (data, want) in samples() {
            for split in 0..=data.len() {
                let mut s = Xxh64::new();
                s.update(&data[..split]);
                s.update(&data[split..]);
                assert_eq!(s.finish(), want);
            }
            let mut s = Xxh64::new();
            data.chunks(7).for_each(|c| s.update(c));
            assert_eq!(s.finish(), want);
        }
    }
}
