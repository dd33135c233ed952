//! `smolvm push` / `smolvm pull` against a real OCI registry on loopback
//! (issue 24): Debian's `docker-registry` (distribution v2), started here on
//! a free 127.0.0.1 port with a temporary config and storage.
//! - push then pull: byte-identical, mode 0755, the manifest is a smolvm
//!   artifact whose config blob is `inspect --json`;
//! - a missing tag: one line, non-zero, no file;
//! - a registry that answers the blob with a changed byte (a proxy in this
//!   test corrupts it): refused, no file (nor temporary file) left;
//! - htpasswd (bcrypt) authentication: refused without credentials, works
//!   with `--username --password-stdin`, with a Docker config `auths` entry,
//!   and through a credential helper (a shell script first on the child's
//!   PATH) named by `credHelpers` and by `credsStore`; a helper without
//!   credentials means anonymous (refused, one line); a missing helper is
//!   one line naming it.
//!
//! Needs `target/<profile>/{vmm-stub,smol-init,smolvm}`, the guest kernel,
//! busybox-static, docker-registry and apache2-utils (htpasswd).

use smolvm_tests::registry::{have_registry, Registry};
use smolvm_tests::{prereq, product, qemu};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn smolvm(args: &[&str], stdin: &[u8], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(product::smolvm());
    c.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // No credentials from the user running the tests.
    c.env("DOCKER_CONFIG", "/nonexistent-smolvm-test");
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("run smolvm");
    child.stdin.take().expect("stdin").write_all(stdin).expect("stdin");
    child.wait_with_output().expect("wait smolvm")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "smolvm failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// One line on stderr, non-zero status.
fn one_line_failure(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "expected a failure, got: {}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(err.trim_end().lines().count(), 1, "one line expected: {err}");
    err
}

fn image(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    product::busybox_rootfs(&root, &["sh", "echo"], &["proc", "sys", "dev"]);
    product::build_image(&root, "/bin/sh", &["--arg", "-c", "--arg", "echo hi"], &dir.join("app.vm"))
}

/// Files in `dir` whose name contains `part` (temporary files of a failed pull).
fn leftovers(dir: &Path, part: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(part))
        .collect()
}

fn http_get(addr: &str, path: &str, accept: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n").expect("send");
    let mut r = String::new();
    s.read_to_string(&mut r).expect("read");
    r
}

#[test]
fn push_then_pull_is_byte_identical_and_a_missing_tag_is_one_line() {
    if !have_registry() {
        return;
    }
    let dir = qemu::scratch_dir("registry-roundtrip");
    let app = image(&dir);
    let reg = Registry::start(&dir, None);
    let reference = format!("{}/apps/hello:1.0", reg.addr);
    let out = ok(&smolvm(&["push", &app.display().to_string(), &reference], b"", &[]));
    assert!(out.contains("pushed"), "{out}");

    let pulled = dir.join("pulled.vm");
    ok(&smolvm(&["pull", &reference, "-o", &pulled.display().to_string()], b"", &[]));
    assert_eq!(std::fs::read(&pulled).expect("pulled"), std::fs::read(&app).expect("app"), "not byte-identical");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&pulled).expect("meta").permissions().mode() & 0o777, 0o755);

    // The manifest is a smolvm artifact; its config blob is `inspect --json`.
    let manifest = http_get(&reg.addr, "/v2/apps/hello/manifests/1.0", "application/vnd.oci.image.manifest.v1+json");
    assert!(manifest.contains("\"artifactType\":\"application/vnd.smolvm.image.v1\""), "{manifest}");
    assert!(manifest.contains("application/vnd.smolvm.image.file.v1"), "{manifest}");
    let config_digest = manifest
        .split("\"config\":")
        .nth(1)
        .and_then(|c| c.split("\"digest\":\"").nth(1))
        .and_then(|d| d.split('"').next())
        .expect("config digest");
    let config = http_get(&reg.addr, &format!("/v2/apps/hello/blobs/{config_digest}"), "*/*");
    let body = config.split("\r\n\r\n").nth(1).unwrap_or("");
    let inspect = ok(&smolvm(&["inspect", "--json", &app.display().to_string()], b"", &[]));
    assert_eq!(body.trim_end(), inspect.trim_end());

    // A tag that does not exist: one line, non-zero, no file.
    let missing = dir.join("missing.vm");
    let err = one_line_failure(&smolvm(
        &["pull", &format!("{}/apps/hello:nope", reg.addr), "-o", &missing.display().to_string()],
        b"",
        &[],
    ));
    assert!(err.contains("not found"), "{err}");
    assert!(!missing.exists());
    assert!(leftovers(&dir, "missing.vm").is_empty());
    std::fs::remove_dir_all(&dir).ok();
}

