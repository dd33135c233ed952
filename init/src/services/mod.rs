//! The services beside the app: started in order before it, watched for
//! readiness, restarted by their policy with a capped back-off, their
//! output prefixed with `[NAME] ` on stderr, stopped when the app ends.
//! The event loop that drives them is `app::supervise`.

pub mod output;
pub mod spec;

use crate::exec::{self, Exec};
use crate::out::{self, Line};
use crate::plan::Plan;
use crate::{status, sys, Fail};
use alloc::vec::Vec;
use output::Lines;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::pipe::{pipe_with, PipeFlags};
use rustix::process::{wait, WaitOptions};
use spec::{backoff_ms, wants_restart, Ready, Service, MAX_FAILURES, STABLE_RUN_NS};

/// Most services (the manifest's limit).
pub const MAX: usize = linker::config::MAX_SERVICES;
/// How often readiness is checked while the app waits.
const PROBE_INTERVAL_NS: u64 = 10_000_000;
/// Between SIGTERM and SIGKILL when the app has ended.
pub const STOP_GRACE_NS: u64 = 3_000_000_000;
const KILL_WAIT_NS: u64 = 1_000_000_000;
const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

/// One service and what init knows of it.
struct Supervised<'a> {
    spec: Service<'a>,
    exec: Exec,
    pid: Option<i32>,
    /// Read end of the pipe that is its stdout and stderr.
    output: Option<OwnedFd>,
    lines: Lines,
    started_ns: u64,
    /// Ends in a row, each after a run shorter than `STABLE_RUN_NS`.
    failures: u32,
    restart_at: Option<u64>,
    /// It will not run again (policy, or given up).
    done: bool,
    is_ready: bool,
    ready_deadline_ns: u64,
}

pub struct Supervisor<'a> {
    services: Vec<Supervised<'a>>,
    /// The app has ended: no more restarts.
    stopping: bool,
}

