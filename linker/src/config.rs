//! The record format of the image manifest (written by the builder) and the
//! runtime config (written by the stub at every start). smol-init reads both.
//!
//! ```text
//! file   := MAGIC record*
//! MAGIC  := "SMOLCFG1"
//! record := key NUL (field NUL){arity(key)}
//! ```
//! Keys are ASCII words; fields are arbitrary bytes without NUL (argv and
//! environment strings cannot hold NUL either), so nothing is ever escaped.
//! Unknown keys, a wrong arity, a missing final NUL or an oversized file are
//! errors: the format is versioned by its magic, not extended silently.

/// First bytes of every config file.
pub const MAGIC: &[u8; 8] = b"SMOLCFG1";
/// Upper bound of a whole config file (argv + env included).
pub const MAX_CONFIG_LEN: usize = 256 * 1024;
/// Most fields a record has.
pub const MAX_FIELDS: usize = 3;

/// What a record says. Manifest keys come from `smolvm build`; runtime keys
/// from the stub's command line and environment. Where both give a key that
/// replaces (`arg`, `workdir`, ...), the runtime config wins (see each key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// Manifest: path of the app inside the rootfs.
    Entry,
    /// Manifest: a default argument. Runtime: an argument; if the runtime
    /// config has any `arg`, they replace the manifest's all together.
    Arg,
    /// Manifest: a fixed argument of the entry (a container Entrypoint's
    /// own arguments): always passed, before the `arg`s, never replaced.
    EntryArg,
    /// Manifest, value `yes`: runtime args replace the entry too, the first
    /// one naming the program (Docker's rule for an image with Cmd and no
    /// Entrypoint).
    RuntimeEntry,
    /// `NAME=value`; runtime entries override manifest entries of that name.
    Env,
    /// Working directory of the app (runtime overrides manifest).
    Workdir,
    /// Guest memory in MiB, decimal (manifest; the stub may override).
    Mem,
    /// Manifest: `squashfs` (rootfs on /dev/vda) or `initramfs` (under /rootfs).
    Rootfs,
    /// Guest hostname.
    Hostname,
    /// `uid` or `uid:gid`, decimal.
    User,
    /// Manifest: a guest path to mount a writable tmpfs on.
    Tmpfs,
    /// Runtime: a 9p share: mount tag, guest path, `ro` or `rw`.
    Share,
    /// Runtime: `debug` makes smol-init print each step with a timestamp.
    Log,
    /// Runtime: the host terminal's size as `rows cols` when stdin is a tty.
    Tty,
    /// Runtime, value `ports`: the host serves the app's stdin, stdout and
    /// stderr on the control device's ports (`abi::GUEST_STDIN_PORT`,
    /// `GUEST_STDOUT_PORT`, `GUEST_STDERR_PORT`); the stub sends it outside
    /// terminal mode. Without it only the stdin port is looked for.
    Stdio,
    /// Manifest: the image's default network, `passt` (user-mode networking)
    /// or `none`; run-time flags override it. No record: no network device.
    Net,
    /// Manifest: a default published port, `[HOST_IP:]HOST_PORT:GUEST_PORT[/udp]`
    /// exactly as `--smolvm-publish` takes it (repeatable; implies `net passt`).
    Publish,
    /// Runtime: configure `eth0`: `ADDR/PREFIX` (IPv4), the default gateway
    /// (empty: no default route), the MTU in decimal. At most one record.
    Ip,
    /// Runtime: a nameserver address for the guest's /etc/resolv.conf
    /// (repeatable, in order).
    Dns,
    /// `yes` or `no`: whether the root filesystem stays read-only (`smolvm
    /// build --read-only`; the runtime config overrides the manifest). By
    /// default (`no`, or no record) the root is an overlay with a tmpfs upper
    /// layer, discarded at exit.
    ReadOnly,
    /// Runtime: a data disk to mount: its device name under /dev (`vdb`,
    /// `vdc`, ...), the absolute guest path, `ro` or `rw`. smol-init mounts
    /// an ext4 or squashfs file system there; any other content stays a raw
    /// device.
    Disk,
    /// Manifest: a service smol-init runs beside the app: its name
    /// ([`valid_service_name`]) and its command (a path, or a name searched in
    /// PATH). Services start in record order; at most [`MAX_SERVICES`].
    Service,
    /// Manifest: NAME, an argument of service NAME (in order).
    ServiceArg,
    /// Manifest: NAME, `VAR=value` for service NAME; over the app's env.
    ServiceEnv,
    /// Manifest: NAME, the absolute working directory of service NAME
    /// (default `/`).
    ServiceWorkdir,
    /// Manifest: NAME, `uid` or `uid:gid` service NAME runs as (default 0:0).
    ServiceUser,
    /// Manifest: NAME, when service NAME is started again after it ends:
    /// `always`, `on-failure` (the default: a non-zero status or a signal)
    /// or `never`.
    ServiceRestart,
    /// Manifest: NAME, the condition the app waits for before it starts:
    /// `tcp:PORT` (a connection to 127.0.0.1:PORT succeeds) or `file:PATH`
    /// (an absolute path exists), and the timeout in whole seconds after
    /// which the VM ends with status 125.
    ServiceReady,
    /// Runtime, value `no`: run the app without the image's services
    /// (`--smolvm-no-services`).
    Services,
    /// Manifest: a data disk attached by default (`smolvm build --disk`),
    /// exactly as `--smolvm-disk` takes it (`linker::disk::DiskSpec`);
    /// repeatable, in order. Any run-time `--smolvm-disk` replaces them all.
    DefaultDisk,
    /// Runtime: a host file added for this run (`--smolvm-add`), carried as
    /// a read-only disk: its device name (`vdb`, ...), the guest path it is
    /// copied to (`disk::is_normal_absolute`), and `LEN MODE`: its length in
    /// bytes (the disk is padded to whole sectors) and its permission bits
    /// in octal (`1048576 755`).
    Add,
    /// Manifest: vCPUs, decimal, 1 to `abi::MAX_CPUS` (`smolvm build
    /// --cpus`); `--smolvm-cpus` overrides it.
    Cpus,
}

