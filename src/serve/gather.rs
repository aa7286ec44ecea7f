//! Commands spread over shards: a [`Part`] runs on each shard that owns some of the keys (or
//! on every shard), and a [`Gather`] collects the parts' results and builds the one reply in
//! the order Redis would answer. Owns the parts and the gathering; routing is `protocol.rs`'.
//!
//! Atomicity: each shard applies its part atomically (one log record batch), but a command
//! spread over shards is not atomic across them (as in Redis Cluster, where such commands
//! are refused unless the keys share a hash slot). Keys that share a hash tag (`{user1}:a`,
//! `{user1}:b`) always live on one shard, and a command whose keys share one shard runs whole.

use std::rc::Rc;
use std::sync::{Arc, Mutex};

use percore::transport::Responder;

use super::cmd_keys::{self, ScanOpts};
use super::cmd_set;
use super::cmd_string;
use super::db::{Bytes, Value, now_ms};
use super::resp::Out;
use super::shard::Shard;

/// A shard's piece of a command.
pub enum Part {
    /// MGET of these keys.
    MGet(Vec<Vec<u8>>),
    /// MSET of these pairs.
    MSet(Vec<(Vec<u8>, Vec<u8>)>),
    /// DEL / UNLINK of these keys.
    Del(Vec<Vec<u8>>),
    /// EXISTS of these keys.
    Exists(Vec<Vec<u8>>),
    /// KEYS with this pattern.
    Keys(Vec<u8>),
    /// DBSIZE.
    DbSize,
    /// FLUSHDB / FLUSHALL.
    Flush,
    /// The members of these sets (SINTER SUNION SDIFF).
    Members(Vec<Vec<u8>>),
    /// One SCAN step from this position.
    Scan(u64, ScanOpts),
    /// SAVE / BGSAVE.
    Save,
    /// INFO's figures.
    Info,
    /// RENAME's first half: take `src`, store it as `dst` (here or on the shard given).
    Rename {
        /// Source key (on this shard).
        src: Vec<u8>,
        /// Destination key.
        dst: Vec<u8>,
        /// The destination's shard when it is another one.
        to: Option<percore::runtime::Addr<super::shard::ShardActor>>,
    },
}

/// One shard's figures for INFO.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShardInfo {
    pub keys: usize,
    pub expires: usize,
    pub expired_keys: u64,
    pub hits: u64,
    pub misses: u64,
    pub bytes: usize,
    pub dirty: u64,
    pub last_save: u64,
    pub blocked: usize,
}

/// What a part produced.
pub enum PartOut {
    /// Encoded reply elements.
    Items(Vec<Vec<u8>>),
    /// A count.
    Int(i64),
    /// Done.
    Unit,
    /// Each key's members; `Err` for a key of another type.
    Sets(Result<Vec<Vec<Bytes>>, ()>),
    /// SCAN: keys and the shard's next position.
    Scan(Vec<Vec<u8>>, u64),
    /// INFO figures.
    Info(ShardInfo),
    /// An error reply (the whole command answers with the first one).
    Err(String),
    /// RENAME's source went on to the destination shard, which replies itself.
    Forwarded,
}

type Finish = Box<dyn FnOnce(Vec<PartOut>) -> Vec<u8> + Send>;

struct State {
    outs: Vec<Option<PartOut>>,
    left: usize,
    finish: Option<Finish>,
    resp: Option<Responder>,
}

/// Collects the parts of one command and replies once all are in.
pub struct Gather {
    st: Mutex<State>,
}

impl Gather {
    /// A gather of `n` parts answering through `resp` with `finish(parts in order)`.
    pub fn new(n: usize, resp: Responder, finish: Finish) -> Arc<Gather> {
        Self::with(n, Some(resp), finish)
    }

    /// A gather nobody waits for (BGSAVE): `finish` still runs when all parts are in.
    pub fn new_detached(n: usize, finish: Finish) -> Arc<Gather> {
        Self::with(n, None, finish)
    }

