//! A POP3 mailbox as a source: one folder (INBOX), messages named by their UIDL.
//!
//! POP3 has no INTERNALDATE and no flags: the date is taken from the message
//! (topmost `Received:`, else `Date:`). A server without UIDL has no stable ids:
//! then every run downloads every message, and the dedupe keys alone keep copies out
//! (`stable_ids` is false, so no checkpoint is trusted). Nothing is deleted unless
//! `--delete-after` asked for it, and then only messages whose copy the target
//! confirmed in this run. Messages are read with TOP where the server offers it, so
//! they are not marked read either ([`crate::pop3::Client::peek`]).
//!
//! Nothing the server gets wrong passes silently: STAT and LIST disagreeing on the
//! number of messages, UIDL and LIST disagreeing on which messages exist, several
//! messages sharing one UIDL, and a message whose bytes are far off the size LIST
//! gave are reported through [`Source::take_anomalies`] (the run ends with exit 1).

use std::collections::{HashMap, HashSet};

use super::{Opened, Source, Tree};
use crate::decide::Meta;
use crate::imap::types::shown;
use crate::imap::ListEntry;
use crate::pop3::Session;

/// The only folder of a POP3 mailbox, as anomalies name it.
const FOLDER: &str = "INBOX";

pub struct Pop3Source {
    pub session: Option<Session>,
    pub name: String,
    /// Message number by id, from the last listing.
    numbers: HashMap<String, u32>,
    has_uidl: bool,
    /// The message count of the last STAT ([`Source::open`]), for the listing to
    /// compare with LIST.
    stat_count: Option<u32>,
    /// What the server said that did not add up, as (folder, what).
    anomalies: Vec<(String, String)>,
    /// Messages of the last fetch that were not handed over, with the reason.
    refused: Vec<(String, String)>,
}

impl Pop3Source {
    pub fn new(session: Session, name: String) -> Self {
        Pop3Source {
            session: Some(session),
            name,
            numbers: HashMap::new(),
            has_uidl: true,
            stat_count: None,
            anomalies: Vec::new(),
            refused: Vec::new(),
        }
    }

    /// A failure of the session, named after the endpoint.
    fn named(&self) -> impl Fn(crate::pop3::Pop3Error) -> anyhow::Error {
        let name = self.name.clone();
        move |e| anyhow::Error::new(e).context(name.clone())
    }

    fn s(&mut self) -> anyhow::Result<&mut Session> {
        self.session
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("the POP3 session is already closed"))
    }

    fn anomaly(&mut self, what: String) {
        // The summary drops repeats and keeps a bounded number.
        self.anomalies.push((FOLDER.to_string(), what));
    }
}

/// A message as the server sent it, judged against LIST's size: far off, it is
/// not the message (a server's notice in its place: Courier without UTF8 for a
/// message with raw UTF-8 headers), refused with why; a little off (servers that
/// list estimated sizes: Exchange, unless EnableExactRFC822Size), a note.
fn received(m: &Meta, body: Vec<u8>) -> Result<Vec<u8>, String> {
    if crate::pop3::size_far_off(&body, m.size) {
        return Err(format!(
            "the server sent {} bytes where LIST said {}, so this is not the message (a server notice in its place?); not copied",
            body.len(),
            m.size
        ));
    }
    if !crate::pop3::size_agrees(&body, m.size) {
        crate::log::info(format!(
            "message {} ({}): the server sent {} bytes where LIST said {}; copied as sent",
            m.order,
            shown(m.id.as_bytes()),
            body.len(),
            m.size
        ));
    }
    Ok(body)
}

/// Ids for the messages of a LIST (`sizes`, in any order) from a UIDL answer, and
/// what did not add up. Messages are taken in message-number order.
///
/// Several messages sharing one UIDL are distinct messages all the same (a server
/// bug, but their mail is real): each gets `UIDL#1`, `UIDL#2`, … in message-number
/// order (the smallest suffix no other message's UIDL takes), and none keeps the
/// bare UIDL. So an id checkpointed for an unshared UIDL is never given to another
/// message: should a sharer be deleted, the one left gets the bare UIDL again,
/// which no run recorded for it, and its dedupe key (checked against the target)
/// tells whether it was copied. The sharing is reported on every run while it lasts.
///
/// A message LIST has and UIDL does not gets `#N` and a problem (no stable id to
/// checkpoint it under: it fails, visibly, rather than risk being taken for
/// another); one UIDL has and LIST does not is reported.
pub fn assign_ids(sizes: &[(u32, u64)], uidl: &[(u32, String)]) -> (Vec<Meta>, Vec<String>) {
    let listed: HashSet<u32> = sizes.iter().map(|&(n, _)| n).collect();
    let by_number: HashMap<u32, &str> = uidl.iter().map(|(n, u)| (*n, u.as_str())).collect();
    let taken: HashSet<&str> = uidl
        .iter()
        .filter(|(n, _)| listed.contains(n))
        .map(|(_, u)| u.as_str())
        .collect();
    let mut anomalies = not_listed(uidl, &listed);
    let mut order: Vec<(u32, u64)> = sizes.to_vec();
    order.sort_unstable();
    let mut sharing: HashMap<&str, usize> = HashMap::new();
    for (n, _) in &order {
        if let Some(&u) = by_number.get(n) {
            *sharing.entry(u).or_default() += 1;
        }
    }
    // UIDL → the message numbers sharing it, and the ids given so far.
    let mut sharers: HashMap<&str, Vec<u32>> = HashMap::new();
    let mut given: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(order.len());
    for (n, size) in order {
        let (id, problem) = match by_number.get(&n) {
            Some(&u) => {
                let nums = sharers.entry(u).or_default();
                nums.push(n);
                let id = if sharing.get(u) == Some(&1) {
                    u.to_string()
                } else {
                    free_suffix(u, nums.len(), &taken, &given)
                };
                (id, None)
            }
            None => (
                format!("#{n}"),
                Some(format!(
                    "the server's UIDL answer has no unique id for message {n}, so it cannot be told apart from others across runs"
                )),
            ),
        };
        given.insert(id.clone());
        out.push(Meta {
            id,
            order: u64::from(n),
            size,
            flags: Vec::new(),
            internal_date: None,
            problem,
            flags_missing: false,
        });
    }
    anomalies.extend(shared_uidls(sharers));
    (out, anomalies)
}