/// Most services an image may have.
pub const MAX_SERVICES: usize = 8;
/// Longest service name (it prefixes each line of the service's output).
pub const MAX_SERVICE_NAME: usize = 32;
/// Service restart policies (`service-restart` values).
pub const RESTART_POLICIES: [&str; 3] = ["always", "on-failure", "never"];
/// Readiness condition kinds (`service-ready` prefixes).
pub const READY_TCP: &str = "tcp:";
pub const READY_FILE: &str = "file:";
/// Longest readiness timeout, in seconds.
pub const MAX_READY_TIMEOUT_SECS: u32 = 3600;

/// A service name: 1 to [`MAX_SERVICE_NAME`] ASCII letters, digits, `-`,
/// `_` or `.`, so that it prints safely in `[NAME] ` prefixes.
pub fn valid_service_name(name: &[u8]) -> bool {
    (1..=MAX_SERVICE_NAME).contains(&name.len())
        && name.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

// `Key::ALL` is in declaration order: `ALL[key as usize]` is `key`.
const _: () = {
    let mut i = 0;
    while i < Key::ALL.len() {
        assert!(Key::ALL[i] as usize == i, "Key::ALL out of declaration order");
        i += 1;
    }
    let (table, mut entries, mut j) = (Key::TABLE.as_bytes(), 0, 0);
    while j < table.len() {
        entries += (table[j] == 0) as usize;
        j += 1;
    }
    assert!(entries == Key::ALL.len(), "Key::TABLE needs one entry a key");
};

impl Key {
    const ALL: [Key; 32] = [Key::Entry, Key::Arg, Key::EntryArg, Key::RuntimeEntry, Key::Env, Key::Workdir, Key::Mem, Key::Rootfs, Key::Hostname, Key::User, Key::Tmpfs, Key::Share, Key::Log, Key::Tty, Key::Stdio, Key::Net, Key::Publish, Key::Ip, Key::Dns, Key::ReadOnly, Key::Disk, Key::Service, Key::ServiceArg, Key::ServiceEnv, Key::ServiceWorkdir, Key::ServiceUser, Key::ServiceRestart, Key::ServiceReady, Key::Services, Key::DefaultDisk, Key::Add, Key::Cpus];
    /// Each key's name and arity digit, NUL-terminated, in declaration
    /// order: one string, because a table of `&str` would cost the stub 16
    /// more bytes a key.
    const TABLE: &'static str = "entry1\0arg1\0entryarg1\0runtime-entry1\0env1\0workdir1\0mem1\0rootfs1\0hostname1\0user1\0tmpfs1\0share3\0log1\0tty1\0stdio1\0net1\0publish1\0ip3\0dns1\0read-only1\0disk3\0service2\0service-arg2\0service-env2\0service-workdir2\0service-user2\0service-restart2\0service-ready3\0services1\0default-disk1\0add3\0cpus1\0";

    /// Where key `index`'s entry (name and arity digit) lies in `TABLE`.
    /// Plain loops: `split` would cost the stub more than the table saves.
    fn entry(index: usize) -> core::ops::Range<usize> {
        let (mut start, mut n) = (0, 0);
        for (i, &b) in Self::TABLE.as_bytes().iter().enumerate() {
            if b == 0 {
                if n == index {
                    return start..i;
                }
                n += 1;
                start = i + 1;
            }
        }
        0..0
    }

    pub fn name(self) -> &'static str {
        let e = Self::entry(self as usize);
        // The table is ASCII: every offset is a char boundary.
        Self::TABLE.get(e.start..e.end.saturating_sub(1)).unwrap_or("")
    }

    pub fn arity(self) -> usize {
        let e = Self::entry(self as usize);
        usize::from(Self::TABLE.as_bytes().get(e.end.wrapping_sub(1)).map_or(0, |d| d.wrapping_sub(b'0')))
    }

    pub fn from_name(name: &[u8]) -> Option<Key> {
        Self::ALL.iter().copied().find(|k| k.name().as_bytes() == name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    BadMagic,
    TooLarge,
    UnknownKey,
    /// A record ends before all its fields (no final NUL).
    Truncated,
    /// A field given to the writer contains NUL, or the arity is wrong.
    BadField,
    /// The writer's buffer is full.
    Full,
}

impl ConfigError {
    pub fn message(self) -> &'static str {
        match self {
            ConfigError::BadMagic => "config: bad magic",
            ConfigError::TooLarge => "config: larger than 256 KiB",
            ConfigError::UnknownKey => "config: unknown key",
            ConfigError::Truncated => "config: truncated record",
            ConfigError::BadField => "config: field contains NUL or wrong field count",
            ConfigError::Full => "config: does not fit",
        }
    }
}

/// One record: its key and `key.arity()` fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub key: Key,
    fields: [&'a [u8]; MAX_FIELDS],
}

impl<'a> Record<'a> {
    /// Field `i` (empty if `i >= arity`).
    pub fn field(&self, i: usize) -> &'a [u8] {
        self.fields.get(i).copied().unwrap_or(&[])
    }
    /// The first (often only) field.
    pub fn value(&self) -> &'a [u8] {
        self.fields[0]
    }
}

