//! Run-time options: `--smolvm-*` flags at the front of the command line
//! (consumed; everything from the first other argument on belongs to the
//! app, AppImage's convention) and `SMOLVM_*` environment variables. A flag
//! beats the environment variable of the same name.
//!
//! Every value is parsed here, once, into a typed value ([`DiskSpec`],
//! [`ShareSpec`], ...) that carries its own limit; the rest of the stub
//! only consumes them. This module depends on nothing of the stub but the
//! network option parsers (`options::net`, pure functions like these).

use linker::abi::{slot, MMIO_MAX_SLOTS};
use linker::config::{self, Key};

pub mod net;

use net::{IpSpec, NetMode, Publish, MAX_PUBLISH};

/// Most `--smolvm-env` entries.
pub const MAX_ENV: usize = 64;

// Their guest names run from vdb on, one letter each.
const _: () = assert!(MAX_DISKS < 25);

/// Most `--smolvm-share` options: every dynamic slot (disks share them).
pub const MAX_SHARES: usize = MMIO_MAX_SLOTS - slot::FIRST_DYNAMIC;

pub use linker::disk::{DiskSpec, MAX_ADDS, MAX_DISKS, MAX_GUEST_PATH};

/// `--smolvm-share=HOST:GUEST[:ro]` (or `SMOLVM_SHARE`): host directory
/// HOST mounted at the absolute guest path GUEST over 9p, mount tag
/// `smolvm<n>` for the n-th share. HOST may contain `:`, GUEST may not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareSpec<'a> {
    /// Not empty; no NUL byte.
    pub host: &'a [u8],
    /// Absolute, not `/`, without `.`, `..` or empty components
    /// (`linker::disk::is_normal_absolute`); no `:`.
    pub guest: &'a [u8],
    pub read_only: bool,
}

impl<'a> ShareSpec<'a> {
    pub fn parse(v: &'a [u8]) -> Option<ShareSpec<'a>> {
        let (rest, read_only) = match v.strip_suffix(b":ro") {
            Some(p) => (p, true),
            None => (v.strip_suffix(b":rw").unwrap_or(v), false),
        };
        let i = rest.iter().rposition(|&b| b == b':')?;
        let (host, guest) = (rest.get(..i)?, rest.get(i.wrapping_add(1)..)?);
        // GUEST as a disk's or an added file's: `/` would hide the root.
        let ok = !host.is_empty() && linker::disk::is_normal_absolute(guest) && !v.contains(&0);
        ok.then_some(ShareSpec { host, guest, read_only })
    }
}

/// `--smolvm-add=HOST:GUEST` (or `SMOLVM_ADD`): host file HOST copied to
/// guest path GUEST for this run. HOST may contain `:` but not `:/`; GUEST
/// is absolute and normal (`linker::disk::is_normal_absolute`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddSpec<'a> {
    /// Not empty; no NUL byte.
    pub host: &'a [u8],
    pub guest: &'a [u8],
}

impl<'a> AddSpec<'a> {
    pub fn parse(v: &'a [u8]) -> Option<AddSpec<'a>> {
        let i = v.windows(2).rposition(|w| w == b":/")?;
        let (host, guest) = (v.get(..i)?, v.get(i.wrapping_add(1)..)?);
        let ok = !host.is_empty() && !host.contains(&0) && linker::disk::is_normal_absolute(guest);
        ok.then_some(AddSpec { host, guest })
    }
}

/// `--smolvm-help` (tests compare it with what [`help`] expands).
pub const HELP: &str = include_str!("help.txt");
/// [`HELP`] as `build.rs` compressed it; only this is in the binary.
const HELP_LZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/help.lz"));
pub const HELP_LEN: usize = HELP.len();

/// Expands [`HELP_LZ`] into `out` (see `compress` in build.rs): a byte
/// below 0x80 is itself; `0x80 + n` and a distance byte, or `0xc0 + n` and
/// a 16-bit little-endian distance `d`, copy `n + 3` bytes from `d` back.
/// Returns the text.
pub fn help(out: &mut [u8; HELP_LEN]) -> &[u8] {
    let (mut i, mut o) = (0usize, 0usize);
    while let Some(&b) = HELP_LZ.get(i) {
        let at = |k: usize| usize::from(HELP_LZ.get(i.wrapping_add(k)).copied().unwrap_or(0));
        let (len, back, step) = match b {
            0..0x80 => (1, 0, 1),
            0x80..0xc0 => (usize::from(b & 0x3f) + 3, at(1), 2),
            _ => (usize::from(b & 0x3f) + 3, at(1) | at(2) << 8, 3),
        };
        for _ in 0..len {
            // A literal when `back` is 0; the built-in stream never points
            // before the start or past the end (`get` makes sure).
            let v = if back == 0 { b } else { o.checked_sub(back).and_then(|at| out.get(at)).copied().unwrap_or(0) };
            if let Some(x) = out.get_mut(o) {
                *x = v;
            }
            o = o.wrapping_add(1);
        }
        i = i.wrapping_add(step);
    }
    out.get(..o).unwrap_or(&out[..])
}

/// The image manifest's defaults for run-time options, in record order.
/// Records that do not parse are skipped (the builder checked them).
#[derive(Debug, Default)]
pub struct Defaults<'m> {
    /// `net` (the last wins; never a TAP device).
    pub net: Option<NetMode<'m>>,
    pub publish: heapless::Vec<Publish, MAX_PUBLISH>,
    /// `default-disk`: attached unless `--smolvm-disk` is given.
    pub disks: heapless::Vec<DiskSpec<'m>, MAX_DISKS>,
}

