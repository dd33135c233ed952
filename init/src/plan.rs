//! What init will do, decided from the image manifest and the runtime config
//! before anything is touched: pure code, unit-tested on the host.

use crate::values::{parse_u32, parse_u64, parse_user, User};
use crate::services::spec::{self, Service};
use alloc::vec::Vec;
use linker::config::{self, ConfigError, Key};

/// PATH the app gets when neither config sets one (Docker's default).
pub const DEFAULT_PATH: &[u8] = b"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Linux refuses longer hostnames (`__NEW_UTS_LEN`).
const MAX_HOSTNAME: usize = 64;
/// The hostname of an image built without `--hostname`. The kernel's own
/// "(none)" is not a name: programs that resolve their hostname (python's
/// socket tests, JVMs, mail tools) failed; this one is in /etc/hosts.
pub const DEFAULT_HOSTNAME: &[u8] = b"smolvm";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootFs {
    /// Read-only squashfs on `/dev/vda`.
    Squashfs,
    /// The tree under `/rootfs` of the initramfs.
    Initramfs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share<'a> {
    pub tag: &'a [u8],
    pub path: &'a [u8],
    pub read_only: bool,
}

/// A data disk to mount (`disk` record): `/dev/<dev>` on `path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disk<'a> {
    /// `vd` and one to three lowercase letters, not `vda` (the root).
    pub dev: &'a [u8],
    pub path: &'a [u8],
    pub read_only: bool,
}

/// A host file added for this run (`add` record): the first `len` bytes of
/// `/dev/<dev>`, copied to `path` with permission bits `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Add<'a> {
    pub dev: &'a [u8],
    /// Absolute and normal (`linker::disk::is_normal_absolute`).
    pub path: &'a [u8],
    pub len: u64,
    /// At most 0o777.
    pub mode: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TtySize {
    pub rows: u16,
    pub cols: u16,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Plan<'a> {
    /// Path (or PATH-searched name) of the app; also its argv[0].
    pub entry: &'a [u8],
    /// argv[1..].
    pub args: Vec<&'a [u8]>,
    /// `NAME=value` strings, each name once.
    pub env: Vec<&'a [u8]>,
    pub workdir: Option<&'a [u8]>,
    /// [`DEFAULT_HOSTNAME`] unless the image names one.
    pub hostname: Option<&'a [u8]>,
    pub user: Option<User>,
    pub rootfs: RootFs,
    /// Keep the root read-only instead of the writable overlay (mount points
    /// for tmpfs and shares are still created first).
    pub read_only: bool,
    pub tmpfs: Vec<&'a [u8]>,
    pub shares: Vec<Share<'a>>,
    pub disks: Vec<Disk<'a>>,
    /// Files added for this run, in order (at most `linker::disk::MAX_ADDS`).
    pub adds: Vec<Add<'a>>,
    pub debug: bool,
    /// Present when the host's stdin is a terminal.
    pub tty: Option<TtySize>,
    /// The host serves stdout and stderr on control device ports too.
    pub stdio_ports: bool,
    /// `eth0`'s configuration (runtime `ip` record); `None`: eth0 untouched.
    pub ip: Option<IpConfig>,
    /// Nameservers for /etc/resolv.conf (runtime `dns` records), in order.
    pub dns: Vec<Ipv4>,
    /// The services to run beside the app, in start order (none when the
    /// runtime config says `services no`).
    pub services: Vec<Service<'a>>,
}

/// An IPv4 address, network byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4(pub [u8; 4]);

/// `eth0`'s static configuration (the stub knows what passt was told).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpConfig {
    pub addr: Ipv4,
    /// Prefix length, 1..=32.
    pub prefix: u8,
    /// Default route via this address; `None`: no default route.
    pub gateway: Option<Ipv4>,
    /// 68 (IPv4's minimum) ..= 65535.
    pub mtu: u32,
}

/// glibc and musl read at most three `nameserver` lines (`MAXNS`).
pub const MAX_DNS: usize = 3;

/// How runtime args combine with the entry (manifest only): the entry's
/// fixed arguments, and whether the first runtime arg replaces the entry.
#[derive(Default)]
struct EntryRule<'a> {
    fixed: Vec<&'a [u8]>,
    runtime_entry: bool,
    /// The runtime config names the program (`--smolvm-entry`).
    entry_overridden: bool,
}

/// Which file a bad record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Manifest,
    Runtime,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::Manifest => "image manifest",
            Origin::Runtime => "runtime config",
        }
    }
}

