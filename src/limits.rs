//! What a server may send, bounded. Every reader of server input (IMAP, POP3) and
//! of files a server's data passed through (mbox, manifest) stops at these limits
//! with an error naming the limit, so a broken or hostile server can make a run
//! fail but never make it hold unbounded memory, recurse without end or wait
//! forever. The README's "Limits" table lists the same numbers.
//!
//! [`Paced`] bounds time per command: a command (from its first byte written to its
//! last byte read) may take `COMMAND_TIMEOUTS × --timeout` plus the time its bytes
//! need at [`MIN_RATE`]; a server that trickles keep-alive bytes cannot hold a run.

use std::io::{self, BufRead, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One line (IMAP: a response's text without its literals; POP3: one line) before
/// login: a greeting or a capability list.
pub const MAX_LINE_PRE_LOGIN: usize = 64 * 1024;
/// One line after login. An IMAP `* SEARCH` answer without ESEARCH needs about 8
/// bytes a message, so this allows about 2 million messages in a folder there.
pub const MAX_LINE: usize = 16 * 1024 * 1024;
/// One IMAP literal (a message body): larger messages are refused by every
/// hosting provider (Infomaniak: 201 MB).
pub const MAX_LITERAL: usize = 1 << 30;
/// Nesting of parenthesised lists in one IMAP response (a BODYSTRUCTURE needs a
/// few dozen at most).
pub const MAX_DEPTH: usize = 64;
/// Values (atoms, strings, lists) in one IMAP response, `* SEARCH` numbers excepted.
pub const MAX_VALUES: usize = 100_000;
/// Literals in one IMAP response (and their bytes together: [`MAX_LITERAL`]).
pub const MAX_LITERALS: usize = 10_000;
/// Folders one LIST may name.
pub const MAX_FOLDERS: usize = 100_000;
/// Flags (system flags and keywords) one message may carry.
pub const MAX_FLAGS: usize = 1_000;
/// UIDs listed in one folder: SEARCH may name more, the rest is not listed (and
/// said). Listing also stops after [`EMPTY_PAGES`] pages in a row that FETCH
/// answered with nothing, since a folder's SEARCH lists only what it holds.
pub const MAX_FOLDER_UIDS: u64 = 10_000_000;
pub const EMPTY_PAGES: u32 = 3;
/// A command's time budget, in multiples of `--timeout`, before its bytes count.
pub const COMMAND_TIMEOUTS: u32 = 4;
/// Bytes a second a command is granted on top of its base budget (128 kbit/s): a
/// 4 MB batch gets 256 s more, a 50 MB message 53 minutes.
pub const MIN_RATE: u64 = 16 * 1024;
/// Lines of one POP3 multi-line answer that is not a message (LIST, UIDL, CAPA).
pub const MAX_POP3_LIST_LINES: usize = 1_000_000;

/// Read one line ending in `\n` into `buf` (cleared first), at most `max` bytes.
/// Returns the bytes read (0 at end of stream). A longer line is an error naming
/// the limit; nothing beyond `max` is ever held.
pub fn read_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    buf.clear();
    append_line(r, buf, max)
}

/// As [`read_line`], appending to `buf`; `max` bounds what is appended.
pub fn append_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    let mut read = 0;
    loop {
        let (done, used) = {
            let avail = r.fill_buf()?;
            if avail.is_empty() {
                return Ok(read);
            }
            match memchr::memchr(b'\n', avail) {
                Some(i) => (true, i + 1),
                None => (false, avail.len()),
            }
        };
        if read + used > max {
            return Err(over_limit(format!(
                "the server sent a line longer than {max} bytes (limit)"
            )));
        }
        let avail = r.fill_buf()?;
        buf.extend_from_slice(&avail[..used]);
        r.consume(used);
        read += used;
        if done {
            return Ok(read);
        }
    }
}

/// An error for input over a limit (`InvalidData`, so it is not taken for a
/// connection problem by its kind, but still ends the session).
pub fn over_limit(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Whether an I/O error is one of ours: a limit, or a command over its budget.
pub fn is_limit(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidData
}

/// When the running command must end, shared between [`Paced`] (which knows the
/// command and its bytes) and the socket under TLS (`net::Socket`), which bounds
/// every wait on the wire by it, also inside a TLS record or handshake.
#[derive(Debug, Default)]
pub struct Deadline(Mutex<Option<Instant>>);

impl Deadline {
    pub fn new() -> Arc<Deadline> {
        Arc::new(Deadline::default())
    }
    pub fn set(&self, at: Option<Instant>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
    /// The time left, `None` when no command runs; zero when it is over.
    pub fn left(&self) -> Option<Duration> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|at| at.saturating_duration_since(Instant::now()))
    }
}

/// A stream whose commands are held to a time budget (see the module text). The
/// protocol client calls [`Paced::begin`] when it starts a command; every read and
/// write after that checks the budget first, so a read that waits is bounded by
/// the socket's `--timeout` and the whole command by the budget. Only the bytes a
/// command was expected to move extend its budget: what mailferry writes, and what
/// it reads up to [`Paced::expect`] (a FETCH of bodies expects their sizes), so a
/// server cannot buy itself time by sending what nobody asked for.
pub struct Paced<S> {
    inner: S,
    timeout: Duration,
    started: Instant,
    written: u64,
    read: u64,
    expected: u64,
    sink: Option<Arc<Deadline>>,
}

