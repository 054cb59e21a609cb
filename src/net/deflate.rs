//! COMPRESS=DEFLATE (RFC 4978): raw DEFLATE (no zlib header) both ways over an
//! established stream, each direction one continuous compression context.
//!
//! Invariants:
//! - every `flush` ends the pending output with a sync flush, so the server can
//!   decompress all of a command the moment it is flushed (RFC 4978 section 4);
//! - what the server sends is inflated into the caller's buffer only: the output of
//!   one read is bounded by that buffer, so a "zip bomb" costs CPU, never memory;
//!   the protocol client above bounds lines and literals as always;
//! - a stream the server corrupts is an I/O error naming COMPRESS=DEFLATE, never
//!   silently truncated data.

use std::io::{self, Read, Write};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Bytes read from the wire at a time.
const WIRE_CHUNK: usize = 64 * 1024;
/// Compressed output held before it is written even without a flush.
const HOLD: usize = 256 * 1024;
/// Input taken by one `write`: a message of megabytes written at once is
/// compressed and sent a piece at a time, never held whole a second time.
const TAKE: usize = 64 * 1024;

/// A stream with COMPRESS=DEFLATE active, and what crossed it each way (on the
/// wire, and as the protocol saw it).
pub struct Deflate<S> {
    inner: S,
    comp: Compress,
    decomp: Decompress,
    /// Compressed bytes read from the wire, not yet inflated: `wire[at..]`.
    wire: Vec<u8>,
    at: usize,
    /// Compressed bytes to write.
    out: Vec<u8>,
    eof: bool,
}

impl<S: Read + Write> Deflate<S> {
    pub fn new(inner: S) -> Deflate<S> {
        Deflate {
            inner,
            // Level 1: mail text shrinks 2.7x instead of 4x at level 6, for a third
            // of the CPU, which is what a 2-core machine runs short of first (30 ms /
            // 100 Mbit, small corpus: 8.4-8.7 s at 1, 9.1-9.5 s at 4, 9.9-10.9 s at 6).
            comp: Compress::new(Compression::new(1), false),
            decomp: Decompress::new(false),
            wire: Vec::with_capacity(WIRE_CHUNK),
            at: 0,
            out: Vec::new(),
            eof: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// (protocol bytes received, protocol bytes sent, wire bytes received, wire
    /// bytes sent) so far.
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        (
            self.decomp.total_out(),
            self.comp.total_in(),
            self.decomp.total_in(),
            self.comp.total_out(),
        )
    }

    /// Compress `input` into `self.out` with `flush`; all of it is taken.
    fn deflate(&mut self, mut input: &[u8], flush: FlushCompress) -> io::Result<()> {
        loop {
            if self.out.capacity() - self.out.len() < 4096 + input.len() / 4 {
                self.out.reserve(4096 + input.len() / 4);
            }
            let before = self.comp.total_in();
            self.comp
                .compress_vec(input, &mut self.out, flush)
                .map_err(|e| io::Error::other(format!("COMPRESS=DEFLATE: {e}")))?;
            input = &input[(self.comp.total_in() - before) as usize..];
            // Done when all input is taken and the output did not fill the room
            // (a full buffer may hide more output of the flush).
            if input.is_empty() && self.out.len() < self.out.capacity() {
                return Ok(());
            }
        }
    }

    fn write_out(&mut self) -> io::Result<()> {
        self.inner.write_all(&self.out)?;
        self.out.clear();
        Ok(())
    }
}

/// `-v`: how much the compression saved, said when the connection ends (the
/// socket's own line, after this one, gives the bytes on the wire).
impl<S> Drop for Deflate<S> {
    fn drop(&mut self) {
        crate::log::info(format!(
            "COMPRESS=DEFLATE: {:.2} MB received as {:.2} MB, {:.2} MB sent as {:.2} MB",
            self.decomp.total_out() as f64 / 1e6,
            self.decomp.total_in() as f64 / 1e6,
            self.comp.total_in() as f64 / 1e6,
            self.comp.total_out() as f64 / 1e6,
        ));
    }
}

impl<S: Read + Write> Read for Deflate<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.at == self.wire.len() && !self.eof {
                self.wire.resize(WIRE_CHUNK, 0);
                let n = self.inner.read(&mut self.wire)?;
                self.wire.truncate(n);
                self.at = 0;
                self.eof = n == 0;
            }
            let (in0, out0) = (self.decomp.total_in(), self.decomp.total_out());
            let status = self
                .decomp
                .decompress(&self.wire[self.at..], buf, FlushDecompress::None)
                .map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("COMPRESS=DEFLATE: the server's data does not inflate ({e})"),
                    )
                })?;
            self.at += (self.decomp.total_in() - in0) as usize;
            let produced = (self.decomp.total_out() - out0) as usize;
            if produced > 0 {
                return Ok(produced);
            }
            if status == Status::StreamEnd || (self.eof && self.at == self.wire.len()) {
                // The server ended its stream (or the connection): end of data.
                return Ok(0);
            }
        }
    }
}

