//! Networking end to end (issue 18): real images run by the real stub with
//! passt (or a TAP), directly on hardware KVM, else inside the KVM lab's L1.
//! The client (or server) side of each case is `tests/net/client.py`, run
//! in the same place as the image; traffic stays on loopback and on
//! addresses inside L1 (a TAP, 10.0.2.x behind passt).
//!
//! Needs `target/<profile>/{vmm-stub,smol-init,smolvm}`, the guest kernel
//! (with VIRTIO_NET), busybox-static, musl-gcc (musl-tools), passt,
//! python3, iproute2 and util-linux (`unshare`) where the cases run.

use smolvm_tests::lab::{self, Case, Outcome};
use smolvm_tests::{product, qemu};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn client() -> String {
    repo().join("tests/net/client.py").display().to_string()
}

/// http-echo (examples/http-echo) as the entry; `extra` build flags.
fn echo_image(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let root = dir.join(format!("{name}-root"));
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    let src = repo().join("examples/http-echo/http-echo.c");
    let out = Command::new("musl-gcc")
        .args(["-Os", "-static", "-pthread", "-s", "-o"])
        .arg(root.join("bin/http-echo"))
        .arg(&src)
        .output()
        .expect("gcc runs");
    assert!(out.status.success(), "musl-gcc -static http-echo.c (apt-get install musl-tools): {}", String::from_utf8_lossy(&out.stderr));
    product::build_image(&root, "/bin/http-echo", extra, &dir.join(format!("{name}.vm")))
}

/// busybox `sh` as the entry, with the network applets.
fn busybox_image(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let root = dir.join(format!("{name}-root"));
    let applets = ["sh", "cat", "echo", "ls", "grep", "ip", "nslookup", "nc", "sleep"];
    product::busybox_rootfs(&root, &applets, &["proc", "sys", "dev", "tmp", "etc"]);
    product::build_image(&root, "/bin/sh", extra, &dir.join(format!("{name}.vm")))
}

fn vm(image: &Path) -> String {
    image.display().to_string()
}

fn show(o: &Outcome) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", o.status, o.stdout_lossy(), o.stderr_lossy())
}

fn py(name: &str, args: &[&str]) -> Case {
    let mut argv = vec!["python3".to_string(), client()];
    argv.extend(args.iter().map(|a| a.to_string()));
    Case::new(name, argv).timeout(Duration::from_secs(400))
}

fn sh(name: &str, script: &str, args: &[&str]) -> Case {
    let mut argv = vec!["sh".to_string(), "-c".into(), script.into(), "sh".into()];
    argv.extend(args.iter().map(|a| a.to_string()));
    Case::new(name, argv).timeout(Duration::from_secs(400))
}

