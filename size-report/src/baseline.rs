//! Growth against an earlier `--json` report: per item (matched by name),
//! the earlier value of every metric.

use crate::json::{self, Json};
use crate::report::JSON_VERSION;

/// Earlier metrics, per item name.
#[derive(Debug)]
pub struct Baseline {
    items: Vec<(String, Vec<(String, u64)>)>,
}

impl Baseline {
    pub fn parse(text: &str) -> Result<Baseline, String> {
        let doc = json::parse(text).map_err(|e| format!("not a JSON report: {e}"))?;
        match doc.get("version").and_then(Json::as_u64) {
            Some(JSON_VERSION) => {}
            Some(v) => return Err(format!("report version {v} is not the supported {JSON_VERSION}")),
            None => return Err("not a size-report --json report (no \"version\")".into()),
        }
        let mut items = Vec::new();
        for item in doc.get("items").map(Json::as_array).unwrap_or(&[]) {
            let name = item.get("name").and_then(Json::as_str).ok_or("an item has no \"name\"")?;
            let metrics = match item.get("metrics") {
                Some(Json::Object(fields)) => fields
                    .iter()
                    .map(|(k, v)| v.as_u64().map(|v| (k.clone(), v)).ok_or(format!("metric {k} of {name} is not a byte count")))
                    .collect::<Result<Vec<_>, _>>()?,
                _ => return Err(format!("item {name} has no \"metrics\" object")),
            };
            items.push((name.to_string(), metrics));
        }
        Ok(Baseline { items })
    }

    /// Earlier metrics of the item `name`, if the baseline has it.
    pub fn item(&self, name: &str) -> Option<&[(String, u64)]> {
        self.items.iter().find(|i| i.0 == name).map(|i| i.1.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_metrics_by_name() {
        let b = Baseline::parse(r#"{"version":1,"items":[{"name":"a.vm","metrics":{"stub":10,"total":20}}]}"#)
            .expect("valid");
        assert_eq!(b.item("a.vm"), Some(&[("stub".to_string(), 10), ("total".to_string(), 20)][..]));
        assert_eq!(b.item("b.vm"), None);
    }

    #[test]
    fn refuses_other_documents() {
        assert!(Baseline::parse("[]").is_err());
        assert!(Baseline::parse(r#"{"version":2,"items":[]}"#).unwrap_err().contains("version 2"));
        assert!(Baseline::parse(r#"{"version":1,"items":[{"name":"a","metrics":{"x":-1}}]}"#).is_err());
        assert!(Baseline::parse("{").is_err());
    }
}
