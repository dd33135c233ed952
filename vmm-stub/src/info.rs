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
    let mut l = Line::bare();
    crate::network::describe_defaults(manifest, &mut l);
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
