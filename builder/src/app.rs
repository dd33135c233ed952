//! The app an image runs and its manifest (`linker::config` records):
//! command-line values merged over a container image's config, checked.

use crate::bail;
use crate::container::{self, ImageConfig};
use crate::error::{Error, Result};
use crate::rootfs::RootfsFormat;
use linker::abi::MAX_PUBLISH;
use linker::config::{self, Key};
use linker::disk::{DiskSpec, MAX_DISKS, MAX_GUEST_PATH};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What the command line says about the app; each value given overrides
/// the image config's.
pub struct AppFlags<'a> {
    /// `--entry`.
    pub entry: Option<&'a OsStr>,
    /// The first `--exec` program: the entry when `--entry` is not given.
    pub first_exec: Option<&'a Path>,
    /// `--arg`s.
    pub args: &'a [OsString],
    /// `--env`s, appended to the image's.
    pub env: &'a [OsString],
    pub workdir: Option<&'a OsStr>,
    pub user: Option<&'a str>,
}

/// The manifest's records that are not about the app itself.
pub struct ManifestFlags<'a> {
    /// Guest memory in MiB (`--mem`, parsed).
    pub mem: Option<u32>,
    /// vCPUs (`--cpus`, 1 to `abi::MAX_CPUS`: clap checked it).
    pub cpus: Option<u32>,
    pub rootfs_format: RootfsFormat,
    pub hostname: Option<&'a str>,
    /// `--tmpfs` guest paths.
    pub tmpfs: &'a [OsString],
    /// `--read-only`: the root stays read-only (no writable overlay).
    pub read_only: bool,
    /// `--net`: user-mode networking by default.
    pub net: bool,
    /// `--publish` specs (each implies `--net`).
    pub publish: &'a [String],
    /// `--disk` specs (`PATH[:ro][:/GUEST/PATH]`).
    pub disks: &'a [OsString],
    /// The `service*` records (`services::records`).
    pub services: Vec<(Key, Vec<Vec<u8>>)>,
}

/// What the app is: from the command line, else from the image config.
pub struct App {
    pub entry: Vec<u8>,
    /// The Entrypoint's own arguments: always passed, before `args`.
    pub entry_args: Vec<Vec<u8>>,
    /// Default arguments, replaced by the ones given to `./app.vm`.
    pub args: Vec<Vec<u8>>,
    /// The image has Cmd and no Entrypoint: `./app.vm PROG ARGS` replaces
    /// the whole command (Docker's rule).
    pub runtime_entry: bool,
    pub env: Vec<Vec<u8>>,
    pub workdir: Option<Vec<u8>>,
    /// Numeric `uid` or `uid:gid`.
    pub user: Option<String>,
}