/// A config init cannot follow: where, what, and the offending value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanError<'a> {
    pub origin: Origin,
    pub what: &'static str,
    pub value: &'a [u8],
}

impl<'a> Plan<'a> {
    /// Merges the manifest (from the image) and the runtime config (from the
    /// stub, absent when nothing was given): runtime values win, runtime args
    /// replace the default args, env entries override by name.
    pub fn new(manifest: &'a [u8], runtime: Option<&'a [u8]>) -> Result<Plan<'a>, PlanError<'a>> {
        let mut plan = Plan {
            entry: b"",
            args: Vec::new(),
            env: Vec::new(),
            workdir: None,
            hostname: Some(DEFAULT_HOSTNAME),
            user: None,
            rootfs: RootFs::Squashfs,
            read_only: false,
            tmpfs: Vec::new(),
            shares: Vec::new(),
            disks: Vec::new(),
            adds: Vec::new(),
            debug: false,
            tty: None,
            stdio_ports: false,
            ip: None,
            dns: Vec::new(),
            services: Vec::new(),
        };
        let mut rule = EntryRule::default();
        plan.apply(Origin::Manifest, manifest, &mut rule)?;
        let mut args = core::mem::take(&mut plan.args);
        if let Some(runtime) = runtime {
            plan.apply(Origin::Runtime, runtime, &mut rule)?;
            if config::last_value(runtime, Key::Services) == Some(b"no") {
                plan.services.clear();
            }
            if rule.entry_overridden {
                // `--smolvm-entry` (docker run --entrypoint): another program,
                // with only the run's args; the image's own args do not apply.
                rule = EntryRule::default();
                args = core::mem::take(&mut plan.args);
            } else if !plan.args.is_empty() {
                args = core::mem::take(&mut plan.args);
                if rule.runtime_entry && rule.fixed.is_empty() {
                    plan.entry = args.remove(0);
                    if plan.entry.is_empty() {
                        return Err(PlanError { origin: Origin::Runtime, what: "empty program name", value: b"" });
                    }
                }
            }
        }
        rule.fixed.extend(args);
        plan.args = rule.fixed;
        if plan.entry.is_empty() {
            return Err(PlanError { origin: Origin::Manifest, what: "no entry", value: b"" });
        }
        if !plan.env.iter().any(|e| e.starts_with(b"PATH=")) {
            plan.env.push(DEFAULT_PATH);
        }
        Ok(plan)
    }

