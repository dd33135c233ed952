//! Starting the app as init's child, and watching it: reap every child,
//! forward signals, end when the app ends.

use crate::out::Line;
use crate::plan::{Plan, User};
use crate::sys::{self, CPtrs, SigSet};
use crate::{console, status, Fail};
use alloc::ffi::CString;
use alloc::vec::Vec;
use linker::abi::status::SMOLVM_FAILED;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fd::OwnedFd;
use rustix::io::Errno;
use rustix::process::{wait, WaitOptions};

/// Everything `execve` needs, prepared before the fork.
pub struct Exec {
    /// The entry as written in the config (for messages).
    entry: CString,
    /// Paths to try in order: the entry itself, or `dir/entry` for each PATH dir.
    candidates: Vec<CString>,
    argv: Vec<CString>,
    env: Vec<CString>,
    user: Option<User>,
}

fn cstring(bytes: &[u8]) -> Result<CString, Fail> {
    CString::new(bytes).map_err(|_| Fail::new(Line::new().s("a config string contains NUL")))
}

impl Exec {
    pub fn new(plan: &Plan<'_>) -> Result<Exec, Fail> {
        let path = plan.env.iter().find_map(|e| e.strip_prefix(b"PATH=")).unwrap_or_default();
        let candidates = search_path(plan.entry, path).iter().map(|c| cstring(c)).collect::<Result<_, _>>()?;
        let argv = core::iter::once(&plan.entry).chain(&plan.args).map(|a| cstring(a)).collect::<Result<_, _>>()?;
        let env = plan.env.iter().map(|e| cstring(e)).collect::<Result<_, _>>()?;
        Ok(Exec { entry: cstring(plan.entry)?, candidates, argv, env, user: plan.user })
    }
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

/// Forks the app. Returns its pid.
pub fn spawn(exec: &Exec) -> Result<i32, Fail> {
    match sys::fork() {
        Ok(Some(pid)) => Ok(pid),
        Ok(None) => sys::exit_group(child(exec)),
        Err(e) => Err(Fail::new(Line::new().s("cannot start the app: fork: ").e(e))),
    }
}

/// In the forked child: become a session leader with the console as the
/// controlling terminal, drop privileges, exec. Returns the exit status
/// when that fails (after saying why on stderr).
fn child(exec: &Exec) -> u8 {
    if sys::set_signal_mask(SigSet::EMPTY).is_err() {
        return SMOLVM_FAILED;
    }
    let _ = rustix::process::setsid();
    // A terminal on stdin becomes the app's controlling terminal, so ^C
    // typed on the host reaches its foreground process group.
    let _ = rustix::process::ioctl_tiocsctty(sys::stdin());
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
    Line::new()
        .b(exec.entry.to_bytes())
        .s(": ")
        .s(reason)
        .s(if searched && not_found { " in PATH" } else { "" })
        .s(" (entry of the image manifest)")
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
const SIGINFO_SIZE: usize = 128;

/// What a round of reaping found out about the app.
pub enum Reaped {
    /// The app ended with this status.
    App(u8),
    /// The app still runs.
    Running,
    /// No children at all, the app not among the reaped.
    Lost,
}

/// Reaps every exited child; says whether the app was among them.
pub fn reap(app: i32) -> Reaped {
    let mut app_status = None;
    loop {
        match wait(WaitOptions::NOHANG) {
            Ok(Some((pid, st))) => {
                if pid.as_raw_nonzero().get() == app {
                    app_status = Some(status::from_wait(st.exit_status(), st.terminating_signal()));
                    if let Some(sig) = st.terminating_signal() {
                        report_signal_death(sig);
                    }
                }
            }
            Ok(None) => return app_status.map_or(Reaped::Running, Reaped::App),
            Err(Errno::INTR) => {}
            Err(_) => return app_status.map_or(Reaped::Lost, Reaped::App),
        }
    }
}

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
fn signal_numbers(buf: &[u8]) -> impl Iterator<Item = u32> + '_ {
    buf.chunks_exact(SIGINFO_SIZE).map(|info| u32::from_ne_bytes([info[0], info[1], info[2], info[3]]))
}

/// Runs until the app ends and returns its status. Signals sent to init are
/// forwarded to the app, and so are the ones the host asks for on the
/// control channel; every child that ends is reaped on the way.
pub fn supervise(app: i32, signals: &OwnedFd, mut control: Option<OwnedFd>) -> u8 {
    let mut buf = [0u8; SIGINFO_SIZE * 8];
    loop {
        let mut fds = [PollFd::new(signals, PollFlags::IN), PollFd::new(signals, PollFlags::empty())];
        if let Some(c) = &control {
            fds[1] = PollFd::new(c, PollFlags::IN);
        }
        if let Err(e) = poll(&mut fds, None) {
            if e != Errno::INTR {
                Line::new().s("poll: ").e(e).print();
                return SMOLVM_FAILED;
            }
            continue;
        }
        let (signals_ready, control_ready) = (!fds[0].revents().is_empty(), !fds[1].revents().is_empty());
        if signals_ready {
            let n = rustix::io::read(signals, &mut buf).unwrap_or(0);
            for sig in signal_numbers(&buf[..n]).filter(|&s| s != SIGCHLD) {
                forward(app, i32::try_from(sig).unwrap_or(0), "init received");
            }
            match reap(app) {
                Reaped::App(code) => return code,
                Reaped::Running => {}
                // Cannot happen: the app is our child until we reap it.
                Reaped::Lost => {
                    Line::new().s("lost track of the app").print();
                    return SMOLVM_FAILED;
                }
            }
        }
        if control_ready {
            let fd = control.as_ref().map(|c| rustix::io::read(c, &mut buf));
            match fd {
                Some(Ok(n)) if n > 0 => {
                    for sig in console::control_signals(&buf[..n]) {
                        forward(app, sig, "host asked for");
                    }
                }
                Some(Err(Errno::AGAIN | Errno::INTR)) => {}
                // EOF or a hung-up port: stop listening to it.
                _ => control = None,
            }
        }
    }
}

fn forward(app: i32, sig: i32, why: &str) {
    if sig <= 0 {
        return;
    }
    Line::new().s(why).s(" signal ").n(u64::try_from(sig).unwrap_or(0)).s(", forwarded to the app").debug();
    let _ = sys::kill(app, sig);
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