fn bytes(v: &[String]) -> Vec<Vec<u8>> {
    v.iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// Merges the command line over the image config (Docker's rules: `--entry`
/// replaces the Entrypoint and drops Cmd; `--arg`s replace Cmd).
pub fn app(a: &AppFlags<'_>, cfg: Option<&ImageConfig>, root: &Path) -> Result<App> {
    let cli_args: Vec<Vec<u8>> = a.args.iter().map(|x| x.as_bytes().to_vec()).collect();
    let (entry, entry_args, args, runtime_entry) = match (a.entry, a.first_exec, cfg) {
        (Some(e), _, _) => (e.as_bytes().to_vec(), Vec::new(), cli_args, false),
        (None, Some(first), _) => (
            first.as_os_str().as_bytes().to_vec(),
            Vec::new(),
            cli_args,
            false,
        ),
        (None, None, Some(c)) => {
            let defaults = if a.args.is_empty() {
                bytes(&c.cmd)
            } else {
                cli_args
            };
            match c.entrypoint.split_first() {
                Some((entry, fixed)) => (entry.as_bytes().to_vec(), bytes(fixed), defaults, false),
                None => match defaults.split_first() {
                    Some((entry, rest)) => (entry.clone(), Vec::new(), rest.to_vec(), true),
                    None => bail!("the image has no Entrypoint or Cmd: give --entry PATH"),
                },
            }
        }
        (None, None, None) => bail!("give --entry PATH: the app's path inside the rootfs"),
    };
    let mut env = cfg.map(|c| bytes(&c.env)).unwrap_or_default();
    env.extend(a.env.iter().map(|e| e.as_bytes().to_vec()));
    let workdir = match (a.workdir, cfg.and_then(|c| c.workdir.as_ref())) {
        (Some(w), _) => Some(w.as_bytes().to_vec()),
        (None, Some(w)) => Some(w.as_bytes().to_vec()),
        (None, None) => None,
    };
    let user = match (a.user, cfg.and_then(|c| c.user.as_ref())) {
        (Some(u), _) => Some(u.to_string()),
        (None, Some(u)) => Some(container::resolve_user(root, u)?),
        (None, None) => None,
    };
    Ok(App {
        entry,
        entry_args,
        args,
        runtime_entry,
        env,
        workdir,
        user,
    })
}

/// Everything the manifest says, checked.
pub fn manifest(a: &ManifestFlags<'_>, app: &App) -> Result<Vec<u8>> {
    let mut recs: Vec<(Key, Vec<u8>)> = vec![(Key::Entry, app.entry.clone())];
    recs.extend(app.entry_args.iter().map(|x| (Key::EntryArg, x.clone())));
    recs.extend(app.args.iter().map(|x| (Key::Arg, x.clone())));
    if app.runtime_entry {
        recs.push((Key::RuntimeEntry, b"yes".to_vec()));
    }
    for e in &app.env {
        match e.iter().position(|&b| b == b'=') {
            Some(i) if i > 0 => recs.push((Key::Env, e.clone())),
            _ => bail!(
                "bad --env `{}`: expected NAME=value",
                String::from_utf8_lossy(e)
            ),
        }
    }
    if let Some(w) = &app.workdir {
        if !w.starts_with(b"/") {
            bail!(
                "bad --workdir `{}`: must be an absolute guest path",
                String::from_utf8_lossy(w)
            );
        }
        recs.push((Key::Workdir, w.clone()));
    }
    if let Some(m) = a.mem {
        recs.push((Key::Mem, m.to_string().into_bytes()));
    }
    if let Some(n) = a.cpus {
        recs.push((Key::Cpus, n.to_string().into_bytes()));
    }
    recs.push((Key::Rootfs, a.rootfs_format.name().as_bytes().to_vec()));
    if let Some(h) = a.hostname {
        if h.is_empty()
            || h.len() > 64
            || !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            bail!("bad --hostname `{h}`: 1-64 letters, digits, `-` or `.`");
        }
        recs.push((Key::Hostname, h.as_bytes().to_vec()));
    }
    if let Some(u) = &app.user {
        let numeric = |x: &str| !x.is_empty() && x.len() <= 10 && x.parse::<u32>().is_ok();
        let ok = match u.split_once(':') {
            Some((uid, gid)) => numeric(uid) && numeric(gid),
            None => numeric(u),
        };
        if !ok {
            bail!("bad --user `{u}`: give a numeric UID or UID:GID, e.g. 1000:1000");
        }
        recs.push((Key::User, u.clone().into_bytes()));
    }
    for t in a.tmpfs {
        if !t.as_bytes().starts_with(b"/") {
            bail!(
                "bad --tmpfs `{}`: must be an absolute guest path",
                t.to_string_lossy()
            );
        }
        recs.push((Key::Tmpfs, t.as_bytes().to_vec()));
    }
    if a.net || !a.publish.is_empty() {
        recs.push((Key::Net, b"passt".to_vec()));
    }
    check_publishes(a.publish)?;
    for spec in a.publish {
        recs.push((Key::Publish, spec.as_bytes().to_vec()));
    }
    if a.read_only {
        recs.push((Key::ReadOnly, b"yes".to_vec()));
    }
    if a.disks.len() > MAX_DISKS {
        bail!("too many --disk flags: at most {MAX_DISKS}");
    }
    for spec in a.disks {
        check_disk(spec.as_bytes())?;
        recs.push((Key::DefaultDisk, spec.as_bytes().to_vec()));
    }
    let mut recs: Vec<(Key, Vec<Vec<u8>>)> = recs.into_iter().map(|(k, v)| (k, vec![v])).collect();
    recs.extend(a.services.iter().cloned());
    let fields: Vec<Vec<&[u8]>> = recs.iter().map(|(_, f)| f.iter().map(Vec::as_slice).collect()).collect();
    let table: Vec<(Key, &[&[u8]])> = recs
        .iter()
        .zip(&fields)
        .map(|((k, _), f)| (*k, &f[..]))
        .collect();
    config::to_vec(&table).map_err(|e| Error(format!("manifest: {}", e.message())))
}

/// Checks a `--disk` value with the stub's own parser (`linker::disk`).
pub fn check_disk(spec: &[u8]) -> Result<()> {
    if DiskSpec::parse(spec).is_some() && spec != b"none" {
        return Ok(());
    }
    Err(Error(format!(
        "bad --disk `{}`: expected PATH[:ro][:/GUEST/PATH] with a non-empty PATH and an absolute GUEST/PATH \
         (not `/`, no `:`, at most {MAX_GUEST_PATH} bytes), e.g. data.ext4:/data or /srv/ref.img:ro:/ref",
        String::from_utf8_lossy(spec)
    )))
}

