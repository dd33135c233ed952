//! Warm image sections on hostile input (`linker::warm`). Input: mode byte,
//! then the section bytes. Mode bit 0: parse as a memory section (guest RAM
//! size and section length from the next 16 bytes), else as a machine state.
//! Whatever is accepted respects every invariant the stub relies on.
#![no_main]
use libfuzzer_sys::fuzz_target;
use linker::warm::{self, MachineState, MemoryRuns, PAGE};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let Ok(s) = MachineState::parse(rest) else { return };
        assert_eq!(s.layout.len(), rest.len());
        assert_eq!(Ok(s.layout), warm::Layout::parse_header(&s.layout.header()));
        for i in 0..s.layout.vcpus {
            let v = s.vcpu(i);
            assert_eq!(v.xsave.len(), s.layout.xsave_len as usize);
            for j in 0..s.layout.msr_count as usize {
                let (index, _) = v.msr(j).expect("in range");
                assert!(warm::SAVED_MSRS.contains(&index));
            }
        }
        for i in 0..s.layout.device_count {
            let d = s.device(i).expect("validated");
            assert_eq!(warm::Device::parse(&d.encode(), s.layout.mem_size), Ok(d));
            for q in d.queues.iter().filter(|q| q.ready()) {
                assert!(warm::ram_contains(s.layout.mem_size, q.desc, 16 * u64::from(q.size)));
            }
        }
        return;
    }
    let Some((sizes, head)) = rest.split_first_chunk::<16>() else { return };
    let mem_size = u64::from_le_bytes(sizes[..8].try_into().expect("8"));
    let section_len = u64::from_le_bytes(sizes[8..].try_into().expect("8"));
    let Ok(m) = MemoryRuns::parse(head, section_len, mem_size) else { return };
    let mut prev_end = 0u64;
    let mut data_end = warm::memory_data_start(m.count() as u32);
    for r in m.iter() {
        assert!(r.gpa % PAGE == 0 && r.offset % PAGE == 0 && r.pages > 0);
        assert!(warm::ram_contains(mem_size, r.gpa, r.len()));
        assert!(r.gpa >= prev_end && r.offset >= data_end);
        prev_end = r.gpa + r.len();
        data_end = r.offset + r.len();
    }
    assert_eq!(data_end, section_len);
});
