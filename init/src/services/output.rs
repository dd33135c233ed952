//! A service's stdout and stderr (one pipe) become lines on init's stderr,
//! each prefixed with `[NAME] `, so they stay apart from the app's bytes.

use alloc::vec::Vec;

/// A partial line longer than this is passed on as a line of its own (a
/// service that never writes a newline cannot grow init's memory).
pub const MAX_LINE: usize = 4096;

/// Complete lines of one service, waiting for their newline.
#[derive(Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Appends `input` to `out` as prefixed lines; a trailing partial line
    /// is kept for the next call.
    pub fn push(&mut self, name: &[u8], mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            let room = MAX_LINE - self.partial.len();
            match input.iter().take(room).position(|&c| c == b'\n') {
                Some(n) => {
                    self.partial.extend_from_slice(&input[..n]);
                    input = &input[n + 1..];
                    self.flush(name, out);
                }
                None => {
                    let take = input.len().min(room);
                    self.partial.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.partial.len() == MAX_LINE {
                        self.flush(name, out);
                    }
                }
            }
        }
    }

    /// Ends the partial line, if any (the pipe closed).
    pub fn finish(&mut self, name: &[u8], out: &mut Vec<u8>) {
        if !self.partial.is_empty() {
            self.flush(name, out);
        }
    }

    fn flush(&mut self, name: &[u8], out: &mut Vec<u8>) {
        prefixed(name, &self.partial, out);
        self.partial.clear();
    }
}

/// `[NAME] line\n` appended to `out`.
pub fn prefixed(name: &[u8], line: &[u8], out: &mut Vec<u8>) {
    out.push(b'[');
    out.extend_from_slice(name);
    out.extend_from_slice(b"] ");
    out.extend_from_slice(line);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_prefixed_across_reads() {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        lines.push(b"db", b"one\ntw", &mut out);
        assert_eq!(out, b"[db] one\n");
        lines.push(b"db", b"o\n\nthree", &mut out);
        assert_eq!(out, b"[db] one\n[db] two\n[db] \n");
        lines.finish(b"db", &mut out);
        lines.finish(b"db", &mut out);
        assert_eq!(out, b"[db] one\n[db] two\n[db] \n[db] three\n");
    }

    #[test]
    fn endless_lines_are_cut() {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        let long = alloc::vec![b'x'; MAX_LINE * 2 + 10];
        lines.push(b"s", &long, &mut out);
        assert_eq!(out.len(), 2 * (MAX_LINE + 5));
        assert!(out.starts_with(b"[s] xxx") && out.ends_with(b"x\n"));
        lines.push(b"s", b"\n", &mut out);
        assert!(out.ends_with(b"\n[s] xxxxxxxxxx\n"));
    }
}
