//! Starting the app (and services) as init's children, and watching them:
//! reap every child, forward signals, end when the app ends.

use crate::out::Line;
use crate::plan::{Plan, User};
use crate::services::spec::Service;
use crate::services::Supervisor;
use crate::sys::{self, CPtrs, SigSet};
use crate::{console, status, Fail};
use alloc::ffi::CString;
use alloc::vec::Vec;
use linker::abi::status::SMOLVM_FAILED;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::{wait, WaitOptions};

/// Everything `execve` needs, prepared before the fork: for the app or
/// for a service.
pub struct Exec {
    /// The entry as written in the config (for messages).
    entry: CString,
    /// Paths to try in order: the entry itself, or `dir/entry` for each PATH dir.
    candidates: Vec<CString>,
    argv: Vec<CString>,
    env: Vec<CString>,
    user: Option<User>,
    /// A service's name and working directory (`None`: the app).
    service: Option<(Vec<u8>, CString)>,
}

fn cstring(bytes: &[u8]) -> Result<CString, Fail> {
    CString::new(bytes).map_err(|_| Fail::new(Line::new().s("a config string contains NUL")))
}

impl Exec {
    /// The app's.
    pub fn new(plan: &Plan<'_>) -> Result<Exec, Fail> {
        Exec::build(plan.entry, &plan.args, &plan.env, plan.user, None)
    }

    /// A service's: the app's environment with the service's own entries
    /// over it (by name); the working directory `/` unless it has one.
    pub fn service(plan: &Plan<'_>, s: &Service<'_>) -> Result<Exec, Fail> {
        let mut env = plan.env.clone();
        for entry in &s.env {
            // `spec::apply` checked it is NAME=value.
            let name = &entry[..=entry.iter().position(|&c| c == b'=').unwrap_or(0)];
            match env.iter_mut().find(|e| e.starts_with(name)) {
                Some(existing) => *existing = entry,
                None => env.push(entry),
            }
        }
        let workdir = cstring(s.workdir.unwrap_or(b"/"))?;
        Exec::build(s.entry, &s.args, &env, s.user, Some((s.name.to_vec(), workdir)))
    }

    fn build(entry: &[u8], args: &[&[u8]], env: &[&[u8]], user: Option<User>, service: Option<(Vec<u8>, CString)>) -> Result<Exec, Fail> {
        let path = env.iter().find_map(|e| e.strip_prefix(b"PATH=")).unwrap_or_default();
        let candidates = search_path(entry, path);
        let mut argv = Vec::with_capacity(args.len() + 1);
        argv.push(entry);
        argv.extend_from_slice(args);
        Ok(Exec {
            entry: cstring(entry)?,
            candidates: cstrings(candidates.iter().map(Vec::as_slice).collect::<Vec<_>>().as_slice())?,
            argv: cstrings(&argv)?,
            env: cstrings(env)?,
            user,
            service,
        })
    }
}

/// One loop for every list (a generic `collect` per list costs init KBs).
fn cstrings(items: &[&[u8]]) -> Result<Vec<CString>, Fail> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(cstring(item)?);
    }
    Ok(out)
}

/// `execvp`'s candidates: a name with a `/` is used as is, otherwise each
/// PATH directory is tried (an empty one means the working directory).
pub fn search_path(entry: &[u8], path: &[u8]) -> Vec<Vec<u8>> {
    if entry.contains(&b'/') {
        return alloc::vec![entry.to_vec()];
    }
    path.split(|&c| c == b':')
        .map(|dir| if dir.is_empty() { alloc::vec![b'.', b'/'] } else { [dir, b"/"].concat() })
        .map(|dir| [dir.as_slice(), entry].concat())
        .collect()
}

/// Forks the app, or a service with `output` as its stdout and stderr.
/// Returns the child's pid.
pub fn spawn(exec: &Exec, output: Option<BorrowedFd<'_>>) -> Result<i32, Errno> {
    match sys::fork()? {
        Some(pid) => Ok(pid),
        None => sys::exit_group(child(exec, output)),
    }
}

