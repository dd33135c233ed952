//! The subset of TOML a budget file needs: `[table]` or `["quoted.table"]`
//! headers, `key = integer` lines (underscores allowed), `#` comments.
//! Anything else is an error naming the line, never silently skipped: a
//! budget that is not read is a budget that does not hold.

/// A table: its name and its `key = value` pairs in file order.
pub type Table = (String, Vec<(String, u64)>);

pub fn parse(text: &str) -> Result<Vec<Table>, String> {
    let mut tables: Vec<Table> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let fail = |what: &str| Err(format!("line {line_no}: {what}"));
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let Some(name) = header.strip_suffix(']') else { return fail("expected ']' at the end of the table header") };
            let name = match key(name.trim()) {
                Some(n) => n,
                None => return fail("table name must be a bare word or a \"quoted string\""),
            };
            if tables.iter().any(|t| t.0 == name) {
                return fail(&format!("table [{name}] defined twice"));
            }
            tables.push((name, Vec::new()));
            continue;
        }
        let Some((k, v)) = line.split_once('=') else { return fail("expected `key = value`") };
        let Some(k) = key(k.trim()) else { return fail("key must be a bare word or a \"quoted string\"") };
        let Some(v) = integer(v.trim()) else { return fail(&format!("value of {k} must be a non-negative integer")) };
        let Some(table) = tables.last_mut() else { return fail("key outside of any [table]") };
        if table.1.iter().any(|e| e.0 == k) {
            return fail(&format!("key {k} defined twice"));
        }
        table.1.push((k, v));
    }
    Ok(tables)
}

/// The line without a trailing comment (a `#` outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// A bare key (`A-Za-z0-9_-`) or a basic string without escapes.
fn key(text: &str) -> Option<String> {
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        return (!inner.contains(['"', '\\'])).then(|| inner.to_string());
    }
    let bare = !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    bare.then(|| text.to_string())
}

/// A decimal integer; `_` only between digits, as TOML requires.
fn integer(text: &str) -> Option<u64> {
    let text = text.strip_prefix('+').unwrap_or(text);
    let bytes = text.as_bytes();
    let well_formed = !bytes.is_empty()
        && bytes[0].is_ascii_digit()
        && bytes[bytes.len() - 1].is_ascii_digit()
        && !text.contains("__")
        && (bytes.len() == 1 || bytes[0] != b'0');
    if !well_formed {
        return None;
    }
    text.replace('_', "").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_budgets() {
        let text = "# budgets\n[\"hello.vm\"]\ntotal = 3_145_728 # 3 MiB\nstub=65536\n\n[busybox]\n\"init\" = 0\n";
        let t = parse(text).expect("valid");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0], ("hello.vm".into(), vec![("total".into(), 3_145_728), ("stub".into(), 65_536)]));
        assert_eq!(t[1], ("busybox".into(), vec![("init".into(), 0)]));
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("x = 1", "line 1: key outside"),
            ("[a]\nx = \"big\"", "line 2: value of x"),
            ("[a]\nx = 1\nx = 2", "line 3: key x defined twice"),
            ("[a]\n[a]", "line 2: table [a] defined twice"),
            ("[a", "line 1: expected ']'"),
            ("[a.b]", "line 1: table name"),
            ("[a]\nx = -1", "line 2"),
            ("[a]\nx = 1__0", "line 2"),
            ("[a]\nx = 012", "line 2"),
            ("[a]\nx = 99999999999999999999999", "line 2"),
            ("[a]\njunk", "line 2: expected"),
        ];
        for (text, want) in cases {
            let got = parse(text).expect_err(text);
            assert!(got.starts_with(want), "{text:?}: {got}");
        }
    }
}
