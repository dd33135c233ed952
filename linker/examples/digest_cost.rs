//! Measures the digests' cost per MiB (what the stub pays to check the
//! sections it reads on every start). Run with the size-tuned release
//! profile the stub uses: `cargo run --release -p linker --example digest_cost`.
use linker::sha256::sha256;
use linker::xxh64::xxh64;
use std::hint::black_box;
use std::time::Instant;

fn per_mib(name: &str, data: &[u8], rounds: u32, f: impl Fn(&[u8]) -> u64) {
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        black_box(f(black_box(data)));
        best = best.min(t.elapsed().as_secs_f64());
    }
    let mib = data.len() as f64 / (1 << 20) as f64;
    println!(
        "{name:<8} {:>8.1} µs/MiB  {:>7.0} MiB/s  (best of {rounds}, {mib:.0} MiB)",
        best / mib * 1e6,
        mib / best
    );
}

fn main() {
    let data: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    per_mib("xxh64", &data, 10, xxh64);
    per_mib("sha256", &data[..16 << 20], 3, |d| u64::from(sha256(d)[0]));
}
