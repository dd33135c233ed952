//! `smolvm build --service NAME=COMMAND…` and its per-service options:
//! parsed, checked, and turned into the manifest's `service*` records
//! (read by smol-init, which supervises them beside the app).

use crate::bail;
use crate::error::{Error, Result};
use linker::config::{self, Key, MAX_READY_TIMEOUT_SECS, MAX_SERVICES, READY_FILE, READY_TCP, RESTART_POLICIES};

/// The app waits this long for a service's readiness unless told.
pub const DEFAULT_READY_TIMEOUT_SECS: u32 = 30;

/// The `--service*` flags as given.
#[derive(clap::Args, Debug, Default)]
pub struct ServiceArgs {
    /// Run a service beside the app (repeatable, at most 8; they start in
    /// this order, before the app). COMMAND is a path or a name searched in
    /// PATH, then its arguments, split at spaces ('…' or "…" keep spaces),
    /// e.g. --service 'cache=redis-server --port 6379 --save ""'. NAME
    /// (1-32 of A-Z a-z 0-9 - _ .) prefixes each line of its output on
    /// stderr as `[NAME] `.
    #[arg(long = "service", value_name = "NAME=COMMAND [ARGS…]", help_heading = "Services")]
    pub service: Vec<String>,
    /// When service NAME is started again after it ends: always, on-failure
    /// (default: a non-zero status or a signal) or never. Restarts wait
    /// 0.1 s, doubling up to 4 s; after 5 failed restarts in a row (runs
    /// shorter than 10 s) the service is given up and the app goes on.
    #[arg(long, value_name = "NAME=POLICY", help_heading = "Services")]
    pub service_restart: Vec<String>,
    /// The app starts only once service NAME is ready: tcp:PORT (a
    /// connection to 127.0.0.1:PORT succeeds) or file:PATH (the absolute
    /// guest path exists). Not ready in time: the VM ends with status 125
    /// and a line naming the service.
    #[arg(long, value_name = "NAME=tcp:PORT|file:PATH", help_heading = "Services")]
    pub service_ready: Vec<String>,
    /// How long the app waits for service NAME to be ready (1-3600 s, default 30).
    #[arg(long, value_name = "NAME=SECONDS", help_heading = "Services")]
    pub service_ready_timeout: Vec<String>,
    /// Environment variable of service NAME (repeatable), over the app's
    /// environment, which services inherit.
    #[arg(long, value_name = "NAME=VAR=VALUE", help_heading = "Services")]
    pub service_env: Vec<String>,
    /// Run service NAME as UID or UID:GID (numeric; default 0:0).
    #[arg(long, value_name = "NAME=UID[:GID]", help_heading = "Services")]
    pub service_user: Vec<String>,
    /// Working directory of service NAME (absolute guest path; default /).
    #[arg(long, value_name = "NAME=DIR", help_heading = "Services")]
    pub service_workdir: Vec<String>,
}

/// One service, checked.
#[derive(Debug, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub command: Vec<String>,
    pub restart: Option<String>,
    pub ready: Option<(String, u32)>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
}

/// Splits a command line at spaces; '…' and "…" keep what they hold
/// (no escapes, no variables: no shell runs it).
pub fn split_command(s: &str) -> Option<Vec<String>> {
    let (mut words, mut word, mut quote, mut in_word) = (Vec::new(), String::new(), None, false);
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => (quote, in_word) = (Some(c), true),
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return None;
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// `NAME=rest` of a `flag` value, NAME being a defined service.
fn split_named<'a>(flag: &str, value: &'a str, services: &[Service]) -> Result<(usize, &'a str)> {
    let Some((name, rest)) = value.split_once('=') else {
        bail!("bad {flag} `{value}`: expected NAME=..., NAME being a --service");
    };
    match services.iter().position(|s| s.name == name) {
        Some(i) => Ok((i, rest)),
        None => bail!("bad {flag} `{value}`: no --service named `{name}`"),
    }
}

fn numeric_user(u: &str) -> bool {
    let numeric = |x: &str| !x.is_empty() && x.len() <= 10 && x.bytes().all(|b| b.is_ascii_digit()) && x.parse::<u32>().is_ok();
    match u.split_once(':') {
        Some((uid, gid)) => numeric(uid) && numeric(gid),
        None => numeric(u),
    }
}

