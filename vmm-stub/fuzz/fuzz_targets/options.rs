//! Arbitrary command lines and environments (NUL-separated; a 0xff byte
//! splits arguments from environment) to the option parser: never panics,
//! and never consumes more arguments than it was given.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vmm_stub::options::Options;

fuzz_target!(|data: &[u8]| {
    let (args, env) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let n = args.split(|&b| b == 0).count();
    if let Ok(o) = Options::parse(args.split(|&b| b == 0), env.split(|&b| b == 0)) {
        assert!(o.consumed <= n);
        assert!(o.mem_mib.is_none_or(|m| m > 0));
    }
});
