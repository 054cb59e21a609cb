//! A scripted IMAP server for what no real server does on demand: hostile or
//! broken answers. Plaintext on 127.0.0.1 (mailferry needs `imap://` and
//! `--allow-plaintext`), one thread per connection, mailboxes shared by every
//! connection (a target keeps what was appended between runs; a test may change a
//! source between runs).
//!
//! It answers what mailferry sends (AUTHENTICATE PLAIN/LOGIN, CAPABILITY,
//! NAMESPACE, LIST, EXAMINE/SELECT, UID SEARCH, UID FETCH, CREATE, SUBSCRIBE,
//! APPEND, NOOP, LOGOUT) from its state; each message's FLAGS and INTERNALDATE are
//! raw wire text, so a test can put anything there. A [`Hook`] may answer any
//! command itself instead, with raw bytes or with a stream it writes to at will.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One message: its UID, its bytes, and its FLAGS and INTERNALDATE exactly as they
/// go on the wire (`(\Seen)`, `"01-Jan-2020 10:00:00 +0000"`).
#[derive(Clone, Debug)]
pub struct FakeMsg {
    pub uid: u32,
    pub body: Vec<u8>,
    pub flags: Vec<u8>,
    pub date: Vec<u8>,
    /// Gmail: `X-GM-LABELS` as on the wire (`("\\Inbox" "Receipts")`) and
    /// `X-GM-MSGID`, sent when a FETCH asks for them.
    pub labels: Vec<u8>,
    pub gm_msgid: u64,
}

impl FakeMsg {
    pub fn new(uid: u32, body: &[u8]) -> FakeMsg {
        FakeMsg {
            uid,
            body: body.to_vec(),
            flags: b"(\\Seen)".to_vec(),
            date: b"\"01-Jan-2020 10:00:00 +0000\"".to_vec(),
            labels: b"()".to_vec(),
            gm_msgid: 0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct FakeBox {
    /// The name as LIST sends it (an atom, a quoted string or a literal).
    pub wire: Vec<u8>,
    /// The name as commands address it (unquoted).
    pub name: Vec<u8>,
    pub messages: Vec<FakeMsg>,
    /// `[UIDVALIDITY …]` text; `None`: not sent.
    pub uidvalidity: Option<String>,
    /// Whether `* N EXISTS` is sent.
    pub exists: bool,
    /// The EXISTS sent instead of the number of messages.
    pub exists_says: Option<u32>,
    /// LIST attributes (`\\Noselect`, `\\All`, `\\Sent` …), as on the wire.
    pub attrs: String,
}

impl FakeBox {
    pub fn new(name: &str, messages: Vec<FakeMsg>) -> FakeBox {
        FakeBox {
            wire: format!("\"{name}\"").into_bytes(),
            name: name.as_bytes().to_vec(),
            messages,
            uidvalidity: Some("1700000000".into()),
            exists: true,
            exists_says: None,
            attrs: String::new(),
        }
    }

    /// With these LIST attributes.
    pub fn attrs(mut self, attrs: &str) -> FakeBox {
        self.attrs = attrs.to_string();
        self
    }
}

/// One command as received: tag, upper-cased name (`UID FETCH`, `APPEND`, …), and
/// the whole raw line (literals included).
pub struct Cmd {
    pub tag: String,
    pub name: String,
    pub raw: Vec<u8>,
}

/// Answer a command instead of the server: `Some(bytes)` are sent as they are;
/// a hook may also write to the stream itself (and loop, or never return) and
/// return `Some(vec![])`. `None`: the server answers as usual.
pub type Hook = Arc<dyn Fn(&Cmd, &mut TcpStream) -> Option<Vec<u8>> + Send + Sync>;

#[derive(Clone)]
pub struct State {
    pub boxes: Vec<FakeBox>,
    /// Sent right after connecting, instead of the usual greeting.
    pub greeting: Option<Vec<u8>>,
    pub hook: Option<Hook>,
    /// The `[APPENDUID v uid]` UIDVALIDITY; `None`: the box's own.
    pub appenduid_validity: Option<String>,
    /// Every command line received, in order.
    pub log: Vec<Vec<u8>>,
    /// The capabilities announced after login.
    pub caps: String,
    /// CREATE of these names is refused (`NO [CANNOT] …`).
    pub refuse_create: Vec<Vec<u8>>,
    /// What the server does to a message it stores (as Cyrus or Courier do).
    pub alter: Option<Alter>,
}

/// A change a server makes to what it stores.
pub type Alter = fn(&[u8]) -> Vec<u8>;

/// Cyrus: 8-bit bytes in the header become `X`.
pub fn cyrus_alter(m: &[u8]) -> Vec<u8> {
    let end = m
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(m.len(), |p| p + 4);
    let mut v: Vec<u8> = m[..end]
        .iter()
        .map(|&c| if c >= 0x80 { b'X' } else { c })
        .collect();
    v.extend_from_slice(&m[end..]);
    v
}

/// Courier: a final CRLF added to a message without one.
pub fn courier_alter(m: &[u8]) -> Vec<u8> {
    let mut v = m.to_vec();
    if !v.ends_with(b"\n") {
        v.extend_from_slice(b"\r\n");
    }
    v
}

pub struct FakeImap {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
}

const CAPS: &str = "IMAP4rev1 LITERAL+ UIDPLUS NAMESPACE ESEARCH";

impl FakeImap {
    pub fn start(boxes: Vec<FakeBox>) -> FakeImap {
        let state = Arc::new(Mutex::new(State {
            boxes,
            greeting: None,
            hook: None,
            appenduid_validity: None,
            log: Vec::new(),
            caps: CAPS.to_string(),
            refuse_create: Vec::new(),
            alter: None,
        }));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &st);
                });
            }
        });
        FakeImap { port, state }
    }

    pub fn with(self, f: impl FnOnce(&mut State)) -> FakeImap {
        f(&mut self.state.lock().unwrap());
        self
    }

    pub fn url(&self, user: &str) -> String {
        format!("imap://{user}@localhost:{}", self.port)
    }

    /// What was appended to a box (a target's view).
    pub fn messages(&self, name: &str) -> Vec<FakeMsg> {
        let st = self.state.lock().unwrap();
        st.boxes
            .iter()
            .find(|b| b.name == name.as_bytes())
            .map(|b| b.messages.clone())
            .unwrap_or_default()
    }

    pub fn log(&self) -> Vec<Vec<u8>> {
        self.state.lock().unwrap().log.clone()
    }
}

