//! What the manifest says about the services (`service*` records): parsed
//! and checked before anything runs, and the restart rules. Pure code,
//! unit-tested on the host.

use crate::values::{parse_u32, parse_user, User};
use alloc::vec::Vec;
use linker::config::{self, Key, Record, MAX_SERVICES};

/// When a service that ended is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    Always,
    /// After a non-zero exit status or a death by signal (the default).
    OnFailure,
    Never,
}

/// What the app waits for before it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ready<'a> {
    /// A TCP connection to 127.0.0.1:PORT succeeds.
    Tcp(u16),
    /// An absolute path exists.
    File(&'a [u8]),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service<'a> {
    pub name: &'a [u8],
    /// A path, or a name searched in PATH.
    pub entry: &'a [u8],
    pub args: Vec<&'a [u8]>,
    /// `VAR=value` over the app's environment.
    pub env: Vec<&'a [u8]>,
    pub workdir: Option<&'a [u8]>,
    pub user: Option<User>,
    pub restart: Restart,
    /// The condition and its timeout in seconds.
    pub ready: Option<(Ready<'a>, u32)>,
}

/// A first restart comes this long after the end, each next one twice as
/// long after, up to `BACKOFF_MAX_MS`.
pub const BACKOFF_FIRST_MS: u64 = 100;
pub const BACKOFF_MAX_MS: u64 = 4000;
/// A service that ended this many times in a row, each run shorter than
/// `STABLE_RUN_NS`, is given up (systemd's default start limit is also 5).
pub const MAX_FAILURES: u32 = 5;
pub const STABLE_RUN_NS: u64 = 10_000_000_000;

/// The pause before restart number `n` (1-based) of a run of failures.
pub fn backoff_ms(n: u32) -> u64 {
    let shift = n.saturating_sub(1).min(16);
    (BACKOFF_FIRST_MS << shift).min(BACKOFF_MAX_MS)
}

/// Whether a service that ended with `code` (`None`: killed by a signal)
/// is started again under `policy`.
pub fn wants_restart(policy: Restart, code: Option<i32>) -> bool {
    match policy {
        Restart::Always => true,
        Restart::OnFailure => code != Some(0),
        Restart::Never => false,
    }
}

/// Applies one `service*` record (manifest only) to `services`. Errors:
/// what is wrong and the offending value.
pub fn apply<'a>(services: &mut Vec<Service<'a>>, record: &Record<'a>) -> Result<(), (&'static str, &'a [u8])> {
    let (name, value) = (record.field(0), record.field(1));
    if record.key == Key::Service {
        if !config::valid_service_name(name) {
            return Err(("service name is not 1-32 of A-Z a-z 0-9 - _ .", name));
        }
        if services.iter().any(|s| s.name == name) {
            return Err(("service defined twice", name));
        }
        if services.len() == MAX_SERVICES {
            return Err(("more than 8 services", name));
        }
        if value.is_empty() {
            return Err(("service without a command", name));
        }
        services.push(Service {
            name,
            entry: value,
            args: Vec::new(),
            env: Vec::new(),
            workdir: None,
            user: None,
            restart: Restart::OnFailure,
            ready: None,
        });
        return Ok(());
    }
    let service = services.iter_mut().find(|s| s.name == name).ok_or(("service option before its service record", name))?;
    match record.key {
        Key::ServiceArg => service.args.push(value),
        Key::ServiceEnv => {
            if value.iter().position(|&c| c == b'=').is_none_or(|n| n == 0) {
                return Err(("service env entry is not NAME=value", value));
            }
            service.env.push(value);
        }
        Key::ServiceWorkdir if value.starts_with(b"/") => service.workdir = Some(value),
        Key::ServiceWorkdir => return Err(("service workdir is not absolute", value)),
        Key::ServiceUser => service.user = Some(parse_user(value).ok_or(("service user is not uid or uid:gid", value))?),
        Key::ServiceRestart => {
            service.restart = match value {
                b"always" => Restart::Always,
                b"on-failure" => Restart::OnFailure,
                b"never" => Restart::Never,
                _ => return Err(("service restart is not always, on-failure or never", value)),
            }
        }
        _ => {
            let ready = parse_ready(value).ok_or(("service ready is not tcp:PORT or file:/PATH", value))?;
            let timeout = record.field(2);
            let secs = parse_u32(timeout)
                .filter(|s| (1..=config::MAX_READY_TIMEOUT_SECS).contains(s))
                .ok_or(("service ready timeout is not 1-3600 seconds", timeout))?;
            service.ready = Some((ready, secs));
        }
    }
    Ok(())
}

fn parse_ready(value: &[u8]) -> Option<Ready<'_>> {
    if let Some(port) = value.strip_prefix(config::READY_TCP.as_bytes()) {
        let port = parse_u32(port).and_then(|p| u16::try_from(p).ok()).filter(|&p| p > 0)?;
        return Some(Ready::Tcp(port));
    }
    let path = value.strip_prefix(config::READY_FILE.as_bytes())?;
    (path.starts_with(b"/")).then_some(Ready::File(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;
    use alloc::vec;

    fn manifest(records: &[(Key, &[&[u8]])]) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let mut w = config::Writer::new(&mut buf).expect("magic fits");
        w.push(Key::Entry, &[b"/app"]).expect("fits");
        for (key, fields) in records {
            w.push(*key, fields).expect("test record fits");
        }
        w.as_bytes().to_vec()
    }

    #[test]
    fn services_with_every_option_in_order() {
        let m = manifest(&[
            (Key::Service, &[b"db", b"redis-server"]),
            (Key::Service, &[b"log.ship-1", b"/bin/shipper"]),
            (Key::ServiceArg, &[b"db", b"--port"]),
            (Key::ServiceArg, &[b"db", b"6379"]),
            (Key::ServiceEnv, &[b"db", b"A=b=c"]),
            (Key::ServiceWorkdir, &[b"db", b"/var/lib"]),
            (Key::ServiceUser, &[b"db", b"100:101"]),
            (Key::ServiceRestart, &[b"db", b"always"]),
            (Key::ServiceReady, &[b"db", b"tcp:6379", b"30"]),
            (Key::ServiceRestart, &[b"log.ship-1", b"never"]),
            (Key::ServiceReady, &[b"log.ship-1", b"file:/run/up", b"1"]),
        ]);
        let plan = Plan::new(&m, None).expect("valid");
        assert_eq!(plan.services.len(), 2);
        let db = &plan.services[0];
        assert_eq!((db.name, db.entry), (&b"db"[..], &b"redis-server"[..]));
        assert_eq!(db.args, vec![&b"--port"[..], b"6379"]);
        assert_eq!(db.env, vec![&b"A=b=c"[..]]);
        assert_eq!(db.workdir, Some(&b"/var/lib"[..]));
        assert_eq!(db.user, Some(User { uid: 100, gid: 101 }));
        assert_eq!((db.restart, db.ready), (Restart::Always, Some((Ready::Tcp(6379), 30))));
        let ship = &plan.services[1];
        assert_eq!((ship.restart, ship.ready), (Restart::Never, Some((Ready::File(b"/run/up"), 1))));
        assert!(ship.args.is_empty() && ship.user.is_none() && ship.workdir.is_none());
    }

    #[test]
    fn defaults_and_no_services_at_run_time() {
        let m = manifest(&[(Key::Service, &[b"s", b"/bin/s"])]);
        let plan = Plan::new(&m, None).expect("valid");
        assert_eq!((plan.services[0].restart, plan.services[0].ready), (Restart::OnFailure, None));
        let mut buf = vec![0u8; 64];
        let mut w = config::Writer::new(&mut buf).expect("fits");
        w.push(Key::Services, &[b"no"]).expect("fits");
        assert!(Plan::new(&m, Some(w.as_bytes())).expect("valid").services.is_empty());
    }

    #[test]
    fn bad_service_records_are_refused() {
        let cases: [(&[(Key, &[&[u8]])], &str); 13] = [
            (&[(Key::Service, &[b"", b"/s"])], "service name is not 1-32 of A-Z a-z 0-9 - _ ."),
            (&[(Key::Service, &[b"a b", b"/s"])], "service name is not 1-32 of A-Z a-z 0-9 - _ ."),
            (&[(Key::Service, &[&[b'x'; 33], b"/s"])], "service name is not 1-32 of A-Z a-z 0-9 - _ ."),
            (&[(Key::Service, &[b"a", b"/s"]), (Key::Service, &[b"a", b"/t"])], "service defined twice"),
            (&[(Key::Service, &[b"a", b""])], "service without a command"),
            (&[(Key::ServiceArg, &[b"a", b"x"]), (Key::Service, &[b"a", b"/s"])], "service option before its service record"),
            (&[(Key::Service, &[b"a", b"/s"]), (Key::ServiceEnv, &[b"a", b"=x"])], "service env entry is not NAME=value"),
            (&[(Key::Service, &[b"a", b"/s"]), (Key::ServiceWorkdir, &[b"a", b"srv"])], "service workdir is not absolute"),
            (&[(Key::Service, &[b"a", b"/s"]), (Key::ServiceUser, &[b"a", b"root"])], "service user is not uid or uid:gid"),
            (&[(Key::Service, &[b"a", b"/s"]), (Key::ServiceRestart, &[b"a", b"sometimes"])], "service restart is not always, on-failure or never"),
            (&[(Key::Service, &[b"a", b"/s"]), (Key::ServiceReady, &[b"a", b"tcp:0", b"5"])], "service ready is not tcp:PORT or file:/PATH"),
            (&[(Key::Service, &[b"a", b"/s"]), (Key::ServiceReady, &[b"a", b"file:rel", b"5"])], "service ready is not tcp:PORT or file:/PATH"),
            (&[(Key::Service, &[b"a", b"/s"]), (Key::ServiceReady, &[b"a", b"tcp:80", b"0"])], "service ready timeout is not 1-3600 seconds"),
        ];
        for (records, what) in cases {
            let m = manifest(records);
            assert_eq!(Plan::new(&m, None).expect_err(what).what, what);
        }
        let names = *b"abcdefghi";
        let nine: Vec<[&[u8]; 2]> = names.iter().map(|c| [core::slice::from_ref(c), &b"/s"[..]]).collect();
        let nine: Vec<(Key, &[&[u8]])> = nine.iter().map(|f| (Key::Service, &f[..])).collect();
        assert_eq!(Plan::new(&manifest(&nine), None).expect_err("nine").what, "more than 8 services");
        let mut buf = vec![0u8; 64];
        let mut w = config::Writer::new(&mut buf).expect("fits");
        w.push(Key::Service, &[b"a", b"/s"]).expect("fits");
        let plain = manifest(&[]);
        let err = Plan::new(&plain, Some(w.as_bytes())).expect_err("runtime");
        assert_eq!(err.what, "service records in the runtime config");
    }

    #[test]
    fn restart_rules_and_backoff() {
        assert!(wants_restart(Restart::Always, Some(0)));
        assert!(!wants_restart(Restart::OnFailure, Some(0)));
        assert!(wants_restart(Restart::OnFailure, Some(1)));
        assert!(wants_restart(Restart::OnFailure, None));
        assert!(!wants_restart(Restart::Never, None));
        let pauses: Vec<u64> = (1..=8).map(backoff_ms).collect();
        assert_eq!(pauses, vec![100, 200, 400, 800, 1600, 3200, 4000, 4000]);
        assert_eq!(backoff_ms(u32::MAX), BACKOFF_MAX_MS);
        assert_eq!(backoff_ms(0), BACKOFF_FIRST_MS);
    }
}