/// The messages UIDL gives and LIST does not, as anomalies (ten named, then a count).
fn not_listed(uidl: &[(u32, String)], listed: &HashSet<u32>) -> Vec<String> {
    let mut anomalies = Vec::new();
    let mut not_listed: Vec<&(u32, String)> =
        uidl.iter().filter(|(n, _)| !listed.contains(n)).collect();
    not_listed.sort();
    for (n, u) in not_listed.iter().take(10) {
        anomalies.push(format!(
            "UIDL gave message {n} (UIDL {}) which LIST does not list; it is not copied",
            shown(u.as_bytes())
        ));
    }
    if not_listed.len() > 10 {
        anomalies.push(format!(
            "UIDL gave {} more messages which LIST does not list",
            not_listed.len() - 10
        ));
    }
    anomalies
}

/// The id of the `k`-th message sharing the UIDL `u`: `u#k`, or the next suffix no
/// message's UIDL (`taken`) and no id given so far takes.
fn free_suffix(u: &str, k: usize, taken: &HashSet<&str>, given: &HashSet<String>) -> String {
    let mut k = k;
    loop {
        let id = format!("{u}#{k}");
        if !taken.contains(id.as_str()) && !given.contains(&id) {
            break id;
        }
        k += 1;
    }
}

/// Each UIDL several messages share, as an anomaly (in the order of their first
/// message; five numbers named).
fn shared_uidls(sharers: HashMap<&str, Vec<u32>>) -> Vec<String> {
    let mut shared: Vec<(&str, Vec<u32>)> =
        sharers.into_iter().filter(|(_, v)| v.len() > 1).collect();
    shared.sort_by_key(|(_, v)| v[0]);
    shared
        .into_iter()
        .map(|(u, nums)| {
            let shown_nums: Vec<String> = nums.iter().take(5).map(u32::to_string).collect();
            let more = if nums.len() > 5 { ", …" } else { "" };
            format!(
                "{} messages (numbers {}{more}) share the UIDL {}; they are copied as distinct messages, under that UIDL with #1, #2, … appended",
                nums.len(),
                shown_nums.join(", "),
                shown(u.as_bytes()),
            )
        })
        .collect()
}

impl Source for Pop3Source {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn folders(&mut self) -> anyhow::Result<Tree> {
        Ok(Tree {
            entries: vec![ListEntry {
                attrs: Vec::new(),
                delim: None,
                raw: b"INBOX".to_vec(),
            }],
            prefix: String::new(),
            delim: None,
        })
    }

    fn open(&mut self, _raw: &[u8]) -> anyhow::Result<Opened> {
        let named = self.named();
        let (count, _) = self.s()?.stat().map_err(named)?;
        self.stat_count = Some(count);
        Ok(Opened {
            uidvalidity: 0,
            count: u64::from(count),
        })
    }

    fn listing(&mut self) -> anyhow::Result<Vec<Meta>> {
        let named = self.named();
        let sizes = self.s()?.list().map_err(&named)?;
        let uidls = self.s()?.uidl().map_err(&named)?;
        if uidls.is_none() && self.has_uidl {
            crate::log::warn(format!(
                "{}: the server has no UIDL, so messages have no stable ids: every run downloads every message and only the dedupe keys keep copies out",
                self.name
            ));
        }
        self.has_uidl = uidls.is_some();
        let stat_count = match self.stat_count {
            Some(c) => c,
            None => self.s()?.stat().map_err(&named)?.0,
        };
        if stat_count as usize != sizes.len() {
            self.anomaly(format!(
                "STAT said {stat_count} messages but LIST listed {}; the listed ones are copied",
                sizes.len()
            ));
        }
        let out = match uidls {
            Some(uidl) => {
                let (out, anomalies) = assign_ids(&sizes, &uidl);
                for a in anomalies {
                    self.anomaly(a);
                }
                out
            }
            None => {
                let mut sizes = sizes;
                sizes.sort_unstable();
                sizes
                    .into_iter()
                    .map(|(n, size)| Meta {
                        id: format!("#{n}"),
                        order: u64::from(n),
                        size,
                        flags: Vec::new(),
                        internal_date: None,
                        problem: None,
                        flags_missing: false,
                    })
                    .collect()
            }
        };
        self.numbers = out.iter().map(|m| (m.id.clone(), m.order as u32)).collect();
        Ok(out)
    }