impl<'a> Supervisor<'a> {
    /// Prepares the plan's services (nothing runs yet).
    pub fn new(plan: &Plan<'a>) -> Result<Supervisor<'a>, Fail> {
        let services = plan
            .services
            .iter()
            .map(|s| {
                Ok(Supervised {
                    exec: Exec::service(plan, s)?,
                    spec: s.clone(),
                    pid: None,
                    output: None,
                    lines: Lines::default(),
                    started_ns: 0,
                    failures: 0,
                    restart_at: None,
                    done: false,
                    is_ready: false,
                    ready_deadline_ns: 0,
                })
            })
            .collect::<Result<_, Fail>>()?;
        Ok(Supervisor { services, stopping: false })
    }

    /// Starts every service, in order.
    pub fn start_all(&mut self) {
        for s in &mut self.services {
            s.start();
            let timeout_s = s.spec.ready.map_or(0, |(_, secs)| u64::from(secs));
            s.ready_deadline_ns = s.started_ns.saturating_add(timeout_s.saturating_mul(1_000_000_000));
        }
    }

    /// Whether every service with a readiness condition is ready (probing
    /// the ones that are not yet); a 125 failure naming the first one that
    /// cannot become ready any more.
    pub fn ready(&mut self) -> Result<bool, Fail> {
        let now = sys::monotonic_ns();
        let mut all = true;
        for s in self.services.iter_mut().filter(|s| !s.is_ready) {
            let Some((cond, secs)) = s.spec.ready else { continue };
            s.is_ready = match cond {
                Ready::Tcp(port) => s.pid.is_some() && sys::loopback_port_accepts(port),
                Ready::File(path) => rustix::fs::stat(path).is_ok(),
            };
            if s.is_ready {
                Line::new().s("service ").b(s.spec.name).s(" is ready").debug();
                continue;
            }
            let line = Line::new().s("service ").b(s.spec.name);
            if s.done {
                return Err(Fail::new(line.s(" ended before it was ready")));
            }
            if now >= s.ready_deadline_ns {
                let line = match cond {
                    Ready::Tcp(port) => line.s(" never got ready: no connection on 127.0.0.1:").n(u64::from(port)),
                    Ready::File(path) => line.s(" never got ready: no file ").b(path),
                };
                return Err(Fail::new(line.s(" within ").n(u64::from(secs)).s(" s")));
            }
            all = false;
        }
        Ok(all)
    }

    /// The read ends of the services' output pipes, in service order
    /// ([`Supervisor::read_output`] takes the index in this sequence).
    pub fn outputs(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.services.iter().filter_map(|s| s.output.as_ref().map(AsFd::as_fd))
    }

    /// Passes on what the `n`th open output pipe holds.
    pub fn read_output(&mut self, n: usize) {
        if let Some(s) = self.services.iter_mut().filter(|s| s.output.is_some()).nth(n) {
            s.read_output();
        }
    }

    /// How long the event loop may sleep: until the next restart, or the
    /// next readiness probe while the app waits (`None`: until an event).
    pub fn timeout(&self, waiting: bool) -> Option<Timespec> {
        let now = sys::monotonic_ns();
        let probe = if waiting { Some(now.saturating_add(PROBE_INTERVAL_NS)) } else { None };
        let next = self.services.iter().filter_map(|s| s.restart_at).chain(probe).min()?;
        let left = next.saturating_sub(now);
        Some(Timespec {
            tv_sec: i64::try_from(left / 1_000_000_000).unwrap_or(0),
            tv_nsec: i64::try_from(left % 1_000_000_000).unwrap_or(0),
        })
    }

    /// Starts the services whose restart is due.
    pub fn tick(&mut self) {
        let now = sys::monotonic_ns();
        for s in &mut self.services {
            if s.restart_at.is_some_and(|at| at <= now) && !self.stopping {
                s.restart_at = None;
                s.start();
            }
        }
    }

    /// A child other than the app ended: if it is a service, restart it or
    /// give it up as its policy says.
    pub fn ended(&mut self, pid: i32, code: Option<i32>, signal: Option<i32>) {
        let stopping = self.stopping;
        let Some(s) = self.services.iter_mut().find(|s| s.pid == Some(pid)) else { return };
        s.pid = None;
        let now = sys::monotonic_ns();
        let line = Line::new().s("service ended with ");
        let line = match (code, signal) {
            (Some(code), _) => line.s("status ").n(u64::from(code.unsigned_abs())),
            (None, sig) => {
                let sig = sig.unwrap_or(0);
                let line = line.s("signal ").n(u64::from(sig.unsigned_abs()));
                match status::signal_name(sig) {
                    Some(name) => line.s(" (").s(name).s(")"),
                    None => line,
                }
            }
        };
        if stopping {
            line.debug();
            s.done = true;
            return;
        }
        if !wants_restart(s.spec.restart, code) {
            s.notice(line);
            s.done = true;
            return;
        }
        if now.saturating_sub(s.started_ns) >= STABLE_RUN_NS {
            s.failures = 0;
        }
        s.failures = s.failures.saturating_add(1);
        if s.failures > MAX_FAILURES {
            s.notice(line.s(", ").n(u64::from(MAX_FAILURES)).s(" restarts in a row failed: given up (the app goes on)"));
            s.done = true;
            return;
        }
        let pause = backoff_ms(s.failures);
        s.notice(line.s(", restart ").n(u64::from(s.failures)).s(" in ").n(pause).s(" ms"));
        s.restart_at = Some(now.saturating_add(pause.saturating_mul(1_000_000)));
    }

    /// The app has ended: SIGTERM to every service (its process group),
    /// SIGKILL to those still there after the grace period; their last
    /// output is passed on. Leftover processes are `shutdown`'s job.
    pub fn stop(&mut self, signals: &OwnedFd) {
        self.stopping = true;
        if self.services.iter().all(|s| s.pid.is_none() && s.output.is_none()) {
            return;
        }
        Line::new().s("stopping the services").debug();
        self.signal_all(SIGTERM);
        if !self.wait_all(signals, STOP_GRACE_NS) {
            self.signal_all(SIGKILL);
            self.wait_all(signals, KILL_WAIT_NS);
        }
        for s in &mut self.services {
            let mut out = Vec::new();
            s.lines.finish(s.spec.name, &mut out);
            out::write_stderr(&out);
        }
    }

    fn signal_all(&self, sig: i32) {
        for pid in self.services.iter().filter_map(|s| s.pid) {
            // The service leads its own process group (setsid): signal
            // the group, so its helpers go too.
            if sys::kill(-pid, sig).is_err() {
                let _ = sys::kill(pid, sig);
            }
        }
    }

    /// Reaps and passes output on until every service has ended and its
    /// pipe is drained (true), or `timeout_ns` passed (false).
    fn wait_all(&mut self, signals: &OwnedFd, timeout_ns: u64) -> bool {
        let deadline = sys::monotonic_ns().saturating_add(timeout_ns);
        let mut drain = [0u8; crate::sys::SIGINFO_SIZE * 8];
        loop {
            loop {
                match wait(WaitOptions::NOHANG) {
                    Ok(Some((pid, st))) => self.ended(pid.as_raw_nonzero().get(), st.exit_status(), st.terminating_signal()),
                    Err(Errno::INTR) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            let running = self.services.iter().any(|s| s.pid.is_some());
            let now = sys::monotonic_ns();
            // Once the services are gone, their pipes get a short while to
            // deliver the last lines (a helper may still hold one open).
            if !running && (self.outputs().next().is_none() || now >= deadline) {
                return true;
            }
            if now >= deadline {
                return false;
            }
            let left = deadline - now;
            let timeout = Timespec {
                tv_sec: i64::try_from(left / 1_000_000_000).unwrap_or(0),
                tv_nsec: i64::try_from(left % 1_000_000_000).unwrap_or(0),
            };
            let mut fds: Vec<PollFd<'_>> = Vec::new();
            fds.push(PollFd::new(signals, PollFlags::IN));
            fds.extend(self.outputs().map(|fd| PollFd::from_borrowed_fd(fd, PollFlags::IN)));
            if poll(&mut fds, Some(&timeout)).is_err() {
                continue;
            }
            // Bit i: fds[i] has an event; pipes that close drop out of the
            // sequence, so read from the last.
            let ready = fds.iter().enumerate().fold(0u16, |r, (i, f)| if f.revents().is_empty() { r } else { r | 1 << i });
            drop(fds);
            if ready & 1 != 0 {
                let _ = rustix::io::read(signals, &mut drain);
            }
            for i in (0..MAX).rev().filter(|i| ready & (2 << i) != 0) {
                self.read_output(i);
            }
            if !running && ready <= 1 {
                // Only an idle pipe held open by a leftover helper remains.
                return true;
            }
        }
    }
}

impl Supervised<'_> {
    /// Forks the service with a new pipe as its stdout and stderr. A
    /// failure counts as a run that ended at once.
    fn start(&mut self) {
        self.started_ns = sys::monotonic_ns();
        let spawned = pipe_with(PipeFlags::CLOEXEC).and_then(|(read, write)| {
            let pid = exec::spawn(&self.exec, Some(write.as_fd()))?;
            Ok((read, pid))
        });
        match spawned {
            Ok((read, pid)) => {
                Line::new().s("started service ").b(self.spec.name).s(", pid ").n(u64::from(pid.unsigned_abs())).debug();
                // An old pipe still held by a helper of the last run is dropped.
                self.output = Some(read);
                self.pid = Some(pid);
            }
            Err(e) => {
                self.notice(Line::new().s("cannot start the service: ").e(e));
                self.failures = self.failures.saturating_add(1);
                if self.failures > MAX_FAILURES {
                    self.done = true;
                } else {
                    self.restart_at = Some(self.started_ns.saturating_add(backoff_ms(self.failures).saturating_mul(1_000_000)));
                }
            }
        }
    }

    fn read_output(&mut self) {
        let Some(fd) = &self.output else { return };
        let mut buf = [0u8; 4096];
        let mut out = Vec::new();
        match rustix::io::read(fd, &mut buf) {
            Ok(0) | Err(Errno::BADF | Errno::IO) => {
                self.lines.finish(self.spec.name, &mut out);
                self.output = None;
            }
            Ok(n) => self.lines.push(self.spec.name, &buf[..n], &mut out),
            Err(_) => {}
        }
        out::write_stderr(&out);
    }

    /// One of init's lines about this service, prefixed like its output.
    fn notice(&self, line: Line) {
        let mut out = Vec::new();
        output::prefixed(self.spec.name, line.bytes().strip_suffix(b"\n").unwrap_or_default(), &mut out);
        out::write_stderr(&out);
    }
}