/// Forwards HTTP/1.1 requests to `upstream` one per connection; flips the
/// last byte of every response body to a GET whose path contains `corrupt`.
fn corrupting_proxy(upstream: String, corrupt: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for client in listener.incoming().take(64) {
            let Ok(mut client) = client else { continue };
            let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
            let mut req = Vec::new();
            let mut b = [0u8; 1];
            while !req.ends_with(b"\r\n\r\n") {
                match client.read(&mut b) {
                    Ok(1) => req.push(b[0]),
                    _ => break,
                }
            }
            let head = String::from_utf8_lossy(&req).into_owned();
            let first = head.lines().next().unwrap_or("").to_string();
            let rewritten: String = head
                .split("\r\n")
                .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                .map(|l| if l.is_empty() { String::new() } else { format!("{l}\r\n") })
                .collect::<String>()
                + "Connection: close\r\n\r\n";
            let Ok(mut up) = TcpStream::connect(&upstream) else { continue };
            if up.write_all(rewritten.as_bytes()).is_err() {
                continue;
            }
            let mut resp = Vec::new();
            let _ = up.read_to_end(&mut resp);
            if first.starts_with("GET ") && first.contains(&corrupt) {
                if let Some(at) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
                    if resp.len() > at + 4 {
                        let last = resp.len() - 1;
                        resp[last] ^= 0x40;
                    }
                }
            }
            let _ = client.write_all(&resp);
        }
    });
    addr
}

#[test]
fn a_blob_with_the_wrong_digest_is_refused_and_nothing_is_written() {
    if !have_registry() {
        return;
    }
    let dir = qemu::scratch_dir("registry-corrupt");
    let app = image(&dir);
    let reg = Registry::start(&dir, None);
    ok(&smolvm(&["push", &app.display().to_string(), &format!("{}/apps/bad:1", reg.addr)], b"", &[]));
    let proxy = corrupting_proxy(reg.addr.clone(), "/blobs/sha256:".into());
    let out = dir.join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let target = out.join("bad.vm");
    let err = one_line_failure(&smolvm(
        &["pull", &format!("{proxy}/apps/bad:1"), "-o", &target.display().to_string()],
        b"",
        &[],
    ));
    assert!(err.contains("digest"), "{err}");
    assert!(!target.exists(), "a file was written: {err}");
    assert!(leftovers(&out, "").is_empty(), "left behind: {:?}", leftovers(&out, ""));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn htpasswd_authentication_with_password_stdin_docker_config_and_credential_helpers() {
    if !have_registry() || !prereq::require(Path::new("/usr/bin/htpasswd").is_file(), "htpasswd (apt-get install apache2-utils)") {
        return;
    }
    let dir = qemu::scratch_dir("registry-auth");
    let app = image(&dir);
    let htpasswd = dir.join("htpasswd");
    let h = Command::new("htpasswd").args(["-Bbn", "alice", "s3cret-pw"]).output().expect("htpasswd");
    assert!(h.status.success());
    std::fs::write(&htpasswd, &h.stdout).expect("write htpasswd");
    let reg = Registry::start(&dir, Some(&htpasswd));
    let reference = format!("{}/private/app:2", reg.addr);
    let app_arg = app.display().to_string();

    let err = one_line_failure(&smolvm(&["push", &app_arg, &reference], b"", &[]));
    assert!(err.contains("authentication"), "{err}");
    let err = one_line_failure(&smolvm(
        &["push", &app_arg, &reference, "--username", "alice", "--password-stdin"],
        b"wrong\n",
        &[],
    ));
    assert!(err.contains("authentication"), "{err}");
    ok(&smolvm(&["push", &app_arg, &reference, "--username", "alice", "--password-stdin"], b"s3cret-pw\n", &[]));

    // Pull with the Docker config's auths entry (base64 of user:password).
    let docker = dir.join("docker");
    std::fs::create_dir_all(&docker).expect("mkdir");
    let auth = "YWxpY2U6czNjcmV0LXB3"; // alice:s3cret-pw
    std::fs::write(docker.join("config.json"), format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.addr))
        .expect("config.json");
    let pulled = dir.join("pulled.vm");
    ok(&smolvm(&["pull", &reference, "-o", &pulled.display().to_string()], b"", &[("DOCKER_CONFIG", &docker)]));
    assert_eq!(std::fs::read(&pulled).expect("pulled"), std::fs::read(&app).expect("app"));
    let anon = dir.join("anon.vm");
    one_line_failure(&smolvm(&["pull", &reference, "-o", &anon.display().to_string()], b"", &[]));
    assert!(!anon.exists());

    credential_helpers(&dir, &reg.addr, &app);
    std::fs::remove_dir_all(&dir).ok();
}

