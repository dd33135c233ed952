//! Asking a Docker credential helper: the program `docker-credential-NAME`
//! on PATH, run as `docker-credential-NAME get` with the server address as
//! one line on stdin; it answers `{"ServerURL":..,"Username":..,"Secret":..}`
//! on stdout, or exits non-zero with "credentials not found in native
//! keychain" when it holds nothing for that server. This is the protocol of
//! github.com/docker/docker-credential-helpers (its `client` package), which
//! the Docker CLI speaks. The helper gets at most [`TIMEOUT`] and
//! [`OUTPUT_LIMIT`] bytes per stream; its answer is never printed.

use crate::bail;
use crate::error::{Error, Result};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Long enough for a keyring unlock or a cloud token exchange, short enough
/// that a helper waiting on an invisible prompt does not hang a CI job.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// A real answer is well under 1 KiB (a cloud token a few KiB).
pub const OUTPUT_LIMIT: usize = 64 << 10;
/// The message every docker-credential-helpers helper uses for "nothing stored".
const NOT_FOUND: &str = "credentials not found in native keychain";

/// What a helper holds for one server.
pub enum Answer {
    Password { username: String, secret: String },
    /// `Username` `<token>`: `Secret` is an OAuth2 identity (refresh) token.
    IdentityToken,
    NotFound,
}

/// `docker-credential-NAME get` for `server`.
pub fn get(name: &str, server: &str) -> Result<Answer> {
    if name.is_empty() || name.contains(['/', '\0']) {
        bail!("{name:?} is not a credential helper name (the part after docker-credential-)");
    }
    let program = format!("docker-credential-{name}");
    get_from(OsStr::new(&program), &program, server, TIMEOUT)
}

/// Runs `program get` (`label` names it in errors).
pub(crate) fn get_from(program: &OsStr, label: &str, server: &str, timeout: Duration) -> Result<Answer> {
    let spawned = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("credential helper {label} is not on PATH (install it, or remove the entry that names it)")
        }
        Err(e) => bail!("cannot run credential helper {label}: {e}"),
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading gives EPIPE; its exit status tells the rest.
        let _ = stdin.write_all(format!("{server}\n").as_bytes());
    }
    let (stdout, stderr) = match collect(&mut child, timeout) {
        Ok(o) => o,
        Err(why) => {
            // Only the child started here, by its own handle.
            let _ = child.kill();
            let _ = child.wait();
            bail!("credential helper {label}: {why}");
        }
    };
    let said = |bytes: &[u8]| String::from_utf8_lossy(bytes).contains(NOT_FOUND);
    let status = wait(&mut child, timeout).map_err(|why| Error(format!("credential helper {label}: {why}")))?;
    if !status.success() {
        if said(&stdout) || said(&stderr) {
            return Ok(Answer::NotFound);
        }
        let msg = first_line(&stdout).or_else(|| first_line(&stderr)).unwrap_or_else(|| "no message".into());
        bail!("credential helper {label} failed for {server} ({status}: {msg})");
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&stdout) else {
        if said(&stdout) {
            return Ok(Answer::NotFound);
        }
        bail!("credential helper {label} did not answer with its JSON object {{\"Username\",\"Secret\"}} for {server}");
    };
    let field = |k: &str| json.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let (username, secret) = (field("Username"), field("Secret"));
    Ok(match (username.as_str(), secret.is_empty()) {
        // Docker treats an empty answer as no credentials.
        ("", true) => Answer::NotFound,
        ("<token>", _) => Answer::IdentityToken,
        _ => Answer::Password { username, secret },
    })
}

/// stdout and stderr, each read to EOF, within `timeout` and [`OUTPUT_LIMIT`].
fn collect(child: &mut Child, timeout: Duration) -> std::result::Result<(Vec<u8>, Vec<u8>), String> {
    let (tx, rx) = mpsc::channel();
    let pipes: [Option<Box<dyn Read + Send>>; 2] = [
        child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
    ];
    for (i, pipe) in pipes.into_iter().enumerate() {
        let Some(pipe) = pipe else { return Err("no pipe to the helper".into()) };
        let tx = tx.clone();
        // A reader left blocked after a timeout ends with this process.
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let r = pipe.take(OUTPUT_LIMIT as u64 + 1).read_to_end(&mut buf).map(|_| buf);
            let _ = tx.send((i, r));
        });
    }
    drop(tx);
    let deadline = Instant::now() + timeout;
    let mut got: [Option<Vec<u8>>; 2] = [None, None];
    while got.iter().any(Option::is_none) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((_, Ok(buf))) if buf.len() > OUTPUT_LIMIT => {
                return Err(format!("wrote more than {} KiB; stopped it", OUTPUT_LIMIT >> 10))
            }
            Ok((i, Ok(buf))) => got[i] = Some(buf),
            Ok((_, Err(e))) => return Err(format!("reading its answer: {e}")),
            Err(mpsc::RecvTimeoutError::Timeout) => return Err(timed_out(timeout)),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err("its output readers stopped".into()),
        }
    }
    let [out, err] = got;
    Ok((out.unwrap_or_default(), err.unwrap_or_default()))
}