    fn fetch(&mut self, metas: &[Meta], each: &mut dyn FnMut(&str, Vec<u8>)) -> anyhow::Result<()> {
        let named = self.named();
        // A message with a problem is failed by the engine with its reason; not
        // worth a download.
        let wanted: Vec<&Meta> = metas.iter().filter(|m| m.problem.is_none()).collect();
        let msgs: Vec<(u32, u64)> = wanted.iter().map(|m| (m.order as u32, m.size)).collect();
        let mut refused = Vec::new();
        self.s()?
            .peek_many(&msgs, &mut |i, body| {
                let m = wanted[i];
                match received(m, body) {
                    Ok(body) => each(&m.id, body),
                    Err(why) => refused.push((m.id.clone(), why)),
                }
            })
            .map_err(&named)?;
        self.refused.extend(refused);
        Ok(())
    }

    fn dates_from_headers(&self) -> bool {
        true
    }

    fn forgets(&self) -> bool {
        true
    }

    fn stable_ids(&self) -> bool {
        self.has_uidl
    }

    fn delete(&mut self, ids: &[String]) -> anyhow::Result<usize> {
        let numbers: Vec<u32> = ids
            .iter()
            .filter_map(|id| self.numbers.get(id).copied())
            .collect();
        let s = self.s()?;
        for &n in &numbers {
            s.dele(n)?;
        }
        // QUIT commits the deletions (RFC 1939 UPDATE state).
        s.quit()?;
        self.session = None;
        Ok(numbers.len())
    }

    fn take_refused(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.refused)
    }

    fn take_anomalies(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.anomalies)
    }

    fn close(&mut self) {
        if let Some(mut s) = self.session.take() {
            let _ = s.quit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(metas: &[Meta]) -> Vec<(u64, &str)> {
        metas.iter().map(|m| (m.order, m.id.as_str())).collect()
    }

    #[test]
    fn shared_uidls_take_the_first_free_suffix() {
        let taken: HashSet<&str> = ["a", "a#2"].into_iter().collect();
        let given: HashSet<String> = ["a#3".to_string()].into_iter().collect();
        for (k, want) in [(1, "a#1"), (2, "a#4"), (3, "a#4"), (5, "a#5")] {
            assert_eq!(free_suffix("a", k, &taken, &given), want, "{k}");
        }
    }

    #[test]
    fn messages_sharing_a_uidl_stay_distinct_and_are_reported() {
        let sizes = [(1, 10), (2, 20), (3, 30), (4, 40), (5, 50)];
        let uidl: Vec<(u32, String)> = [(1, "a"), (2, "b"), (3, "a"), (4, "a#2"), (5, "a")]
            .iter()
            .map(|&(n, u)| (n, u.to_string()))
            .collect();
        let (metas, anomalies) = assign_ids(&sizes, &uidl);
        // "a#2" is another message's real UIDL: the sharers skip it; none of
        // them keeps the bare "a".
        assert_eq!(
            ids(&metas),
            vec![(1, "a#1"), (2, "b"), (3, "a#3"), (4, "a#2"), (5, "a#4")]
        );
        assert!(metas.iter().all(|m| m.problem.is_none()));
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert!(
            anomalies[0].contains("3 messages (numbers 1, 3, 5) share the UIDL \"a\""),
            "{anomalies:?}"
        );
        // The same answer in another line order gives the same ids.
        let mut rev = uidl.clone();
        rev.reverse();
        let mut sizes_rev = sizes;
        sizes_rev.reverse();
        assert_eq!(assign_ids(&sizes_rev, &rev).0, metas);
    }

    #[test]
    fn uidl_and_list_disagreeing_is_never_silent() {
        let sizes = [(1, 10), (2, 20)];
        let uidl = vec![(1, "x".to_string()), (3, "gone\x1b".to_string())];
        let (metas, anomalies) = assign_ids(&sizes, &uidl);
        assert_eq!(ids(&metas), vec![(1, "x"), (2, "#2")]);
        // No id to checkpoint message 2 under: it fails, visibly.
        assert!(metas[1].problem.as_deref().unwrap().contains("message 2"));
        assert_eq!(anomalies.len(), 1);
        assert!(anomalies[0].contains("message 3"), "{anomalies:?}");
        assert!(anomalies[0].contains("\\x1b") && !anomalies[0].contains('\x1b'));
    }
}
