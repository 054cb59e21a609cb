//! A scripted POP3 server that misbehaves on purpose, for what Dovecot cannot be
//! made to do: an endless greeting, an endless line or answer after login, a
//! trickle of keep-alive bytes, STAT disagreeing with LIST, two messages sharing one
//! UIDL. Plaintext on 127.0.0.1, USER/PASS (any password), no STLS (so mailferry
//! needs `--allow-plaintext`); every connection is served on its own thread. The
//! server stops accepting when dropped; endless answers end when the client hangs
//! up.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How the server answers RETR (and TOP, when advertised).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Retr {
    /// The message, dot-stuffed.
    #[default]
    Normal,
    /// `+OK`, then one byte of a keep-alive line every 300 ms, forever.
    Trickle,
    /// `+OK`, then one line that never ends.
    EndlessLine,
    /// `+OK`, then short lines without a terminating `.`, forever.
    EndlessLines,
    /// A short notice in place of every message (as Courier does for raw UTF-8
    /// headers without UTF8).
    Notice,
}

/// What one [`FakePop3`] serves and how it misbehaves.
#[derive(Clone, Debug, Default)]
pub struct Pop3Script {
    /// The messages, message 1 first.
    pub messages: Vec<Vec<u8>>,
    /// UIDL of each message (duplicates allowed); `None`: UIDL answers -ERR.
    pub uidls: Option<Vec<String>>,
    /// The message count STAT gives, instead of the true one.
    pub stat_count: Option<usize>,
    /// A greeting line that never ends, instead of `+OK`.
    pub endless_greeting: bool,
    /// How RETR is answered.
    pub retr: Retr,
    /// An endless LIST answer (lines without a terminating `.`).
    pub endless_list: bool,
    /// Advertise TOP (and answer it like RETR).
    pub top: bool,
    /// Behave as Courier POP3 does about UTF8 (see [`Pop3Script::courier_utf8`]).
    pub courier_utf8: bool,
}

impl Pop3Script {
    pub fn new(messages: Vec<Vec<u8>>) -> Pop3Script {
        Pop3Script {
            messages,
            ..Pop3Script::default()
        }
    }

    /// UIDLs `uid-1`, `uid-2`, … for the messages.
    pub fn with_uidls(mut self) -> Pop3Script {
        self.uidls = Some(
            (1..=self.messages.len())
                .map(|i| format!("uid-{i}"))
                .collect(),
        );
        self
    }

    pub fn uidls(mut self, uidls: &[&str]) -> Pop3Script {
        self.uidls = Some(uidls.iter().map(|u| u.to_string()).collect());
        self
    }

    pub fn stat_count(mut self, n: usize) -> Pop3Script {
        self.stat_count = Some(n);
        self
    }

    pub fn endless_greeting(mut self) -> Pop3Script {
        self.endless_greeting = true;
        self
    }

    pub fn retr(mut self, retr: Retr) -> Pop3Script {
        self.retr = retr;
        self
    }

    pub fn endless_list(mut self) -> Pop3Script {
        self.endless_list = true;
        self
    }

    /// As Courier: CAPA offers UTF8, and until the client sends it, a message with
    /// 8-bit bytes in its header is served as a short notice instead.
    pub fn courier_utf8(mut self) -> Pop3Script {
        self.courier_utf8 = true;
        self
    }

    pub fn top(mut self) -> Pop3Script {
        self.top = true;
        self
    }
}

