//! Byte counts and percentages as text, the same everywhere a number is
//! shown (tables, budget breach lines, the picture).

/// `1234567` → `"1,234,567"`.
pub fn bytes(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Share `part / whole` as `"12.3%"`.
pub fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

/// Growth from `old` to `new` as a signed percentage, `"+5.0%"`.
pub fn growth_percent(old: u64, new: u64) -> String {
    if old == 0 {
        return if new == 0 { "+0.0%".into() } else { "new".into() };
    }
    format!("{:+.1}%", (new as f64 - old as f64) * 100.0 / old as f64)
}

/// Signed byte difference, `"+1,234"` / `"-56"` / `"0"`.
pub fn delta(old: u64, new: u64) -> String {
    match new.cmp(&old) {
        std::cmp::Ordering::Greater => format!("+{}", bytes(new - old)),
        std::cmp::Ordering::Less => format!("-{}", bytes(old - new)),
        std::cmp::Ordering::Equal => "0".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(bytes(0), "0");
        assert_eq!(bytes(999), "999");
        assert_eq!(bytes(1000), "1,000");
        assert_eq!(bytes(1_234_567), "1,234,567");
        assert_eq!(share(1, 3), "33.3%");
        assert_eq!(share(1, 0), "-");
        assert_eq!(growth_percent(100, 150), "+50.0%");
        assert_eq!(growth_percent(100, 50), "-50.0%");
        assert_eq!(growth_percent(0, 5), "new");
        assert_eq!(delta(10, 5), "-5");
        assert_eq!(delta(5, 1005), "+1,000");
    }
}