impl<'m> Defaults<'m> {
    pub fn of(manifest: &'m [u8]) -> Defaults<'m> {
        let mut d = Defaults::default();
        if let Ok(records) = config::parse(manifest) {
            for r in records.flatten() {
                let v = r.value();
                match r.key {
                    Key::Net => d.net = NetMode::parse(v).filter(|m| !matches!(m, NetMode::Tap(_))).or(d.net),
                    Key::Publish => {
                        if let Some(p) = Publish::parse(v) {
                            let _ = d.publish.push(p);
                        }
                    }
                    Key::DefaultDisk => {
                        if let Some(disk) = DiskSpec::parse(v) {
                            let _ = d.disks.push(disk);
                        }
                    }
                    _ => {}
                }
            }
        }
        d
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Log {
    /// Guest kernel console to stderr.
    pub kernel: bool,
    /// Stub and init trace their steps.
    pub debug: bool,
}

#[derive(Debug, Default)]
pub struct Options<'a> {
    pub mem_mib: Option<u32>,
    /// `--smolvm-cpus` / `SMOLVM_CPUS`: vCPUs (any number; `start` checks
    /// it against `abi::MAX_CPUS` and the host).
    pub cpus: Option<u32>,
    pub log: Log,
    pub env: heapless::Vec<&'a [u8], MAX_ENV>,
    pub workdir: Option<&'a [u8]>,
    /// `--smolvm-disk` values, in order; `SMOLVM_DISK` first.
    pub disks: heapless::Vec<DiskSpec<'a>, MAX_DISKS>,
    /// Some `--smolvm-disk` was given (`none` too): the image's default
    /// disks are not attached.
    pub disks_given: bool,
    /// `--smolvm-share` values, in order; `SMOLVM_SHARE` first.
    pub shares: heapless::Vec<ShareSpec<'a>, MAX_SHARES>,
    /// `--smolvm-net` / `SMOLVM_NET` (`None`: not given).
    pub net: Option<NetMode<'a>>,
    /// `--smolvm-publish` values, in order; `SMOLVM_PUBLISH` first.
    pub publish: heapless::Vec<Publish, MAX_PUBLISH>,
    /// `--smolvm-ip` / `SMOLVM_IP`.
    pub ip: Option<IpSpec>,
    /// `--smolvm-net-host-loopback`.
    pub net_host_loopback: bool,
    /// `--smolvm-read-only[=yes|no]` / `SMOLVM_READ_ONLY=1|0|yes|no`: the
    /// root filesystem's mode, over the image's default (`None`: not given).
    pub read_only: Option<bool>,
    /// `--smolvm-add` values, in order; `SMOLVM_ADD` first.
    pub adds: heapless::Vec<AddSpec<'a>, MAX_ADDS>,
    /// `--smolvm-entry` / `SMOLVM_ENTRY`: not empty.
    pub entry: Option<&'a [u8]>,
    /// `--smolvm-force`: boot even on a host that looks unable to run Linux.
    pub force: bool,
    /// `--smolvm-balloon=no` / `SMOLVM_BALLOON=0`: no virtio-balloon (and
    /// no `madvise` in the seccomp filter). On unless `Some(false)`.
    pub balloon: Option<bool>,
    /// `--smolvm-trust=FILE` / `SMOLVM_TRUST`: the trust policy file.
    pub trust: Option<&'a [u8]>,
    pub info: bool,
    pub help: bool,
    /// Unsafe: run without the seccomp filter (debugging).
    pub no_seccomp: bool,
    /// `--smolvm-no-services`: the app alone, without the image's services.
    pub no_services: bool,
    /// How many leading arguments (after argv[0]) were smolvm's.
    pub consumed: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptError<'a> {
    Unknown(&'a [u8]),
    BadValue(&'a [u8]),
    TooMany(&'a [u8]),
}

const PREFIX: &[u8] = b"--smolvm-";

/// Parses a memory size: decimal MiB, or with a `G` suffix GiB (`M` allowed).
pub fn parse_mem(v: &[u8]) -> Option<u32> {
    let (digits, mul) = match v.last()? {
        b'G' | b'g' => (&v[..v.len() - 1], 1024),
        b'M' | b'm' => (&v[..v.len() - 1], 1),
        _ => (v, 1),
    };
    decimal(digits)?.checked_mul(mul).filter(|&m| m > 0)
}

/// 1 to 9 decimal digits (`--smolvm-cpus`: its limits are checked where
/// they are known, to name the one exceeded).
pub fn decimal(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // At most 9 digits: below 10^9, no overflow.
    Some(digits.iter().fold(0u32, |n, d| n.wrapping_mul(10).wrapping_add(u32::from(d.wrapping_sub(b'0')))))
}

/// Splits `name=value` at the first `=`.
fn split_eq(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|&b| b == b'=')?;
    Some((s.get(..i)?, s.get(i.wrapping_add(1)..)?))
}

/// `yes`/`1` or `no`/`0` (`--smolvm-read-only=`, `SMOLVM_READ_ONLY`).
fn parse_yes_no(v: &[u8]) -> Option<bool> {
    match v {
        b"yes" | b"1" => Some(true),
        b"no" | b"0" => Some(false),
        _ => None,
    }
}

fn parse_log(v: &[u8]) -> Option<Log> {
    let mut log = Log::default();
    for word in v.split(|&b| b == b',') {
        match word {
            b"kernel" => log.kernel = true,
            b"debug" => log.debug = true,
            b"" | b"off" => {}
            _ => return None,
        }
    }
    Some(log)
}

/// The `--smolvm-*` flags, by name (`FLAGS[i]` is `OPTS[i]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    Mem,
    Log,
    Env,
    Workdir,
    Disk,
    Share,
    Info,
    Help,
    NoSeccomp,
    Net,
    Publish,
    Ip,
    NetHostLoopback,
    ReadOnly,
    Trust,
    NoServices,
    Balloon,
    Entry,
    Force,
    Add,
    Cpus,
}

/// The `--smolvm-*` flag names, NUL-separated, in [`OPTS`] order (one
/// string: a table of slices costs the stub 16 bytes a name).
const FLAGS: &[u8] = b"mem\0log\0env\0workdir\0disk\0share\0info\0help\0no-seccomp\0net\0publish\0ip\0\
net-host-loopback\0read-only\0no-services\0balloon\0trust\0entry\0force\0add\0cpus";
const OPTS: [Opt; 21] = [
    Opt::Mem, Opt::Log, Opt::Env, Opt::Workdir, Opt::Disk, Opt::Share, Opt::Info, Opt::Help, Opt::NoSeccomp, Opt::Net,
    Opt::Publish, Opt::Ip, Opt::NetHostLoopback, Opt::ReadOnly, Opt::NoServices, Opt::Balloon, Opt::Trust, Opt::Entry,
    Opt::Force, Opt::Add, Opt::Cpus,
];

/// The option `name` names: a flag name (`read-only`) or, when `var`,
/// the variable after `SMOLVM_` (`READ_ONLY`: the flag in upper case, `_`
/// for `-`), which every option but `env`, `info`, `help` and
/// `net-host-loopback` has (`--smolvm-help` says so).
fn named(name: &[u8], var: bool) -> Option<Opt> {
    let as_var = |f: u8| if f == b'-' { b'_' } else { f.to_ascii_uppercase() };
    let same = |f: &[u8]| f.len() == name.len() && f.iter().zip(name).all(|(&f, &n)| n == if var { as_var(f) } else { f });
    let (_, &opt) = FLAGS.split(|&b| b == 0).zip(&OPTS).find(|(f, _)| same(f))?;
    (!var || !matches!(opt, Opt::Env | Opt::Info | Opt::Help | Opt::NetHostLoopback)).then_some(opt)
}

impl<'a> Options<'a> {
    /// Applies the value `v` of a memory, log, disk or share option;
    /// `culprit` (the whole argument or variable) names it in errors.
    fn set(&mut self, which: Opt, v: &'a [u8], culprit: &'a [u8]) -> Result<(), OptError<'a>> {
        let bad = OptError::BadValue(culprit);
        match which {
            Opt::Mem => self.mem_mib = Some(parse_mem(v).ok_or(bad)?),
            Opt::Cpus => self.cpus = Some(decimal(v).ok_or(bad)?),
            Opt::Log => self.log = parse_log(v).ok_or(bad)?,
            Opt::Disk => {
                self.disks_given = true;
                if v != b"none" {
                    let disk = DiskSpec::parse(v).ok_or(bad)?;
                    self.disks.push(disk).map_err(|_| OptError::TooMany(culprit))?
                }
            }
            Opt::Net => self.net = Some(NetMode::parse(v).ok_or(bad)?),
            Opt::Ip => self.ip = Some(IpSpec::parse(v).ok_or(bad)?),
            // The switches' variables (SMOLVM_FORCE=yes is not ignored).
            Opt::ReadOnly | Opt::Balloon | Opt::Force | Opt::NoServices | Opt::NoSeccomp => {
                let yes = parse_yes_no(v).ok_or(bad)?;
                match which {
                    Opt::ReadOnly => self.read_only = Some(yes),
                    Opt::Balloon => self.balloon = Some(yes),
                    Opt::Force => self.force = yes,
                    Opt::NoServices => self.no_services = yes,
                    _ => self.no_seccomp = yes,
                }
            }
            Opt::Publish => self.publish.push(Publish::parse(v).ok_or(bad)?).map_err(|_| OptError::TooMany(culprit))?,
            // smol-init refuses a relative one, but only after the boot.
            Opt::Workdir if v.first() == Some(&b'/') => self.workdir = Some(v),
            Opt::Entry if !v.is_empty() => self.entry = Some(v),
            Opt::Entry | Opt::Workdir => return Err(bad),
            Opt::Add => self.adds.push(AddSpec::parse(v).ok_or(bad)?).map_err(|_| OptError::TooMany(culprit))?,
            _ => {
                let share = ShareSpec::parse(v).ok_or(bad)?;
                self.shares.push(share).map_err(|_| OptError::TooMany(culprit))?
            }
        }
        Ok(())
    }

    /// `args` excludes argv[0]; `env` holds `NAME=value` strings.
    pub fn parse(
        args: impl Iterator<Item = &'a [u8]>,
        env: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Options<'a>, OptError<'a>> {
        let mut o = Options::default();
        for var in env {
            let Some((name, v)) = var.strip_prefix(b"SMOLVM_").and_then(split_eq) else { continue };
            let Some(which) = named(name, true) else { continue };
            match which {
                Opt::Trust => o.trust = Some(v).filter(|v| !v.is_empty()),
                Opt::Share | Opt::Publish | Opt::Add => {
                    for v in v.split(|&b| b == b',').filter(|v| !v.is_empty()) {
                        o.set(which, v, var)?;
                    }
                }
                _ => o.set(which, v, var)?,
            }
        }
        for arg in args {
            let Some(opt) = arg.strip_prefix(PREFIX) else { break };
            o.consumed = o.consumed.wrapping_add(1); // at most the argument count
            let (name, value) = match split_eq(opt) {
                Some((name, v)) => (name, Some(v)),
                None => (opt, None),
            };
            let Some(which) = named(name, false) else { return Err(OptError::Unknown(arg)) };
            match (which, value) {
                (Opt::Info, None) => o.info = true,
                (Opt::Help, None) => o.help = true,
                (Opt::NoSeccomp, None) => o.no_seccomp = true,
                (Opt::Force, None) => o.force = true,
                (Opt::NoServices, None) => o.no_services = true,
                (Opt::Net, None) => o.net = Some(NetMode::Passt),
                (Opt::NetHostLoopback, None) => o.net_host_loopback = true,
                (Opt::ReadOnly, None) => o.read_only = Some(true),
                (Opt::Trust, Some(v)) if !v.is_empty() => o.trust = Some(v),
                (Opt::Env, Some(v)) if v.iter().position(|&b| b == b'=').is_some_and(|i| i > 0) => {
                    o.env.push(v).map_err(|_| OptError::TooMany(arg))?
                }
                (Opt::Mem | Opt::Cpus | Opt::Log | Opt::Workdir | Opt::Disk | Opt::Share | Opt::Net | Opt::Ip | Opt::Publish | Opt::ReadOnly | Opt::Balloon | Opt::Entry | Opt::Add, Some(v)) => {
                    o.set(which, v, arg)?
                }
                _ => return Err(OptError::BadValue(arg)),
            }
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<'a>(args: &[&'a [u8]], env: &[&'a [u8]]) -> Result<Options<'a>, OptError<'a>> {
        Options::parse(args.iter().copied(), env.iter().copied())
    }

    #[test]
    fn leading_flags_are_consumed_and_beat_the_environment() {
        let o = parse(
            &[b"--smolvm-mem=2G", b"--smolvm-env=A=b=c", b"app-arg", b"--smolvm-help"],
            &[b"SMOLVM_MEM=64", b"SMOLVM_LOG=kernel,debug", b"HOME=/root"],
        )
        .expect("valid");
        assert_eq!(o.mem_mib, Some(2048));
        assert_eq!(o.log, Log { kernel: true, debug: true });
        assert_eq!(o.env.as_slice(), &[&b"A=b=c"[..]]);
        assert_eq!(o.consumed, 2);
        assert!(!o.help, "flags after the first app argument belong to the app");
        let o = parse(&[], &[b"SMOLVM_MEM=64"]).expect("valid");
        assert_eq!(o.mem_mib, Some(64));
    }

    #[test]
    fn help_expands_to_the_text() {
        let mut buf = [0u8; HELP_LEN];
        assert_eq!(std::str::from_utf8(help(&mut buf)).expect("ascii"), HELP);
        assert!(HELP_LZ.len() < HELP.len() * 2 / 3, "{} of {}", HELP_LZ.len(), HELP.len());
        for flag in FLAGS.split(|&b| b == 0) {
            assert!(HELP.contains(&format!("--smolvm-{}", String::from_utf8_lossy(flag))), "{}", String::from_utf8_lossy(flag));
        }
    }

    #[test]
    fn every_option_but_four_is_a_variable_named_after_its_flag() {
        let vars = [
            "TRUST", "NO_SERVICES", "ENTRY", "FORCE", "READ_ONLY", "BALLOON", "NET", "PUBLISH", "IP", "MEM", "LOG",
            "WORKDIR", "NO_SECCOMP", "DISK", "SHARE", "ADD", "CPUS",
        ];
        let flags: Vec<&[u8]> = FLAGS.split(|&b| b == 0).collect();
        assert_eq!(flags.len(), OPTS.len());
        for v in vars {
            let flag = v.to_ascii_lowercase().replace('_', "-");
            assert_eq!(named(v.as_bytes(), true), named(flag.as_bytes(), false), "{v}");
            assert!(named(v.as_bytes(), true).is_some(), "{v}");
            assert_eq!(named(v.as_bytes(), false), None, "{v} is no flag name");
        }
        for not in ["ENV", "INFO", "HELP", "NET_HOST_LOOPBACK", "mem", "READ-ONLY", "MEMX", "ME", ""] {
            assert_eq!(named(not.as_bytes(), true), None, "{not}");
        }
        let n = flags.iter().filter(|f| named(&f.to_ascii_uppercase().iter().map(|&b| if b == b'-' { b'_' } else { b }).collect::<Vec<_>>(), true).is_some()).count();
        assert_eq!(n, vars.len());
    }

    #[test]
    fn cpus_flag_and_variable() {
        assert_eq!(parse(&[], &[]).expect("valid").cpus, None);
        assert_eq!(parse(&[b"--smolvm-cpus=4"], &[b"SMOLVM_CPUS=2"]).expect("valid").cpus, Some(4));
        assert_eq!(parse(&[], &[b"SMOLVM_CPUS=2"]).expect("valid").cpus, Some(2));
        // Out-of-range numbers parse; `start` names the limit they break.
        assert_eq!(parse(&[b"--smolvm-cpus=0"], &[]).expect("valid").cpus, Some(0));
        assert_eq!(parse(&[b"--smolvm-cpus=65"], &[]).expect("valid").cpus, Some(65));
        for bad in [&b"--smolvm-cpus"[..], b"--smolvm-cpus=", b"--smolvm-cpus=-1", b"--smolvm-cpus=2x", b"--smolvm-cpus=1234567890"] {
            assert_eq!(parse(&[bad], &[]).err(), Some(OptError::BadValue(bad)), "{}", String::from_utf8_lossy(bad));
        }
        assert!(parse(&[], &[b"SMOLVM_CPUS=two"]).is_err());
    }

    #[test]
    fn bad_options_name_the_culprit() {
        assert_eq!(parse(&[b"--smolvm-nope"], &[]).err(), Some(OptError::Unknown(b"--smolvm-nope")));
        assert_eq!(parse(&[b"--smolvm-mem=0"], &[]).err(), Some(OptError::BadValue(b"--smolvm-mem=0")));
        assert!(parse(&[b"--smolvm-mem=99999999999"], &[]).is_err());
        assert!(parse(&[b"--smolvm-mem=5000000G"], &[]).is_err());
        assert!(parse(&[b"--smolvm-env=novalue"], &[]).is_err());
        assert!(parse(&[b"--smolvm-env==x"], &[]).is_err());
        assert!(parse(&[b"--smolvm-info=1"], &[]).is_err());
        assert!(parse(&[b"--smolvm-log=loud"], &[]).is_err());
        assert!(parse(&[], &[b"SMOLVM_MEM=lots"]).is_err());
    }

    #[test]
    fn environment_variables_by_exact_name() {
        let o = parse(&[], &[b"SMOLVM_NO_SECCOMP=0", b"SMOLVM_MEMX=lots", b"SMOLVM_INFO=1"]).expect("valid");
        assert!(!o.no_seccomp && !o.info && o.mem_mib.is_none());
        // A working directory is absolute (smol-init would refuse it only
        // after the boot), as flag and as variable.
        for bad in [&b"SMOLVM_WORKDIR="[..], b"SMOLVM_WORKDIR=tmp"] {
            assert_eq!(parse(&[], &[bad]).err(), Some(OptError::BadValue(bad)));
        }
        assert!(parse(&[b"--smolvm-workdir=tmp"], &[]).is_err());
        // The switches' variables take what SMOLVM_READ_ONLY takes; any
        // other value is refused, not ignored.
        let o = parse(&[], &[b"SMOLVM_FORCE=yes", b"SMOLVM_NO_SERVICES=1", b"SMOLVM_NO_SECCOMP=no"]).expect("valid");
        assert!(o.force && o.no_services && !o.no_seccomp);
        let o = parse(&[b"--smolvm-force"], &[b"SMOLVM_FORCE=0"]).expect("valid");
        assert!(o.force, "the flag beats the variable");
        for bad in [&b"SMOLVM_FORCE=true"[..], b"SMOLVM_NO_SERVICES=", b"SMOLVM_NO_SECCOMP=on"] {
            assert_eq!(parse(&[], &[bad]).err(), Some(OptError::BadValue(bad)));
        }
        assert!(parse(&[b"--smolvm-force=yes"], &[]).is_err(), "a switch flag takes no value");
        let o = parse(&[], &[b"SMOLVM_NO_SECCOMP=1", b"SMOLVM_WORKDIR=/a=b"]).expect("valid");
        assert!(o.no_seccomp);
        assert_eq!(o.workdir, Some(&b"/a=b"[..]));
        assert!(parse(&[b"--smolvm-workdir="], &[]).is_err());
        assert!(parse(&[b"--smolvm-mem"], &[]).is_err());
        assert_eq!(parse(&[b"--smolvm-"], &[]).err(), Some(OptError::Unknown(b"--smolvm-")));
    }

    #[test]
    fn disks_accumulate_in_order() {
        let o = parse(&[b"--smolvm-disk=/a.img", b"--smolvm-disk=b:ro"], &[b"SMOLVM_DISK=/env.img"]).expect("valid");
        let disk = |path, read_only| DiskSpec { path, read_only, guest: None };
        assert_eq!(o.disks.as_slice(), &[disk(b"/env.img", false), disk(b"/a.img", false), disk(b"b", true)]);
        assert!(parse(&[b"--smolvm-disk="], &[]).is_err());
        assert!(parse(&[b"--smolvm-disk=:ro"], &[]).is_err());
    }

    #[test]
    fn image_default_disks_unless_a_disk_flag_is_given() {
        let mut buf = vec![0u8; 1024];
        let mut w = config::Writer::new(&mut buf).expect("writer");
        for (k, v) in [(Key::Entry, &b"/app"[..]), (Key::DefaultDisk, b"data.ext4:/data"), (Key::Net, b"passt"),
            (Key::DefaultDisk, b"/ref.img:ro"), (Key::DefaultDisk, b":ro")] {
            w.push(k, &[v]).expect("fits");
        }
        let n = w.len();
        let manifest = &buf[..n];
        let d = Defaults::of(manifest);
        let disk = |path, read_only, guest| DiskSpec { path, read_only, guest };
        assert_eq!(d.disks.as_slice(), &[disk(&b"data.ext4"[..], false, Some(&b"/data"[..])), disk(b"/ref.img", true, None)]);
        assert_eq!(d.net, Some(NetMode::Passt));
        assert!(!parse(&[], &[]).expect("valid").disks_given);
        let o = parse(&[b"--smolvm-disk=none"], &[]).expect("valid");
        assert!(o.disks_given && o.disks.is_empty(), "none: no disks, not the image's either");
        let o = parse(&[], &[b"SMOLVM_DISK=/x.img"]).expect("valid");
        assert!(o.disks_given && o.disks.len() == 1);
    }

    #[test]
    fn shares_accumulate_in_order() {
        let o = parse(&[b"--smolvm-share=/h:/g:ro"], &[b"SMOLVM_SHARE=/a:/x,,b:/y"]).expect("valid");
        let share = |host, guest, read_only| ShareSpec { host, guest, read_only };
        assert_eq!(o.shares.as_slice(), &[share(b"/a", b"/x", false), share(b"b", b"/y", false), share(b"/h", b"/g", true)]);
        assert!(parse(&[b"--smolvm-share=/h:rel"], &[]).is_err());
        for bad in [&b"--smolvm-share=/h:/"[..], b"--smolvm-share=/h:/a/../..", b"--smolvm-share=/h://x", b"--smolvm-share=/h:/x/.:ro"] {
            assert_eq!(parse(&[bad], &[]).err(), Some(OptError::BadValue(bad)));
        }
        assert!(parse(&[b"--smolvm-share=/h"], &[]).is_err());
        assert!(parse(&[], &[b"SMOLVM_SHARE=/a:/x,nope"]).is_err());
    }

    #[test]
    fn parses_disk_specs() {
        let d = |path: &'static [u8], read_only, guest: Option<&'static [u8]>| Some(DiskSpec { path, read_only, guest });
        assert_eq!(DiskSpec::parse(b"/a/b.img"), d(b"/a/b.img", false, None));
        assert_eq!(DiskSpec::parse(b"x:ro"), d(b"x", true, None));
        assert_eq!(DiskSpec::parse(b"x:rw"), d(b"x", false, None));
        assert_eq!(DiskSpec::parse(b"a:b.img"), d(b"a:b.img", false, None), "a file name may hold ':'");
        assert_eq!(DiskSpec::parse(b"disk.ext4:/data"), d(b"disk.ext4", false, Some(b"/data")));
        assert_eq!(DiskSpec::parse(b"./d.img:ro:/mnt/d"), d(b"./d.img", true, Some(b"/mnt/d")));
        assert_eq!(DiskSpec::parse(b"./d.img:/mnt/d:ro"), d(b"./d.img", true, Some(b"/mnt/d")));
        assert_eq!(DiskSpec::parse(b"/h/d.img:rw:/d"), d(b"/h/d.img", false, Some(b"/d")));
        let longest = [b"/".as_slice(), &[b'a'; MAX_GUEST_PATH - 1]].concat();
        assert!(DiskSpec::parse(&[b"d:".as_slice(), &longest].concat()).is_some_and(|s| s.guest == Some(&longest[..])));
        let too_long = [b"d:/".as_slice(), &[b'a'; MAX_GUEST_PATH]].concat();
        assert_eq!(DiskSpec::parse(&too_long), None);
        for bad in [&b":ro"[..], b"", b"a\0b", b"a\0:/x", b"d:/x\0", b":/data", b"d:/", b"d:/:ro", b"d:ro:/"] {
            assert_eq!(DiskSpec::parse(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }

    #[test]
    fn parses_share_specs() {
        let s = |host: &'static [u8], guest: &'static [u8], read_only| Some(ShareSpec { host, guest, read_only });
        assert_eq!(ShareSpec::parse(b"./d:/data"), s(b"./d", b"/data", false));
        assert_eq!(ShareSpec::parse(b"/a:b:/x:ro"), s(b"/a:b", b"/x", true));
        assert_eq!(ShareSpec::parse(b"d:/x:rw"), s(b"d", b"/x", false));
        for bad in [&b"d"[..], b"d:x", b":/x", b"d:", b"d:/x:ro:ro", b"d\0:/x"] {
            assert_eq!(ShareSpec::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn too_many_disks_or_shares_name_the_culprit() {
        let disks: Vec<&[u8]> = vec![b"--smolvm-disk=/d"; MAX_DISKS + 1];
        assert_eq!(parse(&disks, &[]).err(), Some(OptError::TooMany(b"--smolvm-disk=/d")));
        assert!(parse(&disks[..MAX_DISKS], &[]).is_ok());
        let shares: Vec<&[u8]> = vec![b"--smolvm-share=/h:/g"; MAX_SHARES + 1];
        assert_eq!(parse(&shares, &[]).err(), Some(OptError::TooMany(b"--smolvm-share=/h:/g")));
    }

    #[test]
    fn no_services_flag_and_variable() {
        assert!(!parse(&[], &[]).expect("valid").no_services);
        assert!(parse(&[b"--smolvm-no-services"], &[]).expect("valid").no_services);
        assert!(parse(&[], &[b"SMOLVM_NO_SERVICES=1"]).expect("valid").no_services);
        assert!(!parse(&[], &[b"SMOLVM_NO_SERVICES=0"]).expect("valid").no_services);
        assert_eq!(parse(&[b"--smolvm-no-services=yes"], &[]).err(), Some(OptError::BadValue(b"--smolvm-no-services=yes")));
    }

    #[test]
    fn read_only_root_flag_and_variable() {
        assert_eq!(parse(&[], &[]).expect("valid").read_only, None, "no flag: the image's default");
        assert_eq!(parse(&[b"--smolvm-read-only"], &[]).expect("valid").read_only, Some(true));
        assert_eq!(parse(&[], &[]).expect("valid").balloon, None, "on by default");
        assert_eq!(parse(&[b"--smolvm-balloon=no"], &[b"SMOLVM_BALLOON=1"]).expect("valid").balloon, Some(false));
        assert_eq!(parse(&[], &[b"SMOLVM_BALLOON=0"]).expect("valid").balloon, Some(false));
        for bad in [&b"--smolvm-balloon"[..], b"--smolvm-balloon=off", b"--smolvm-balloon="] {
            assert_eq!(parse(&[bad], &[]).err(), Some(OptError::BadValue(bad)), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse(&[b"--smolvm-read-only=yes"], &[]).expect("valid").read_only, Some(true));
        assert_eq!(parse(&[b"--smolvm-read-only=no"], &[]).expect("valid").read_only, Some(false));
        assert_eq!(parse(&[], &[b"SMOLVM_READ_ONLY=1"]).expect("valid").read_only, Some(true));
        assert_eq!(parse(&[], &[b"SMOLVM_READ_ONLY=0"]).expect("valid").read_only, Some(false));
        let o = parse(&[b"--smolvm-read-only=no"], &[b"SMOLVM_READ_ONLY=yes"]).expect("valid");
        assert_eq!(o.read_only, Some(false), "the flag beats the variable");
        for bad in [&b"--smolvm-read-only="[..], b"--smolvm-read-only=ro", b"--smolvm-read-only=true"] {
            assert_eq!(parse(&[bad], &[]).err(), Some(OptError::BadValue(bad)));
        }
        assert_eq!(parse(&[], &[b"SMOLVM_READ_ONLY=on"]).err(), Some(OptError::BadValue(b"SMOLVM_READ_ONLY=on")));
    }

    #[test]
    fn mem_sizes() {
        assert_eq!(parse_mem(b"128"), Some(128));
        assert_eq!(parse_mem(b"128M"), Some(128));
        assert_eq!(parse_mem(b"1g"), Some(1024));
        assert_eq!(parse_mem(b""), None);
        assert_eq!(parse_mem(b"G"), None);
        assert_eq!(parse_mem(b"-1"), None);
    }

    #[test]
    fn network_options() {
        use net::{Proto, LOCALHOST};
        let o = parse(&[b"--smolvm-net", b"--smolvm-publish=8080:80", b"--smolvm-net-host-loopback"], &[b"SMOLVM_PUBLISH=1:2/udp,,3:4"])
            .expect("valid");
        assert_eq!(o.net, Some(NetMode::Passt));
        assert!(o.net_host_loopback);
        let ports: Vec<_> = o.publish.iter().map(|p| (p.host_port, p.guest_port, p.proto)).collect();
        assert_eq!(ports, [(1, 2, Proto::Udp), (3, 4, Proto::Tcp), (8080, 80, Proto::Tcp)]);
        assert_eq!(o.publish[2].host_ip, LOCALHOST);
        let o = parse(&[b"--smolvm-net=tap:tap0", b"--smolvm-ip=10.1.0.2/24@10.1.0.1"], &[b"SMOLVM_NET=none"]).expect("valid");
        assert_eq!(o.net, Some(NetMode::Tap(b"tap0")));
        assert_eq!(o.ip.map(|i| i.prefix), Some(24));
        assert_eq!(parse(&[], &[b"SMOLVM_NET=1"]).expect("valid").net, Some(NetMode::Passt));
        assert_eq!(parse(&[], &[]).expect("valid").net, None);
        for bad in [&b"--smolvm-net="[..], b"--smolvm-net=slirp", b"--smolvm-publish=80", b"--smolvm-publish", b"--smolvm-ip=1.2.3.4",
            b"--smolvm-net-host-loopback=1"] {
            assert_eq!(parse(&[bad], &[]).err(), Some(OptError::BadValue(bad)), "{:?}", core::str::from_utf8(bad));
        }
        let many: Vec<&[u8]> = vec![b"--smolvm-publish=1:1"; MAX_PUBLISH + 1];
        assert!(matches!(parse(&many, &[]), Err(OptError::TooMany(_))));
    }

    #[test]
    fn added_files_accumulate_and_odd_values_are_refused() {
        let o = parse(&[b"--smolvm-add=/bin/busybox:/bin/sh", b"--smolvm-add=a:b:/usr/bin/x"], &[b"SMOLVM_ADD=/e:/x,,f:/y"])
            .expect("valid");
        let add = |host, guest| AddSpec { host, guest };
        let want = [add(b"/e", b"/x"), add(b"f", b"/y"), add(b"/bin/busybox", b"/bin/sh"), add(b"a:b", b"/usr/bin/x")];
        assert_eq!(o.adds.as_slice(), &want, "the variable's first, then the flags, in order");
        assert_eq!(AddSpec::parse(b"/h:/a:/b"), Some(add(b"/h:/a", b"/b")), "split at the last :/");
        for bad in [
            &b"--smolvm-add"[..], b"--smolvm-add=", b"--smolvm-add=/bin/busybox", b"--smolvm-add=:/bin/sh",
            b"--smolvm-add=/h:bin/sh", b"--smolvm-add=/h:/", b"--smolvm-add=/h://", b"--smolvm-add=/h:/bin/",
            b"--smolvm-add=/h:/bin//sh", b"--smolvm-add=/h:/../etc/passwd", b"--smolvm-add=/h:/a/../b", b"--smolvm-add=/h:/.",
            b"--smolvm-add=/h:/a/./b", b"--smolvm-add=/h\0x:/a", b"--smolvm-add=/h:/a\0b",
        ] {
            assert_eq!(parse(&[bad], &[]).err(), Some(OptError::BadValue(bad)), "{}", String::from_utf8_lossy(bad));
        }
        let long = [b"--smolvm-add=/h:/".as_slice(), &[b'a'; MAX_GUEST_PATH]].concat();
        assert_eq!(parse(&[&long], &[]).err(), Some(OptError::BadValue(&long[..])), "guest path over MAX_GUEST_PATH");
        assert!(parse(&[], &[b"SMOLVM_ADD=/h:rel"]).is_err());
        let many: Vec<&[u8]> = vec![b"--smolvm-add=/h:/g"; MAX_ADDS + 1];
        assert!(parse(&many[..MAX_ADDS], &[]).is_ok());
        assert_eq!(parse(&many, &[]).err(), Some(OptError::TooMany(b"--smolvm-add=/h:/g")));
    }

    #[test]
    fn entry_and_force() {
        let o = parse(
            &[b"--smolvm-entry=/bin/sh", b"--smolvm-force", b"-c"],
            &[b"SMOLVM_ENTRY=/env"],
        )
        .expect("valid");
        assert_eq!(o.entry, Some(&b"/bin/sh"[..]), "the flag beats the variable");
        assert!(o.force);
        assert_eq!(o.consumed, 2);
        assert!(parse(&[], &[b"SMOLVM_FORCE=1"]).expect("valid").force);
        assert!(!parse(&[], &[b"SMOLVM_FORCE=0"]).expect("valid").force);
        for bad in [&b"--smolvm-entry="[..], b"--smolvm-entry", b"--smolvm-force=1"] {
            assert_eq!(parse(&[bad], &[]).err(), Some(OptError::BadValue(bad)), "{:?}", core::str::from_utf8(bad));
        }
    }
}
