//! Pub/sub across the whole server: channel and pattern subscriptions of every connection,
//! whatever core serves it, and PUBLISH pushing `message` / `pmessage` to each subscriber
//! through the transport's [`Pusher`]. One registry behind a mutex: channels are few and
//! touched on (un)subscribe and publish only, never on the key path; a published message is
//! encoded once per subscriber outside the lock. Owns subscriptions; the replies' wire format
//! is RESP2's (arrays of `subscribe`, `message`, ...).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use percore::transport::Pusher;

use super::cmd_keys::glob_match;
use super::resp::Out;

#[derive(Default)]
struct Subs {
    /// Channel → connection → its pusher.
    channels: HashMap<Vec<u8>, BTreeMap<u64, Pusher>>,
    /// Pattern → connection → its pusher.
    patterns: HashMap<Vec<u8>, BTreeMap<u64, Pusher>>,
    /// Connection → (its channels, its patterns), in subscription order.
    conns: HashMap<u64, Names>,
}

/// A connection's channels and patterns.
type Names = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// The registry.
#[derive(Default)]
pub struct PubSub {
    subs: Mutex<Subs>,
    /// Connections with at least one subscription (lets every other command skip the lock).
    active: AtomicUsize,
}

fn reply3(out: &mut Out, kind: &str, name: Option<&[u8]>, n: usize) {
    out.array(3);
    out.bulk(kind.as_bytes());
    out.opt_bulk(name);
    out.int(n as i64);
}

impl PubSub {
    /// Whether any connection is subscribed.
    pub fn any(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0
    }

    /// Subscriptions of `conn` (channels plus patterns).
    pub fn count(&self, conn: u64) -> usize {
        if !self.any() {
            return 0;
        }
        self.subs
            .lock()
            .map(|s| s.conns.get(&conn).map_or(0, |(c, p)| c.len() + p.len()))
            .unwrap_or(0)
    }

    /// SUBSCRIBE (`pattern`: PSUBSCRIBE): one confirmation per name in `out`.
    pub fn subscribe(
        &self,
        conn: u64,
        pusher: &Pusher,
        names: &[&[u8]],
        pattern: bool,
        out: &mut Out,
    ) {
        let Ok(mut s) = self.subs.lock() else { return };
        let was = s
            .conns
            .get(&conn)
            .is_some_and(|(c, p)| c.len() + p.len() > 0);
        for &n in names {
            let table = if pattern {
                &mut s.patterns
            } else {
                &mut s.channels
            };
            let new = table
                .entry(n.to_vec())
                .or_default()
                .insert(conn, pusher.clone())
                .is_none();
            let e = s.conns.entry(conn).or_default();
            let list = if pattern { &mut e.1 } else { &mut e.0 };
            if new {
                list.push(n.to_vec());
            }
            let total = e.0.len() + e.1.len();
            reply3(
                out,
                if pattern { "psubscribe" } else { "subscribe" },
                Some(n),
                total,
            );
        }
        let now = s
            .conns
            .get(&conn)
            .is_some_and(|(c, p)| c.len() + p.len() > 0);
        if now && !was {
            self.active.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// UNSUBSCRIBE (`pattern`: PUNSUBSCRIBE); no names: every one of that kind.
    pub fn unsubscribe(&self, conn: u64, names: &[&[u8]], pattern: bool, out: &mut Out) {
        let kind = if pattern {
            "punsubscribe"
        } else {
            "unsubscribe"
        };
        let Ok(mut s) = self.subs.lock() else { return };
        let was = s
            .conns
            .get(&conn)
            .is_some_and(|(c, p)| c.len() + p.len() > 0);
        let names: Vec<Vec<u8>> = if names.is_empty() {
            s.conns
                .get(&conn)
                .map(|(c, p)| if pattern { p.clone() } else { c.clone() })
                .unwrap_or_default()
        } else {
            names.iter().map(|n| n.to_vec()).collect()
        };
        if names.is_empty() {
            let total = s.conns.get(&conn).map_or(0, |(c, p)| c.len() + p.len());
            reply3(out, kind, None, total);
        }
        for n in names {
            let table = if pattern {
                &mut s.patterns
            } else {
                &mut s.channels
            };
            if let Some(m) = table.get_mut(&n) {
                m.remove(&conn);
                if m.is_empty() {
                    table.remove(&n);
                }
            }
            let e = s.conns.entry(conn).or_default();
            let list = if pattern { &mut e.1 } else { &mut e.0 };
            list.retain(|x| *x != n);
            let total = e.0.len() + e.1.len();
            reply3(out, kind, Some(&n), total);
        }
        let now = s
            .conns
            .get(&conn)
            .is_some_and(|(c, p)| c.len() + p.len() > 0);
        if !now {
            s.conns.remove(&conn);
        }
        if was && !now {
            self.active.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Forgets a closed connection.
    pub fn drop_conn(&self, conn: u64) {
        if !self.any() {
            return;
        }
        let mut sink = Out::new();
        self.unsubscribe(conn, &[], false, &mut sink);
        self.unsubscribe(conn, &[], true, &mut sink);
    }

    /// PUBLISH: pushes `msg` to every subscriber of `channel` and of a matching pattern;
    /// returns how many received it.
    pub fn publish(&self, channel: &[u8], msg: &[u8]) -> usize {
        if !self.any() {
            return 0;
        }
        let targets: Vec<(Option<Vec<u8>>, Pusher)> = {
            let Ok(s) = self.subs.lock() else { return 0 };
            let mut t: Vec<(Option<Vec<u8>>, Pusher)> = s
                .channels
                .get(channel)
                .map(|m| m.values().map(|p| (None, p.clone())).collect())
                .unwrap_or_default();
            for (pat, m) in &s.patterns {
                if glob_match(pat, channel) {
                    t.extend(m.values().map(|p| (Some(pat.clone()), p.clone())));
                }
            }
            t
        };
        let mut plain = Out::new();
        plain.array(3);
        plain.bulk(b"message");
        plain.bulk(channel);
        plain.bulk(msg);
        let plain = plain.into_bytes();
        for (pat, p) in &targets {
            match pat {
                None => p.push(plain.clone()),
                Some(pat) => {
                    let mut o = Out::new();
                    o.array(4);
                    o.bulk(b"pmessage");
                    o.bulk(pat);
                    o.bulk(channel);
                    o.bulk(msg);
                    p.push(o.into_bytes());
                }
            }
        }
        targets.len()
    }

    /// PUBSUB CHANNELS [pattern]: active channels.
    pub fn channels(&self, pattern: Option<&[u8]>) -> Vec<Vec<u8>> {
        let Ok(s) = self.subs.lock() else {
            return Vec::new();
        };
        let mut v: Vec<Vec<u8>> = s
            .channels
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob_match(p, c)))
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// PUBSUB NUMSUB: subscribers of a channel.
    pub fn numsub(&self, channel: &[u8]) -> usize {
        self.subs
            .lock()
            .map(|s| s.channels.get(channel).map_or(0, BTreeMap::len))
            .unwrap_or(0)
    }

    /// PUBSUB NUMPAT: patterns subscribed (counted once per connection, as Redis does).
    pub fn numpat(&self) -> usize {
        self.subs
            .lock()
            .map(|s| s.patterns.values().map(BTreeMap::len).sum())
            .unwrap_or(0)
    }
}
