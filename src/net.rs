//! TCP and TLS connections with timeouts. Certificates are verified by default;
//! `--ca-file` adds a trusted root, `--insecure` turns verification off with a
//! warning on every run. TLS failures are turned into one line that says what to do.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use anyhow::Context;

use crate::limits::Deadline;
use native_tls::{Certificate, TlsConnector, TlsStream};

use crate::error::{connect, connect_final, input};

pub mod connect;
pub mod deflate;

/// Connection settings shared by every endpoint of a run.
#[derive(Debug, Clone)]
pub struct NetOptions {
    pub ca_file: Option<PathBuf>,
    pub insecure: bool,
    pub allow_plaintext: bool,
    pub timeout: Duration,
    /// Attempts after the first when a copy fails for a transient reason.
    pub retries: u32,
    /// The first wait before a retry (doubled each time).
    pub retry_wait: Duration,
    /// No retry is started once this much time has passed since the first attempt.
    pub deadline: Duration,
    /// COMPRESS=DEFLATE (RFC 4978) on IMAP connections whose server offers it.
    pub compress: Compress,
}

/// When to ask an IMAP server for COMPRESS=DEFLATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Compress {
    /// Where the server offers it and is not on this machine (loopback gains nothing).
    #[default]
    Auto,
    /// Wherever the server offers it.
    Yes,
    /// Never.
    No,
}

impl Compress {
    /// Whether to compress a connection to a peer that is (not) on this machine.
    pub fn wanted(self, loopback: bool) -> bool {
        match self {
            Compress::Auto => !loopback,
            Compress::Yes => true,
            Compress::No => false,
        }
    }
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            ca_file: None,
            insecure: false,
            allow_plaintext: false,
            timeout: Duration::from_secs(60),
            retries: 3,
            retry_wait: Duration::from_secs(2),
            deadline: Duration::from_secs(3600),
            compress: Compress::Auto,
        }
    }
}

/// A TCP connection whose every wait is bounded by `--timeout` and by the running
/// command's deadline ([`Deadline`], set by the protocol client's budget). It sits
/// under TLS, so a server that trickles a TLS record (or its handshake) one byte
/// at a time is cut there too, not only between records.
#[derive(Debug)]
pub struct Socket {
    tcp: TcpStream,
    timeout: Duration,
    deadline: Arc<Deadline>,
    /// The read/write timeout last set on the socket.
    set_to: Duration,
    /// `host:port`, for the bytes-on-the-wire line of `-v`.
    peer: String,
    received: u64,
    sent: u64,
}

impl Socket {
    fn new(tcp: TcpStream, timeout: Duration, peer: String) -> Socket {
        Socket {
            tcp,
            timeout,
            deadline: Deadline::new(),
            set_to: timeout,
            peer,
            received: 0,
            sent: 0,
        }
    }

    /// Bytes received and sent on this connection so far (TLS records included).
    pub fn wire(&self) -> (u64, u64) {
        (self.received, self.sent)
    }

    /// Whether the peer is this machine (COMPRESS=DEFLATE is not worth it there).
    pub fn is_loopback(&self) -> bool {
        self.tcp.peer_addr().is_ok_and(|a| a.ip().is_loopback())
    }

    /// The deadline this socket enforces (shared with the protocol client).
    pub fn deadline(&self) -> Arc<Deadline> {
        self.deadline.clone()
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Before a wait: the socket's timeout is `--timeout` or the time left.
    fn arm(&mut self) -> io::Result<()> {
        let t = match self.deadline.left() {
            Some(left) if left.is_zero() => return Err(over_budget()),
            Some(left) => left.min(self.timeout),
            None => self.timeout,
        }
        .max(Duration::from_millis(1));
        // One system call only when the bound changes by more than a little.
        if t.abs_diff(self.set_to) > Duration::from_millis(50) || t < self.set_to {
            self.tcp.set_read_timeout(Some(t))?;
            self.tcp.set_write_timeout(Some(t))?;
            self.set_to = t;
        }
        Ok(())
    }

    /// A wait that timed out: the command's budget, or `--timeout` itself.
    fn waited(&self, e: io::Error) -> io::Error {
        let timed = matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        );
        if timed && self.deadline.left().is_some_and(|l| l.is_zero()) {
            over_budget()
        } else {
            e
        }
    }
}

/// `-v`: what crossed the wire, said when the connection ends.
impl Drop for Socket {
    fn drop(&mut self) {
        crate::log::info(format!(
            "{}: {:.2} MB received, {:.2} MB sent on the wire",
            self.peer,
            self.received as f64 / 1e6,
            self.sent as f64 / 1e6
        ));
    }
}

fn over_budget() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "timed out: the server took too long for one command (its budget: {} × --timeout, plus 1 s per {} KiB it had to move)",
            crate::limits::COMMAND_TIMEOUTS,
            crate::limits::MIN_RATE / 1024
        ),
    )
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        let n = self.tcp.read(buf).map_err(|e| self.waited(e))?;
        self.received += n as u64;
        Ok(n)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        let n = self.tcp.write(buf).map_err(|e| self.waited(e))?;
        self.sent += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// A plain or TLS stream, so one client type serves both; either may carry