/// In the forked child: become a session leader (the app with the console
/// as its controlling terminal; a service with /dev/null as stdin and
/// `output` as stdout and stderr, in its working directory), drop
/// privileges, exec. Returns the exit status when that fails (after
/// saying why on stderr).
fn child(exec: &Exec, output: Option<BorrowedFd<'_>>) -> u8 {
    if sys::set_signal_mask(SigSet::EMPTY).is_err() {
        return SMOLVM_FAILED;
    }
    let _ = rustix::process::setsid();
    match (output, &exec.service) {
        (Some(out), Some((_, workdir))) => {
            if let Ok(null) = rustix::fs::open("/dev/null", rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty()) {
                let _ = rustix::stdio::dup2_stdin(&null);
            }
            let _ = rustix::stdio::dup2_stdout(out);
            let _ = rustix::stdio::dup2_stderr(out);
            if let Err(e) = rustix::process::chdir(workdir.as_c_str()) {
                Line::new().s("cannot enter the working directory ").b(workdir.to_bytes()).s(": ").e(e).print();
                return SMOLVM_FAILED;
            }
        }
        // A terminal on stdin becomes the app's controlling terminal, so ^C
        // typed on the host reaches its foreground process group.
        _ => {
            let _ = rustix::process::ioctl_tiocsctty(sys::stdin());
        }
    }
    if let Some(user) = exec.user {
        if let Err(e) = become_user(user) {
            Line::new().s("cannot switch to user ").n(u64::from(user.uid)).s(":").n(u64::from(user.gid)).s(": ").e(e).print();
            return SMOLVM_FAILED;
        }
    }
    let argv = CPtrs::new(exec.argv.iter().map(CString::as_c_str));
    let envp = CPtrs::new(exec.env.iter().map(CString::as_c_str));
    Line::new().s("exec ").b(exec.entry.to_bytes()).debug();
    // Like execvp: a candidate that is not there lets the next one try; a
    // permission error is remembered while the others are tried; any other
    // error ends the search.
    let mut failure = None;
    for candidate in &exec.candidates {
        let err = sys::execve(candidate, &argv, &envp);
        let exists = rustix::fs::stat(candidate.as_c_str()).is_ok();
        if matches!(err, Errno::NOENT | Errno::NOTDIR) && !exists {
            continue;
        }
        if failure.is_none() || err != Errno::ACCESS {
            failure = Some((err, exists));
        }
        if err != Errno::ACCESS {
            break;
        }
    }
    let not_found = failure.is_none();
    let (err, exists) = failure.unwrap_or((Errno::NOENT, false));
    let (code, reason) = status::from_exec_error(err, exists);
    let searched = !exec.entry.to_bytes().contains(&b'/');
    let line = Line::new().b(exec.entry.to_bytes()).s(": ").s(reason).s(if searched && not_found { " in PATH" } else { "" });
    match &exec.service {
        Some((name, _)) => line.s(" (command of service ").b(name).s(")"),
        None => line.s(" (entry of the image manifest)"),
    }
    .print();
    code
}

fn become_user(user: User) -> Result<(), Errno> {
    use rustix::process::{Gid, Uid};
    rustix::thread::set_thread_groups(&[])?;
    rustix::thread::set_thread_gid(Gid::from_raw(user.gid))?;
    rustix::thread::set_thread_uid(Uid::from_raw(user.uid))
}

const SIGCHLD: u32 = 17;
/// `struct signalfd_siginfo` is 128 bytes; `ssi_signo` is its first u32.
pub const SIGINFO_SIZE: usize = 128;

/// One line, like a shell, unless the death was the user's own doing (^C)
/// or a closed pipe.
fn report_signal_death(sig: i32) {
    let line = Line::new().s("the app was killed by signal ").n(u64::try_from(sig).unwrap_or(0));
    let line = match status::signal_name(sig) {
        Some(name) => line.s(" (").s(name).s(")"),
        None => line,
    };
    if matches!(sig, 2 | 13) {
        line.debug();
    } else {
        line.print();
    }
}

/// The signal numbers in a buffer of signalfd records.
pub fn signal_numbers(buf: &[u8]) -> impl Iterator<Item = u32> + '_ {
    buf.chunks_exact(SIGINFO_SIZE).map(|info| u32::from_ne_bytes([info[0], info[1], info[2], info[3]]))
}