impl ServiceArgs {
    /// The services in order, every option checked.
    pub fn parse(&self) -> Result<Vec<Service>> {
        let mut services: Vec<Service> = Vec::new();
        for v in &self.service {
            let Some((name, cmd)) = v.split_once('=') else {
                bail!("bad --service `{v}`: expected NAME=COMMAND [ARGS…], e.g. cache=redis-server");
            };
            if !config::valid_service_name(name.as_bytes()) {
                bail!("bad --service `{v}`: the name must be 1-32 of A-Z a-z 0-9 - _ .");
            }
            if services.iter().any(|s| s.name == name) {
                bail!("bad --service `{v}`: a service named `{name}` is already given");
            }
            if services.len() == MAX_SERVICES {
                bail!("too many --service: at most {MAX_SERVICES}");
            }
            let command = split_command(cmd).ok_or_else(|| Error(format!("bad --service `{v}`: unbalanced quote")))?;
            if command.is_empty() {
                bail!("bad --service `{v}`: no command after `=`");
            }
            services.push(Service {
                name: name.to_string(),
                command,
                restart: None,
                ready: None,
                env: Vec::new(),
                user: None,
                workdir: None,
            });
        }
        for v in &self.service_restart {
            let (i, policy) = split_named("--service-restart", v, &services)?;
            if !RESTART_POLICIES.contains(&policy) {
                bail!("bad --service-restart `{v}`: the policy is always, on-failure or never");
            }
            services[i].restart = Some(policy.to_string());
        }
        for v in &self.service_ready {
            let (i, cond) = split_named("--service-ready", v, &services)?;
            let ok = match (cond.strip_prefix(READY_TCP), cond.strip_prefix(READY_FILE)) {
                (Some(port), _) => port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p > 0),
                (_, Some(path)) => path.starts_with('/'),
                _ => false,
            };
            if !ok {
                bail!("bad --service-ready `{v}`: give tcp:PORT (1-65535) or file:/ABSOLUTE/PATH");
            }
            services[i].ready = Some((cond.to_string(), DEFAULT_READY_TIMEOUT_SECS));
        }
        for v in &self.service_ready_timeout {
            let (i, secs) = split_named("--service-ready-timeout", v, &services)?;
            let secs = secs
                .parse::<u32>()
                .ok()
                .filter(|s| (1..=MAX_READY_TIMEOUT_SECS).contains(s))
                .ok_or_else(|| Error(format!("bad --service-ready-timeout `{v}`: give whole seconds, 1-{MAX_READY_TIMEOUT_SECS}")))?;
            match &mut services[i].ready {
                Some((_, t)) => *t = secs,
                None => bail!("bad --service-ready-timeout `{v}`: service `{}` has no --service-ready", services[i].name),
            }
        }
        for v in &self.service_env {
            let (i, var) = split_named("--service-env", v, &services)?;
            if var.split_once('=').is_none_or(|(n, _)| n.is_empty()) {
                bail!("bad --service-env `{v}`: expected NAME=VAR=VALUE");
            }
            services[i].env.push(var.to_string());
        }
        for v in &self.service_user {
            let (i, user) = split_named("--service-user", v, &services)?;
            if !numeric_user(user) {
                bail!("bad --service-user `{v}`: give a numeric UID or UID:GID, e.g. cache=1000:1000");
            }
            services[i].user = Some(user.to_string());
        }
        for v in &self.service_workdir {
            let (i, dir) = split_named("--service-workdir", v, &services)?;
            if !dir.starts_with('/') {
                bail!("bad --service-workdir `{v}`: must be an absolute guest path");
            }
            services[i].workdir = Some(dir.to_string());
        }
        Ok(services)
    }
}