    fn with(n: usize, resp: Option<Responder>, finish: Finish) -> Arc<Gather> {
        Arc::new(Gather {
            st: Mutex::new(State {
                outs: (0..n).map(|_| None).collect(),
                left: n,
                finish: Some(finish),
                resp,
            }),
        })
    }

    /// Part `i` is done.
    pub fn complete(&self, i: usize, out: PartOut) {
        let done = {
            let Ok(mut st) = self.st.lock() else { return };
            if i >= st.outs.len() || st.outs[i].is_some() {
                return;
            }
            if matches!(out, PartOut::Forwarded) {
                // The destination shard answers; nothing more to gather.
                st.resp = None;
                st.finish = None;
            }
            st.outs[i] = Some(out);
            st.left -= 1;
            if st.left > 0 {
                return;
            }
            let outs: Vec<PartOut> = st.outs.iter_mut().filter_map(Option::take).collect();
            (outs, st.finish.take(), st.resp.take())
        };
        let (outs, finish, resp) = done;
        let Some(finish) = finish else { return };
        let err = outs.iter().find_map(|o| match o {
            PartOut::Err(e) => Some(e.clone()),
            _ => None,
        });
        let bytes = match err {
            Some(e) => {
                let mut o = Out::new();
                o.error(&e);
                o.into_bytes()
            }
            None => finish(outs),
        };
        if let Some(resp) = resp {
            resp.send(bytes, false);
        }
    }
}

/// Completes part `i` once this shard's changes are durable (at once unless `always`).
fn complete_durable(s: &Rc<Shard>, g: Arc<Gather>, i: usize, out: PartOut) {
    let mut slot = Some((g, out));
    let r = s.commit_reply(Vec::new(), || {
        let (g, out) = slot.take().expect("taken once");
        Box::new(move |bytes: Vec<u8>| {
            if bytes.is_empty() {
                g.complete(i, out);
            } else {
                // The log write failed: `bytes` is the MISCONF error reply.
                let text = String::from_utf8_lossy(&bytes[1..bytes.len() - 2]).into_owned();
                g.complete(i, PartOut::Err(text));
            }
        })
    });
    if let (Ok(_), Some((g, out))) = (r, slot) {
        g.complete(i, out);
    }
}

fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(Vec::as_slice).collect()
}

/// Runs part `i` of gather `g` on shard `s`.
pub async fn run_part(s: &Rc<Shard>, p: Part, g: Arc<Gather>, i: usize) {
    if let Part::Save = p {
        let out = match s.save().await {
            Ok(()) => PartOut::Unit,
            Err(e) => PartOut::Err(format!("ERR {e}")),
        };
        return g.complete(i, out);
    }
    run_part_now(s, p, g, i);
}

