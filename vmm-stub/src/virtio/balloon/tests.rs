use super::*;
use crate::virtio::queue::testdriver::*;

const PAGE: u64 = 4096;
const FREE: u64 = 0x40000;

/// 1 MiB of guest RAM, pages from `FREE` filled with 0xaa, and a ready
/// reporting queue.
fn rig() -> (GuestMemory, [Queue; 3]) {
    let mem = GuestMemory::new(1 << 20).expect("mmap");
    let len = (1 << 20) - FREE as usize;
    mem.range(GuestAddress(FREE), len as u64).expect("ram").fill(0xaa);
    let q = queue(&mem, QUEUE_SIZE);
    (mem, [Queue::new(QUEUE_SIZE), Queue::new(QUEUE_SIZE), q])
}

fn report(dev: &mut Balloon, mem: &GuestMemory, qs: &mut [Queue; 3], bufs: &[(u64, u32, bool)]) -> Irq {
    chain(mem, QUEUE_SIZE, 0, bufs);
    dev.process_queue(REPORTING_QUEUE, qs, mem).expect("well-formed queue")
}

fn byte(mem: &GuestMemory, at: u64) -> u8 {
    mem.read_obj::<u8>(GuestAddress(at)).expect("ram")
}

#[test]
fn reported_ranges_go_back_to_the_host_and_read_as_zeros() {
    let (mem, mut qs) = rig();
    let mut dev = Balloon::new();
    let irq = report(&mut dev, &mem, &mut qs, &[(FREE, 2 * PAGE as u32, true), (FREE + 4 * PAGE, PAGE as u32, true)]);
    assert_eq!(irq, Irq::VRING);
    assert_eq!(mem.to_vec(GuestAddress(FREE), 2 * PAGE).as_deref(), Some(&[0u8; 2 * PAGE as usize][..]));
    assert_eq!(byte(&mem, FREE + 2 * PAGE), 0xaa, "between the ranges: kept");
    assert_eq!(byte(&mem, FREE + 4 * PAGE), 0);
    assert_eq!(byte(&mem, FREE + 5 * PAGE), 0xaa);
    assert_eq!(used(&mem, 0), (1, 0, 0), "the chain comes back, used length 0");
}

#[test]
fn hostile_ranges_are_refused_and_touch_nothing() {
    let (mem, mut qs) = rig();
    let mut dev = Balloon::new();
    // Unaligned start, unaligned length, empty, and device-readable (the
    // wrong direction): each skipped, the pages keep their bytes.
    report(&mut dev, &mem, &mut qs, &[
        (FREE + 1, PAGE as u32, true),
        (FREE + PAGE, 100, true),
        (FREE + 2 * PAGE, 0, true),
    ]);
    chain(&mem, QUEUE_SIZE, 3, &[(FREE + 3 * PAGE, PAGE as u32, false)]);
    dev.process_queue(REPORTING_QUEUE, &mut qs, &mem).expect("well-formed queue");
    assert!(mem.to_vec(GuestAddress(FREE), 4 * PAGE).expect("ram").iter().all(|&b| b == 0xaa));
    assert_eq!(used(&mem, 1), (2, 3, 0));
    // A range reaching past RAM (or wrapping) is a malformed queue: `pop`
    // refuses it before the device sees it; the device is not asked again.
    chain(&mem, QUEUE_SIZE, 4, &[((1 << 20) - PAGE, 2 * PAGE as u32, true)]);
    assert_eq!(dev.process_queue(REPORTING_QUEUE, &mut qs, &mem), Err(QueueError::BufferOutsideRam));
    let (mem2, mut qs2) = rig();
    chain(&mem2, QUEUE_SIZE, 0, &[(u64::MAX - PAGE + 1, PAGE as u32, true)]);
    assert_eq!(dev.process_queue(REPORTING_QUEUE, &mut qs2, &mem2), Err(QueueError::BufferOutsideRam));
    assert!(mem.to_vec(GuestAddress((1 << 20) - PAGE), PAGE).expect("ram").iter().all(|&b| b == 0xaa));
}

#[test]
fn inflate_and_deflate_chains_are_returned_untouched() {
    let (mem, _) = rig();
    let mut dev = Balloon::new();
    let mut qs = [queue(&mem, QUEUE_SIZE), Queue::new(QUEUE_SIZE), Queue::new(QUEUE_SIZE)];
    // An inflate request naming page frames: no target was set, nothing is freed.
    mem.write_obj(GuestAddress(FREE - PAGE), (FREE / PAGE) as u32).expect("ram");
    chain(&mem, QUEUE_SIZE, 0, &[(FREE - PAGE, 4, false), (FREE, PAGE as u32, true)]);
    assert_eq!(dev.process_queue(0, &mut qs, &mem), Ok(Irq::VRING));
    assert_eq!(byte(&mem, FREE), 0xaa);
    assert_eq!(used(&mem, 0), (1, 0, 0));
    assert_eq!(dev.process_queue(7, &mut qs, &mem), Err(QueueError::NotReady));
}

#[test]
fn offers_reporting_and_an_empty_target() {
    let dev = Balloon::new();
    assert_eq!(dev.device_id(), 5);
    assert_eq!(dev.features(), F_REPORTING);
    assert_eq!(dev.queue_max_sizes(), &[32, 32, 32]);
    let mut cfg = [0xffu8; 12];
    dev.read_config(0, &mut cfg);
    assert_eq!(cfg, [0; 12], "num_pages 0, actual 0, nothing past them");
}
