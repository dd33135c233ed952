//! Progress of long work on stderr: a live step counter on a terminal; plain lines
//! (one per step, a heartbeat every 30 s) when stderr is not a terminal or `CI` is set.
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    live: bool,
    silent: bool,
    total: usize,
    step: usize,
    label: String,
    step_start: Instant,
    last_line: Instant,
}

/// Plain-mode heartbeat interval, so CI logs show the build is alive.
const HEARTBEAT: Duration = Duration::from_secs(30);

impl Progress {
    /// Live on a terminal unless `CI` is set (to anything but empty).
    pub fn auto(total: usize) -> Progress {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
        Progress::with(total, std::io::stderr().is_terminal() && !ci, false)
    }

    /// Prints nothing (library callers with their own UI).
    pub fn silent() -> Progress {
        Progress::with(0, false, true)
    }

    fn with(total: usize, live: bool, silent: bool) -> Progress {
        let now = Instant::now();
        Progress { live, silent, total, step: 0, label: String::new(), step_start: now, last_line: now }
    }

    /// Ends the current step and starts the next one.
    pub fn step(&mut self, label: &str) {
        self.finish();
        self.step += 1;
        self.total = self.total.max(self.step);
        self.label = label.to_string();
        self.step_start = Instant::now();
        self.last_line = self.step_start;
        self.print(false, "");
    }

    /// Reports `count` things done in the current step (files compiled).
    pub fn tick(&mut self, count: usize) {
        let detail = format!(" · {count} files, {}", fmt_duration(self.step_start.elapsed()));
        if self.live {
            self.print(true, &detail);
        } else if self.last_line.elapsed() >= HEARTBEAT {
            self.last_line = Instant::now();
            self.print(false, &detail);
        }
    }

    /// Ends the current step (printing its duration).
    pub fn finish(&mut self) {
        if self.step == 0 || self.label.is_empty() {
            return;
        }
        let took = format!(" · done in {}", fmt_duration(self.step_start.elapsed()));
        self.print(true, &took);
        if self.live && !self.silent {
            eprintln!();
        }
        self.label.clear();
    }

    fn print(&self, update: bool, detail: &str) {
        if self.silent {
            return;
        }
        let line = format!("[{}/{}] {}{detail}", self.step, self.total, self.label);
        let mut err = std::io::stderr().lock();
        // Progress output is best effort: a closed stderr must not fail the build.
        if self.live {
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
        } else if !update || !detail.is_empty() {
            let _ = writeln!(err, "{line}");
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.live && !self.label.is_empty() {
            eprintln!();
        }
    }
}

/// `1m05s` / `12.3s`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
