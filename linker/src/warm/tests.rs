use super::*;
use std::vec::Vec;

const MIB: u64 = 1 << 20;

fn layout() -> Layout {
    Layout {
        vcpus: 2,
        mem_size: 64 * MIB,
        xsave_len: 4096,
        cpuid_count: 3,
        xsave_features: 0x7,
        msr_count: 3,
        device_count: 2,
        tsc_khz: 2_000_000,
    }
}

fn ready_queue(base: u64) -> QueueState {
    QueueState {
        desc: base,
        avail: base + 0x1000,
        used: base + 0x2000,
        size: 256,
        flags: QUEUE_READY,
        next_avail: 7,
        next_used: 7,
    }
}

fn device(slot: u32) -> Device {
    let mut queues = [QueueState::default(); MAX_QUEUES];
    queues[0] = ready_queue(0x10_0000);
    queues[1] = QueueState { size: 128, ..QueueState::default() };
    Device {
        slot,
        device_id: 3,
        status: 0x0f,
        interrupt_status: 1,
        driver_features: 1 << 32,
        config_generation: 0,
        queue_sel: 1,
        device_features_sel: 0,
        driver_features_sel: 1,
        nqueues: 2,
        private: [0; DEVICE_PRIVATE_LEN],
        queues,
    }
}

/// A valid state section: every part filled with a recognizable byte.
fn state(l: &Layout) -> Vec<u8> {
    let mut b = std::vec![0xa5u8; l.len()];
    b[..STATE_HEADER_LEN].copy_from_slice(&l.header());
    for i in 0..l.vcpus {
        let at = l.vcpu_at(i);
        b[at + vcpu_at::MP_STATE..at + vcpu_at::MP_STATE + 8].copy_from_slice(&[0; 8]);
        b[at + vcpu_at::XCRS..at + vcpu_at::XCRS + 4].copy_from_slice(&1u32.to_le_bytes());
        for j in 0..l.msr_count as usize {
            let e = at + vcpu_at::MSRS + j * MSR_LEN;
            b[e..e + 4].copy_from_slice(&SAVED_MSRS[j].to_le_bytes());
            b[e + 4..e + 8].copy_from_slice(&[0; 4]);
        }
    }
    for i in 0..l.device_count {
        let at = l.device_at(i);
        b[at..at + DEVICE_LEN].copy_from_slice(&device(i * 3).encode());
    }
    b
}

#[test]
fn a_valid_state_round_trips() {
    let l = layout();
    let b = state(&l);
    let s = MachineState::parse(&b).expect("valid");
    assert_eq!(s.layout, l);
    assert_eq!(s.vcpu(1).msr(2), Some((SAVED_MSRS[2], 0xa5a5_a5a5_a5a5_a5a5)));
    assert_eq!(s.vcpu(0).xsave.len(), 4096);
    assert_eq!(s.vcpu(1).lapic.len(), LAPIC_LEN);
    assert_eq!(s.cpuid().len(), 3 * CPUID_ENTRY_LEN);
    assert_eq!(s.device(1), Some(device(3)));
    assert_eq!(s.device(2), None);
    assert_eq!(s.pit().len(), PIT_LEN);
}

