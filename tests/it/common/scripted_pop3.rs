//! A scripted POP3 server without UIDL.

use std::net::TcpListener;

/// A scripted POP3 server for what Dovecot cannot be made to do (a server without
/// UIDL): plaintext, USER/PASS, STAT, LIST, RETR (dot-stuffed), QUIT; UIDL and
/// anything else answer -ERR. Serves connections one after the other.
pub struct ScriptedPop3 {
    pub port: u16,
}

impl ScriptedPop3 {
    pub fn start(messages: Vec<Vec<u8>>) -> ScriptedPop3 {
        use std::io::{BufRead, BufReader, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                let _ = w.write_all(b"+OK scripted POP3 ready\r\n");
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let cmd: Vec<&str> = line.trim_end().split(' ').collect();
                    let reply: Vec<u8> = match cmd[0].to_ascii_uppercase().as_str() {
                        "CAPA" => b"+OK\r\nUSER\r\nTOP\r\n.\r\n".to_vec(),
                        "USER" | "PASS" | "NOOP" => b"+OK\r\n".to_vec(),
                        "STAT" => format!(
                            "+OK {} {}\r\n",
                            messages.len(),
                            messages.iter().map(Vec::len).sum::<usize>()
                        )
                        .into_bytes(),
                        "LIST" => {
                            let mut v = b"+OK\r\n".to_vec();
                            for (i, m) in messages.iter().enumerate() {
                                v.extend_from_slice(
                                    format!("{} {}\r\n", i + 1, m.len()).as_bytes(),
                                );
                            }
                            v.extend_from_slice(b".\r\n");
                            v
                        }
                        "RETR" => match cmd
                            .get(1)
                            .and_then(|n| n.parse::<usize>().ok())
                            .and_then(|n| messages.get(n.wrapping_sub(1)))
                        {
                            Some(m) => {
                                let mut v = b"+OK\r\n".to_vec();
                                for l in m.split_inclusive(|&c| c == b'\n') {
                                    if l.starts_with(b".") {
                                        v.push(b'.');
                                    }
                                    v.extend_from_slice(l);
                                }
                                v.extend_from_slice(b".\r\n");
                                v
                            }
                            None => b"-ERR no such message\r\n".to_vec(),
                        },
                        "QUIT" => {
                            let _ = w.write_all(b"+OK bye\r\n");
                            break;
                        }
                        _ => b"-ERR unknown command\r\n".to_vec(),
                    };
                    if w.write_all(&reply).is_err() {
                        break;
                    }
                }
            }
        });
        ScriptedPop3 { port }
    }
}
