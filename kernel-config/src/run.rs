//! Runs build commands with their whole output in a log file, counting compiled
//! files for the progress line; a failure carries the log's tail and path.
use crate::progress::Progress;
use crate::Error;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lines of the log shown under a failure.
const TAIL_LINES: usize = 30;

pub struct Log {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl Log {
    pub fn create(path: &Path) -> Result<Log, Error> {
        let file = File::create(path).map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
        Ok(Log { path: path.to_path_buf(), file: Arc::new(Mutex::new(file)) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn line(&self, text: &str) {
        write_line(&self.file, text);
    }

    /// An error whose message is `message`, with this log's tail and path attached.
    pub fn error(&self, message: String) -> Error {
        Error { message, log: Some(self.path.clone()), log_tail: tail(&self.path, TAIL_LINES) }
    }
}

fn write_line(file: &Mutex<File>, text: &str) {
    // The log is diagnostics; if the disk is full the build fails on its own.
    if let Ok(mut f) = file.lock() {
        let _ = writeln!(f, "{text}");
    }
}

/// Runs `cmd`, logging its output; `progress` ticks with the number of files compiled.
pub fn run(cmd: &mut Command, log: &Log, progress: &mut Progress, what: &str) -> Result<(), Error> {
    log.line(&format!("$ {cmd:?}"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("cannot run {:?}", cmd.get_program()), e))?;
    let count = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = [child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>)]
    .into_iter()
    .flatten()
    .map(|stream| {
        let (file, count) = (Arc::clone(&log.file), Arc::clone(&count));
        std::thread::spawn(move || {
            for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
                let line = String::from_utf8_lossy(&line);
                // Kbuild's short log: `  CC      kernel/fork.o`.
                if line.starts_with("  CC ") || line.starts_with("  AS ") {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                write_line(&file, &line);
            }
        })
    })
    .collect();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {
                progress.tick(count.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => return Err(Error::io("waiting for make", e)),
        }
    };
    for r in readers {
        // A reader thread only ends by EOF; a panic there is a bug worth surfacing.
        r.join().map_err(|_| Error::new("log reader thread panicked"))?;
    }
    if status.success() {
        Ok(())
    } else {
        Err(log.error(format!("{what} failed ({status})")))
    }
}

/// The last `n` lines of a file (empty if unreadable).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
