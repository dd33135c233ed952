//! A stacked horizontal bar per item, its parts in fixed colours, all bars on
//! one scale so images compare at a glance. Plain SVG 1.1, no scripts.

use crate::report::{Item, ItemKind};
use std::fmt::Write;

/// Text width estimates for an 11 px sans-serif font.
const BOLD_CHAR_W: f64 = 7.2;
const BAR_W: f64 = 600.0;
const BAR_H: f64 = 26.0;
const LEGEND_ROW: f64 = 18.0;
const CHAR_W: f64 = 6.6;

const PALETTE: [&str; 8] = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#9d755d"];

/// Stable colours for image parts; other names take palette colours by hash.
fn colour(name: &str) -> &'static str {
    match name {
        "stub" => "#e45756",
        "kernel" => "#4c78a8",
        "initramfs" => "#f58518",
        "rootfs" => "#54a24b",
        "manifest" => "#b279a2",
        "kernel-info" => "#9d755d",
        "trailer" => "#72b7b2",
        "padding" => "#d3d3d3",
        _ => PALETTE[name.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into())) % PALETTE.len()],
    }
}

/// `"1.23 MiB"`, `"4.0 KiB"`, `"552 B"`.
pub fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.2} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Legend entries wrapped into rows that fit under the bar.
fn legend_rows(item: &Item) -> Vec<Vec<(String, &'static str)>> {
    let mut rows: Vec<Vec<(String, &'static str)>> = vec![Vec::new()];
    let mut x = 0.0;
    for p in item.parts.iter().filter(|p| p.size > 0) {
        let text = format!("{} {}", p.name, human(p.size));
        let w = 16.0 + text.len() as f64 * CHAR_W + 14.0;
        if x + w > BAR_W && x > 0.0 {
            rows.push(Vec::new());
            x = 0.0;
        }
        x += w;
        if let Some(row) = rows.last_mut() {
            row.push((text, colour(&p.name)));
        }
    }
    rows
}

/// The chart. `budgets[i]` is item i's `total` budget, drawn as a dashed
/// line on its bar. Only images are drawn when there are any (an ELF file
/// next to them would be a sliver with a long legend).
pub fn render(items: &[Item], budgets: &[Option<u64>]) -> String {
    let has_images = items.iter().any(|i| i.kind == ItemKind::Image);
    let shown: Vec<(&Item, Option<u64>)> = items
        .iter()
        .zip(budgets.iter().copied().chain(std::iter::repeat(None)))
        .filter(|(i, _)| !has_images || i.kind == ItemKind::Image)
        .collect();
    let longest = shown.iter().map(|(i, _)| i.name.chars().count()).max().unwrap_or(0);
    let label_w = (longest as f64 * BOLD_CHAR_W + 20.0).max(80.0);
    let scale = shown.iter().map(|(i, b)| i.size.max(b.unwrap_or(0))).max().unwrap_or(1).max(1) as f64;
    let mut body = String::new();
    let mut y = 40.0;
    for (item, budget) in shown {
        let mid = y + BAR_H / 2.0 + 4.0;
        let _ = writeln!(
            body,
            r#"<text x="{:.1}" y="{mid:.1}" text-anchor="end" font-weight="bold">{}</text>"#,
            label_w - 10.0,
            escape(&item.name)
        );
        let mut x = label_w;
        for p in item.parts.iter().filter(|p| p.size > 0) {
            let w = p.size as f64 / scale * BAR_W;
            let _ = writeln!(
                body,
                r#"<rect x="{x:.2}" y="{y:.1}" width="{w:.2}" height="{BAR_H}" fill="{}"><title>{}: {} bytes</title></rect>"#,
                colour(&p.name),
                escape(&p.name),
                crate::figures::bytes(p.size)
            );
            if w > p.name.len() as f64 * CHAR_W + 8.0 {
                let _ = writeln!(
                    body,
                    r#"<text x="{:.2}" y="{mid:.1}" text-anchor="middle" fill="white">{}</text>"#,
                    x + w / 2.0,
                    escape(&p.name)
                );
            }
            x += w;
        }
        let _ = writeln!(body, r#"<text x="{:.2}" y="{mid:.1}">{}</text>"#, x + 6.0, human(item.size));
        if let Some(limit) = budget {
            let bx = label_w + limit as f64 / scale * BAR_W;
            let _ = writeln!(
                body,
                r##"<line x1="{bx:.2}" y1="{:.1}" x2="{bx:.2}" y2="{:.1}" stroke="#222" stroke-width="1.5" stroke-dasharray="4 3"><title>budget: {} bytes</title></line>"##,
                y - 4.0,
                y + BAR_H + 4.0,
                crate::figures::bytes(limit)
            );
            let _ = writeln!(body, r##"<text x="{bx:.2}" y="{:.1}" text-anchor="middle" fill="#222">budget {}</text>"##, y - 6.0, human(limit));
        }
        y += BAR_H + 16.0;
        for row in legend_rows(item) {
            let mut lx = label_w;
            for (text, fill) in row {
                let _ = writeln!(body, r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{fill}"/>"#, y - 9.0);
                let _ = writeln!(body, r#"<text x="{:.1}" y="{y:.1}">{}</text>"#, lx + 16.0, escape(&text));
                lx += 16.0 + text.len() as f64 * CHAR_W + 14.0;
            }
            y += LEGEND_ROW;
        }
        y += 20.0;
    }
    let width = label_w + BAR_W + 90.0;
    let height = y;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(out, r#"<text x="{label_w:.1}" y="20" font-size="14" font-weight="bold">smolvm image size by part</text>"#);
    out.push_str(&body);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ItemKind, Part};

    #[test]
    fn bars_scale_to_the_largest_item() {
        let item = |name: &str, parts: &[(&str, u64)]| Item {
            name: name.into(),
            path: name.into(),
            kind: ItemKind::Image,
            size: parts.iter().map(|p| p.1).sum(),
            parts: parts.iter().map(|(n, s)| Part { name: n.to_string(), size: *s }).collect(),
            initramfs: None,
            kernel: None,
            elfs: vec![],
        };
        let mut elf = item("vmm-stub", &[(".text", 50)]);
        elf.kind = ItemKind::Elf;
        let items = [item("a<b>.vm", &[("stub", 100), ("kernel", 300)]), item("big.vm", &[("kernel", 800), ("trailer", 0)]), elf];
        let svg = render(&items, &[Some(400), None]);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a&lt;b&gt;.vm"));
        // 300 of 800 bytes is 3/8 of the bar width.
        assert!(svg.contains(r##"width="225.00" height="26" fill="#4c78a8"><title>kernel: 300 bytes"##), "{svg}");
        assert!(svg.contains(r#"width="600.00""#));
        assert!(!svg.contains("trailer"), "empty parts are not drawn");
        assert!(!svg.contains("vmm-stub"), "ELF files are left out next to images");
        // The budget line of a.vm sits at 400 of 800 bytes.
        assert!(svg.contains(r#"<title>budget: 400 bytes</title>"#));
        // Short names: the label column has its minimum width, 80.
        assert!(svg.contains(r#"<line x1="380.00""#), "{svg}");
        let alone = render(&items[2..], &[]);
        assert!(alone.contains("vmm-stub"), "ELF files are drawn when there is no image");
        assert_eq!(human(3 << 20), "3.00 MiB");
        assert_eq!(human(4096), "4.0 KiB");
    }
}
