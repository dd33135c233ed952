//! Size budgets: `size-budget.toml` has one table per reference image (keyed
//! by the report name: the file name or `--name`) with a byte limit per
//! metric (a part, `total`, `init`, `kernel.xz`, …). A metric above its
//! limit is a breach; the report exits non-zero.

use crate::report::{Item, ItemKind};
use crate::toml;

/// One limit checked against one report item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub key: String,
    pub limit: u64,
    pub actual: u64,
}

impl Check {
    pub fn over(&self) -> bool {
        self.actual > self.limit
    }

    /// `"kernel is 1,234 bytes (+12.3%) over budget: 11,234 > 10,000"`.
    pub fn breach_message(&self) -> String {
        let excess = self.actual - self.limit;
        format!(
            "{} is {} bytes ({}) over budget: {} > {}",
            self.key,
            crate::figures::bytes(excess),
            crate::figures::growth_percent(self.limit, self.actual),
            crate::figures::bytes(self.actual),
            crate::figures::bytes(self.limit),
        )
    }
}

/// Metric names every image has or may have; a budget key outside this list
/// (for an image) is a typo and an error rather than a limit never checked.
pub const IMAGE_KEYS: [&str; 13] = [
    "stub", "kernel", "initramfs", "rootfs", "manifest", "kernel-info", "padding", "trailer", "total", "init",
    "kernel.xz", "kernel.zstd", "kernel.lz4",
];

pub struct Budgets {
    tables: Vec<toml::Table>,
}

impl Budgets {
    pub fn parse(text: &str) -> Result<Budgets, String> {
        Ok(Budgets { tables: toml::parse(text)? })
    }

    /// The checks for `item`; an error if the file has no table for it or
    /// names a metric the item cannot have.
    pub fn check(&self, item: &Item) -> Result<Vec<Check>, String> {
        let Some((_, limits)) = self.tables.iter().find(|t| t.0 == item.name) else {
            return Err(format!("no budget for \"{}\" (add a [\"{}\"] table or pass --name)", item.name, item.name));
        };
        let metrics = item.metrics();
        let mut checks = Vec::new();
        for (key, limit) in limits {
            let actual = match metrics.iter().find(|m| &m.0 == key) {
                Some(m) => m.1,
                // Optional image parts that are absent take no bytes.
                None if item.kind == ItemKind::Image && IMAGE_KEYS[..8].contains(&key.as_str()) => 0,
                None if key.starts_with("kernel.") && IMAGE_KEYS.contains(&key.as_str()) => {
                    return Err(format!("budget for {key} of \"{}\" needs the compressors (drop --no-compress)", item.name))
                }
                None => {
                    let known: Vec<&str> = metrics.iter().map(|m| m.0.as_str()).collect();
                    return Err(format!(
                        "budget key {key} of \"{}\" is not one of its metrics ({})",
                        item.name,
                        known.join(", ")
                    ));
                }
            };
            checks.push(Check { key: key.clone(), limit: *limit, actual });
        }
        Ok(checks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Part;

    fn item() -> Item {
        Item {
            name: "hello.vm".into(),
            path: "hello.vm".into(),
            kind: ItemKind::Image,
            size: 1000,
            parts: vec![Part { name: "stub".into(), size: 400 }, Part { name: "kernel".into(), size: 600 }],
            initramfs: None,
            kernel: None,
            elfs: vec![],
        }
    }

    #[test]
    fn breaches_are_named_with_bytes_and_percent() {
        let b = Budgets::parse("[\"hello.vm\"]\nstub = 300\nkernel = 600\nrootfs = 0\ntotal = 2000\n").expect("valid");
        let checks = b.check(&item()).expect("budget applies");
        let over: Vec<&Check> = checks.iter().filter(|c| c.over()).collect();
        assert_eq!(over.len(), 1);
        assert_eq!(over[0].breach_message(), "stub is 100 bytes (+33.3%) over budget: 400 > 300");
    }

    #[test]
    fn unknown_names_are_errors() {
        let b = Budgets::parse("[other]\ntotal = 1\n").expect("valid");
        assert!(b.check(&item()).unwrap_err().contains("no budget for \"hello.vm\""));
        let b = Budgets::parse("[\"hello.vm\"]\nkernal = 1\n").expect("valid");
        assert!(b.check(&item()).unwrap_err().contains("kernal"));
        let b = Budgets::parse("[\"hello.vm\"]\n\"kernel.xz\" = 1\n").expect("valid");
        assert!(b.check(&item()).unwrap_err().contains("--no-compress"));
    }
}