/// `docker-credential-smolvmtest` in `dir/bin`: logs the server it is asked
/// about to `bin/asked`, answers as `bin/mode` says.
fn fake_helper(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    let script = bin.join("docker-credential-smolvmtest");
    std::fs::write(
        &script,
        r#"#!/bin/sh
[ "$1" = get ] || exit 2
here=$(dirname "$0")
read -r server
printf '%s\n' "$server" >> "$here/asked"
case $(cat "$here/mode") in
ok) printf '{"ServerURL":"%s","Username":"alice","Secret":"s3cret-pw"}\n' "$server" ;;
wrong) printf '{"ServerURL":"%s","Username":"alice","Secret":"not-the-pw"}\n' "$server" ;;
none) echo 'credentials not found in native keychain'; exit 1 ;;
esac
"#,
    )
    .expect("write helper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    bin
}

/// `o`, after checking that it shows neither of the fake helper's secrets.
fn no_secret(o: &Output) -> &Output {
    for text in [&o.stdout, &o.stderr] {
        let t = String::from_utf8_lossy(text);
        assert!(!t.contains("s3cret-pw") && !t.contains("not-the-pw"), "a secret was printed: {t}");
    }
    o
}

/// Push and pull through credHelpers and credsStore; a helper without
/// credentials and a missing helper. `addr`'s registry requires alice.
fn credential_helpers(dir: &Path, addr: &str, app: &Path) {
    let bin = fake_helper(dir);
    let path = PathBuf::from(format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()));
    let docker = dir.join("docker-helpers");
    std::fs::create_dir_all(&docker).expect("mkdir");
    let env = [("DOCKER_CONFIG", docker.as_path()), ("PATH", path.as_path())];
    let configure = |config: String, mode: &str| {
        std::fs::write(docker.join("config.json"), config).expect("config.json");
        std::fs::write(bin.join("mode"), mode).expect("mode");
        std::fs::remove_file(bin.join("asked")).ok();
    };
    let asked = || std::fs::read_to_string(bin.join("asked")).unwrap_or_default();
    let reference = format!("{addr}/private/helper:1");
    let app_arg = app.display().to_string();

    // credHelpers for this registry: the helper is asked about the host and
    // push authenticates; the default store (absent) is not run.
    configure(format!(r#"{{"credHelpers":{{"{addr}":"smolvmtest"}},"credsStore":"smolvmabsent"}}"#), "ok");
    ok(no_secret(&smolvm(&["push", &app_arg, &reference], b"", &env)));
    assert_eq!(asked().trim_end(), addr);

    // credsStore: pull authenticates; as in Docker it wins over an auths
    // entry (here a wrong one: alice:wrong).
    configure(
        format!(r#"{{"credsStore":"smolvmtest","auths":{{"{addr}":{{"auth":"YWxpY2U6d3Jvbmc="}}}}}}"#),
        "ok",
    );
    let pulled = dir.join("helper-pulled.vm");
    ok(no_secret(&smolvm(&["pull", &reference, "-o", &pulled.display().to_string()], b"", &env)));
    assert_eq!(std::fs::read(&pulled).expect("pulled"), std::fs::read(app).expect("app"));
    assert_eq!(asked().trim_end(), addr);

    // Wrong credentials from the helper: refused, the line names the helper.
    configure(r#"{"credsStore":"smolvmtest"}"#.into(), "wrong");
    let refused = dir.join("helper-refused.vm");
    let err = one_line_failure(no_secret(&smolvm(&["pull", &reference, "-o", &refused.display().to_string()], b"", &env)));
    assert!(err.contains("authentication failed") && err.contains("docker-credential-smolvmtest"), "{err}");
    assert!(!refused.exists());

    // The helper has nothing for this registry: anonymous, refused in one line.
    configure(r#"{"credsStore":"smolvmtest"}"#.into(), "none");
    let err = one_line_failure(&smolvm(&["pull", &reference, "-o", &refused.display().to_string()], b"", &env));
    assert!(err.contains("authentication required") && err.contains("docker-credential-smolvmtest has none"), "{err}");
    assert_eq!(asked().trim_end(), addr);
    assert!(!refused.exists());

    // A helper that is not installed: one line naming it and the entry, nothing sent.
    configure(r#"{"credsStore":"smolvmabsent"}"#.into(), "ok");
    let err = one_line_failure(&smolvm(&["pull", &reference, "-o", &refused.display().to_string()], b"", &env));
    assert!(err.contains("docker-credential-smolvmabsent") && err.contains("not on PATH") && err.contains("credsStore"), "{err}");
    assert!(!refused.exists());
    assert!(leftovers(dir, "helper-refused").is_empty());
}
