//! Guest/host ABI: the constants the stub, smol-init and the builder share.
//! Change a value here and every part follows; never redefine one elsewhere.

/// I/O port the guest writes the app's exit status (one byte) to. It is the
/// port of QEMU's `isa-debug-exit`, so the same init runs under QEMU (which
/// exits with `(value << 1) | 1`).
pub const EXIT_PORT: u16 = 0xf4;

/// I/O port a guest writes (any byte) at its warm-image safe point: a
/// stub that is saving a snapshot (`smolvm warm`) saves it there and ends
/// the run; any other stub ignores the write (linker::warm, docs/WARM.md).
pub const SNAPSHOT_PORT: u16 = 0xf5;

/// Reserved exit statuses (Docker / `env` convention).
pub mod status {
    /// smolvm itself failed: bad image, no /dev/kvm, guest crash, bad option.
    pub const SMOLVM_FAILED: u8 = 125;
    /// The entry exists but cannot be executed.
    pub const NOT_EXECUTABLE: u8 = 126;
    /// The entry does not exist.
    pub const NOT_FOUND: u8 = 127;
    /// Added to the signal number when the app was killed by a signal.
    pub const SIGNAL_BASE: u8 = 128;
}

/// Every section in an image file starts on this boundary so the stub can
/// `mmap` it or serve it with `pread` straight from the file.
pub const SECTION_ALIGN: u64 = 4096;

/// Guest memory size when neither the manifest nor the user says otherwise.
pub const DEFAULT_MEM_MIB: u32 = 128;
/// Most vCPUs an image may ask for (`--smolvm-cpus`, manifest `cpus`); the
/// guest kernel's `CONFIG_NR_CPUS` is the same number.
pub const MAX_CPUS: usize = 64;
/// Most published ports of one run (`--smolvm-publish`, `SMOLVM_PUBLISH`
/// and the manifest's `publish` records, which `smolvm build --publish`
/// writes).
pub const MAX_PUBLISH: usize = 16;

/// virtio-mmio devices: slot `n` lives at `MMIO_BASE + n * MMIO_SLOT_SIZE` and
/// raises IOAPIC line `MMIO_FIRST_IRQ + n`. The stub announces each present
/// device with `virtio_mmio.device=4K@0x<addr>:<irq>` in slot order, which is
/// also the order Linux probes them in (hvc0, hvc1, ... and vda, vdb, ...).
pub const MMIO_BASE: u64 = 0xd000_0000;
pub const MMIO_SLOT_SIZE: u64 = 0x1000;
pub const MMIO_FIRST_IRQ: u32 = 5;
pub const MMIO_MAX_SLOTS: usize = 16;

/// Fixed device slots. Consoles first so their hvc numbers are stable.
pub mod slot {
    /// virtio-console → guest `/dev/hvc0`: the app's stdin and stdout.
    pub const CONSOLE_STDIO: usize = 0;
    /// virtio-console → guest `/dev/hvc1`: the app's stderr.
    pub const CONSOLE_STDERR: usize = 1;
    /// multiport virtio-console → guest `/dev/vport2p1` (host → init control
    /// channel) and `/dev/vport2p2` (the app's stdin outside terminal mode).
    pub const CONSOLE_CONTROL: usize = 2;
    /// virtio-blk → guest `/dev/vda`: the image's squashfs root (when present).
    pub const ROOTFS: usize = 3;
    /// Extra disks (`--smolvm-disk`) then 9p shares take the following slots.
    pub const FIRST_DYNAMIC: usize = 4;
}

/// Guest device paths smol-init uses for the console slots above.
pub const GUEST_STDIO_TTY: &str = "/dev/hvc0";
pub const GUEST_STDERR_TTY: &str = "/dev/hvc1";
/// The control slot is a *multiport* virtio-console with two generic ports
/// (no tty layer: binary safe, no termios), named under
/// `/sys/class/virtio-ports/vport2p*/name` as `smolvm.control` and
/// `smolvm.stdin` (port 0 is not used: QEMU reserves it for consoles, so a
/// QEMU `virtserialport` setup can mirror these paths). Port 1: host → init
/// signal bytes (see `CONTROL_MAX_SIGNAL`).
pub const GUEST_CONTROL_TTY: &str = "/dev/vport2p1";
/// Port 2 of the control device: the app's stdin when the runtime config has
/// no `tty` record. `read` returns end-of-file exactly where host stdin
/// ended (the host disconnects the port after the last byte). Host bytes are
/// sent only while the guest has this port open. With a `tty` record, stdin
/// is `GUEST_STDIO_TTY` instead (the host terminal is raw, the guest tty
/// does the line discipline) and this port reads as end-of-file.
pub const GUEST_STDIN_PORT: &str = "/dev/vport2p2";
/// Ports 3 and 4 of the control device: the app's stdout and stderr when the
/// runtime config has a `stdio ports` record (the stub: outside terminal mode), so that, as under `docker run`
/// without `-t`, none of the app's streams is a terminal (`ls | wc -l`
/// counts lines, `isatty(1)` is false). With a `tty` record the app writes
/// to `GUEST_STDIO_TTY`/`GUEST_STDERR_TTY` and these ports stay unused.
pub const GUEST_STDOUT_PORT: &str = "/dev/vport2p3";
pub const GUEST_STDERR_PORT: &str = "/dev/vport2p4";
pub const GUEST_ROOT_DEV: &str = "/dev/vda";

/// Control channel (control device port 1), host → init: one byte per message. A byte `1..=64`
/// asks init to send that signal number to the app.
pub const CONTROL_MAX_SIGNAL: u8 = 64;

/// 9p mount tag of share `n` is `TAG_PREFIX` followed by `n` in decimal.
pub const SHARE_TAG_PREFIX: &str = "smolvm";

/// Paths inside the guest's initramfs (the runtime cpio that the stub appends
/// after the image's initramfs) where init finds its configuration.
/// Both files use the record format of [`crate::config`].
pub const GUEST_MANIFEST_PATH: &str = "smolvm/manifest";
pub const GUEST_RUNTIME_PATH: &str = "smolvm/run";
/// In an image whose rootfs format is `initramfs`, the root filesystem tree
/// is stored under this directory of the initramfs.
pub const INITRAMFS_ROOT_DIR: &str = "rootfs";
/// smol-init's path in the image's initramfs.
pub const INIT_PATH: &str = "init";
