//! Kconfig fragments: small files of `CONFIG_X=v` / `# CONFIG_X is not set` lines,
//! each about one concern. The project's own fragments are compiled into the binary
//! so `smolvm` needs no checkout to build its kernel.
use crate::Error;

/// The project's fragments, in the order they are applied.
pub const BUILTIN: &[(&str, &str)] = &[
    ("10-base.config", include_str!("../fragments/10-base.config")),
    ("20-console.config", include_str!("../fragments/20-console.config")),
    ("25-cmdline.config", include_str!("../fragments/25-cmdline.config")),
    ("30-userspace.config", include_str!("../fragments/30-userspace.config")),
    ("35-syscalls.config", include_str!("../fragments/35-syscalls.config")),
    ("40-virtio.config", include_str!("../fragments/40-virtio.config")),
    ("50-squashfs.config", include_str!("../fragments/50-squashfs.config")),
    ("60-9p.config", include_str!("../fragments/60-9p.config")),
    ("65-net.config", include_str!("../fragments/65-net.config")),
    ("70-kvm-guest.config", include_str!("../fragments/70-kvm-guest.config")),
    ("72-smp.config", include_str!("../fragments/72-smp.config")),
    ("80-diagnostics.config", include_str!("../fragments/80-diagnostics.config")),
    ("85-compat.config", include_str!("../fragments/85-compat.config")),
    ("90-trims.config", include_str!("../fragments/90-trims.config")),
    ("95-memory.config", include_str!("../fragments/95-memory.config")),
];

/// One option a fragment asks for. `value: None` means "is not set".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub option: String,
    pub value: Option<String>,
}

impl Setting {
    /// The line as it appears in a `.config`.
    pub fn line(&self) -> String {
        match &self.value {
            Some(v) => format!("{}={v}", self.option),
            None => format!("# {} is not set", self.option),
        }
    }
}

/// A named fragment (file name, or a synthetic name such as `--compression lz4`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    pub name: String,
    pub text: String,
}

impl Fragment {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Fragment {
        Fragment { name: name.into(), text: text.into() }
    }

    /// The built-in fragments.
    pub fn builtin() -> Vec<Fragment> {
        BUILTIN.iter().map(|(n, t)| Fragment::new(*n, *t)).collect()
    }

    /// Reads a user fragment from a file; its name is the path as given.
    pub fn from_file(path: &std::path::Path) -> Result<Fragment, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::new(format!("cannot read fragment {}: {e}", path.display())))?;
        Ok(Fragment::new(path.display().to_string(), text))
    }

    /// The settings in file order. Anything that is neither a setting, a comment nor
    /// blank is an error naming the fragment and line: a typo must not be ignored.
    pub fn settings(&self) -> Result<Vec<Setting>, Error> {
        let mut out = Vec::new();
        for (i, raw) in self.text.lines().enumerate() {
            let line = raw.trim();
            let bad = || Error::new(format!("{}:{}: not a Kconfig setting: `{line}`", self.name, i + 1));
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix('#') {
                // `# CONFIG_X is not set` is a setting; any other comment is prose.
                let rest = rest.trim();
                if let Some(opt) = rest.strip_suffix(" is not set") {
                    if !is_option_name(opt) {
                        return Err(bad());
                    }
                    out.push(Setting { option: opt.to_string(), value: None });
                }
                continue;
            }
            let (opt, val) = line.split_once('=').ok_or_else(bad)?;
            if !is_option_name(opt) || val.is_empty() {
                return Err(bad());
            }
            // `=n` is Kconfig's spelling of "not set" in fragments.
            let value = (val != "n").then(|| val.to_string());
            out.push(Setting { option: opt.to_string(), value });
        }
        Ok(out)
    }
}

fn is_option_name(s: &str) -> bool {
    s.strip_prefix("CONFIG_").is_some_and(|n| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    })
}

/// The effective settings of a list of fragments: a later fragment overrides an earlier
/// one (like `merge_config.sh`), and the verifier then names the fragment that won.
pub fn effective(fragments: &[Fragment]) -> Result<Vec<(Setting, String)>, Error> {
    let mut out: Vec<(Setting, String)> = Vec::new();
    for f in fragments {
        for s in f.settings()? {
            out.retain(|(old, _)| old.option != s.option);
            out.push((s, f.name.clone()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_set_unset_and_comments() {
        let f = Fragment::new("t", "# prose\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x y\"\nCONFIG_D=n\n\n");
        let s = f.settings().expect("valid fragment");
        assert_eq!(s.iter().map(Setting::line).collect::<Vec<_>>(), [
            "CONFIG_A=y",
            "# CONFIG_B is not set",
            "CONFIG_C=\"x y\"",
            "# CONFIG_D is not set"
        ]);
    }

    #[test]
    fn rejects_garbage_with_name_and_line() {
        let e = Fragment::new("bad.config", "CONFIG_A=y\nCONFG_B=y\n").settings().expect_err("typo");
        assert!(e.to_string().contains("bad.config:2"), "{e}");
        assert!(Fragment::new("b", "CONFIG_A=\n").settings().is_err());
        assert!(Fragment::new("b", "# CONFIG_a is not set\n").settings().is_err());
    }

    #[test]
    fn later_fragment_wins() {
        let e = effective(&[Fragment::new("a", "CONFIG_X=y\nCONFIG_Y=y"), Fragment::new("b", "# CONFIG_X is not set")])
            .expect("valid");
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].0.line(), "# CONFIG_X is not set");
        assert_eq!(e[1].1, "b");
    }

    #[test]
    fn builtin_fragments_parse_and_never_contradict_each_other() {
        let mut seen: Vec<(Setting, &str)> = Vec::new();
        for (name, text) in BUILTIN {
            for s in Fragment::new(*name, *text).settings().expect("builtin fragment parses") {
                if let Some((old, from)) = seen.iter().find(|(o, _)| o.option == s.option) {
                    panic!("{} set by both {from} ({}) and {name} ({})", s.option, old.line(), s.line());
                }
                seen.push((s, name));
            }
        }
    }

    /// The kernel boots as many CPUs as an image may ask for, no fewer (a guest would
    /// silently get fewer CPUs than asked) and no more (each possible CPU costs memory).
    #[test]
    fn nr_cpus_is_the_most_cpus_an_image_may_ask_for() {
        use linker::abi::MAX_CPUS;
        let all = effective(&Fragment::builtin()).expect("builtin fragments parse");
        let get = |opt: &str| all.iter().find(|(s, _)| s.option == opt).and_then(|(s, _)| s.value.clone());
        assert_eq!(get("CONFIG_SMP").as_deref(), Some("y"));
        assert_eq!(get("CONFIG_NR_CPUS"), Some(MAX_CPUS.to_string()));
    }

    #[test]
    fn builtin_list_matches_the_fragments_directory() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fragments");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("fragments dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".config"))
            .collect();
        on_disk.sort();
        let listed: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
        assert_eq!(on_disk, listed, "every fragment file must be listed in BUILTIN, in order");
    }
}