    fn apply(&mut self, origin: Origin, bytes: &'a [u8], rule: &mut EntryRule<'a>) -> Result<(), PlanError<'a>> {
        let bad = |what: &'static str, value: &'a [u8]| PlanError { origin, what, value };
        let manifest_only = |what| if origin == Origin::Manifest { Ok(()) } else { Err(bad(what, b"")) };
        let runtime_only = |what| if origin == Origin::Runtime { Ok(()) } else { Err(bad(what, b"")) };
        let records = config::parse(bytes).map_err(|e| bad(config_message(e), b""))?;
        for record in records {
            let record = record.map_err(|e| bad(config_message(e), b""))?;
            let value = record.value();
            match record.key {
                Key::Entry => {
                    self.entry = value;
                    rule.entry_overridden = origin == Origin::Runtime;
                }
                Key::Arg => self.args.push(value),
                Key::EntryArg => {
                    manifest_only("entryarg in the runtime config")?;
                    rule.fixed.push(value);
                }
                Key::RuntimeEntry => {
                    manifest_only("runtime-entry in the runtime config")?;
                    if value != b"yes" {
                        return Err(bad("runtime-entry is not yes", value));
                    }
                    rule.runtime_entry = true;
                }
                Key::Env => {
                    let name_len = env_name_len(value).ok_or(bad("env entry is not NAME=value", value))?;
                    let name = &value[..=name_len];
                    match self.env.iter_mut().find(|e| e.starts_with(name)) {
                        Some(existing) => *existing = value,
                        None => self.env.push(value),
                    }
                }
                Key::Workdir => self.workdir = Some(absolute(value).ok_or(bad("workdir is not absolute", value))?),
                // The stub's business (RAM size, vCPU count).
                Key::Mem | Key::Cpus => {}
                Key::Rootfs => {
                    self.rootfs = match value {
                        b"squashfs" => RootFs::Squashfs,
                        b"initramfs" => RootFs::Initramfs,
                        _ => return Err(bad("unknown rootfs format", value)),
                    }
                }
                Key::Hostname => {
                    if value.len() > MAX_HOSTNAME {
                        return Err(bad("hostname longer than 64 bytes", value));
                    }
                    self.hostname = Some(value);
                }
                Key::User => self.user = Some(parse_user(value).ok_or(bad("user is not uid or uid:gid", value))?),
                Key::Tmpfs => self.tmpfs.push(absolute(value).ok_or(bad("tmpfs path is not absolute", value))?),
                Key::Share => {
                    let (tag, path, mode) = (record.field(0), record.field(1), record.field(2));
                    if tag.is_empty() {
                        return Err(bad("share without a tag", path));
                    }
                    let path = absolute(path).ok_or(bad("share path is not absolute", path))?;
                    let read_only = match mode {
                        b"ro" => true,
                        b"rw" => false,
                        _ => return Err(bad("share mode is not ro or rw", mode)),
                    };
                    self.shares.push(Share { tag, path, read_only });
                }
                Key::Disk => {
                    let (dev, path, mode) = (record.field(0), record.field(1), record.field(2));
                    if !is_data_disk_name(dev) {
                        return Err(bad("disk device is not vdb, vdc, ...", dev));
                    }
                    let path = absolute(path).filter(|p| p.len() > 1).ok_or(bad("disk path is not absolute", path))?;
                    let read_only = match mode {
                        b"ro" => true,
                        b"rw" => false,
                        _ => return Err(bad("disk mode is not ro or rw", mode)),
                    };
                    self.disks.push(Disk { dev, path, read_only });
                }
                Key::Add => {
                    runtime_only("add in the image manifest")?;
                    let (dev, path, len_mode) = (record.field(0), record.field(1), record.field(2));
                    if !is_data_disk_name(dev) {
                        return Err(bad("add device is not vdb, vdc, ...", dev));
                    }
                    if !linker::disk::is_normal_absolute(path) {
                        return Err(bad("add path is not absolute and normal", path));
                    }
                    let (len, mode) = parse_len_mode(len_mode).ok_or(bad("add is not 'LEN MODE' (decimal, octal)", len_mode))?;
                    if self.adds.len() == linker::disk::MAX_ADDS {
                        return Err(bad("more than 4 add records", path));
                    }
                    self.adds.push(Add { dev, path, len, mode });
                }
                Key::Log => self.debug = value == b"debug",
                Key::Tty => self.tty = Some(parse_tty(value).ok_or(bad("tty is not 'rows cols'", value))?),
                Key::Stdio => {
                    if value != b"ports" {
                        return Err(bad("stdio is not ports", value));
                    }
                    self.stdio_ports = true;
                }
                // The stub's defaults: it turns them into `ip`/`dns`/`disk` records.
                Key::Net | Key::Publish | Key::DefaultDisk => {}
                Key::Ip => {
                    runtime_only("ip in the image manifest")?;
                    if self.ip.is_some() {
                        return Err(bad("more than one ip record", value));
                    }
                    let (cidr, gateway, mtu) = (record.field(0), record.field(1), record.field(2));
                    let (addr, prefix) = parse_cidr(cidr).ok_or(bad("ip address is not IPv4 ADDR/PREFIX (prefix 1-32)", cidr))?;
                    let gateway = match gateway {
                        b"" => None,
                        text => Some(parse_ipv4(text).ok_or(bad("ip gateway is not an IPv4 address", text))?),
                    };
                    let mtu = parse_u32(mtu).filter(|m| (68..=65535).contains(m)).ok_or(bad("ip mtu is not 68-65535", mtu))?;
                    self.ip = Some(IpConfig { addr, prefix, gateway, mtu });
                }
                Key::Dns => {
                    runtime_only("dns in the image manifest")?;
                    let server = parse_ipv4(value).ok_or(bad("dns server is not an IPv4 address", value))?;
                    if self.dns.len() == MAX_DNS {
                        return Err(bad("more than 3 dns records", value));
                    }
                    self.dns.push(server);
                }
                Key::Service
                | Key::ServiceArg
                | Key::ServiceEnv
                | Key::ServiceWorkdir
                | Key::ServiceUser
                | Key::ServiceRestart
                | Key::ServiceReady => {
                    manifest_only("service records in the runtime config")?;
                    spec::apply(&mut self.services, &record).map_err(|(what, value)| bad(what, value))?;
                }
                Key::Services => {
                    runtime_only("services in the image manifest")?;
                    if !matches!(value, b"yes" | b"no") {
                        return Err(bad("services is not yes or no", value));
                    }
                }
                Key::ReadOnly => {
                    self.read_only = match value {
                        b"yes" => true,
                        b"no" => false,
                        _ => return Err(bad("read-only is not yes or no", value)),
                    }
                }
            }
        }
        Ok(())
    }
}