/// [`run_part`] for every part but SAVE (which waits for the disk): runs at once.
pub fn run_part_now(s: &Rc<Shard>, p: Part, g: Arc<Gather>, i: usize) {
    let mut db = s.db.borrow_mut();
    db.tick(now_ms());
    let out = match p {
        Part::MGet(keys) => PartOut::Items(cmd_string::mget_part(&mut db, &refs(&keys))),
        Part::Exists(keys) => PartOut::Int(cmd_keys::exists_part(&mut db, &refs(&keys))),
        Part::Keys(pat) => PartOut::Items(cmd_keys::keys_part(&mut db, &pat)),
        Part::DbSize => PartOut::Int(db.len() as i64),
        Part::Members(keys) => PartOut::Sets(cmd_set::members_part(&mut db, &refs(&keys))),
        Part::Scan(pos, o) => {
            let (keys, next) = cmd_keys::scan_part(&mut db, pos, &o);
            PartOut::Scan(keys, next)
        }
        Part::Info => PartOut::Info(ShardInfo {
            keys: db.len(),
            expires: db.volatile(),
            expired_keys: db.stats.expired_keys,
            hits: db.stats.keyspace_hits,
            misses: db.stats.keyspace_misses,
            bytes: db.approx_bytes(),
            dirty: s.dirty.get(),
            last_save: s.last_save.get(),
            blocked: s.blocked(),
        }),
        Part::Save => unreachable!("run_part handles SAVE"),
        Part::MSet(pairs) => {
            drop(db);
            if s.make_room().is_err() {
                return complete_durable(s, g, i, PartOut::Err(super::evict::OOM.into()));
            }
            let mut db = s.db.borrow_mut();
            let p: Vec<(&[u8], &[u8])> = pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
            cmd_string::mset_part(&mut db, &p);
            drop(db);
            return complete_durable(s, g, i, PartOut::Unit);
        }
        Part::Del(keys) => {
            let n = cmd_keys::del_part(&mut db, &refs(&keys));
            drop(db);
            return complete_durable(s, g, i, PartOut::Int(n));
        }
        Part::Flush => {
            db.clear();
            drop(db);
            return complete_durable(s, g, i, PartOut::Unit);
        }
        Part::Rename { src, dst, to } => {
            if !db.contains(&src) {
                return g.complete(i, PartOut::Err("ERR no such key".into()));
            }
            if src == dst {
                return g.complete(i, PartOut::Unit);
            }
            let exp = db.expire_at(&src);
            let Some(v) = db.remove(&src) else {
                return g.complete(i, PartOut::Err("ERR no such key".into()));
            };
            match to {
                None => {
                    db.insert(&dst, v, exp);
                    drop(db);
                    return complete_durable(s, g, i, PartOut::Unit);
                }
                Some(addr) => {
                    drop(db);
                    return forward_rename(s, g, i, addr, dst, v, exp);
                }
            }
        }
    };
    drop(db);
    g.complete(i, out);
}

/// Sends RENAME's value on to the destination shard, which replies through the gather's
/// responder.
fn forward_rename(
    s: &Rc<Shard>,
    g: Arc<Gather>,
    i: usize,
    addr: percore::runtime::Addr<super::shard::ShardActor>,
    dst: Vec<u8>,
    v: Value,
    exp: Option<u64>,
) {
    // The source's removal is logged first (the value is in flight between shards; a crash
    // before the destination logs it loses the key — RENAME across shards is not atomic).
    let _ = s.commit_reply(Vec::new(), || Box::new(|_| {}));
    let resp = {
        let Ok(mut st) = g.st.lock() else { return };
        st.resp.take()
    };
    let Some(resp) = resp else { return };
    g.complete(i, PartOut::Forwarded);
    let msg = super::shard::ShardMsg::RenameInto(dst, v, exp, resp);
    if let Err(e) = addr.try_tell(msg) {
        let msg = e.into_inner();
        super::shard::spawn(async move {
            let _ = addr.tell(msg).await;
        });
    }
}

/// Redis's INFO keyspace line and the other sections' figures summed over shards.
pub fn sum_info(outs: &[PartOut]) -> ShardInfo {
    let mut t = ShardInfo::default();
    for o in outs {
        if let PartOut::Info(i) = o {
            t.keys += i.keys;
            t.expires += i.expires;
            t.expired_keys += i.expired_keys;
            t.hits += i.hits;
            t.misses += i.misses;
            t.bytes += i.bytes;
            t.dirty += i.dirty;
            t.blocked += i.blocked;
            t.last_save = t.last_save.max(i.last_save);
        }
    }
    t
}

/// SINTER / SUNION / SDIFF's reply from per-shard parts: `order[j]` = (part, index in part)
/// of the j-th key of the command.
pub fn finish_setop(op: cmd_set::SetOp, order: Vec<(usize, usize)>) -> Finish {
    Box::new(move |outs| {
        let mut per: Vec<Vec<Vec<Bytes>>> = Vec::with_capacity(outs.len());
        for o in outs {
            match o {
                PartOut::Sets(Ok(v)) => per.push(v),
                _ => {
                    let mut e = Out::new();
                    e.error(super::db::WRONGTYPE);
                    return e.into_bytes();
                }
            }
        }
        let sets: Vec<Vec<Bytes>> = order
            .iter()
            .map(|&(p, j)| std::mem::take(&mut per[p][j]))
            .collect();
        let mut out = Out::new();
        cmd_set::combine(op, sets, &mut out);
        out.into_bytes()
    })
}