impl<S: Read + Write> Write for Deflate<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let take = &buf[..buf.len().min(TAKE)];
        self.deflate(take, FlushCompress::None)?;
        if self.out.len() >= HOLD {
            self.write_out()?;
        }
        Ok(take.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.deflate(&[], FlushCompress::Sync)?;
        self.write_out()?;
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// Two ends of a pipe: what one writes the other reads.
    struct Pipe {
        rx: Cursor<Vec<u8>>,
        tx: Vec<u8>,
    }
    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            // One byte at a time at most 7: reads split everywhere.
            let n = buf.len().min(7);
            self.rx.read(&mut buf[..n])
        }
    }
    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.tx.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn pipe(rx: Vec<u8>) -> Pipe {
        Pipe {
            rx: Cursor::new(rx),
            tx: Vec::new(),
        }
    }

    #[test]
    fn a_large_write_is_compressed_a_piece_at_a_time() {
        // 1.5 MB that barely compresses (a xorshift stream), written at once.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let big: Vec<u8> = (0..3 << 19)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut a = Deflate::new(pipe(Vec::new()));
        a.write_all(&big).unwrap();
        a.flush().unwrap();
        // Held output stays near HOLD, not near the size of the write.
        assert!(a.out.capacity() < 768 << 10, "{}", a.out.capacity());
        assert!(a.comp.total_in() == big.len() as u64);
        let mut b = Deflate::new(pipe(std::mem::take(&mut a.inner.tx)));
        let mut back = vec![0; big.len()];
        b.read_exact(&mut back).unwrap();
        assert!(back == big);
    }

    #[test]
    fn what_is_written_and_flushed_reads_back_whole_in_any_split() {
        let mut a = Deflate::new(pipe(Vec::new()));
        let commands: Vec<Vec<u8>> = (0..50)
            .map(|i| format!("M{i:04} UID FETCH {i}:* (FLAGS)\r\n").repeat(i % 5 + 1))
            .map(String::into_bytes)
            .collect();
        let mut cuts = Vec::new();
        for c in &commands {
            a.write_all(c).unwrap();
            a.flush().unwrap();
            cuts.push(a.inner.tx.len());
        }
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        a.write_all(&big).unwrap();
        a.flush().unwrap();
        let wire = std::mem::take(&mut a.inner.tx);
        // Each flush made everything before it readable: read up to each cut.
        let mut b = Deflate::new(pipe(wire[..cuts[0]].to_vec()));
        let mut first = vec![0u8; commands[0].len()];
        b.read_exact(&mut first).unwrap();
        assert_eq!(first, commands[0]);
        let mut b = Deflate::new(pipe(wire));
        let mut all = Vec::new();
        b.read_to_end(&mut all).unwrap();
        let want: Vec<u8> = commands.concat().into_iter().chain(big).collect();
        assert!(all == want, "round trip");
        let (plain_in, _, wire_in, _) = b.totals();
        assert_eq!(plain_in, all.len() as u64);
        assert!(wire_in < plain_in, "it compressed");
    }

    #[test]
    fn garbage_from_the_server_is_an_error_not_data() {
        let mut b = Deflate::new(pipe(vec![0xff; 100]));
        let mut buf = [0u8; 64];
        let e = b.read(&mut buf).unwrap_err();
        assert!(e.to_string().contains("COMPRESS=DEFLATE"), "{e}");
    }

    #[test]
    fn a_bomb_inflates_only_as_far_as_the_reader_asks() {
        // 100 MB of zeros compress to under 1 MB (about 450 KB at level 1).
        let mut a = Deflate::new(pipe(Vec::new()));
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..100 {
            a.write_all(&zeros).unwrap();
        }
        a.flush().unwrap();
        let wire = std::mem::take(&mut a.inner.tx);
        assert!(wire.len() < 1_000_000, "{}", wire.len());
        let mut b = Deflate::new(pipe(wire));
        let mut buf = [0u8; 4096];
        let n = b.read(&mut buf).unwrap();
        assert!(n <= buf.len());
        // Inflated so far: at most what was asked for.
        assert!(b.totals().0 <= 4096);
    }
}