impl<S> Paced<S> {
    pub fn new(inner: S, timeout: Duration) -> Paced<S> {
        Paced {
            inner,
            timeout,
            started: Instant::now(),
            written: 0,
            read: 0,
            expected: 0,
            sink: None,
        }
    }

    /// Share the deadline with the socket under TLS, which then bounds every wait.
    pub fn share(&mut self, sink: Arc<Deadline>) {
        self.sink = Some(sink);
    }

    /// The running command is expected to read this many bytes more (bodies).
    pub fn expect(&mut self, bytes: u64) {
        self.expected = self.expected.saturating_add(bytes);
        self.publish();
    }

    fn moved(&self) -> u64 {
        self.written + self.read.min(self.expected)
    }

    fn publish(&self) {
        if let Some(sink) = &self.sink {
            sink.set(Some(
                self.started + Self::budget(self.timeout, self.moved()),
            ));
        }
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// A command starts: a fresh budget.
    pub fn begin(&mut self) {
        self.started = Instant::now();
        self.written = 0;
        self.read = 0;
        self.expected = 0;
        self.publish();
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The budget of a command that has moved `moved` bytes so far.
    pub fn budget(timeout: Duration, moved: u64) -> Duration {
        timeout * COMMAND_TIMEOUTS + Duration::from_secs_f64(moved as f64 / MIN_RATE as f64)
    }

    fn check(&self) -> io::Result<()> {
        let budget = Self::budget(self.timeout, self.moved());
        if self.started.elapsed() > budget {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "timed out: the server took more than {:.0} s for one command ({} × --timeout, plus 1 s per {} KiB it had to move; {} bytes)",
                    budget.as_secs_f64(),
                    COMMAND_TIMEOUTS,
                    MIN_RATE / 1024,
                    self.moved()
                ),
            ));
        }
        Ok(())
    }
}

impl<S: Read> Read for Paced<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.check()?;
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read <= self.expected {
            self.publish();
        }
        Ok(n)
    }
}

impl<S: Write> Write for Paced<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        self.publish();
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    #[test]
    fn lines_are_read_whole_up_to_the_limit_and_no_further() {
        // (input, max) → lines read, or the error
        type Row<'a> = (&'a [u8], usize, Result<&'a [&'a [u8]], ()>);
        let table: &[Row] = &[
            (b"a\r\nbc\n", 10, Ok(&[b"a\r\n", b"bc\n"])),
            (b"abc\n", 4, Ok(&[b"abc\n"])),
            (b"abcd\n", 4, Err(())),
            (b"no end", 100, Ok(&[b"no end"])),
            (b"no end", 3, Err(())),
            (b"", 3, Ok(&[])),
        ];
        for (input, max, want) in table {
            // A reader of 2-byte chunks: the limit holds across buffer refills.
            let mut r = BufReader::with_capacity(2, *input);
            let mut got: Vec<Vec<u8>> = Vec::new();
            let mut buf = Vec::new();
            let res = loop {
                match read_line(&mut r, &mut buf, *max) {
                    Ok(0) => break Ok(()),
                    Ok(_) => got.push(buf.clone()),
                    Err(e) => {
                        assert!(is_limit(&e), "{e}");
                        assert!(e.to_string().contains(&max.to_string()), "{e}");
                        assert!(buf.len() <= *max);
                        break Err(());
                    }
                }
            };
            match want {
                Ok(lines) => {
                    assert!(res.is_ok(), "{input:?}");
                    assert_eq!(got, lines.iter().map(|l| l.to_vec()).collect::<Vec<_>>());
                }
                Err(()) => assert!(res.is_err(), "{input:?}"),
            }
        }
    }

    #[test]
    fn the_budget_grows_with_the_bytes_moved() {
        let t = Duration::from_secs(10);
        assert_eq!(Paced::<()>::budget(t, 0), Duration::from_secs(40));
        assert_eq!(
            Paced::<()>::budget(t, MIN_RATE * 100),
            Duration::from_secs(140)
        );
    }

    #[test]
    fn only_expected_bytes_buy_time_and_the_deadline_is_shared() {
        let sink = Deadline::new();
        let mut p = Paced::new(
            io::Cursor::new(vec![b'x'; 64 * 1024]),
            Duration::from_secs(1),
        );
        p.share(sink.clone());
        p.begin();
        let base = sink.left().unwrap();
        assert!(base <= Duration::from_secs(4) && base > Duration::from_secs(3));
        // Bytes nobody asked for: no more time.
        let mut b = vec![0u8; 32 * 1024];
        p.read_exact(&mut b).unwrap();
        assert!(sink.left().unwrap() <= base);
        // Bytes a FETCH of bodies expects: one more second per MIN_RATE.
        p.begin();
        p.expect(MIN_RATE * 2);
        p.read_exact(&mut b).unwrap();
        assert!(
            sink.left().unwrap() > Duration::from_secs(5),
            "{:?}",
            sink.left()
        );
    }

    #[test]
    fn a_command_over_its_budget_fails_and_a_new_one_starts_afresh() {
        let mut p = Paced::new(io::Cursor::new(vec![b'x'; 10]), Duration::ZERO);
        let mut b = [0u8; 1];
        std::thread::sleep(Duration::from_millis(5));
        let e = p.read(&mut b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("one command"), "{e}");
        // A zero timeout leaves no budget at all; a sane one lets the read through.
        let mut p = Paced::new(io::Cursor::new(vec![b'x'; 10]), Duration::from_secs(1));
        p.begin();
        assert_eq!(p.read(&mut b).unwrap(), 1);
    }
}
