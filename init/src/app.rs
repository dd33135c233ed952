//! Watching the app (and services), init's children: reap every child,
//! forward signals, end when the app ends. What they run: `exec.rs`.

use crate::out::Line;
use crate::services::Supervisor;
use crate::sys;
use crate::{console, status, Fail};
use alloc::vec::Vec;
use linker::abi::status::SMOLVM_FAILED;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fd::OwnedFd;
use rustix::io::Errno;
use rustix::process::{wait, WaitOptions};

const SIGCHLD: u32 = 17;

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
    buf.chunks_exact(sys::SIGINFO_SIZE).map(|info| u32::from_ne_bytes([info[0], info[1], info[2], info[3]]))
}

/// Init's event loop. With the app (`Some(pid)`): runs until it ends and
/// returns its status; signals sent to init are forwarded to it, and so are
/// the ones the host asks for on the control channel. Without it (before it
/// starts): runs until the services are ready (status 0), failing with 125
/// when one cannot get ready, or with 128+N on a signal N meant for the app.
/// Every child that ends is reaped on the way, services are restarted and
/// their output is passed on.
pub fn supervise(app: Option<i32>, signals: &OwnedFd, control: &mut Option<OwnedFd>, services: &mut Supervisor<'_>) -> Result<u8, Fail> {
    let mut buf = [0u8; sys::SIGINFO_SIZE * 8];
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
    fn signalfd_records_are_decoded() {
        let mut buf = [0u8; sys::SIGINFO_SIZE * 2];
        buf[0] = 17;
        buf[sys::SIGINFO_SIZE] = 2;
        assert_eq!(signal_numbers(&buf).collect::<std::vec::Vec<_>>(), [17, 2]);
        assert_eq!(signal_numbers(&buf[..sys::SIGINFO_SIZE - 1]).count(), 0);
    }
}