/// COMPRESS=DEFLATE once the protocol switched it on.
pub enum Stream {
    Plain(Socket),
    Tls(Box<TlsStream<Socket>>),
    Deflate(Box<deflate::Deflate<Stream>>),
    /// Only while [`Stream::start_deflate`] swaps the stream.
    Closed,
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        match self {
            Stream::Tls(_) => true,
            Stream::Deflate(d) => d.get_ref().is_tls(),
            _ => false,
        }
    }

    pub fn is_compressed(&self) -> bool {
        matches!(self, Stream::Deflate(_))
    }

    /// The socket under this stream.
    fn socket(&self) -> Option<&Socket> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(s) => Some(s.get_ref()),
            Stream::Deflate(d) => d.get_ref().socket(),
            Stream::Closed => None,
        }
    }

    /// The deadline the socket under this stream enforces.
    pub fn deadline(&self) -> Arc<Deadline> {
        self.socket().map_or_else(Deadline::new, |s| s.deadline())
    }

    /// Whether the peer is this machine.
    pub fn is_loopback(&self) -> bool {
        self.socket().is_some_and(Socket::is_loopback)
    }

    /// From now on, DEFLATE both ways (RFC 4978): called once the server said OK to
    /// `COMPRESS DEFLATE` and before anything else is read or written.
    pub fn start_deflate(&mut self) {
        let old = std::mem::replace(self, Stream::Closed);
        *self = Stream::Deflate(Box::new(deflate::Deflate::new(old)));
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection is closed")
}

/// Sockets here are blocking with `--timeout` set, so "would block" (EAGAIN, which
/// Linux reports when the timeout passes) always means the time ran out: say that,
/// not "Resource temporarily unavailable".
fn timed_out(what: &'static str) -> impl Fn(io::Error) -> io::Error {
    move |e| {
        if e.kind() == io::ErrorKind::WouldBlock {
            io::Error::new(io::ErrorKind::TimedOut, what)
        } else {
            e
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Deflate(s) => s.read(buf),
            Stream::Closed => Err(closed()),
        }
        .map_err(timed_out(
            "timed out: the server sent nothing within --timeout",
        ))
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Deflate(s) => s.write(buf),
            Stream::Closed => Err(closed()),
        }
        .map_err(timed_out(
            "timed out: the server took no data within --timeout",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Deflate(s) => s.flush(),
            Stream::Closed => Err(closed()),
        }
    }
}

pub fn tcp(host: &str, port: u16, opts: &NetOptions) -> anyhow::Result<Socket> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| connect_final(format!("cannot resolve {host}: {e}; check the host name")))?
        .collect();
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, opts.timeout) {
            Ok(s) => {
                s.set_read_timeout(Some(opts.timeout))?;
                s.set_write_timeout(Some(opts.timeout))?;
                s.set_nodelay(true)?;
                return Ok(Socket::new(s, opts.timeout, format!("{host}:{port}")));
            }
            Err(e) => last = Some(e),
        }
    }
    let why = last
        .map(|e| e.to_string())
        .unwrap_or_else(|| "no address".into());
    Err(connect(format!(
        "cannot connect to {host}:{port}: {why}; check the host, the port and that the server is up"
    )))
}

pub fn connector(opts: &NetOptions) -> anyhow::Result<TlsConnector> {
    let mut b = TlsConnector::builder();
    if let Some(path) = &opts.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| input(format!("cannot read --ca-file {}: {e}", path.display())))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            input(format!(
                "--ca-file {} is not a PEM certificate: {e}",
                path.display()
            ))
        })?;
        b.add_root_certificate(cert);
    }
    if opts.insecure {
        b.danger_accept_invalid_certs(true);
        b.danger_accept_invalid_hostnames(true);
    }
    b.build().context("cannot set up TLS")
}

/// A handshake that failed because the connection broke (reset, closed early),
/// not because of what the server's TLS said: worth another attempt.
fn cut_off(e: &native_tls::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<io::Error>() {
            return true;
        }
        cause = c.source();
    }
    let text = e.to_string().to_ascii_lowercase();
    text.contains("unexpected eof") || text.contains("connection reset")
}

/// Wrap a TCP stream in TLS, verifying the certificate for `host`.
pub fn tls(tcp: Socket, host: &str, port: u16, opts: &NetOptions) -> anyhow::Result<Stream> {
    let c = connector(opts)?;
    // The handshake has a budget of its own, like a command.
    let deadline = tcp.deadline();
    deadline.set(Some(
        std::time::Instant::now() + opts.timeout * crate::limits::COMMAND_TIMEOUTS,
    ));
    let res = c.connect(host, tcp);
    deadline.set(None);
    match res {
        Ok(s) => Ok(Stream::Tls(Box::new(s))),
        // The socket's --timeout ran out in the middle of the handshake.
        Err(native_tls::HandshakeError::WouldBlock(_)) => Err(connect(format!(
            "TLS handshake with {host}:{port} timed out: the server sent nothing within --timeout"
        ))),
        Err(native_tls::HandshakeError::Failure(e)) if cut_off(&e) => Err(connect(format!(
            "TLS handshake with {host}:{port} was cut off: {}",
            e.to_string().lines().next().unwrap_or("")
        ))),
        Err(e) => {
            let text = e.to_string();
            let hint = if text.contains("certificate verify failed")
                || text.contains("self-signed")
                || text.contains("self signed")
                || text.contains("unable to get local issuer")
            {
                if text.contains("hostname mismatch") || text.contains("Hostname mismatch") {
                    format!("the certificate is not valid for the name {host}; connect by the name the certificate carries")
                } else {
                    "the server's certificate is not trusted; if it is signed by a private CA, pass that CA with --ca-file PEM".to_string()
                }
            } else if text.contains("wrong version number")
                || text.contains("packet length too long")
            {
                format!("port {port} does not speak TLS; use the implicit-TLS port (993 for IMAPS, 995 for POP3S) or the imap:// / pop3:// scheme for STARTTLS")
            } else {
                "check the port and the server's TLS set-up".to_string()
            };
            Err(connect_final(format!(
                "TLS handshake with {host}:{port} failed: {}: {hint}",
                text.lines().next().unwrap_or("")
            )))
        }
    }
}
