//! Command-line arguments (hand-parsed: clap is kept to the builder).

pub const USAGE: &str = "\
size-report: where the bytes of smolvm images and ELF files go

usage: size-report [OPTIONS] [--name NAME] FILE [[--name NAME] FILE]...

FILE is a smolvm image (parts: stub, kernel, initramfs, rootfs, manifest,
kernel-info, padding, trailer; they add up to the file size exactly) or an
ELF file (the stub or init given directly: its sections and headers).

options:
  --name NAME          report the next FILE as NAME (default: its file name);
                       budgets and baselines match items by this name
  --json               print the report as JSON (input for --baseline)
  --markdown           print the report as markdown tables
  --budget FILE.toml   check each item against its table in FILE.toml
                       (e.g. size-budget.toml); exit 1 on any breach
  --baseline OLD.json  show growth per part against an earlier --json report
  --svg OUT.svg        write a stacked bar chart of each item's parts
  --symbols-from ELF   unstripped build of the stub or init (repeatable);
                       used for whichever shipped ELF it matches exactly
  --summary            one table, one row per item: total, stub, kernel,
                       initramfs, rootfs, init, other (for a README)
  --top N              largest symbols and crates to list (default 10)
  --no-compress        skip the xz/zstd/lz4 estimate of the kernel section
  -h, --help           this text

exit status: 0 ok, 1 a budget is exceeded, 2 bad usage or an input file
(image, ELF, budget, baseline) is missing or corrupt.
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Markdown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// (path, name override) in command-line order.
    pub files: Vec<(String, Option<String>)>,
    pub format: Format,
    pub budget: Option<String>,
    pub baseline: Option<String>,
    pub svg: Option<String>,
    pub symbols_from: Vec<String>,
    pub top: usize,
    pub compress: bool,
    pub summary: bool,
    pub help: bool,
}

pub fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        files: Vec::new(),
        format: Format::Table,
        budget: None,
        baseline: None,
        svg: None,
        symbols_from: Vec::new(),
        top: 10,
        compress: true,
        summary: false,
        help: false,
    };
    let mut name = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => a.help = true,
            "--json" | "--markdown" if a.format != Format::Table => {
                return Err("--json and --markdown exclude each other".into())
            }
            "--json" => a.format = Format::Json,
            "--markdown" => a.format = Format::Markdown,
            "--no-compress" => a.compress = false,
            "--summary" => a.summary = true,
            "--name" => name = Some(value(arg)?),
            "--budget" => a.budget = Some(value(arg)?),
            "--baseline" => a.baseline = Some(value(arg)?),
            "--svg" => a.svg = Some(value(arg)?),
            "--symbols-from" => a.symbols_from.push(value(arg)?),
            "--top" => {
                let v = value(arg)?;
                a.top = v.parse().map_err(|_| format!("--top needs a number, not {v:?}"))?;
            }
            "--" => a.files.extend(it.by_ref().map(|f| (f.clone(), name.take()))),
            flag if flag.starts_with('-') && flag.len() > 1 => return Err(format!("unknown option {flag}")),
            file => a.files.push((file.to_string(), name.take())),
        }
    }
    if name.is_some() {
        return Err("--name must come before the FILE it names".into());
    }
    if a.files.is_empty() && !a.help {
        return Err("no FILE given".into());
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn names_apply_to_the_next_file() {
        let a = p(&["--name", "hello", "a.vm", "b.vm", "--json", "--top", "3", "--no-compress"]).expect("valid");
        assert_eq!(a.files, [("a.vm".to_string(), Some("hello".to_string())), ("b.vm".to_string(), None)]);
        assert_eq!(a.format, Format::Json);
        assert_eq!(a.top, 3);
        assert!(!a.compress);
    }

    #[test]
    fn usage_errors() {
        assert!(p(&[]).unwrap_err().contains("no FILE"));
        assert!(p(&["--bogus", "a"]).unwrap_err().contains("--bogus"));
        assert!(p(&["a", "--name"]).unwrap_err().contains("needs a value"));
        assert!(p(&["a", "--name", "x"]).unwrap_err().contains("before"));
        assert!(p(&["--json", "--markdown", "a"]).is_err());
        assert!(p(&["--top", "many", "a"]).is_err());
        assert!(p(&["--help"]).expect("help").help);
    }
}