/// Iterates over the records of a config file. Yields an error once and then
/// stops if the file is malformed.
pub struct Records<'a> {
    rest: &'a [u8],
    failed: bool,
}

/// Checks the magic and size and returns an iterator over the records.
pub fn parse(bytes: &[u8]) -> Result<Records<'_>, ConfigError> {
    if bytes.len() > MAX_CONFIG_LEN {
        return Err(ConfigError::TooLarge);
    }
    let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or(ConfigError::BadMagic)?;
    Ok(Records { rest, failed: false })
}

/// Checks a whole file: every record well formed.
pub fn validate(bytes: &[u8]) -> Result<(), ConfigError> {
    parse(bytes)?.try_for_each(|r| r.map(drop))
}

/// The value (first field) of the last well-formed `key` record in a config
/// file, if any: the one that counts for keys that replace.
pub fn last_value(bytes: &[u8], key: Key) -> Option<&[u8]> {
    parse(bytes).ok()?.map_while(Result::ok).filter(|r| r.key == key).last().map(|r| r.value())
}

fn split_nul(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = bytes.iter().position(|&b| b == 0)?;
    Some((bytes.get(..end)?, bytes.get(end.wrapping_add(1)..)?))
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, ConfigError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let result = self.next_record();
        self.failed = result.is_err();
        Some(result)
    }
}