/// A running fake server; stops accepting when dropped.
pub struct FakePop3 {
    pub port: u16,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Bytes sent in endless answers and trickles, all connections together.
    pub endless_bytes: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FakePop3 {
    pub fn start(script: Pop3Script) -> FakePop3 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let endless_bytes = Arc::new(AtomicUsize::new(0));
        let (st, conns, endless) = (stop.clone(), connections.clone(), endless_bytes.clone());
        std::thread::spawn(move || {
            let script = Arc::new(script);
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        conns.fetch_add(1, Ordering::SeqCst);
                        let _ = conn.set_nonblocking(false);
                        let script = script.clone();
                        let (st, endless) = (st.clone(), endless.clone());
                        std::thread::spawn(move || {
                            let _ = serve(conn, &script, &st, &endless);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakePop3 {
            port,
            connections,
            endless_bytes,
            stop,
        }
    }

    /// `pop3://u@127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("pop3://u@127.0.0.1:{}", self.port)
    }
}

impl Drop for FakePop3 {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Write `chunk` again and again until the client hangs up or the server stops.
fn forever(w: &mut TcpStream, chunk: &[u8], stop: &AtomicBool, sent: &AtomicUsize) {
    while !stop.load(Ordering::SeqCst) {
        if w.write_all(chunk).is_err() {
            return;
        }
        sent.fetch_add(chunk.len(), Ordering::SeqCst);
    }
}

fn eight_bit_header(m: &[u8]) -> bool {
    let end = m
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(m.len());
    m[..end].iter().any(|&c| c >= 0x80)
}

fn stuffed(m: &[u8]) -> Vec<u8> {
    let mut v = b"+OK\r\n".to_vec();
    for l in m.split_inclusive(|&c| c == b'\n') {
        if l.starts_with(b".") {
            v.push(b'.');
        }
        v.extend_from_slice(l);
    }
    if !v.ends_with(b"\n") {
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b".\r\n");
    v
}

fn serve(
    conn: TcpStream,
    s: &Pop3Script,
    stop: &AtomicBool,
    endless: &AtomicUsize,
) -> std::io::Result<()> {
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    if s.endless_greeting {
        w.write_all(b"+OK ")?;
        forever(&mut w, &[b'g'; 64 * 1024], stop, endless);
        return Ok(());
    }
    w.write_all(b"+OK fake POP3 ready\r\n")?;
    let mut line = String::new();
    let mut utf8_on = false;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd: Vec<&str> = line.trim_end().split(' ').collect();
        let message = || {
            cmd.get(1)
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| s.messages.get(n.wrapping_sub(1)))
        };
        let reply: Vec<u8> = match cmd[0].to_ascii_uppercase().as_str() {
            "CAPA" => {
                let mut caps = "+OK\r\nUSER\r\n".to_string();
                if s.uidls.is_some() {
                    caps.push_str("UIDL\r\n");
                }
                if s.top {
                    caps.push_str("TOP\r\n");
                }
                if s.courier_utf8 {
                    caps.push_str("UTF8\r\n");
                }
                caps.push_str(".\r\n");
                caps.into_bytes()
            }
            "UTF8" if s.courier_utf8 => {
                utf8_on = true;
                b"+OK UTF8 enabled\r\n".to_vec()
            }
            "USER" | "PASS" | "NOOP" => b"+OK\r\n".to_vec(),
            "STAT" => format!(
                "+OK {} {}\r\n",
                s.stat_count.unwrap_or(s.messages.len()),
                s.messages.iter().map(Vec::len).sum::<usize>()
            )
            .into_bytes(),
            "LIST" if s.endless_list => {
                w.write_all(b"+OK\r\n")?;
                forever(&mut w, &b"1 100\r\n".repeat(1000), stop, endless);
                return Ok(());
            }
            "LIST" => {
                let mut v = b"+OK\r\n".to_vec();
                for (i, m) in s.messages.iter().enumerate() {
                    v.extend_from_slice(format!("{} {}\r\n", i + 1, m.len()).as_bytes());
                }
                v.extend_from_slice(b".\r\n");
                v
            }
            "UIDL" => match &s.uidls {
                Some(uidls) => {
                    let mut v = b"+OK\r\n".to_vec();
                    for (i, u) in uidls.iter().enumerate() {
                        v.extend_from_slice(format!("{} {u}\r\n", i + 1).as_bytes());
                    }
                    v.extend_from_slice(b".\r\n");
                    v
                }
                None => b"-ERR unknown command\r\n".to_vec(),
            },
            "RETR" | "TOP" if cmd[0].eq_ignore_ascii_case("RETR") || s.top => match message() {
                None => b"-ERR no such message\r\n".to_vec(),
                Some(m) => match s.retr {
                    Retr::Normal if s.courier_utf8 && !utf8_on && eight_bit_header(m) => stuffed(
                        b"Subject: message not available\r\n\r\nThis message has UTF-8 headers; enable UTF8 to read it.\r\n",
                    ),
                    Retr::Normal => stuffed(m),
                    Retr::Notice => stuffed(b"Subject: not available\r\n\r\nThis message cannot be shown.\r\n"),
                    Retr::Trickle => {
                        w.write_all(b"+OK\r\n")?;
                        let keep = b"X-Keep-Alive: still here\r\n";
                        for &b in keep.iter().cycle() {
                            if stop.load(Ordering::SeqCst) || w.write_all(&[b]).is_err() {
                                return Ok(());
                            }
                            endless.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(300));
                        }
                        return Ok(());
                    }
                    Retr::EndlessLine => {
                        w.write_all(b"+OK\r\nSubject: ")?;
                        forever(&mut w, &[b'e'; 64 * 1024], stop, endless);
                        return Ok(());
                    }
                    Retr::EndlessLines => {
                        w.write_all(b"+OK\r\n")?;
                        forever(&mut w, &b"more\r\n".repeat(10_000), stop, endless);
                        return Ok(());
                    }
                },
            },
            "QUIT" => {
                let _ = w.write_all(b"+OK bye\r\n");
                return Ok(());
            }
            _ => b"-ERR unknown command\r\n".to_vec(),
        };
        w.write_all(&reply)?;
    }
}
