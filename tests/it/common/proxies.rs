//! TCP forwarders in front of a real server: counting connections, injecting one
//! fault.

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// When a connection was accepted, and when its close was seen.
type Span = (Instant, Option<Instant>);

/// Counts connections through one or more [`CountingProxy`]s: the total, and when
/// each was open, for [`ConnCounter::peak`].
#[derive(Clone, Default)]
pub struct ConnCounter {
    pub total: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    spans: std::sync::Arc<std::sync::Mutex<Vec<Span>>>,
}

impl ConnCounter {
    /// The proxy learns of a close only when its thread reads the end of the stream,
    /// a moment after the client closed (and perhaps already opened its next
    /// connection); a close is taken as this much earlier than it was seen.
    pub const CLOSE_SLACK: Duration = Duration::from_millis(100);

    /// The most connections open at once. A client that really held one too many
    /// for longer than [`ConnCounter::CLOSE_SLACK`] is seen.
    pub fn peak(&self) -> usize {
        let spans = self.spans.lock().unwrap();
        let mut events: Vec<(Instant, i32)> = Vec::new();
        for &(open, closed) in spans.iter() {
            match closed {
                Some(c) => {
                    let c = c.checked_sub(Self::CLOSE_SLACK).unwrap_or(c);
                    if c > open {
                        events.push((open, 1));
                        events.push((c, -1));
                    }
                }
                None => events.push((open, 1)),
            }
        }
        // At one instant, closes count before opens.
        events.sort();
        let (mut now, mut peak) = (0i32, 0i32);
        for (_, delta) in events {
            now += delta;
            peak = peak.max(now);
        }
        peak as usize
    }
}

/// A TCP forwarder in front of a server port that counts the connections the
/// server sees, for `--max-per-host` tests.
pub struct CountingProxy {
    pub port: u16,
}

impl CountingProxy {
    pub fn start(server_port: u16, counter: &ConnCounter) -> CountingProxy {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let c = counter.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", server_port)) else {
                    continue;
                };
                c.total.fetch_add(1, Ordering::SeqCst);
                let spans = c.spans.clone();
                let me = {
                    let mut spans = spans.lock().unwrap();
                    spans.push((Instant::now(), None));
                    spans.len() - 1
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let (mut c, mut s) = (c2, s2);
                    let _ = std::io::copy(&mut c, &mut s);
                    spans.lock().unwrap()[me].1 = Some(Instant::now());
                    let _ = s.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let (mut c, mut s) = (client, server);
                    let _ = std::io::copy(&mut s, &mut c);
                    let _ = c.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        CountingProxy { port }
    }
}

/// What a [`FaultProxy`] does, once, to whichever connection reaches the point first.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Cut both ways once the client sent this many bytes (e.g. inside an APPEND literal).
    CutAfterClientBytes(usize),
    /// Cut once the server sent this many bytes (e.g. inside a FETCH literal).
    CutAfterServerBytes(usize),
    /// Cut when the server's data holds `text` for the `nth` time, before the client
    /// sees that chunk (the server did the work; its OK never arrives).
    CutOnServerText(&'static str, usize),
    /// Stop forwarding (without closing) once the server sent this many bytes.
    StallAfterServerBytes(usize),
    /// When a chunk from the server holds `text` for the `nth` time (counted within
    /// chunks), forward it up to the end of that line, send the client the line
    /// `bye` (e.g. a provider's `* BYE … AccessTokenExpired`) and close both ways.
    ByeOnServerText(&'static str, usize, &'static str),
}

