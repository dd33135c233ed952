//! `--smolvm-info`: what the image holds, without booting it.

use crate::out::Line;
use crate::payload::Payload;
use linker::config;
use linker::image::Kind;

pub fn print(payload: &Payload, manifest: &[u8]) {
    let image = payload.image();
    Line::bare().s("smolvm image, format 1, ").u(image.file_len()).s(" bytes").print();
    for s in image.sections() {
        let mut l = Line::bare();
        l.s("  ").s(s.kind.name()).s(": ").u(s.len).s(" bytes at ").x(s.offset);
        if s.kind == Kind::Kernel {
            l.s(if s.is_bzimage() { " (bzImage)" } else { " (ELF vmlinux)" });
        }
        l.print();
    }
    Line::bare().s("manifest:").print();
    if let Ok(records) = config::parse(manifest) {
        for r in records.flatten() {
            let mut l = Line::bare();
            l.s("  ").s(r.key.name());
            for i in 0..r.key.arity() {
                l.s(" ").b(r.field(i));
            }
            l.print();
        }
    }
    let read_only = config::last_value(manifest, config::Key::ReadOnly) == Some(b"yes");
    Line::bare()
        .s(if read_only {
            "root: read-only (--smolvm-read-only=no makes it writable)"
        } else {
            "root: writable, changes discarded at exit (--smolvm-read-only keeps it read-only)"
        })
        .print();
    let mut l = Line::bare();
    describe_network(manifest, &mut l);
    l.print();
    if let Some(ki) = payload.section(Kind::KernelInfo) {
        let mut buf = [0u8; linker::image::MAX_KERNEL_INFO_LEN as usize];
        let n = ki.len.min(buf.len() as u64) as usize;
        let text = buf.get_mut(..n).unwrap_or_default();
        if payload.read(&ki, 0, text).is_ok() {
            for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                Line::bare().s("kernel: ").b(line).print();
            }
        }
    }
}
/// `--smolvm-info`'s network line for the image's defaults.
fn describe_network(manifest: &[u8], l: &mut Line) {
    let crate::options::Defaults { net, publish, .. } = crate::options::Defaults::of(manifest);
    let on = net == Some(crate::options::net::NetMode::Passt) || !publish.is_empty();
    if !on {
        l.s("network: none by default (--smolvm-net turns it on)");
        return;
    }
    l.s("network: passt by default (guest 10.0.2.15/24; --smolvm-net=none turns it off)");
    for p in &publish {
        l.s(", publishes ");
        l.ipv4(p.host_ip);
        l.s(":").u(p.host_port.into()).s(" -> ").u(p.guest_port.into()).s(if p.proto == crate::options::net::Proto::Udp { "/udp" } else { "/tcp" });
    }
}
