//! Config record parser (image manifest, runtime config) on hostile input:
//! never panics, and whatever it accepts the writer reproduces byte for byte.
#![no_main]
use libfuzzer_sys::fuzz_target;
use linker::config::{parse, Writer, MAX_CONFIG_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(records) = parse(data) else { return };
    let mut buf = vec![0u8; MAX_CONFIG_LEN];
    let mut w = Writer::new(&mut buf).expect("magic fits");
    for r in records {
        let Ok(r) = r else { return };
        let fields: Vec<&[u8]> = (0..r.key.arity()).map(|i| r.field(i)).collect();
        w.push(r.key, &fields)
            .expect("a parsed record can be written back");
    }
    assert_eq!(w.as_bytes(), data);
});