/// A TCP forwarder that injects one fault into the first connection to reach it
/// (with `--connections N` any of the open ones may carry the big message) and lets
/// everything else through untouched. Plaintext servers make `CutOnServerText` work.
pub struct FaultProxy {
    pub port: u16,
    pub connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FaultProxy {
    pub fn start(server_port: u16, fault: Fault) -> FaultProxy {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let conns = connections.clone();
        let fired = Arc::new(AtomicBool::new(false));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", server_port)) else {
                    continue;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let fault = (!fired.load(Ordering::SeqCst)).then(|| fault.clone());
                // Only one connection may fire it, even when two reach it together.
                let fire = {
                    let fired = fired.clone();
                    move || !fired.swap(true, Ordering::SeqCst)
                };
                let cut = Arc::new(AtomicBool::new(false));
                let kill: Arc<dyn Fn() + Send + Sync> = {
                    let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    Arc::new(move || {
                        let _ = c.shutdown(std::net::Shutdown::Both);
                        let _ = s.shutdown(std::net::Shutdown::Both);
                    })
                };
                // client -> server
                {
                    let (mut c, mut s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    let (fault, cut, kill) = (fault.clone(), cut.clone(), kill.clone());
                    let fire = fire.clone();
                    std::thread::spawn(move || {
                        let mut sent = 0usize;
                        let mut buf = [0u8; 4096];
                        loop {
                            let n = match c.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let mut take = n;
                            if let Some(Fault::CutAfterClientBytes(limit)) = fault {
                                if sent + n >= limit && fire() {
                                    take = limit - sent;
                                    let _ = s.write_all(&buf[..take]);
                                    cut.store(true, Ordering::SeqCst);
                                    kill();
                                    break;
                                }
                            }
                            if cut.load(Ordering::SeqCst) || s.write_all(&buf[..take]).is_err() {
                                break;
                            }
                            sent += take;
                        }
                        let _ = s.shutdown(std::net::Shutdown::Write);
                    });
                }
                // server -> client
                {
                    let (mut c, mut s) = (client, server);
                    std::thread::spawn(move || {
                        let mut got = 0usize;
                        let mut seen = 0usize;
                        let mut tail: Vec<u8> = Vec::new();
                        let mut buf = [0u8; 4096];
                        loop {
                            let n = match s.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let chunk = &buf[..n];
                            match &fault {
                                Some(Fault::CutAfterServerBytes(limit))
                                    if got + n >= *limit && fire() =>
                                {
                                    let _ = c.write_all(&chunk[..limit - got]);
                                    kill();
                                    break;
                                }
                                Some(Fault::StallAfterServerBytes(limit))
                                    if got + n >= *limit && fire() =>
                                {
                                    let _ = c.write_all(&chunk[..limit - got]);
                                    // Hold both sockets open and forward nothing more.
                                    std::thread::sleep(std::time::Duration::from_secs(600));
                                    break;
                                }
                                Some(Fault::ByeOnServerText(text, nth, bye)) => {
                                    let at: Vec<usize> = chunk
                                        .windows(text.len())
                                        .enumerate()
                                        .filter(|(_, w)| *w == text.as_bytes())
                                        .map(|(i, _)| i)
                                        .collect();
                                    if seen + at.len() >= *nth && fire() {
                                        let i = at[*nth - seen - 1];
                                        let end = chunk[i..]
                                            .windows(2)
                                            .position(|w| w == b"\r\n")
                                            .map_or(chunk.len(), |p| i + p + 2);
                                        let _ = c.write_all(&chunk[..end]);
                                        let _ = c.write_all(format!("{bye}\r\n").as_bytes());
                                        kill();
                                        break;
                                    }
                                    seen += at.len();
                                }
                                Some(Fault::CutOnServerText(text, nth)) => {
                                    tail.extend_from_slice(chunk);
                                    let hits = tail
                                        .windows(text.len())
                                        .filter(|w| *w == text.as_bytes())
                                        .count();
                                    if seen + hits >= *nth && fire() {
                                        kill();
                                        break;
                                    }
                                    seen += hits;
                                    let keep = tail.len().saturating_sub(text.len() - 1);
                                    tail.drain(..keep);
                                }
                                _ => {}
                            }
                            if c.write_all(chunk).is_err() {
                                break;
                            }
                            got += n;
                        }
                        let _ = c.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        FaultProxy { port, connections }
    }
}

/// `scripts/wanproxy.py` in front of `port`: a link of `rtt_ms` round trip.
pub struct Wan {
    child: std::process::Child,
    pub port: u16,
}

impl Wan {
    pub fn start(dir: &std::path::Path, port: u16, rtt_ms: u32) -> Wan {
        let port_file = dir.join(format!("wan-{port}.port"));
        let mut wan = Wan {
            child: std::process::Command::new("python3")
                .arg(super::dovecot::root().join("scripts/wanproxy.py"))
                .args(["--to", &format!("127.0.0.1:{port}")])
                .args(["--rtt", &rtt_ms.to_string(), "--mbit", "0"])
                .arg("--port-file")
                .arg(&port_file)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("python3 wanproxy.py"),
            port: 0,
        };
        // Dropped (the proxy stopped) if it never says its port.
        let started = std::time::Instant::now();
        loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                wan.port = p;
                return wan;
            }
            assert!(started.elapsed().as_secs() < 10, "wanproxy did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
