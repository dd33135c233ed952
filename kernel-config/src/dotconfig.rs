//! A kernel `.config`: merging fragments into it, and checking that every option a
//! fragment asked for survived `make olddefconfig` (Kconfig silently drops options
//! whose dependencies are unmet or whose name does not exist).
use crate::fragment::Setting;
use crate::Error;
use std::collections::HashMap;

/// What a `.config` says about one option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Set(String),
    NotSet,
}

/// Options of a `.config` by name. Options absent from the file are invisible to
/// Kconfig (unknown name or unmet dependency) and behave as "not set".
pub fn parse(text: &str) -> HashMap<String, State> {
    let mut map = HashMap::new();
    for line in text.lines() {
        if let Some(opt) = line.strip_prefix("# ").and_then(|l| l.strip_suffix(" is not set")) {
            map.insert(opt.to_string(), State::NotSet);
        } else if let Some((opt, val)) = line.split_once('=').filter(|(o, _)| o.starts_with("CONFIG_")) {
            map.insert(opt.to_string(), State::Set(val.to_string()));
        }
    }
    map
}

/// The option a `.config` line sets, if any.
fn option_of(line: &str) -> Option<&str> {
    line.strip_prefix("# ")
        .and_then(|l| l.strip_suffix(" is not set"))
        .or_else(|| line.split_once('=').map(|(o, _)| o))
        .filter(|o| o.starts_with("CONFIG_"))
}

/// `base` with every line about an option in `settings` replaced by the setting
/// (appended at the end, in order, like `merge_config.sh`).
pub fn merge(base: &str, settings: &[(Setting, String)]) -> String {
    let mut out = String::with_capacity(base.len() + settings.len() * 40);
    for line in base.lines() {
        if option_of(line).is_some_and(|o| settings.iter().any(|(s, _)| s.option == o)) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    let mut from = "";
    for (s, frag) in settings {
        if frag != from {
            out.push_str(&format!("# smolvm fragment: {frag}\n"));
            from = frag;
        }
        out.push_str(&s.line());
        out.push('\n');
    }
    out
}

/// One requested option that the final `.config` does not honour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub wanted: Setting,
    pub fragment: String,
    /// What the final `.config` has instead (`None`: absent, the option is invisible).
    pub got: Option<State>,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let got = match &self.got {
            Some(State::Set(v)) => format!("{}={v}", self.wanted.option),
            Some(State::NotSet) => "not set".to_string(),
            None => "absent (unknown option or unmet dependency)".to_string(),
        };
        write!(f, "{} (from {}) did not survive: final .config has {got}", self.wanted.line(), self.fragment)
    }
}

/// Every setting that the final `.config` does not honour.
pub fn dropped(final_config: &str, settings: &[(Setting, String)]) -> Vec<Dropped> {
    let cfg = parse(final_config);
    settings
        .iter()
        .filter_map(|(s, frag)| {
            let got = cfg.get(&s.option);
            let ok = match (&s.value, got) {
                (Some(want), Some(State::Set(v))) => want == v,
                (Some(_), _) => false,
                (None, Some(State::Set(_))) => false,
                (None, _) => true,
            };
            (!ok).then(|| Dropped { wanted: s.clone(), fragment: frag.clone(), got: got.cloned() })
        })
        .collect()
}

/// `dropped` as a build error naming each option and its fragment.
pub fn verify(final_config: &str, settings: &[(Setting, String)]) -> Result<(), Error> {
    let bad = dropped(final_config, settings);
    if bad.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = bad.iter().map(ToString::to_string).collect();
    Err(Error::new(format!("kernel config check failed: {}", list.join("; "))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragment::{effective, Fragment};

    const FINAL: &str = "\
CONFIG_64BIT=y
# CONFIG_MODULES is not set
CONFIG_SERIAL_8250=y
CONFIG_CMDLINE=\"quiet\"
# CONFIG_PCI is not set
";

    fn settings(frag: &str) -> Vec<(Setting, String)> {
        effective(&[Fragment::new("frag.config", frag)]).expect("valid fragment")
    }

    #[test]
    fn honoured_settings_pass() {
        let s = settings("CONFIG_64BIT=y\n# CONFIG_MODULES is not set\nCONFIG_CMDLINE=\"quiet\"\n# CONFIG_GONE is not set\n");
        verify(FINAL, &s).expect("all honoured");
    }

    #[test]
    fn option_kconfig_dropped_is_an_error_naming_option_and_fragment() {
        // CONFIG_PCI_MSI depends on PCI: olddefconfig removes it, so it is absent.
        let s = settings("CONFIG_SERIAL_8250=y\nCONFIG_PCI_MSI=y\n");
        let e = verify(FINAL, &s).expect_err("PCI_MSI cannot be set").to_string();
        assert!(e.contains("CONFIG_PCI_MSI=y (from frag.config)"), "{e}");
        assert!(e.contains("absent"), "{e}");
        assert!(!e.contains("SERIAL_8250"), "{e}");
    }

    #[test]
    fn wrong_value_unset_and_unwanted_set_are_errors() {
        let s = settings("CONFIG_CMDLINE=\"loud\"\nCONFIG_PCI=y\n# CONFIG_SERIAL_8250 is not set\n");
        let bad = dropped(FINAL, &s);
        assert_eq!(bad.len(), 3);
        assert_eq!(bad[1].got, Some(State::NotSet));
        assert_eq!(bad[2].got, Some(State::Set("y".into())));
    }

    #[test]
    fn merge_replaces_and_appends() {
        let s = settings("CONFIG_PCI=y\n# CONFIG_SERIAL_8250 is not set\nCONFIG_NEW=y\n");
        let m = merge(FINAL, &s);
        assert!(!m.contains("# CONFIG_PCI is not set"));
        assert!(!m.contains("CONFIG_SERIAL_8250=y"));
        assert!(m.ends_with("# smolvm fragment: frag.config\nCONFIG_PCI=y\n# CONFIG_SERIAL_8250 is not set\nCONFIG_NEW=y\n"));
        // After the merge every setting is honoured by the merged text itself.
        verify(&m, &s).expect("merged text honours the fragment");
    }
}