fn config_message(err: ConfigError) -> &'static str {
    err.message()
}

/// Length of the name in `NAME=value` (the index of the first `=`), if the
/// name is not empty.
fn env_name_len(entry: &[u8]) -> Option<usize> {
    entry.iter().position(|&c| c == b'=').filter(|&n| n > 0)
}

/// `vdb` ... `vdz`, `vdaa` ...: a virtio disk other than the root `vda`.
fn is_data_disk_name(dev: &[u8]) -> bool {
    dev.strip_prefix(b"vd").is_some_and(|s| (1..=3).contains(&s.len()) && s.iter().all(u8::is_ascii_lowercase))
        && dev != b"vda"
}

/// `LEN MODE`: a decimal length and 1 to 3 octal digits of permission bits.
fn parse_len_mode(text: &[u8]) -> Option<(u64, u32)> {
    let space = text.iter().position(|&c| c == b' ')?;
    let (len, mode) = (text.get(..space)?, text.get(space + 1..)?);
    if !(1..=3).contains(&mode.len()) || !mode.iter().all(|c| (b'0'..=b'7').contains(c)) {
        return None;
    }
    // Three octal digits at most: at most 0o777.
    Some((parse_u64(len)?, mode.iter().fold(0, |m, &c| m << 3 | u32::from(c - b'0'))))
}

fn absolute(path: &[u8]) -> Option<&[u8]> {
    path.starts_with(b"/").then_some(path)
}

/// A dotted-quad IPv4 address: four decimal octets 0-255, no leading zeros
/// (`010` would be octal to inet_aton), nothing else.
pub fn parse_ipv4(text: &[u8]) -> Option<Ipv4> {
    let mut octets = [0u8; 4];
    let mut parts = text.split(|&c| c == b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.len() > 3 || (part.len() > 1 && part[0] == b'0') {
            return None;
        }
        *octet = u8::try_from(parse_u32(part)?).ok()?;
    }
    parts.next().is_none().then_some(Ipv4(octets))
}

/// `ADDR/PREFIX` with a prefix of 1..=32.
fn parse_cidr(text: &[u8]) -> Option<(Ipv4, u8)> {
    let slash = text.iter().position(|&c| c == b'/')?;
    let (addr, prefix) = (&text[..slash], &text[slash + 1..]);
    if prefix.len() > 2 || (prefix.len() > 1 && prefix[0] == b'0') {
        return None;
    }
    let prefix = u8::try_from(parse_u32(prefix)?).ok().filter(|p| (1..=32).contains(p))?;
    Some((parse_ipv4(addr)?, prefix))
}

fn parse_tty(text: &[u8]) -> Option<TtySize> {
    let mut parts = text.splitn(2, |&c| c == b' ');
    let rows = u16::try_from(parse_u32(parts.next()?)?).ok()?;
    let cols = u16::try_from(parse_u32(parts.next()?)?).ok()?;
    Some(TtySize { rows, cols })
}

