//! size-report: where every byte of a smolvm image goes, budgets that fail
//! CI, growth against a baseline, and a picture. See [`cli::USAGE`].
// Test code may unwrap and truncate: a panic there is a failed test.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::cast_possible_truncation))]

pub mod analyze;
pub mod baseline;
pub mod binary;
pub mod budget;
pub mod cli;
pub mod cpio;
pub mod elf;
pub mod figures;
pub mod json;
pub mod kernel;
pub mod render;
pub mod report;
pub mod svg;
pub mod toml;

use json::Json;
use std::io::Write;

/// Exit statuses (documented in [`cli::USAGE`]).
pub const EXIT_OVER_BUDGET: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;

/// Runs the command: writes the report to `out`, breach lines to `err`.
/// `Ok(true)` when every budget holds; `Err` is a one-line message for
/// exit status [`EXIT_BAD_INPUT`].
pub fn run(args: &cli::Args, out: &mut dyn Write, err: &mut dyn Write) -> Result<bool, String> {
    let read = |what: &str, path: &str| {
        let bytes = std::fs::read(path).map_err(|e| format!("{what} {path}: {e}"))?;
        String::from_utf8(bytes).map_err(|_| format!("{what} {path}: not a text file (invalid UTF-8)"))
    };
    let mut sources = Vec::new();
    for path in &args.symbols_from {
        let data = std::fs::read(path).map_err(|e| format!("--symbols-from {path}: {e}"))?;
        let elf = elf::parse(&data).map_err(|e| format!("--symbols-from {path}: {e}"))?;
        if elf.is_stripped() {
            return Err(format!("--symbols-from {path}: stripped (build with CARGO_PROFILE_RELEASE_STRIP=false)"));
        }
        sources.push(binary::SymbolSource { path: path.clone(), elf });
    }
    let opts = analyze::Options::new(args.top, args.compress);
    let items = args
        .files
        .iter()
        .map(|(path, name)| analyze::analyze(path, name.as_deref(), &sources, &opts))
        .collect::<Result<Vec<_>, _>>()?;
    for s in &sources {
        let used = items.iter().flat_map(|i| &i.elfs).any(|b| b.symbols_from.as_deref() == Some(s.path.as_str()));
        if !used {
            return Err(format!("--symbols-from {}: matches no stripped ELF in the inputs (built from other sources?)", s.path));
        }
    }
    let budgets = match &args.budget {
        Some(path) => Some(budget::Budgets::parse(&read("budget", path)?).map_err(|e| format!("budget {path}: {e}"))?),
        None => None,
    };
    let checks = match &budgets {
        Some(b) => Some(items.iter().map(|i| b.check(i)).collect::<Result<Vec<_>, _>>()?),
        None => None,
    };
    let baseline = match &args.baseline {
        Some(path) => Some(baseline::Baseline::parse(&read("baseline", path)?).map_err(|e| format!("baseline {path}: {e}"))?),
        None => None,
    };

    let contexts: Vec<render::Context<'_>> = (0..items.len())
        .map(|i| render::Context {
            checks: checks.as_ref().map(|c| c[i].as_slice()),
            baseline: baseline.as_ref().map(|b| b.item(&items[i].name)),
        })
        .collect();
    let text = match args.format {
        cli::Format::Json => json_report(&items, &contexts).to_pretty(),
        format => {
            let tables: Vec<render::Table> = if args.summary {
                vec![render::summary(&items, &contexts)]
            } else {
                items.iter().zip(&contexts).flat_map(|(i, c)| render::tables(i, c)).collect()
            };
            match format {
                cli::Format::Markdown => render::markdown(&tables),
                _ => render::text(&tables),
            }
        }
    };
    out.write_all(text.as_bytes()).map_err(|e| format!("writing the report: {e}"))?;
    if let Some(path) = &args.svg {
        let total_budget = |i: usize| checks.as_ref()?[i].iter().find(|c| c.key == "total").map(|c| c.limit);
        let budgets: Vec<Option<u64>> = (0..items.len()).map(total_budget).collect();
        std::fs::write(path, svg::render(&items, &budgets)).map_err(|e| format!("--svg {path}: {e}"))?;
    }
    let mut within = true;
    for (item, checks) in items.iter().zip(checks.iter().flatten()) {
        for c in checks.iter().filter(|c| c.over()) {
            within = false;
            let _ = writeln!(err, "size-report: {}: {}", item.name, c.breach_message());
        }
    }
    Ok(within)
}

/// The `--json` document: every item with its budget checks and baseline.
fn json_report(items: &[report::Item], contexts: &[render::Context<'_>]) -> Json {
    let mut list = Vec::new();
    for (item, ctx) in items.iter().zip(contexts) {
        let mut j = item.to_json();
        if let (Json::Object(fields), Some(checks)) = (&mut j, ctx.checks) {
            let checks = checks.iter().map(|c| {
                Json::Object(vec![
                    ("key".into(), Json::Str(c.key.clone())),
                    ("limit".into(), Json::Int(c.limit)),
                    ("actual".into(), Json::Int(c.actual)),
                    ("over".into(), Json::Bool(c.over())),
                ])
            });
            fields.push(("budget".into(), Json::Array(checks.collect())));
        }
        if let (Json::Object(fields), Some(base)) = (&mut j, ctx.baseline) {
            let old = base.map_or(Json::Null, |b| Json::Object(b.iter().map(|(k, v)| (k.clone(), Json::Int(*v))).collect()));
            fields.push(("baseline".into(), old));
        }
        list.push(j);
    }
    Json::Object(vec![("version".into(), Json::Int(report::JSON_VERSION)), ("items".into(), Json::Array(list))])
}