/// Read one command, literals included (a synchronising one is answered `+`).
fn read_command(r: &mut BufReader<TcpStream>, w: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut cmd = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        cmd.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line);
        let t = text.trim_end();
        let Some(open) = t.rfind('{').filter(|_| t.ends_with('}')) else {
            return Ok(cmd);
        };
        let spec = &t[open + 1..t.len() - 1];
        let (n, sync) = match spec.strip_suffix('+') {
            Some(n) => (n, false),
            None => (spec, true),
        };
        let Ok(n) = n.parse::<usize>() else {
            return Ok(cmd);
        };
        if sync {
            w.write_all(b"+ go ahead\r\n")?;
        }
        let mut lit = vec![0; n];
        r.read_exact(&mut lit)?;
        cmd.extend_from_slice(&lit);
    }
}

fn quoted_arg(raw: &[u8], skip_words: usize) -> Vec<u8> {
    // The mailbox argument after `skip_words` words: quoted, an atom, or a literal.
    let mut rest = raw;
    for _ in 0..skip_words {
        let sp = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
        rest = &rest[(sp + 1).min(rest.len())..];
    }
    if let Some(r) = rest.strip_prefix(b"\"") {
        let mut out = Vec::new();
        let mut i = 0;
        while i < r.len() && r[i] != b'"' {
            if r[i] == b'\\' {
                i += 1;
            }
            if i < r.len() {
                out.push(r[i]);
            }
            i += 1;
        }
        return out;
    }
    if rest.starts_with(b"{") {
        let nl = rest.iter().position(|&c| c == b'\n').unwrap_or(0);
        let n: usize = String::from_utf8_lossy(&rest[1..nl])
            .trim_end_matches(['\r', '}', '+'])
            .parse()
            .unwrap_or(0);
        return rest[nl + 1..(nl + 1 + n).min(rest.len())].to_vec();
    }
    let end = rest
        .iter()
        .position(|&c| c == b' ' || c == b'\r')
        .unwrap_or(rest.len());
    rest[..end].to_vec()
}

fn in_set(set: &str, uid: u32) -> bool {
    set.split(',').any(|p| match p.split_once(':') {
        Some((a, b)) => {
            let a: u32 = a.parse().unwrap_or(0);
            let b: u32 = if b == "*" {
                u32::MAX
            } else {
                b.parse().unwrap_or(0)
            };
            (a.min(b)..=a.max(b)).contains(&uid)
        }
        None => p.parse::<u32>().ok() == Some(uid),
    })
}