/// Whether the kernel command line asks for the debug log (`smolvm.log=debug`).
pub fn cmdline_wants_debug(cmdline: &[u8]) -> bool {
    cmdline.split(|c| c.is_ascii_whitespace()).any(|word| word == b"smolvm.log=debug")
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    // The no-alloc writer: linker's `std` feature must stay off in this
    // crate's builds (it would link std into the no_std binary).
    fn cfg(records: &[(Key, &[&[u8]])]) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let mut w = config::Writer::new(&mut buf).expect("magic fits");
        for (key, fields) in records {
            w.push(*key, fields).expect("test record fits");
        }
        w.as_bytes().to_vec()
    }

    #[test]
    fn manifest_alone_gives_defaults() {
        let m = cfg(&[(Key::Entry, &[b"/bin/app"]), (Key::Arg, &[b"a"]), (Key::Rootfs, &[b"initramfs"])]);
        let plan = Plan::new(&m, None).expect("valid");
        assert_eq!(plan.entry, b"/bin/app");
        assert_eq!(plan.args, vec![&b"a"[..]]);
        assert_eq!(plan.env, vec![DEFAULT_PATH]);
        assert_eq!(plan.rootfs, RootFs::Initramfs);
        assert!(!plan.debug && plan.tty.is_none() && plan.user.is_none());
    }

    #[test]
    fn runtime_args_replace_and_env_overrides_by_name() {
        let m = cfg(&[
            (Key::Entry, &[b"/bin/app"]),
            (Key::Arg, &[b"default"]),
            (Key::Env, &[b"A=1"]),
            (Key::Env, &[b"PATH=/bin"]),
            (Key::Env, &[b"AB=2"]),
            (Key::Workdir, &[b"/srv"]),
        ]);
        let r = cfg(&[
            (Key::Arg, &[b""]),
            (Key::Arg, &[b"x y"]),
            (Key::Env, &[b"A=one=1"]),
            (Key::Env, &[b"C="]),
            (Key::Workdir, &[b"/tmp"]),
            (Key::Log, &[b"debug"]),
            (Key::Tty, &[b"24 80"]),
            (Key::Stdio, &[b"ports"]),
        ]);
        let plan = Plan::new(&m, Some(&r)).expect("valid");
        assert_eq!(plan.args, vec![&b""[..], b"x y"]);
        assert_eq!(plan.env, vec![&b"A=one=1"[..], b"PATH=/bin", b"AB=2", b"C="]);
        assert_eq!(plan.workdir, Some(&b"/tmp"[..]));
        assert!(plan.debug);
        assert_eq!(plan.tty, Some(TtySize { rows: 24, cols: 80 }));
        assert!(plan.stdio_ports);
    }

    #[test]
    fn runtime_entry_replaces_the_program_and_all_image_args() {
        // A container image: Entrypoint with its own args, Cmd defaults.
        let m = cfg(&[(Key::Entry, &[b"/app"]), (Key::EntryArg, &[b"--fixed"]), (Key::Arg, &[b"cmd"])]);
        let r = cfg(&[(Key::Entry, &[b"/bin/sh"]), (Key::Arg, &[b"-c"]), (Key::Arg, &[b"ls /"])]);
        let plan = Plan::new(&m, Some(&r)).expect("valid");
        assert_eq!((plan.entry, plan.args), (&b"/bin/sh"[..], vec![&b"-c"[..], b"ls /"]));
        let r = cfg(&[(Key::Entry, &[b"/bin/sh"])]);
        let plan = Plan::new(&m, Some(&r)).expect("valid");
        assert_eq!((plan.entry, plan.args), (&b"/bin/sh"[..], Vec::new()), "no run args: none of the image's");
        // Docker's Cmd-only rule does not take the first arg as the program then.
        let m = cfg(&[(Key::Entry, &[b"/app"]), (Key::RuntimeEntry, &[b"yes"])]);
        let r = cfg(&[(Key::Entry, &[b"/bin/sh"]), (Key::Arg, &[b"x"])]);
        let plan = Plan::new(&m, Some(&r)).expect("valid");
        assert_eq!((plan.entry, plan.args), (&b"/bin/sh"[..], vec![&b"x"[..]]));
    }

    #[test]
    fn added_files_are_runtime_only_normal_and_few() {
        let m = cfg(&[(Key::Entry, &[b"/app"])]);
        let r = cfg(&[(Key::Add, &[b"vdb", b"/bin/sh", b"1048576 755"]), (Key::Add, &[b"vdc", b"/etc/x.conf", b"0 0"])]);
        let adds = Plan::new(&m, Some(&r)).expect("valid").adds;
        let add = |dev, path, len, mode| Add { dev, path, len, mode };
        assert_eq!(adds, vec![add(&b"vdb"[..], &b"/bin/sh"[..], 1_048_576, 0o755), add(b"vdc", b"/etc/x.conf", 0, 0)]);
        let big = cfg(&[(Key::Add, &[b"vdb", b"/x", b"18446744073709551615 7"])]);
        assert_eq!(Plan::new(&m, Some(&big)).expect("valid").adds[0].len, u64::MAX);
        let in_manifest = cfg(&[(Key::Entry, &[b"/app"]), (Key::Add, &[b"vdb", b"/x", b"1 755"])]);
        assert!(Plan::new(&in_manifest, None).is_err(), "the image cannot add files");
        for (dev, path, len_mode) in [
            (&b"vda"[..], &b"/x"[..], &b"1 755"[..]), (b"sda", b"/x", b"1 755"), (b"vdb", b"x", b"1 755"),
            (b"vdb", b"/", b"1 755"), (b"vdb", b"/a/../etc/passwd", b"1 755"), (b"vdb", b"/a//b", b"1 755"),
            (b"vdb", b"/a/", b"1 755"), (b"vdb", b"/x", b""), (b"vdb", b"/x", b"1"), (b"vdb", b"/x", b"1 "),
            (b"vdb", b"/x", b"1 8"), (b"vdb", b"/x", b"1 7777"), (b"vdb", b"/x", b"-1 755"), (b"vdb", b"/x", b" 755"),
            (b"vdb", b"/x", b"18446744073709551616 755"), (b"vdb", b"/x", b"1 755 1"), (b"vdb", b"/x", b"1  755"),
        ] {
            let r = cfg(&[(Key::Add, &[dev, path, len_mode])]);
            assert!(Plan::new(&m, Some(&r)).is_err(), "{:?}", (dev, path, len_mode));
        }
        let one: &[&[u8]] = &[b"vdb", b"/x", b"1 755"];
        let five: Vec<(Key, &[&[u8]])> = vec![(Key::Add, one); linker::disk::MAX_ADDS + 1];
        assert!(Plan::new(&m, Some(&cfg(&five[..linker::disk::MAX_ADDS]))).is_ok());
        assert!(Plan::new(&m, Some(&cfg(&five))).is_err());
    }

    #[test]
    fn runtime_without_args_keeps_default_args() {
        let m = cfg(&[(Key::Entry, &[b"app"]), (Key::Arg, &[b"d"])]);
        let r = cfg(&[(Key::Share, &[b"smolvm0", b"/data", b"ro"]), (Key::Share, &[b"smolvm1", b"/mnt/w", b"rw"])]);
        let plan = Plan::new(&m, Some(&r)).expect("valid");
        assert_eq!(plan.args, vec![&b"d"[..]]);
        assert_eq!(
            plan.shares,
            vec![
                Share { tag: b"smolvm0", path: b"/data", read_only: true },
                Share { tag: b"smolvm1", path: b"/mnt/w", read_only: false }
            ]
        );
    }

    #[test]
    fn entry_args_stay_and_runtime_args_replace_the_defaults() {
        let m = cfg(&[
            (Key::Entry, &[b"/bin/sh"]),
            (Key::EntryArg, &[b"-c"]),
            (Key::Arg, &[b"echo default"]),
        ]);
        assert_eq!(Plan::new(&m, None).expect("valid").args, vec![&b"-c"[..], b"echo default"]);
        let r = cfg(&[(Key::Arg, &[b"echo given"])]);
        let plan = Plan::new(&m, Some(&r)).expect("valid");
        assert_eq!((plan.entry, plan.args), (&b"/bin/sh"[..], vec![&b"-c"[..], b"echo given"]));
    }

    #[test]
    fn runtime_entry_lets_the_first_runtime_arg_name_the_program() {
        let m = cfg(&[(Key::Entry, &[b"sh"]), (Key::Arg, &[b"-l"]), (Key::RuntimeEntry, &[b"yes"])]);
        let no_args = cfg(&[(Key::Log, &[b"debug"])]);
        let plan = Plan::new(&m, Some(&no_args)).expect("valid");
        assert_eq!((plan.entry, plan.args), (&b"sh"[..], vec![&b"-l"[..]]));
        let ls = cfg(&[(Key::Arg, &[b"ls"]), (Key::Arg, &[b"-a"])]);
        let plan = Plan::new(&m, Some(&ls)).expect("valid");
        assert_eq!((plan.entry, plan.args), (&b"ls"[..], vec![&b"-a"[..]]));
        let empty = cfg(&[(Key::Arg, &[b""])]);
        let err = Plan::new(&m, Some(&empty)).expect_err("empty program");
        assert_eq!((err.origin, err.what), (Origin::Runtime, "empty program name"));
        let bad = cfg(&[(Key::Entry, &[b"sh"]), (Key::RuntimeEntry, &[b"1"])]);
        assert_eq!(Plan::new(&bad, None).expect_err("value").what, "runtime-entry is not yes");
        for key in [Key::EntryArg, Key::RuntimeEntry] {
            let runtime = cfg(&[(key, &[b"yes"])]);
            let err = Plan::new(&m, Some(&runtime)).expect_err("manifest only");
            assert_eq!(err.origin, Origin::Runtime);
        }
    }

    #[test]
    fn data_disks_in_order_and_bad_ones_refused() {
        let m = cfg(&[(Key::Entry, &[b"/a"])]);
        let r = cfg(&[(Key::Disk, &[b"vdb", b"/data", b"rw"]), (Key::Disk, &[b"vdc", b"/mnt/ro", b"ro"])]);
        let plan = Plan::new(&m, Some(&r)).expect("valid");
        assert_eq!(
            plan.disks,
            vec![Disk { dev: b"vdb", path: b"/data", read_only: false }, Disk { dev: b"vdc", path: b"/mnt/ro", read_only: true }]
        );
        let cases: [(&[&[u8]], &str); 7] = [
            (&[b"vda", b"/d", b"rw"], "disk device is not vdb, vdc, ..."),
            (&[b"sda", b"/d", b"rw"], "disk device is not vdb, vdc, ..."),
            (&[b"vd../x", b"/d", b"rw"], "disk device is not vdb, vdc, ..."),
            (&[b"vd", b"/d", b"rw"], "disk device is not vdb, vdc, ..."),
            (&[b"vdb", b"d", b"rw"], "disk path is not absolute"),
            (&[b"vdb", b"/", b"rw"], "disk path is not absolute"),
            (&[b"vdb", b"/d", b"yes"], "disk mode is not ro or rw"),
        ];
        for (fields, what) in cases {
            let r = cfg(&[(Key::Disk, fields)]);
            let err = Plan::new(&m, Some(&r)).expect_err("refused");
            assert_eq!((err.origin, err.what), (Origin::Runtime, what), "{fields:?}");
        }
    }

    #[test]
    fn read_only_root_from_the_manifest_and_overridden_at_run_time() {
        let plain = cfg(&[(Key::Entry, &[b"/a"])]);
        assert!(!Plan::new(&plain, None).expect("valid").read_only, "writable overlay by default");
        let strict = cfg(&[(Key::Entry, &[b"/a"]), (Key::ReadOnly, &[b"yes"])]);
        assert!(Plan::new(&strict, None).expect("valid").read_only);
        let writable = cfg(&[(Key::ReadOnly, &[b"no"])]);
        assert!(!Plan::new(&strict, Some(&writable)).expect("valid").read_only);
        let ro = cfg(&[(Key::ReadOnly, &[b"yes"])]);
        assert!(Plan::new(&plain, Some(&ro)).expect("valid").read_only);
        let bad = cfg(&[(Key::ReadOnly, &[b"1"])]);
        let err = Plan::new(&plain, Some(&bad)).expect_err("value");
        assert_eq!((err.origin, err.what, err.value), (Origin::Runtime, "read-only is not yes or no", &b"1"[..]));
    }

    #[test]
    fn users() {
        assert_eq!(parse_user(b"1000"), Some(User { uid: 1000, gid: 0 }));
        assert_eq!(parse_user(b"1:2"), Some(User { uid: 1, gid: 2 }));
        assert_eq!(parse_user(b"4294967295:0"), Some(User { uid: u32::MAX, gid: 0 }));
        for bad in [&b""[..], b"root", b"1:", b":1", b"-1", b"+1", b"4294967296", b"1:2:3", b" 1"] {
            assert_eq!(parse_user(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bad_records_name_origin_and_value() {
        let m = cfg(&[(Key::Entry, &[b"/a"])]);
        let cases: [(&[u8], &str); 8] = [
            (&cfg(&[(Key::Env, &[b"=x"])]), "env entry is not NAME=value"),
            (&cfg(&[(Key::Env, &[b"noequals"])]), "env entry is not NAME=value"),
            (&cfg(&[(Key::Workdir, &[b"rel"])]), "workdir is not absolute"),
            (&cfg(&[(Key::Share, &[b"t", b"/p", b"RO"])]), "share mode is not ro or rw"),
            (&cfg(&[(Key::Share, &[b"", b"/p", b"ro"])]), "share without a tag"),
            (&cfg(&[(Key::Tty, &[b"24x80"])]), "tty is not 'rows cols'"),
            (&cfg(&[(Key::Hostname, &[&[b'h'; 65]])]), "hostname longer than 64 bytes"),
            (b"SMOLCFG1arg\0", "config: truncated record"),
        ];
        for (runtime, what) in cases {
            let err = Plan::new(&m, Some(runtime)).expect_err(what);
            assert_eq!((err.origin, err.what), (Origin::Runtime, what));
        }
        let err = Plan::new(b"garbage", None).expect_err("bad magic");
        assert_eq!((err.origin, err.what), (Origin::Manifest, "config: bad magic"));
        let no_entry = cfg(&[(Key::Arg, &[b"x"])]);
        assert_eq!(Plan::new(&no_entry, None).expect_err("no entry").what, "no entry");
        let ext4 = cfg(&[(Key::Entry, &[b"/a"]), (Key::Rootfs, &[b"ext4"])]);
        assert_eq!(Plan::new(&ext4, None).expect_err("rootfs").value, b"ext4");
    }

    #[test]
    fn network_records() {
        let m = cfg(&[(Key::Entry, &[b"/a"]), (Key::Net, &[b"passt"]), (Key::Publish, &[b"8080:80"])]);
        let plan = Plan::new(&m, None).expect("valid");
        assert_eq!((plan.ip, plan.dns.len()), (None, 0));
        let r = cfg(&[(Key::Ip, &[b"10.0.2.15/24", b"10.0.2.2", b"65520"]), (Key::Dns, &[b"10.0.2.3"]), (Key::Dns, &[b"1.1.1.1"])]);
        let plan = Plan::new(&m, Some(&r)).expect("valid");
        let ip = IpConfig { addr: Ipv4([10, 0, 2, 15]), prefix: 24, gateway: Some(Ipv4([10, 0, 2, 2])), mtu: 65520 };
        assert_eq!(plan.ip, Some(ip));
        assert_eq!(plan.dns, vec![Ipv4([10, 0, 2, 3]), Ipv4([1, 1, 1, 1])]);
        let no_gateway = cfg(&[(Key::Ip, &[b"192.168.7.2/32", b"", b"1500"])]);
        let plan = Plan::new(&m, Some(&no_gateway)).expect("valid");
        assert_eq!(plan.ip.map(|ip| (ip.prefix, ip.gateway, ip.mtu)), Some((32, None, 1500)));
    }

    #[test]
    fn bad_network_records_are_refused() {
        let m = cfg(&[(Key::Entry, &[b"/a"])]);
        let ip = |a: &'static [u8], g: &'static [u8], mtu: &'static [u8]| cfg(&[(Key::Ip, &[a, g, mtu])]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (ip(b"10.0.2.15", b"", b"1500"), "ip address is not IPv4 ADDR/PREFIX (prefix 1-32)"),
            (ip(b"10.0.2.15/0", b"", b"1500"), "ip address is not IPv4 ADDR/PREFIX (prefix 1-32)"),
            (ip(b"10.0.2.15/33", b"", b"1500"), "ip address is not IPv4 ADDR/PREFIX (prefix 1-32)"),
            (ip(b"10.0.2.15/024", b"", b"1500"), "ip address is not IPv4 ADDR/PREFIX (prefix 1-32)"),
            (ip(b"10.0.2/24", b"", b"1500"), "ip address is not IPv4 ADDR/PREFIX (prefix 1-32)"),
            (ip(b"10.0.2.256/24", b"", b"1500"), "ip address is not IPv4 ADDR/PREFIX (prefix 1-32)"),
            (ip(b"10.0.2.15/24", b"gw", b"1500"), "ip gateway is not an IPv4 address"),
            (ip(b"10.0.2.15/24", b"10.0.2.2", b"67"), "ip mtu is not 68-65535"),
            (ip(b"10.0.2.15/24", b"10.0.2.2", b"65536"), "ip mtu is not 68-65535"),
            (ip(b"10.0.2.15/24", b"10.0.2.2", b""), "ip mtu is not 68-65535"),
            (cfg(&[(Key::Dns, &[b"::1"])]), "dns server is not an IPv4 address"),
            (cfg(&[(Key::Dns, &[&b"1.1.1.1"[..]] as &[&[u8]]); 4]), "more than 3 dns records"),
        ];
        for (runtime, what) in &cases {
            let err = Plan::new(&m, Some(runtime)).expect_err(what);
            assert_eq!((err.origin, err.what), (Origin::Runtime, *what));
        }
        let two = cfg(&[(Key::Ip, &[b"10.0.0.1/8", b"", b"1500"]), (Key::Ip, &[b"10.0.0.2/8", b"", b"1500"])]);
        assert_eq!(Plan::new(&m, Some(&two)).expect_err("twice").what, "more than one ip record");
        let in_manifest = cfg(&[(Key::Entry, &[b"/a"]), (Key::Dns, &[b"1.1.1.1"])]);
        let err = Plan::new(&in_manifest, None).expect_err("runtime only");
        assert_eq!((err.origin, err.what), (Origin::Manifest, "dns in the image manifest"));
    }

    #[test]
    fn ipv4_addresses() {
        assert_eq!(parse_ipv4(b"0.0.0.0"), Some(Ipv4([0; 4])));
        assert_eq!(parse_ipv4(b"255.255.255.255"), Some(Ipv4([255; 4])));
        for bad in [&b""[..], b"1.2.3", b"1.2.3.4.5", b"1.2.3.04", b"1..3.4", b" 1.2.3.4", b"1.2.3.4 ", b"1.2.3.-4", b"1.2.3.1000"] {
            assert_eq!(parse_ipv4(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cmdline_debug_flag() {
        assert!(cmdline_wants_debug(b"console=ttyS0 smolvm.log=debug quiet\n"));
        assert!(!cmdline_wants_debug(b"console=ttyS0 xsmolvm.log=debug smolvm.log=debugx"));
    }
}
