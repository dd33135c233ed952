//! What the app (or a service) runs: its program, arguments, environment,
//! user and working directory, resolved from the plan; and starting it as a
//! child of init.

use crate::out::Line;
use crate::plan::Plan;
use crate::values::User;
use crate::services::spec::Service;
use crate::sys::{self, CPtrs, SigSet};
use crate::{status, Fail};
use alloc::ffi::CString;
use alloc::vec::Vec;
use linker::abi::status::SMOLVM_FAILED;
use rustix::fd::BorrowedFd;
use rustix::io::Errno;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_search_candidates() {
        assert_eq!(search_path(b"/bin/app", b"/x"), [b"/bin/app".to_vec()]);
        assert_eq!(search_path(b"./app", b"/x"), [b"./app".to_vec()]);
        assert_eq!(search_path(b"app", b"/usr/bin::/bin"), [b"/usr/bin/app".to_vec(), b"./app".to_vec(), b"/bin/app".to_vec()]);
    }
}