impl<'a> Records<'a> {
    fn next_record(&mut self) -> Result<Record<'a>, ConfigError> {
        let (name, mut rest) = split_nul(self.rest).ok_or(ConfigError::Truncated)?;
        let key = Key::from_name(name).ok_or(ConfigError::UnknownKey)?;
        let mut fields: [&'a [u8]; MAX_FIELDS] = [&[]; MAX_FIELDS];
        for field in fields.iter_mut().take(key.arity()) {
            let (value, after) = split_nul(rest).ok_or(ConfigError::Truncated)?;
            *field = value;
            rest = after;
        }
        self.rest = rest;
        Ok(Record { key, fields })
    }
}

/// Writes a config file into a caller-provided buffer (no allocation; the
/// stub uses it at run time).
pub struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> Writer<'b> {
    pub fn new(buf: &'b mut [u8]) -> Result<Self, ConfigError> {
        let mut w = Writer { buf, len: 0 };
        w.put(MAGIC)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), ConfigError> {
        let end = self.len.checked_add(bytes.len()).ok_or(ConfigError::Full)?;
        if end > MAX_CONFIG_LEN {
            return Err(ConfigError::TooLarge);
        }
        self.buf.get_mut(self.len..).and_then(|b| b.get_mut(..bytes.len())).ok_or(ConfigError::Full)?.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// Appends one record; `fields.len()` must equal `key.arity()` and no
    /// field may contain NUL. On error nothing is appended.
    pub fn push(&mut self, key: Key, fields: &[&[u8]]) -> Result<(), ConfigError> {
        if fields.len() != key.arity() || fields.iter().any(|f| f.contains(&0)) {
            return Err(ConfigError::BadField);
        }
        let start = self.len;
        let result = (|| {
            self.put(key.name().as_bytes())?;
            self.put(&[0])?;
            for f in fields {
                self.put(f)?;
                self.put(&[0])?;
            }
            Ok(())
        })();
        if result.is_err() {
            self.len = start;
        }
        result
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Builds a config file in memory (builder, tests).
#[cfg(feature = "std")]
pub fn to_vec(records: &[(Key, &[&[u8]])]) -> Result<std::vec::Vec<u8>, ConfigError> {
    let mut buf = std::vec![0u8; MAX_CONFIG_LEN];
    let mut w = Writer::new(&mut buf)?;
    for (key, fields) in records {
        w.push(*key, fields)?;
    }
    let len = w.len();
    buf.truncate(len);
    Ok(buf)
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_its_name_and_arity() {
        assert_eq!(Key::TABLE.split('\0').count(), Key::ALL.len() + 1, "one entry a key, then the end");
        for key in Key::ALL {
            assert_eq!(Key::from_name(key.name().as_bytes()), Some(key));
            assert!((1..=MAX_FIELDS).contains(&key.arity()), "{key:?}");
        }
        assert_eq!((Key::Share.name(), Key::Share.arity()), ("share", 3));
        assert_eq!((Key::ServiceReady.name(), Key::ServiceReady.arity()), ("service-ready", 3));
        assert_eq!(Key::from_name(b""), None);
        assert_eq!(Key::from_name(b"entry1"), None);
    }

    #[test]
    fn round_trip_keeps_bytes_exact() {
        let args: [&[u8]; 5] = [b"a b", b"", b"\"q'\n", "ü✓".as_bytes(), b"\xff\x01"];
        let mut recs: std::vec::Vec<(Key, &[&[u8]])> = std::vec::Vec::new();
        let entry: [&[u8]; 1] = [b"/bin/app"];
        recs.push((Key::Entry, &entry));
        let arg_fields: std::vec::Vec<[&[u8]; 1]> = args.iter().map(|a| [*a]).collect();
        for f in &arg_fields {
            recs.push((Key::Arg, f));
        }
        let share: [&[u8]; 3] = [b"smolvm0", b"/data", b"ro"];
        recs.push((Key::Share, &share));
        let bytes = to_vec(&recs).expect("fits");
        let parsed: std::vec::Vec<Record<'_>> =
            parse(&bytes).expect("magic").map(|r| r.expect("valid")).collect();
        assert_eq!(parsed.len(), 7);
        assert_eq!(parsed[0].key, Key::Entry);
        assert_eq!(parsed[0].value(), b"/bin/app");
        for (i, a) in args.iter().enumerate() {
            assert_eq!(parsed[i + 1].key, Key::Arg);
            assert_eq!(parsed[i + 1].value(), *a);
        }
        assert_eq!(parsed[6].field(0), b"smolvm0");
        assert_eq!(parsed[6].field(1), b"/data");
        assert_eq!(parsed[6].field(2), b"ro");
    }

    #[test]
    fn last_value_is_the_last_record_of_the_key() {
        let bytes = to_vec(&[(Key::Mem, &[b"64"]), (Key::Entry, &[b"/a"]), (Key::Mem, &[b"128"])]).expect("fits");
        assert_eq!(last_value(&bytes, Key::Mem), Some(&b"128"[..]));
        assert_eq!(last_value(&bytes, Key::ReadOnly), None);
        assert_eq!(last_value(b"bad", Key::Mem), None);
    }

    #[test]
    fn malformed_files_are_errors() {
        assert_eq!(parse(b"SMOLCFG2").err(), Some(ConfigError::BadMagic));
        assert_eq!(validate(b"SMOLCFG1arg\0x"), Err(ConfigError::Truncated));
        assert_eq!(validate(b"SMOLCFG1nope\0x\0"), Err(ConfigError::UnknownKey));
        assert_eq!(validate(b"SMOLCFG1share\0a\0b\0"), Err(ConfigError::Truncated));
        assert_eq!(validate(b"SMOLCFG1"), Ok(()));
        let big = std::vec![b'a'; MAX_CONFIG_LEN + 1];
        assert_eq!(parse(&big).err(), Some(ConfigError::TooLarge));
    }

    #[test]
    fn writer_refuses_nul_and_wrong_arity_and_overflow() {
        let mut buf = [0u8; 32];
        let mut w = Writer::new(&mut buf).expect("magic fits");
        assert_eq!(w.push(Key::Arg, &[b"a\0b"]), Err(ConfigError::BadField));
        assert_eq!(w.push(Key::Share, &[b"a"]), Err(ConfigError::BadField));
        assert_eq!(w.push(Key::Arg, &[&[b'x'; 40]]), Err(ConfigError::Full));
        assert_eq!(w.len(), MAGIC.len());
        w.push(Key::Arg, &[b"ok"]).expect("fits");
        assert_eq!(w.as_bytes(), b"SMOLCFG1arg\0ok\0");
    }
}