/// Checks the `--publish` values: each valid, at most `abi::MAX_PUBLISH`
/// (the stub keeps no more), and no host port twice for one protocol
/// (passt refuses an overlapping port, on any addresses, and exits).
pub fn check_publishes(specs: &[String]) -> Result<()> {
    if specs.len() > MAX_PUBLISH {
        bail!("too many --publish flags: at most {MAX_PUBLISH}");
    }
    let mut seen = Vec::new();
    for spec in specs {
        let port = check_publish(spec)?;
        if seen.contains(&port) {
            bail!(
                "bad --publish `{spec}`: host port {}/{} is already published (passt forwards each host port once)",
                port.0,
                if port.1 { "udp" } else { "tcp" }
            );
        }
        seen.push(port);
    }
    Ok(())
}

/// Checks a `--publish` value: `[HOST_IP:]HOST_PORT:GUEST_PORT[/udp]`
/// (`/tcp` is accepted as the default, IPv4 host address, ports 1-65535).
/// Returns the host port and whether it is UDP.
pub fn check_publish(spec: &str) -> Result<(u16, bool)> {
    let bad = |why: &str| {
        Error(format!(
            "bad --publish `{spec}`: {why}; expected [HOST_IP:]HOST_PORT:GUEST_PORT[/udp], e.g. 8080:80 or 127.0.0.1:5353:53/udp"
        ))
    };
    let (ports, udp) = match spec.rsplit_once('/') {
        Some((ports, proto @ ("udp" | "tcp"))) => (ports, proto == "udp"),
        Some(_) => return Err(bad("the protocol must be tcp or udp")),
        None => (spec, false),
    };
    let parts: Vec<&str> = ports.split(':').collect();
    let (ip, host, guest) = match parts.as_slice() {
        [host, guest] => (None, *host, *guest),
        [ip, host, guest] => (Some(*ip), *host, *guest),
        _ => return Err(bad("wrong number of `:`-separated fields")),
    };
    if let Some(ip) = ip {
        ip.parse::<std::net::Ipv4Addr>()
            .map_err(|_| bad("HOST_IP is not an IPv4 address"))?;
    }
    for port in [host, guest] {
        let valid = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p > 0);
        if !valid {
            return Err(bad(&format!("port `{port}` is not 1-65535")));
        }
    }
    // Checked above: 1-65535.
    Ok((host.parse().unwrap_or_default(), udp))
}

#[cfg(test)]
mod tests {
    use super::{check_disk, check_publish, check_publishes};

    #[test]
    fn disk_specs() {
        for ok in ["data.ext4", "./d.img:ro", "/srv/a:b.img:/mnt/a", "d.img:ro:/data", "d.img:/data:rw", "rel/dir/x.sqfs:/x/y"] {
            assert!(check_disk(ok.as_bytes()).is_ok(), "{ok}");
        }
        let long = format!("d:/{}", "a".repeat(1024));
        for bad in ["", ":ro", ":/data", "d:/", "d:/a:b", "d:ro:/", "none", "a\0b:/x", long.as_str()] {
            let err = check_disk(bad.as_bytes()).expect_err(bad);
            assert!(err.0.starts_with("bad --disk `") && !err.0.contains('\n'), "{}", err.0);
        }
    }

    #[test]
    fn publish_specs() {
        for ok in [
            "8080:80",
            "1:65535",
            "127.0.0.1:8080:8080",
            "0.0.0.0:53:53/udp",
            "80:80/tcp",
        ] {
            assert!(check_publish(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "8080",
            "0:80",
            "80:65536",
            "a:80",
            "80:80/sctp",
            "1.2.3:80:80",
            "::1:80:80",
            "1:2:3:4",
            "080x:80",
            "+80:80",
            "80:80/",
        ] {
            assert!(check_publish(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_host_port_once_per_protocol_and_at_most_16() {
        let specs = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(check_publishes(&specs(&["53:53", "53:53/udp", "8080:80", "8081:80"])).is_ok());
        for twice in [&["8080:80", "8080:81"][..], &["127.0.0.1:53:53/udp", "0.0.0.0:53:54/udp"], &["9:9", "9:9/tcp"]] {
            let err = check_publishes(&specs(twice)).expect_err("twice");
            assert!(err.0.contains("already published") && err.0.contains(twice[1]), "{}", err.0);
        }
        let many: Vec<String> = (1..=17).map(|p| format!("{p}:{p}")).collect();
        assert!(check_publishes(&many[..16]).is_ok());
        assert!(check_publishes(&many).expect_err("17").0.contains("at most 16"));
    }
}
