//! Values the manifest and runtime config share between the app's plan and
//! the services' specs: decimal numbers and users.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

/// A decimal u32 without sign, spaces or leading `+`.
pub fn parse_u32(text: &[u8]) -> Option<u32> {
    parse_u64(text).and_then(|v| u32::try_from(v).ok())
}

/// A decimal u64 without sign, spaces or leading `+`.
pub fn parse_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 20 {
        return None;
    }
    let mut value: u64 = 0;
    for &c in text {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(value)
}

/// `uid` or `uid:gid`; without a gid the group is 0 (Docker's behaviour for
/// a numeric user that has no passwd entry).
pub fn parse_user(text: &[u8]) -> Option<User> {
    let mut parts = text.splitn(2, |&c| c == b':');
    let uid = parse_u32(parts.next()?)?;
    let gid = match parts.next() {
        Some(gid) => parse_u32(gid)?,
        None => 0,
    };
    Some(User { uid, gid })
}