#[test]
fn network_end_to_end() {
    lab::prewarm();
    let work = qemu::scratch_dir("net-e2e");
    let echo = echo_image(&work, "echo", &[]);
    let echo_pub = echo_image(&work, "echo-pub", &["--publish", "18088:8080"]);
    let bb = busybox_image(&work, "bb", &[]);
    let bb_net = busybox_image(&work, "bb-net", &["--net"]);
    let resolv = work.join("resolv.conf");
    let (echo, echo_pub, bb, bb_net) = (vm(&echo), vm(&echo_pub), vm(&bb), vm(&bb_net));
    // A non-loopback host address: L1's dummy interface (directly: loopback).
    let udp_addr = if lab::Mode::current() == lab::Mode::Lab { "192.0.2.1" } else { "127.0.0.1" };
    let udp_publish = format!("--smolvm-publish={udp_addr}:18098:8080/udp");
    // busybox nc, not wget: Debian's busybox wget crashes on a refused connection.
    // nc's stdin stays open until the answer is in (nc ends at the server's EOF):
    // a guest that half-closes first (nc shuts down its writing side at stdin's
    // EOF) meets a passt bug (Debian 12's 0.0~git20230309): when the server's
    // answer and its close reach passt in one wake-up, passt forwards the
    // answer, then takes the guest's ACK of it as the end of the connection and
    // never sends the guest its FIN, so nc waits forever. With 2 CPUs in L1
    // that happened in 12 of 15 runs (frame traces: the stub had delivered every
    // frame), at 1 vCPU as at 2; with nc's stdin held open, in none of 8.
    let get = |host: &str, port: u16| {
        format!("{{ printf 'GET / HTTP/1.0\\r\\n\\r\\n'; sleep 3; }} | nc -w 8 {host} {port}; echo nc=$?")
    };
    let loopback_get = get("10.0.2.2", 18090);
    let eth0_script = "ls /sys/class/net; cat /sys/class/net/eth0/mtu; ip -4 addr show dev eth0 | grep -o 'inet [0-9./]*'; \
        ip route | grep default; cat /etc/resolv.conf; grep -c localhost /etc/hosts";
    // The resolver L1 (or the host) uses: a DNS server on a local, non-loopback
    // address in L1 (its dummy interface), on loopback when run directly.
    let dns_bind = if lab::Mode::current() == lab::Mode::Lab { "192.0.2.1" } else { "127.0.0.1" };
    std::fs::write(&resolv, format!("nameserver {dns_bind}\n")).expect("write resolv.conf");

    let out = lab::run_images(&[
        // 0: a published TCP port through the run-time flag.
        py("publish", &["publish", "18080", "--", &echo, "--smolvm-publish=18080:8080"]),
        // 1: the manifest's default publish.
        py("manifest-publish", &["get", "18088", "--", &echo_pub]),
        // 2-4: no network by default (lo only); the manifest's --net; --smolvm-net=none.
        Case::image(&bb, &["-c", "ls /sys/class/net; cat /sys/class/net/lo/operstate"]),
        Case::image(&bb_net, &["-c", eth0_script]),
        Case::image(&bb_net, &["--smolvm-net=none", "-c", "ls /sys/class/net"]),
        // 5-6: the host's loopback through the gateway: with the flag (alone:
        // it implies passt on this image without a network), and refused without.
        py(
            "host-loopback",
            &["serve", "127.0.0.1", "18090", "--", &bb, "--smolvm-net-host-loopback", "-c", &loopback_get],
        ),
        py("no-host-loopback", &["serve", "127.0.0.1", "18090", "--", &bb, "--smolvm-net", "-c", &loopback_get]),
        // 7: DNS: the resolver named in L1's /etc/resolv.conf (a private one,
        // in the case's own mount namespace) answers through passt's forwarder
        // at 10.0.2.3, which the guest's /etc/resolv.conf names.
        sh(
            "dns",
            "unshare -m sh -c 'mount --bind \"$0\" /etc/resolv.conf && exec python3 \"$@\"' \"$@\"",
            &[
                &resolv.display().to_string(),
                &client(),
                "dns",
                dns_bind,
                "smolvm-test.lab",
                "192.0.2.77",
                "--",
                &bb,
                "--smolvm-net",
                "-c",
                "cat /etc/resolv.conf; nslookup smolvm-test.lab; echo ns=$?; echo nx=$(nslookup nosuch.lab 2>&1 | grep -c 192.0.2.77)",
            ],
        ),
        // 8: the TAP backend (L1 is root: the case makes the tap).
        sh(
            "tap",
            "ip tuntap add smtap0 mode tap && ip addr add 192.168.100.1/24 dev smtap0 && ip link set smtap0 up && \
             exec python3 \"$@\"",
            &[
                &client(),
                "serve",
                "192.168.100.1",
                "18091",
                "--",
                &bb,
                "--smolvm-net=tap:smtap0",
                "--smolvm-ip=192.168.100.2/24",
                "-c",
                &format!("{}; ip -4 addr show dev eth0 | grep -o 'inet [0-9./]*'", get("192.168.100.1", 18091)),
            ],
        ),
        // 9: a TAP without --smolvm-ip.
        Case::image(&bb, &["--smolvm-net=tap:smtap9", "-c", "true"]),
        // 10: a published port that is taken.
        py("port-in-use", &["hold", "18095", "--", &echo, "--smolvm-publish=18095:8080"]),
        // 11: no passt in PATH.
        Case::image(&bb, &["--smolvm-net", "-c", "echo should not run"]).env("PATH", "/nonexistent"),
        // 12: SIGKILL of the stub takes passt with it.
        py("kill9", &["kill9", "18096", "--", &echo, "--smolvm-publish=18096:8080"]),
        // 13: a published UDP port from the host's loopback (the host's
        // loopback stays closed to the guest); 14: from L1's own address.
        py("udp", &["udp", "127.0.0.1", "18097", "--", &echo, "--smolvm-publish=18097:8080/udp"]),
        py("udp-lan", &["udp", udp_addr, "18098", "--", &echo, &udp_publish]),
        // 15: bulk TCP through a published port: 16 MiB up, 16 MiB down, then
        // 16 MiB echoed both ways at once, byte-exact; 30 s without progress
        // is a stall (one stalled the benchmark: see the device's tests).
        py("bulk", &["bulk", "18099", "16", "1", "--", &echo, "--smolvm-publish=18099:8080"]),
        // 16: with the debug log passt keeps the stub's stderr (its fd 2 is
        // inherited in place; once a failed dup3 of fd 2 onto itself stopped it).
        py("debug-log", &["get", "18100", "--", &echo, "--smolvm-publish=18100:8080", "--smolvm-log=debug"]),
    ]);
    let mut failed = Vec::new();
    let mut check = |ok: bool, what: &str, o: &Outcome| {
        if !ok {
            failed.push(format!("{what}: {}", show(o)));
        }
    };

    let o = &out[0];
    check(
        o.status == Some(0)
            && o.stdout_lossy() == "get: hello from http-echo\npost: 1048576 bytes, identical\nconcurrent: 640/640 correct\n",
        "publish: GET, 1 MiB POST, 32x20 requests",
        o,
    );
    let o = &out[1];
    check(o.status == Some(0) && o.stdout_lossy() == "get: hello from http-echo\n", "the manifest's publish", o);
    let o = &out[2];
    check(o.status == Some(0) && o.stdout_lossy() == "lo\nunknown\n", "no eth0 by default, lo up", o);
    let o = &out[3];
    let lines: Vec<String> = o.stdout_lossy().lines().map(|l| l.trim_end().to_string()).collect();
    check(
        o.status == Some(0)
            && lines.join("\n") == "eth0\nlo\n65520\ninet 10.0.2.15/24\ndefault via 10.0.2.2 dev eth0\nnameserver 10.0.2.3\n2",
        "--net: eth0 address, route, MTU, resolv.conf, hosts",
        o,
    );
    let o = &out[4];
    check(o.status == Some(0) && o.stdout_lossy() == "lo\n", "--smolvm-net=none", o);
    let o = &out[5];
    check(o.stdout_lossy().ends_with("\r\n\r\nhost-says-hi\nnc=0\nstatus 0\nserver connections: 1\n"), "host loopback with the flag", o);
    let o = &out[6];
    let s = o.stdout_lossy();
    check(
        !s.contains("host-says-hi") && s.starts_with("nc=1\nstatus 0\n") && s.ends_with("server connections: 0\n"),
        "host loopback out of reach without the flag",
        o,
    );
    let o = &out[7];
    let s = o.stdout_lossy();
    check(
        s.starts_with("nameserver 10.0.2.3\n") && s.contains("192.0.2.77") && s.contains("ns=0\nnx=0\n") && s.ends_with("dns queries: some\n"),
        "DNS through passt's forwarder",
        o,
    );
    let o = &out[8];
    check(
        o.stdout_lossy().ends_with("\r\n\r\nhost-says-hi\nnc=0\ninet 192.168.100.2/24\nstatus 0\nserver connections: 1\n"),
        "TAP backend",
        o,
    );
    let o = &out[9];
    check(o.status == Some(125) && o.stderr_lossy().contains("--smolvm-ip"), "tap without --smolvm-ip is 125", o);
    let o = &out[10];
    check(o.stdout_lossy().starts_with("status 125\n") && o.stdout_lossy().contains("18095"), "a taken port is 125 naming it", o);
    let o = &out[11];
    check(
        o.status == Some(125) && o.stdout.is_empty() && o.stderr_lossy().contains("passt") && o.stderr_lossy().lines().count() == 1,
        "no passt is 125 naming it",
        o,
    );
    let o = &out[12];
    check(o.stdout_lossy() == "passt before: 1\npasst after: 0\nport free: yes\n", "SIGKILL leaves no passt", o);
    let o = &out[13];
    check(o.status == Some(0) && o.stdout_lossy() == "udp: udp ping\n", "UDP publish from loopback", o);
    let o = &out[14];
    check(o.status == Some(0) && o.stdout_lossy() == "udp: udp ping\n", "UDP publish from L1's address", o);
    let o = &out[15];
    check(o.status == Some(0) && o.stdout_lossy() == "bulk: 1 x 16 MiB up, down and echoed, byte-exact\n", "bulk TCP both ways", o);
    let o = &out[16];
    check(
        o.status == Some(0) && o.stdout_lossy() == "get: hello from http-echo\n",
        "networking with --smolvm-log=debug",
        o,
    );
    assert!(failed.is_empty(), "{} of {} cases failed:\n\n{}", failed.len(), out.len(), failed.join("\n\n"));
}