/// The exit status, killing the helper if it outlives `timeout` after closing its output.
fn wait(child: &mut Child, timeout: Duration) -> std::result::Result<std::process::ExitStatus, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(timed_out(timeout));
            }
            Err(e) => return Err(format!("waiting for it: {e}")),
        }
    }
}

fn timed_out(timeout: Duration) -> String {
    format!(
        "no answer within {} s (waiting on a locked keyring or a prompt?); stopped it",
        timeout.as_secs()
    )
}

/// The helper's first non-empty line, without control characters, at most 200 characters.
fn first_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(line.chars().take(200).map(|c| if c.is_control() { '?' } else { c }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    /// A helper script in a fresh directory; `body` runs after `read -r server`.
    fn helper(dir: &std::path::Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n[ \"$1\" = get ] || exit 9\nread -r server\n{body}\n")).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    fn ask(p: &std::path::Path, timeout: Duration) -> Result<Answer> {
        get_from(p.as_os_str(), "docker-credential-t", "reg.example:5000", timeout)
    }

    #[test]
    fn helper_answers_are_interpreted_like_docker() {
        let dir = std::env::temp_dir().join(format!("smolvm-credhelper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let t = Duration::from_secs(10);
        // Every script is written before any runs: a file still open for
        // writing in a process another test thread forks cannot be executed.
        let ok = helper(
            &dir,
            "ok",
            r#"[ "$server" = reg.example:5000 ] || exit 3
printf '{"ServerURL":"%s","Username":"alice","Secret":"pw:with:colons"}' "$server""#,
        );
        let token = helper(&dir, "token", r#"echo '{"ServerURL":"x","Username":"<token>","Secret":"refresh"}'"#);
        let empty = helper(&dir, "empty", r#"echo '{"ServerURL":"x","Username":"","Secret":""}'"#);
        let none = helper(&dir, "none", "echo 'credentials not found in native keychain'; exit 1");
        let fails = helper(&dir, "fails", "printf 'gpg: decryption failed\\033[31m\\nmore\\n' >&2; exit 2");
        let garbage = helper(&dir, "garbage", "echo 'Username: alice, Secret: s3cr3t'");
        let hangs = helper(&dir, "hangs", "exec sleep 30");
        let floods = helper(&dir, "floods", "exec head -c 10000000 /dev/zero");

        // The server arrives on stdin; the answer's Username/Secret are used.
        match ask(&ok, t).expect("ok") {
            Answer::Password { username, secret } => assert_eq!((username.as_str(), secret.as_str()), ("alice", "pw:with:colons")),
            _ => panic!("expected a password"),
        }
        assert!(matches!(ask(&token, t).expect("token"), Answer::IdentityToken));
        assert!(matches!(ask(&empty, t).expect("empty"), Answer::NotFound));
        assert!(matches!(ask(&none, t).expect("none"), Answer::NotFound));

        // Failures: one line naming the helper; the helper's own words, cleaned.
        let e = ask(&fails, t).err().expect("fails").0;
        assert!(e.contains("docker-credential-t") && e.contains("gpg: decryption failed?[31m"), "{e}");
        assert!(!e.contains('\n') && !e.contains("more"), "{e}");
        let e = ask(&garbage, t).err().expect("garbage").0;
        assert!(e.contains("JSON") && !e.contains("s3cr3t"), "{e}");
        let e = ask(&dir.join("absent"), t).err().expect("absent").0;
        assert!(e.contains("not on PATH"), "{e}");
        assert!(get("../x", "h").is_err());

        // Bounded: a helper that never answers, and one that floods stdout.
        let started = Instant::now();
        let e = ask(&hangs, Duration::from_millis(500)).err().expect("hangs").0;
        assert!(e.contains("no answer within"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let e = ask(&floods, t).err().expect("floods").0;
        assert!(e.contains("more than 64 KiB"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