fn serve(conn: TcpStream, st: &Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    let greeting = st.lock().unwrap().greeting.clone();
    match greeting {
        Some(g) => w.write_all(&g)?,
        None => w.write_all(
            b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR LITERAL+] fake IMAP ready\r\n",
        )?,
    }
    let mut selected: Option<usize> = None;
    loop {
        let raw = read_command(&mut r, &mut w)?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let mut words = text.trim_end().split(' ');
        let tag = words.next().unwrap_or("").to_string();
        let first = words.next().unwrap_or("").to_ascii_uppercase();
        let name = if first == "UID" {
            format!("UID {}", words.next().unwrap_or("").to_ascii_uppercase())
        } else {
            first
        };
        let cmd = Cmd {
            tag: tag.clone(),
            name: name.clone(),
            raw: raw.clone(),
        };
        let hook = {
            let mut s = st.lock().unwrap();
            s.log.push(raw.clone());
            s.hook.clone()
        };
        if let Some(h) = hook {
            if let Some(bytes) = h(&cmd, &mut w) {
                w.write_all(&bytes)?;
                continue;
            }
        }
        let ok = |what: &str| format!("{tag} OK {what}\r\n").into_bytes();
        let caps = st.lock().unwrap().caps.clone();
        let reply: Vec<u8> = match name.as_str() {
            "AUTHENTICATE" | "LOGIN" => {
                format!("{tag} OK [CAPABILITY {caps}] logged in\r\n").into_bytes()
            }
            "CAPABILITY" => {
                let mut v = format!("* CAPABILITY {caps}\r\n").into_bytes();
                v.extend(ok("done"));
                v
            }
            "NAMESPACE" => {
                let mut v = b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n".to_vec();
                v.extend(ok("done"));
                v
            }
            "LIST" => {
                let s = st.lock().unwrap();
                let mut v = Vec::new();
                // `LIST "" name` (no wildcard) lists that one mailbox.
                let pattern = quoted_arg(&raw, 3);
                let one = !pattern.contains(&b'*') && !pattern.contains(&b'%');
                for b in s.boxes.iter().filter(|b| !one || b.name == pattern) {
                    v.extend(format!("* LIST ({}) \"/\" ", b.attrs).into_bytes());
                    v.extend_from_slice(&b.wire);
                    v.extend_from_slice(b"\r\n");
                }
                v.extend(ok("done"));
                v
            }
            "EXAMINE" | "SELECT" => {
                let mbox = quoted_arg(&raw, 2);
                let s = st.lock().unwrap();
                match s.boxes.iter().position(|b| b.name == mbox) {
                    Some(i) => {
                        selected = Some(i);
                        let b = &s.boxes[i];
                        let mut v = b"* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft)\r\n* OK [PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft \\*)] ok\r\n".to_vec();
                        if b.exists {
                            let n = b.exists_says.unwrap_or(b.messages.len() as u32);
                            v.extend(format!("* {n} EXISTS\r\n").into_bytes());
                        }
                        if let Some(u) = &b.uidvalidity {
                            v.extend(format!("* OK [UIDVALIDITY {u}] ok\r\n").into_bytes());
                        }
                        v.extend(ok("selected"));
                        v
                    }
                    None => format!("{tag} NO no such mailbox\r\n").into_bytes(),
                }
            }
            "CREATE" => {
                let mbox = quoted_arg(&raw, 2);
                let mut s = st.lock().unwrap();
                if s.refuse_create.contains(&mbox) {
                    w.write_all(format!("{tag} NO [CANNOT] Invalid mailbox name\r\n").as_bytes())?;
                    continue;
                }
                if s.boxes.iter().any(|b| b.name == mbox) {
                    // Cyrus's words: no response code.
                    w.write_all(format!("{tag} NO Mailbox already exists\r\n").as_bytes())?;
                    continue;
                }
                {
                    let mut b = FakeBox::new("", Vec::new());
                    b.wire = raw_quote(&mbox);
                    b.name = mbox;
                    s.boxes.push(b);
                }
                ok("created")
            }
            "UID SEARCH" => {
                let s = st.lock().unwrap();
                // `UID SEARCH [RETURN (ALL)] UID set` narrows to the set.
                let words: Vec<&str> = text.trim_end().split(' ').collect();
                let within = words
                    .iter()
                    .position(|w| w.eq_ignore_ascii_case("UID"))
                    .filter(|&i| i > 1)
                    .and_then(|i| words.get(i + 1).map(|s| s.to_string()));
                let uids: Vec<String> = selected
                    .map(|i| {
                        s.boxes[i]
                            .messages
                            .iter()
                            .filter(|m| within.as_deref().is_none_or(|set| in_set(set, m.uid)))
                            .map(|m| m.uid.to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                let mut v = if text.contains("RETURN") {
                    format!("* ESEARCH (TAG \"{tag}\") UID ALL {}\r\n", uids.join(",")).into_bytes()
                } else {
                    format!("* SEARCH {}\r\n", uids.join(" ")).into_bytes()
                };
                if uids.is_empty() && text.contains("RETURN") {
                    v = format!("* ESEARCH (TAG \"{tag}\") UID\r\n").into_bytes();
                }
                v.extend(ok("searched"));
                v
            }
            "UID FETCH" => {
                let set = text.split(' ').nth(3).unwrap_or("").to_string();
                let s = st.lock().unwrap();
                let mut v = Vec::new();
                if let Some(i) = selected {
                    for (n, m) in s.boxes[i].messages.iter().enumerate() {
                        if !in_set(&set, m.uid) {
                            continue;
                        }
                        v.extend(fetch_answer(n + 1, m, &text));
                    }
                }
                v.extend(ok("fetched"));
                v
            }
            "APPEND" => {
                let mbox = quoted_arg(&raw, 2);
                let open = raw.iter().position(|&c| c == b'{').unwrap_or(0);
                let nl = open + raw[open..].iter().position(|&c| c == b'\n').unwrap_or(0);
                let body = raw[nl + 1..raw.len() - 2].to_vec();
                let mut s = st.lock().unwrap();
                let body = match s.alter {
                    Some(f) => f(&body),
                    None => body,
                };
                let forced = s.appenduid_validity.clone();
                match s.boxes.iter_mut().find(|b| b.name == mbox) {
                    Some(b) => {
                        let uid = b.messages.iter().map(|m| m.uid).max().unwrap_or(0) + 1;
                        b.messages.push(FakeMsg::new(uid, &body));
                        let validity = forced
                            .or_else(|| b.uidvalidity.clone())
                            .unwrap_or_else(|| "1".into());
                        format!("{tag} OK [APPENDUID {validity} {uid}] appended\r\n").into_bytes()
                    }
                    None => format!("{tag} NO [TRYCREATE] no such mailbox\r\n").into_bytes(),
                }
            }
            "LOGOUT" => {
                w.write_all(b"* BYE bye\r\n")?;
                w.write_all(&ok("logged out"))?;
                return Ok(());
            }
            _ => ok("done"),
        };
        w.write_all(&reply)?;
    }
}

fn raw_quote(name: &[u8]) -> Vec<u8> {
    let mut v = format!("{{{}}}\r\n", name.len()).into_bytes();
    v.extend_from_slice(name);
    v
}

fn fetch_answer(seq: usize, m: &FakeMsg, cmd: &str) -> Vec<u8> {
    let mut v = format!("* {seq} FETCH (UID {}", m.uid).into_bytes();
    if cmd.contains("HEADER.FIELDS") {
        let end = m
            .body
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(m.body.len(), |p| p + 4);
        let id: Vec<u8> = m.body[..end]
            .split(|&c| c == b'\n')
            .filter(|l| l.len() > 11 && l[..11].eq_ignore_ascii_case(b"message-id:"))
            .flat_map(|l| l.iter().copied().chain(std::iter::once(b'\n')))
            .collect();
        v.extend(
            format!(
                " RFC822.SIZE {} BODY[HEADER.FIELDS (MESSAGE-ID)] {{{}}}\r\n",
                m.body.len(),
                id.len() + 2
            )
            .into_bytes(),
        );
        v.extend_from_slice(&id);
        v.extend_from_slice(b"\r\n");
    } else if cmd.contains("BODY.PEEK[]") {
        v.extend(format!(" BODY[] {{{}}}\r\n", m.body.len()).into_bytes());
        v.extend_from_slice(&m.body);
    } else {
        v.extend(format!(" RFC822.SIZE {} FLAGS ", m.body.len()).into_bytes());
        v.extend_from_slice(&m.flags);
        v.extend_from_slice(b" INTERNALDATE ");
        v.extend_from_slice(&m.date);
    }
    if cmd.contains("X-GM-LABELS") {
        v.extend_from_slice(b" X-GM-LABELS ");
        v.extend_from_slice(&m.labels);
        v.extend(format!(" X-GM-MSGID {}", m.gm_msgid).into_bytes());
    }
    v.extend_from_slice(b")\r\n");
    v
}