fn parse_edit(edit: impl FnOnce(&Layout, &mut Vec<u8>)) -> Result<(), WarmError> {
    let l = layout();
    let mut b = state(&l);
    edit(&l, &mut b);
    MachineState::parse(&b).map(drop)
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn hostile_states_are_refused() {
    use WarmError::*;
    assert_eq!(parse_edit(|_, b| b[0] ^= 1), Err(BadMagic));
    assert_eq!(parse_edit(|_, b| put32(b, 8, 2)), Err(UnsupportedVersion(2)));
    assert_eq!(parse_edit(|_, b| b[60] = 1), Err(BadReserved));
    assert_eq!(parse_edit(|_, b| put32(b, 12, 0)), Err(BadCount));
    assert_eq!(parse_edit(|_, b| put32(b, 12, 65)), Err(BadCount));
    assert_eq!(parse_edit(|_, b| put32(b, 12, u32::MAX)), Err(BadCount));
    assert_eq!(parse_edit(|_, b| put32(b, 28, MAX_CPUID + 1)), Err(BadCount));
    assert_eq!(parse_edit(|_, b| put32(b, 40, MAX_MSRS + 1)), Err(BadCount));
    assert_eq!(parse_edit(|_, b| put32(b, 44, 17)), Err(BadCount));
    assert_eq!(parse_edit(|_, b| put32(b, 24, 4095)), Err(BadXsave));
    assert_eq!(parse_edit(|_, b| put32(b, 24, 4096 + 8)), Err(BadXsave));
    assert_eq!(parse_edit(|_, b| put32(b, 24, u32::MAX & !63)), Err(BadXsave));
    assert_eq!(parse_edit(|_, b| b[16] = 1), Err(BadMemSize));
    assert_eq!(parse_edit(|_, b| b[16..24].fill(0)), Err(BadMemSize));
    // The length must be exact.
    assert_eq!(parse_edit(|_, b| { b.pop(); }), Err(BadLength));
    assert_eq!(parse_edit(|_, b| b.push(0)), Err(BadLength));
    assert_eq!(parse_edit(|_, b| b.truncate(10)), Err(BadLength));
    assert_eq!(parse_edit(|_, b| put32(b, 28, 4)), Err(BadLength));
    // MSRs: only the allow-listed ones, in order, reserved zero.
    let msr = |l: &Layout, j: usize| l.vcpu_at(1) + vcpu_at::MSRS + j * MSR_LEN;
    assert_eq!(parse_edit(|l, b| put32(b, msr(l, 1), 0x1b)), Err(BadMsr)); // APIC_BASE
    assert_eq!(parse_edit(|l, b| put32(b, msr(l, 1), 0x10)), Err(BadMsr)); // repeated
    assert_eq!(parse_edit(|l, b| put32(b, msr(l, 2) + 4, 1)), Err(BadMsr));
    let vcpu = |l: &Layout, at: usize| l.vcpu_at(0) + at;
    assert_eq!(parse_edit(|l, b| put32(b, vcpu(l, vcpu_at::MP_STATE), 10)), Err(BadVcpuField));
    assert_eq!(parse_edit(|l, b| put32(b, vcpu(l, vcpu_at::MP_STATE) + 4, 1)), Err(BadVcpuField));
    assert_eq!(parse_edit(|l, b| put32(b, vcpu(l, vcpu_at::XCRS), 17)), Err(BadVcpuField));
}

fn parse_device(edit: impl FnOnce(&mut Device)) -> Result<Device, WarmError> {
    let mut d = device(3);
    edit(&mut d);
    Device::parse(&d.encode(), 64 * MIB)
}

#[test]
fn hostile_devices_are_refused() {
    use WarmError::*;
    assert_eq!(parse_device(|_| {}), Ok(device(3)));
    assert_eq!(parse_device(|d| d.slot = 16), Err(BadDevice));
    assert_eq!(parse_device(|d| d.device_id = 0), Err(BadDevice));
    assert_eq!(parse_device(|d| d.status = 0x10), Err(BadDevice));
    assert_eq!(parse_device(|d| d.interrupt_status = 4), Err(BadDevice));
    assert_eq!(parse_device(|d| d.nqueues = 13), Err(BadDevice));
    assert_eq!(parse_device(|d| d.nqueues = 1), Err(BadQueue)); // queue 1 past the count
    assert_eq!(parse_device(|d| d.queues[0].desc = 64 * MIB - 16), Err(BadQueue));
    assert_eq!(parse_device(|d| d.queues[0].desc = u64::MAX - 15), Err(BadQueue));
    assert_eq!(parse_device(|d| d.queues[0].used = 0x10_0002), Err(BadQueue));
    assert_eq!(parse_device(|d| d.queues[0].avail = MMIO_BASE), Err(BadQueue));
    assert_eq!(parse_device(|d| d.queues[0].size = 100), Err(BadQueue));
    assert_eq!(parse_device(|d| d.queues[0].size = 0), Err(BadQueue));
    assert_eq!(parse_device(|d| d.queues[0].size = 65535), Err(BadQueue));
    assert_eq!(parse_device(|d| d.queues[0].flags = 4), Err(BadQueue));
    assert_eq!(parse_device(|d| d.queues[1].desc = 0x1000), Err(BadQueue)); // not ready, not idle
    let mut b = device(3).encode();
    b[44] = 1;
    assert_eq!(Device::parse(&b, 64 * MIB), Err(BadReserved));
    assert_eq!(Device::parse(&b[..100], 64 * MIB), Err(BadLength));
    // Devices in increasing slot order, each slot once.
    assert_eq!(
        parse_edit(|l, b| b[l.device_at(1)..l.device_at(1) + DEVICE_LEN].copy_from_slice(&device(0).encode())),
        Err(BadDevice)
    );
}

#[test]
fn ram_layout_has_a_hole_below_4_gib() {
    let big = 5 << 30; // 5 GiB: low RAM up to MMIO_BASE, the rest from 4 GiB
    let high = big - MMIO_BASE;
    assert!(ram_contains(big, 0, MMIO_BASE));
    assert!(!ram_contains(big, MMIO_BASE - 4096, 8192));
    assert!(!ram_contains(big, MMIO_BASE, 4096));
    assert!(ram_contains(big, 1 << 32, high));
    assert!(!ram_contains(big, 1 << 32, high + 1));
    assert!(!ram_contains(64 * MIB, 1 << 32, 4096));
    assert!(!ram_contains(64 * MIB, u64::MAX, 2));
}

/// A memory section: header, table, then each run's data where it says.
fn memory(runs: &[Run], mem_size: u64) -> Vec<u8> {
    // Hostile offsets past 1 MiB get no data (the parser must refuse them).
    let ends = runs.iter().filter_map(|r| r.offset.checked_add(r.len())).filter(|&e| e < MIB);
    let end = ends.max().unwrap_or(memory_data_start(runs.len() as u32));
    let mut b = std::vec![0u8; end as usize];
    b[..MEMORY_HEADER_LEN].copy_from_slice(&memory_header(runs.len() as u32, mem_size));
    for (i, r) in runs.iter().enumerate() {
        let at = MEMORY_HEADER_LEN + i * RUN_LEN;
        b[at..at + RUN_LEN].copy_from_slice(&encode_run(r));
    }
    b
}

fn good_runs() -> [Run; 3] {
    [
        Run { gpa: 0, pages: 2, offset: PAGE },
        Run { gpa: 0x20_0000, pages: 1, offset: 3 * PAGE },
        Run { gpa: 64 * MIB - PAGE, pages: 1, offset: 4 * PAGE },
    ]
}

fn parse_runs(edit: impl FnOnce(&mut [Run; 3])) -> Result<usize, WarmError> {
    let mut r = good_runs();
    edit(&mut r);
    let b = memory(&r, 64 * MIB);
    MemoryRuns::parse(&b, b.len() as u64, 64 * MIB).map(|m| m.count())
}

#[test]
fn memory_runs_round_trip() {
    let b = memory(&good_runs(), 64 * MIB);
    assert_eq!(MemoryRuns::table_len(&b), Ok(32 + 3 * 24));
    let m = MemoryRuns::parse(&b, b.len() as u64, 64 * MIB).expect("valid");
    assert_eq!(m.iter().collect::<Vec<_>>(), good_runs());
    // No runs: the header page only.
    let b = memory(&[], 64 * MIB);
    assert_eq!(MemoryRuns::parse(&b, PAGE, 64 * MIB).map(|m| m.count()), Ok(0));
}

#[test]
fn hostile_memory_runs_are_refused() {
    use WarmError::*;
    assert_eq!(parse_runs(|r| r[1].gpa += 1), Err(BadRun));
    assert_eq!(parse_runs(|r| r[1].pages = 0), Err(BadRun));
    assert_eq!(parse_runs(|r| r[1].gpa = PAGE), Err(BadRun)); // overlaps run 0
    assert_eq!(parse_runs(|r| r.swap(0, 1)), Err(BadRun)); // out of order
    assert_eq!(parse_runs(|r| r[2].gpa = 64 * MIB), Err(BadRun)); // past RAM
    assert_eq!(parse_runs(|r| r[2].gpa = u64::MAX & !0xfff), Err(BadRun));
    assert_eq!(parse_runs(|r| r[2].pages = u64::MAX), Err(BadRun));
    assert_eq!(parse_runs(|r| r[2].pages = 1 << 52), Err(BadRun));
    assert_eq!(parse_runs(|r| r[0].offset = 0), Err(BadRunData)); // over the table
    assert_eq!(parse_runs(|r| r[1].offset = 2 * PAGE), Err(BadRunData)); // over run 0's data
    assert_eq!(parse_runs(|r| r[1].offset += 1), Err(BadRunData));
    assert_eq!(parse_runs(|r| r[2].offset = u64::MAX & !0xfff), Err(BadRunData));
    let b = memory(&good_runs(), 64 * MIB);
    let len = b.len() as u64;
    assert_eq!(MemoryRuns::parse(&b, len + PAGE, 64 * MIB).map(drop), Err(BadLength));
    assert_eq!(MemoryRuns::parse(&b, len - PAGE, 64 * MIB).map(drop), Err(BadRunData));
    assert_eq!(MemoryRuns::parse(&b, len, 128 * MIB).map(drop), Err(BadMemSize));
    assert_eq!(MemoryRuns::parse(&b[..40], len, 64 * MIB).map(drop), Err(BadLength));
    let mut h = b.clone();
    h[0] = 0;
    assert_eq!(MemoryRuns::parse(&h, len, 64 * MIB).map(drop), Err(BadMagic));
    let mut h = b.clone();
    h[8] = 9;
    assert_eq!(MemoryRuns::parse(&h, len, 64 * MIB).map(drop), Err(UnsupportedVersion(9)));
    let mut h = b.clone();
    h[30] = 1;
    assert_eq!(MemoryRuns::parse(&h, len, 64 * MIB).map(drop), Err(BadReserved));
    let mut h = b;
    h[12..16].copy_from_slice(&(MAX_RUNS + 1).to_le_bytes());
    assert_eq!(MemoryRuns::table_len(&h), Err(BadCount));
    assert_eq!(MemoryRuns::parse(&h, len, 64 * MIB).map(drop), Err(BadCount));
}

#[test]
fn every_bit_flip_of_a_state_header_is_handled() {
    let l = layout();
    let good = state(&l);
    for bit in 0..STATE_HEADER_LEN * 8 {
        let mut b = good.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        // Either refused, or (RAM size, xsave mask, TSC kHz) a valid different state.
        if let Ok(s) = MachineState::parse(&b) {
            let byte = bit / 8;
            assert!((16..24).contains(&byte) || (32..40).contains(&byte) || (48..52).contains(&byte), "bit {bit}");
            assert_eq!(s.layout.len(), b.len());
        }
    }
}

/// The fuzz seeds were written by hand from the format table in the module
/// docs (not by this code): they must parse.
#[test]
fn the_documented_layout_matches_the_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/warm_sections");
    let state = std::fs::read(dir.join("state")).expect("seed");
    let s = MachineState::parse(&state[1..]).expect("documented state layout");
    assert_eq!(s.vcpu(0).msr(0), Some((0x10, 12345)));
    assert_eq!(s.device(0).map(|d| d.queues[0].next_avail), Some(3));
    let mem = std::fs::read(dir.join("memory")).expect("seed");
    let m = MemoryRuns::parse(&mem[17..], 4 * PAGE, 64 * MIB).expect("documented memory layout");
    assert_eq!(m.iter().nth(1), Some(Run { gpa: 0x20_0000, pages: 1, offset: 3 * PAGE }));
}
