//! A stacked horizontal bar per item, its parts in fixed colours, all bars on
//! one scale so images compare at a glance. Plain SVG 1.1, no scripts.

use crate::report::Item;
use std::fmt::Write;

const WIDTH: f64 = 860.0;
const LABEL_W: f64 = 150.0;
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

pub fn render(items: &[Item]) -> String {
    let scale = items.iter().map(|i| i.size).max().unwrap_or(1).max(1) as f64;
    let mut body = String::new();
    let mut y = 40.0;
    for item in items {
        let _ = writeln!(
            body,
            r#"<text x="{}" y="{:.1}" text-anchor="end" font-weight="bold">{}</text>"#,
            LABEL_W - 10.0,
            y + BAR_H / 2.0 + 4.0,
            escape(&item.name)
        );
        let mut x = LABEL_W;
        for p in item.parts.iter().filter(|p| p.size > 0) {
            let w = p.size as f64 / scale * BAR_W;
            let _ = writeln!(
                body,
                r#"<rect x="{x:.2}" y="{y:.1}" width="{w:.2}" height="{BAR_H}" fill="{}"><title>{}: {} bytes</title></rect>"#,
                colour(&p.name),
                escape(&p.name),
                crate::render::bytes(p.size)
            );
            if w > p.name.len() as f64 * CHAR_W + 8.0 {
                let _ = writeln!(
                    body,
                    r#"<text x="{:.2}" y="{:.1}" text-anchor="middle" fill="white">{}</text>"#,
                    x + w / 2.0,
                    y + BAR_H / 2.0 + 4.0,
                    escape(&p.name)
                );
            }
            x += w;
        }
        let _ = writeln!(body, r#"<text x="{:.2}" y="{:.1}">{}</text>"#, x + 6.0, y + BAR_H / 2.0 + 4.0, human(item.size));
        y += BAR_H + 16.0;
        for row in legend_rows(item) {
            let mut lx = LABEL_W;
            for (text, fill) in row {
                let _ = writeln!(body, r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{fill}"/>"#, y - 9.0);
                let _ = writeln!(body, r#"<text x="{:.1}" y="{y:.1}">{}</text>"#, lx + 16.0, escape(&text));
                lx += 16.0 + text.len() as f64 * CHAR_W + 14.0;
            }
            y += LEGEND_ROW;
        }
        y += 14.0;
    }
    let height = y + 10.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(out, r#"<text x="{LABEL_W}" y="22" font-size="14" font-weight="bold">smolvm image size by part</text>"#);
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
        let svg = render(&[item("a<b>.vm", &[("stub", 100), ("kernel", 300)]), item("big.vm", &[("kernel", 800), ("trailer", 0)])]);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a&lt;b&gt;.vm"));
        // 300 of 800 bytes is 3/8 of the bar width.
        assert!(svg.contains(r##"width="225.00" height="26" fill="#4c78a8"><title>kernel: 300 bytes"##), "{svg}");
        assert!(svg.contains(r#"width="600.00""#));
        assert!(!svg.contains("trailer"), "empty parts are not drawn");
        assert_eq!(human(3 << 20), "3.00 MiB");
        assert_eq!(human(4096), "4.0 KiB");
    }
}