/// Init's event loop. With the app (`Some(pid)`): runs until it ends and
/// returns its status; signals sent to init are forwarded to it, and so are
/// the ones the host asks for on the control channel. Without it (before it
/// starts): runs until the services are ready (status 0), failing with 125
/// when one cannot get ready, or with 128+N on a signal N meant for the app.
/// Every child that ends is reaped on the way, services are restarted and
/// their output is passed on.
pub fn supervise(app: Option<i32>, signals: &OwnedFd, control: &mut Option<OwnedFd>, services: &mut Supervisor<'_>) -> Result<u8, Fail> {
    let mut buf = [0u8; SIGINFO_SIZE * 8];
    let deliver = |sig: i32, why: &str| -> Result<(), Fail> {
        let Some(app) = app else {
            let line = Line::new().s("signal ").n(u64::from(sig.unsigned_abs())).s(" before the app started");
            return Err(Fail { status: status::from_wait(None, Some(sig)), line });
        };
        Line::new().s(why).s(" signal ").n(u64::from(sig.unsigned_abs())).s(", forwarded to the app").debug();
        let _ = sys::kill(app, sig);
        Ok(())
    };
    loop {
        if app.is_none() && services.ready()? {
            return Ok(0);
        }
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(2 + crate::services::MAX);
        fds.push(PollFd::new(signals, PollFlags::IN));
        fds.push(PollFd::new(control.as_ref().unwrap_or(signals), if control.is_some() { PollFlags::IN } else { PollFlags::empty() }));
        fds.extend(services.outputs().map(|fd| PollFd::from_borrowed_fd(fd, PollFlags::IN)));
        if let Err(e) = poll(&mut fds, services.timeout(app.is_none()).as_ref()) {
            if e != Errno::INTR {
                return Err(Fail::new(Line::new().s("poll: ").e(e)));
            }
            continue;
        }
        // Bit i: fds[i] has an event (at most 2 + 8 fds).
        let ready = fds.iter().enumerate().fold(0u16, |r, (i, f)| if f.revents().is_empty() { r } else { r | 1 << i });
        drop(fds);
        if ready & 1 != 0 {
            let n = rustix::io::read(signals, &mut buf).unwrap_or(0);
            for sig in signal_numbers(&buf[..n]).filter(|&s| s != SIGCHLD) {
                deliver(i32::try_from(sig).unwrap_or(0), "init received")?;
            }
            if let Some(code) = reap(app, services) {
                return Ok(code);
            }
        }
        if ready & 2 != 0 {
            match control.as_ref().map(|c| rustix::io::read(c, &mut buf)) {
                Some(Ok(n)) if n > 0 => {
                    for sig in console::control_signals(&buf[..n]) {
                        deliver(sig, "host asked for")?;
                    }
                }
                Some(Err(Errno::AGAIN | Errno::INTR)) => {}
                // EOF or a hung-up port: stop listening to it.
                _ => *control = None,
            }
        }
        // Pipes that close drop out of the sequence: read from the last.
        for i in (0..crate::services::MAX).rev().filter(|i| ready & (4 << i) != 0) {
            services.read_output(i);
        }
        services.tick();
    }
}

/// Reaps every exited child; returns the app's status if it was among them.
fn reap(app: Option<i32>, services: &mut Supervisor<'_>) -> Option<u8> {
    let mut app_status = None;
    loop {
        match wait(WaitOptions::NOHANG) {
            Ok(Some((pid, st))) => {
                let pid = pid.as_raw_nonzero().get();
                if Some(pid) == app {
                    let code = status::from_wait(st.exit_status(), st.terminating_signal());
                    app_status = Some(code);
                    // A failure after an OOM kill (of the app or of one of
                    // its processes) gets the memory line instead.
                    let explained = code != 0 && crate::oom::explain();
                    if let Some(sig) = st.terminating_signal().filter(|_| !explained) {
                        report_signal_death(sig);
                    }
                } else {
                    services.ended(pid, st.exit_status(), st.terminating_signal());
                }
            }
            Err(Errno::INTR) => {}
            // No child left: cannot happen while the app runs (it is our
            // child until we reap it).
            Err(Errno::CHILD) if app.is_some() && app_status.is_none() => {
                Line::new().s("lost track of the app").print();
                return Some(SMOLVM_FAILED);
            }
            Ok(None) | Err(_) => return app_status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_search_candidates() {
        assert_eq!(search_path(b"/bin/app", b"/x"), [b"/bin/app".to_vec()]);
        assert_eq!(search_path(b"./app", b"/x"), [b"./app".to_vec()]);
        assert_eq!(search_path(b"app", b"/usr/bin::/bin"), [b"/usr/bin/app".to_vec(), b"./app".to_vec(), b"/bin/app".to_vec()]);
    }

    #[test]
    fn signalfd_records_are_decoded() {
        let mut buf = [0u8; SIGINFO_SIZE * 2];
        buf[0] = 17;
        buf[SIGINFO_SIZE] = 2;
        assert_eq!(signal_numbers(&buf).collect::<std::vec::Vec<_>>(), [17, 2]);
        assert_eq!(signal_numbers(&buf[..SIGINFO_SIZE - 1]).count(), 0);
    }
}
