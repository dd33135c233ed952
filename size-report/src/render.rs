//! Text and markdown output. Both render the same [`Table`]s built from the
//! report, so they show the same numbers in the same places.

use crate::budget::Check;
use crate::figures::{bytes, delta, growth_percent, share};
use crate::report::{Binary, Item};

/// A titled table of already formatted cells.
pub struct Table {
    pub title: String,
    pub header: Vec<&'static str>,
    /// Columns holding numbers are right-aligned.
    pub numeric: Vec<bool>,
    pub rows: Vec<Vec<String>>,
}

/// What to show next to each metric besides its size.
pub struct Context<'a> {
    pub checks: Option<&'a [Check]>,
    /// `Some(None)`: a baseline was given but does not have this item.
    pub baseline: Option<Option<&'a [(String, u64)]>>,
}

/// One row per item: total and the main parts side by side, for a README.
/// `other` is manifest, kernel-info, padding and trailer together. With
/// budgets, a last column says which metrics are over.
pub fn summary(items: &[Item], contexts: &[Context<'_>]) -> Table {
    const MAIN: [&str; 4] = ["stub", "kernel", "initramfs", "rootfs"];
    let with_budget = contexts.iter().any(|c| c.checks.is_some());
    let rows = items
        .iter()
        .zip(contexts)
        .map(|(item, ctx)| {
            let mut row = vec![item.name.clone(), bytes(item.size)];
            if item.kind == crate::report::ItemKind::Image {
                let part = |name: &str| item.parts.iter().filter(|p| p.name == name).map(|p| p.size).sum::<u64>();
                row.extend(MAIN.iter().map(|name| bytes(part(name))));
                row.push(bytes(item.metric("init").unwrap_or(0)));
                let main: u64 = MAIN.iter().map(|name| part(name)).sum();
                row.push(bytes(item.size - main));
            } else {
                row.extend(std::iter::repeat_n("-".to_string(), MAIN.len() + 2));
            }
            if with_budget {
                let over: Vec<String> = ctx
                    .checks
                    .unwrap_or(&[])
                    .iter()
                    .filter(|c| c.over())
                    .map(|c| format!("{} {} > {}", c.key, bytes(c.actual), bytes(c.limit)))
                    .collect();
                row.push(if over.is_empty() { "ok".into() } else { format!("OVER: {}", over.join("; ")) });
            }
            row
        })
        .collect();
    let mut header = vec!["item", "total", "stub", "kernel", "initramfs", "rootfs", "init (in initramfs)", "other"];
    let mut numeric = vec![false, true, true, true, true, true, true, true];
    if with_budget {
        header.push("budget");
        numeric.push(false);
    }
    Table { title: "size by part (bytes)".into(), header, numeric, rows }
}

/// Every table for one item: the parts and metrics (with budget and growth
/// columns when asked for), then initramfs, kernel and ELF details.
pub fn tables(item: &Item, ctx: &Context<'_>) -> Vec<Table> {
    let mut header = vec!["part", "bytes", "share"];
    let mut numeric = vec![false, true, true];
    if ctx.checks.is_some() {
        header.extend(["budget", "status"]);
        numeric.extend([true, false]);
    }
    if ctx.baseline.is_some() {
        header.extend(["baseline", "growth", "growth %"]);
        numeric.extend([true, true, true]);
    }
    let mut rows = Vec::new();
    for (key, value) in item.metrics() {
        let mut row = vec![key.clone(), bytes(value), share(value, item.size)];
        if let Some(checks) = ctx.checks {
            match checks.iter().find(|c| c.key == key) {
                Some(c) if c.over() => row.extend([bytes(c.limit), format!("OVER by {}", bytes(c.actual - c.limit))]),
                Some(c) => row.extend([bytes(c.limit), "ok".into()]),
                None => row.extend(["-".into(), String::new()]),
            }
        }
        if let Some(base) = ctx.baseline {
            match base.and_then(|b| b.iter().find(|m| m.0 == key)) {
                Some(&(_, old)) => row.extend([bytes(old), delta(old, value), growth_percent(old, value)]),
                None => row.extend(["-".into(), "new".into(), String::new()]),
            }
        }
        rows.push(row);
    }
    let title = format!("{} ({}, {} bytes)", item.name, item.kind.name(), bytes(item.size));
    let mut out = vec![Table { title, header, numeric, rows }];

    if let Some(s) = &item.initramfs {
        let row = |what: &str, n: u64| vec![what.to_string(), bytes(n)];
        out.push(Table {
            title: format!("{}: initramfs contents", item.name),
            header: vec!["content", "bytes"],
            numeric: vec![false, true],
            rows: vec![
                row("init", s.init),
                row("rootfs/ files", s.rootfs),
                row("other files", s.other),
                row("cpio headers and padding", s.overhead),
            ],
        });
    }
    if let Some(k) = &item.kernel {
        let mut rows = vec![
            vec!["format".into(), k.format.clone()],
            vec!["version".into(), k.version.clone().unwrap_or_else(|| "unknown".into())],
            vec!["config sha256".into(), k.config_sha256.clone().unwrap_or_else(|| "not recorded in image".into())],
            vec!["size".into(), bytes(k.size)],
        ];
        for (tool, size) in &k.compressed {
            let value = match size {
                Some(n) => format!("{} ({} of the section)", bytes(*n), share(*n, k.size)),
                None => format!("{tool} not available"),
            };
            rows.push(vec![format!("{tool} compressed"), value]);
        }
        out.push(Table {
            title: format!("{}: kernel", item.name),
            header: vec!["what", "value"],
            numeric: vec![false, false],
            rows,
        });
    }
    for b in &item.elfs {
        // An ELF item's parts table already lists its sections.
        let sections = item.kind == crate::report::ItemKind::Image;
        out.extend(binary_tables(&item.name, b, sections));
    }
    out
}

fn binary_tables(item: &str, b: &Binary, with_sections: bool) -> Vec<Table> {
    let symbols = match (&b.symbols_from, b.stripped) {
        (Some(from), true) => format!("stripped; symbols from {from}"),
        (Some(_), false) => "not stripped".into(),
        (None, _) => "stripped; no symbols (pass an unstripped build with --symbols-from)".into(),
    };
    let title = format!("{item}: {} ELF, {} bytes ({} in loadable segments), {symbols}", b.label, bytes(b.size), bytes(b.loaded));
    let mut sections: Vec<Vec<String>> =
        b.sections.iter().map(|s| vec![s.name.clone(), bytes(s.file_size), bytes(s.mem_size), share(s.file_size, b.size)]).collect();
    // Headers and alignment gaps: what the file holds beyond its sections.
    let outside = b.size.saturating_sub(b.sections.iter().map(|s| s.file_size).sum());
    sections.push(vec!["(headers, padding)".into(), bytes(outside), "0".into(), share(outside, b.size)]);
    let mut out = vec![Table {
        title,
        header: vec!["section", "file bytes", "memory bytes", "share"],
        numeric: vec![false, true, true, true],
        rows: if with_sections { sections } else { Vec::new() },
    }];
    if !b.symbols.is_empty() {
        out.push(Table {
            title: format!("{item}: {} largest symbols", b.label),
            header: vec!["bytes", "symbol"],
            numeric: vec![true, false],
            rows: b.symbols.iter().map(|s| vec![bytes(s.size), s.name.clone()]).collect(),
        });
    }
    // A C program (the kernel) has no crates to group by.
    if b.crates.iter().any(|c| c.name != "[non-Rust]") {
        out.push(Table {
            title: format!("{item}: {} symbol bytes by crate", b.label),
            header: vec!["bytes", "crate"],
            numeric: vec![true, false],
            rows: b.crates.iter().map(|s| vec![bytes(s.size), s.name.clone()]).collect(),
        });
    }
    out
}

/// Aligned plain-text tables.
pub fn text(tables: &[Table]) -> String {
    let mut out = String::new();
    for t in tables {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&t.title);
        out.push('\n');
        if t.rows.is_empty() {
            continue;
        }
        let mut widths: Vec<usize> = t.header.iter().map(|h| h.chars().count()).collect();
        for row in &t.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut l = String::from(" ");
            for (i, cell) in cells.enumerate() {
                let pad = " ".repeat(widths[i] - cell.chars().count());
                l.push(' ');
                if t.numeric[i] {
                    l.push_str(&pad);
                    l.push_str(cell);
                } else {
                    l.push_str(cell);
                    l.push_str(&pad);
                }
                l.push(' ');
            }
            l.trim_end().to_string() + "\n"
        };
        out.push_str(&line(&mut t.header.iter().copied()));
        for row in &t.rows {
            out.push_str(&line(&mut row.iter().map(String::as_str)));
        }
    }
    out
}

/// GitHub-flavoured markdown tables under `###` headings.
pub fn markdown(tables: &[Table]) -> String {
    let mut out = String::new();
    let cell = |c: &str| c.replace('|', "\\|");
    for t in tables {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("### {}\n\n", cell(&t.title)));
        if t.rows.is_empty() {
            continue;
        }
        out.push_str(&format!("| {} |\n", t.header.join(" | ")));
        let aligns: Vec<&str> = t.numeric.iter().map(|&n| if n { "---:" } else { "---" }).collect();
        out.push_str(&format!("|{}|\n", aligns.join("|")));
        for row in &t.rows {
            let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_markdown_align() {
        let t = Table {
            title: "t".into(),
            header: vec!["name", "bytes"],
            numeric: vec![false, true],
            rows: vec![vec!["a|b".into(), "1".into()], vec!["long name".into(), "1,000".into()]],
        };
        let text = text(std::slice::from_ref(&t));
        assert_eq!(text, "t\n  name       bytes\n  a|b            1\n  long name  1,000\n");
        let md = markdown(&[t]);
        assert!(md.contains("| a\\|b | 1 |\n"), "{md}");
        assert!(md.contains("|---|---:|\n"));
    }
}