/// The manifest records of `services` (fields as bytes).
pub fn records(services: &[Service]) -> Vec<(Key, Vec<Vec<u8>>)> {
    let mut recs = Vec::new();
    let b = |s: &str| s.as_bytes().to_vec();
    for s in services {
        recs.push((Key::Service, vec![b(&s.name), b(&s.command[0])]));
    }
    for s in services {
        let name = b(&s.name);
        for a in &s.command[1..] {
            recs.push((Key::ServiceArg, vec![name.clone(), b(a)]));
        }
        for e in &s.env {
            recs.push((Key::ServiceEnv, vec![name.clone(), b(e)]));
        }
        if let Some(w) = &s.workdir {
            recs.push((Key::ServiceWorkdir, vec![name.clone(), b(w)]));
        }
        if let Some(u) = &s.user {
            recs.push((Key::ServiceUser, vec![name.clone(), b(u)]));
        }
        if let Some(r) = &s.restart {
            recs.push((Key::ServiceRestart, vec![name.clone(), b(r)]));
        }
        if let Some((cond, secs)) = &s.ready {
            recs.push((Key::ServiceReady, vec![name.clone(), b(cond), secs.to_string().into_bytes()]));
        }
    }
    recs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn commands_split_at_spaces_and_keep_quotes() {
        assert_eq!(split_command("redis-server --port 6379 --save \"\""), Some(strings(&["redis-server", "--port", "6379", "--save", ""])));
        assert_eq!(split_command("  sh -c 'echo a  b'x  "), Some(strings(&["sh", "-c", "echo a  bx"])));
        assert_eq!(split_command(""), Some(vec![]));
        assert_eq!(split_command("a 'b"), None);
    }

    #[test]
    fn flags_become_records_in_order() {
        let args = ServiceArgs {
            service: strings(&["db=redis-server --port 6379", "log=/bin/ship"]),
            service_restart: strings(&["db=always"]),
            service_ready: strings(&["db=tcp:6379", "log=file:/run/up"]),
            service_ready_timeout: strings(&["log=5"]),
            service_env: strings(&["db=A=1"]),
            service_user: strings(&["log=1:2"]),
            service_workdir: strings(&["db=/data"]),
        };
        let services = args.parse().expect("valid");
        let recs = records(&services);
        let shown: Vec<String> = recs
            .iter()
            .map(|(k, f)| format!("{} {}", k.name(), f.iter().map(|x| String::from_utf8_lossy(x).into_owned()).collect::<Vec<_>>().join(" ")))
            .collect();
        assert_eq!(
            shown,
            strings(&[
                "service db redis-server",
                "service log /bin/ship",
                "service-arg db --port",
                "service-arg db 6379",
                "service-env db A=1",
                "service-workdir db /data",
                "service-restart db always",
                "service-ready db tcp:6379 30",
                "service-user log 1:2",
                "service-ready log file:/run/up 5",
            ])
        );
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        let one = |f: fn(&mut ServiceArgs, Vec<String>), v: &str| {
            let mut a = ServiceArgs { service: strings(&["db=/bin/db"]), ..Default::default() };
            f(&mut a, strings(&[v]));
            a.parse().expect_err(v).0
        };
        let cases: [(fn(&mut ServiceArgs, Vec<String>), &str, &str); 12] = [
            (|a, v| a.service.extend(v), "db=/x", "already given"),
            (|a, v| a.service.extend(v), "bad name=/x", "the name must be"),
            (|a, v| a.service.extend(v), "x=", "no command"),
            (|a, v| a.service.extend(v), "x='a", "unbalanced quote"),
            (|a, v| a.service_restart = v, "db=sometimes", "always, on-failure or never"),
            (|a, v| a.service_restart = v, "other=always", "no --service named `other`"),
            (|a, v| a.service_ready = v, "db=tcp:0", "tcp:PORT"),
            (|a, v| a.service_ready = v, "db=file:rel", "tcp:PORT"),
            (|a, v| a.service_ready_timeout = v, "db=5", "has no --service-ready"),
            (|a, v| a.service_env = v, "db=novalue", "NAME=VAR=VALUE"),
            (|a, v| a.service_user = v, "db=root", "numeric UID"),
            (|a, v| a.service_workdir = v, "db=rel", "absolute"),
        ];
        for (f, v, want) in cases {
            let e = one(f, v);
            assert!(e.contains(want), "{v}: {e}");
        }
        let nine = ServiceArgs { service: (0..9).map(|i| format!("s{i}=/x")).collect(), ..Default::default() };
        assert!(nine.parse().expect_err("nine").0.contains("at most 8"));
    }
}
