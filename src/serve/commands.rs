//! The command table: every command's name, arity and flags and key positions (as COMMAND
//! reports them to clients such as redis-cli), how it is routed, and the function that runs
//! it on a shard. Owns the table and the lookup; the commands live in `cmd_*.rs`, routing in
//! `protocol.rs`.

use std::collections::HashMap;

use super::cmd_hash as h;
use super::cmd_keys as k;
use super::cmd_list as l;
use super::cmd_set as s;
use super::cmd_string as st;
use super::db::Db;
use super::resp::{Cmd, Out};

/// Runs a command on one shard's keyspace.
pub type Exec = fn(&mut Db, &Cmd, &mut Out);

/// How a command is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// One key, at argument 1: runs on the shard that owns it.
    Key,
    /// Several keys (positions from `first`, `last`, `step`): runs whole on their shard when
    /// they share one, else in parts on each shard, gathered in command order.
    Keys,
    /// Every shard (KEYS, DBSIZE, FLUSHDB, SCAN, SAVE...): gathered.
    All,
    /// Answered by the connection's side without touching a shard (PING, AUTH, INFO...).
    Server,
}

/// One command.
#[derive(Debug)]
pub struct Spec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis arity: `n` exactly n arguments (the name counted), `-n` at least n.
    pub arity: i32,
    /// COMMAND's flags.
    pub flags: &'static [&'static str],
    /// First key position (0: none).
    pub first: i32,
    /// Last key position (-1: the last argument).
    pub last: i32,
    /// Step between keys.
    pub step: i32,
    /// Routing.
    pub route: Route,
    /// The shard function (`None` for server commands and the ones gathered specially).
    pub exec: Option<Exec>,
}

const W: &[&str] = &["write", "denyoom"];
const WF: &[&str] = &["write", "denyoom", "fast"];
const WNF: &[&str] = &["write", "fast"];
const R: &[&str] = &["readonly"];
const RF: &[&str] = &["readonly", "fast"];
const A: &[&str] = &["admin", "noscript"];
const F: &[&str] = &["fast"];
const PS: &[&str] = &["pubsub", "noscript", "loading", "stale"];

const fn spec(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    keys: (i32, i32, i32),
    route: Route,
    exec: Option<Exec>,
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        first: keys.0,
        last: keys.1,
        step: keys.2,
        route,
        exec,
    }
}

fn del(db: &mut Db, c: &Cmd, out: &mut Out) {
    let keys: Vec<&[u8]> = c.args().skip(1).collect();
    out.int(k::del_part(db, &keys));
}

fn exists(db: &mut Db, c: &Cmd, out: &mut Out) {
    let keys: Vec<&[u8]> = c.args().skip(1).collect();
    out.int(k::exists_part(db, &keys));
}

const ONE: (i32, i32, i32) = (1, 1, 1);
const NONE: (i32, i32, i32) = (0, 0, 0);
const ALL_KEYS: (i32, i32, i32) = (1, -1, 1);

use Route::{All, Key, Keys, Server};

/// Every command, sorted by name (looked up by binary search).
pub static TABLE: &[Spec] = &[
    spec("append", 3, WF, ONE, Key, Some(st::append)),
    spec(
        "auth",
        -2,
        &["noscript", "loading", "stale", "fast", "no_auth"],
        NONE,
        Server,
        None,
    ),
    spec("bgsave", -1, A, NONE, All, None),
    spec("blpop", -3, &["write", "noscript"], (1, -2, 1), Keys, None),
    spec("brpop", -3, &["write", "noscript"], (1, -2, 1), Keys, None),
    spec(
        "client",
        -2,
        &["admin", "noscript", "loading", "stale"],
        NONE,
        Server,
        None,
    ),
    spec(
        "command",
        -1,
        &["random", "loading", "stale"],
        NONE,
        Server,
        None,
    ),
    spec(
        "config",
        -2,
        &["admin", "noscript", "loading", "stale"],
        NONE,
        Server,
        None,
    ),
    spec("dbsize", 1, RF, NONE, All, None),
    spec("decr", 2, WF, ONE, Key, Some(st::decr)),
    spec("decrby", 3, WF, ONE, Key, Some(st::decrby)),
    spec("del", -2, &["write"], ALL_KEYS, Keys, Some(del)),
    spec("discard", 1, F, NONE, Server, None),
    spec("echo", 2, F, NONE, Server, None),
    spec(
        "exec",
        1,
        &["noscript", "loading", "stale"],
        NONE,
        Server,
        None,
    ),
    spec("exists", -2, RF, ALL_KEYS, Keys, Some(exists)),
    spec("expire", -3, WNF, ONE, Key, Some(k::expire)),
    spec("expireat", -3, WNF, ONE, Key, Some(k::expireat)),
    spec("expiretime", 2, RF, ONE, Key, Some(k::expiretime)),
    spec("flushall", -1, &["write"], NONE, All, None),
    spec("flushdb", -1, &["write"], NONE, All, None),
    spec("get", 2, RF, ONE, Key, Some(st::get)),
    spec("getdel", 2, WNF, ONE, Key, Some(st::getdel)),
    spec("getset", 3, WF, ONE, Key, Some(st::getset)),
    spec("hdel", -3, WNF, ONE, Key, Some(h::hdel)),
    spec(
        "hello",
        -1,
        &["noscript", "loading", "stale", "fast", "no_auth"],
        NONE,
        Server,
        None,
    ),
    spec("hexists", 3, RF, ONE, Key, Some(h::hexists)),
    spec("hget", 3, RF, ONE, Key, Some(h::hget)),
    spec("hgetall", 2, R, ONE, Key, Some(h::hgetall)),
    spec("hincrby", 4, WF, ONE, Key, Some(h::hincrby)),
    spec("hincrbyfloat", 4, WF, ONE, Key, Some(h::hincrbyfloat)),
    spec("hkeys", 2, R, ONE, Key, Some(h::hkeys)),
    spec("hlen", 2, RF, ONE, Key, Some(h::hlen)),
    spec("hmget", -3, RF, ONE, Key, Some(h::hmget)),
    spec("hmset", -4, WF, ONE, Key, Some(h::hmset)),
    spec("hset", -4, WF, ONE, Key, Some(h::hset)),
    spec("hsetnx", 4, WF, ONE, Key, Some(h::hsetnx)),
    spec("hstrlen", 3, RF, ONE, Key, Some(h::hstrlen)),
    spec("hvals", 2, R, ONE, Key, Some(h::hvals)),
    spec("incr", 2, WF, ONE, Key, Some(st::incr)),
    spec("incrby", 3, WF, ONE, Key, Some(st::incrby)),
    spec("incrbyfloat", 3, WF, ONE, Key, Some(st::incrbyfloat)),
    spec(
        "info",
        -1,
        &["random", "loading", "stale"],
        NONE,
        Server,
        None,
    ),
    spec("keys", 2, &["readonly"], NONE, All, None),
    spec(
        "lastsave",
        1,
        &["random", "loading", "stale", "fast"],
        NONE,
        Server,
        None,
    ),
    spec("lindex", 3, R, ONE, Key, Some(l::lindex)),
    spec("llen", 2, RF, ONE, Key, Some(l::llen)),
    spec("lpop", -2, WNF, ONE, Key, Some(l::lpop)),
    spec("lpush", -3, WF, ONE, Key, Some(l::lpush)),
    spec("lpushx", -3, WF, ONE, Key, Some(l::lpushx)),
    spec("lrange", 4, R, ONE, Key, Some(l::lrange)),
    spec("lrem", 4, &["write"], ONE, Key, Some(l::lrem)),
    spec("lset", 4, W, ONE, Key, Some(l::lset)),
    spec("ltrim", 4, &["write"], ONE, Key, Some(l::ltrim)),
    spec("mget", -2, RF, ALL_KEYS, Keys, Some(st::mget)),
    spec("mset", -3, W, (1, -1, 2), Keys, Some(st::mset)),
    spec("msetnx", -3, W, (1, -1, 2), Keys, Some(st::msetnx)),
    spec("multi", 1, F, NONE, Server, None),
    spec("persist", 2, WNF, ONE, Key, Some(k::persist)),
    spec("pexpire", -3, WNF, ONE, Key, Some(k::pexpire)),
    spec("pexpireat", -3, WNF, ONE, Key, Some(k::pexpireat)),
    spec("pexpiretime", 2, RF, ONE, Key, Some(k::pexpiretime)),
    spec("ping", -1, F, NONE, Server, None),
    spec("psetex", 4, W, ONE, Key, Some(st::psetex)),
    spec("psubscribe", -2, PS, NONE, Server, None),
    spec("pttl", 2, RF, ONE, Key, Some(k::pttl)),
    spec(
        "publish",
        3,
        &["pubsub", "loading", "stale", "fast"],
        NONE,
        Server,
        None,
    ),
    spec(
        "pubsub",
        -2,
        &["pubsub", "random", "loading", "stale"],
        NONE,
        Server,
        None,
    ),
    spec("punsubscribe", -1, PS, NONE, Server, None),
    spec(
        "quit",
        -1,
        &["noscript", "loading", "stale", "fast", "no_auth"],
        NONE,
        Server,
        None,
    ),
    spec("rename", 3, &["write"], (1, 2, 1), Keys, None),
    spec("rpop", -2, WNF, ONE, Key, Some(l::rpop)),
    spec("rpush", -3, WF, ONE, Key, Some(l::rpush)),
    spec("rpushx", -3, WF, ONE, Key, Some(l::rpushx)),
    spec("sadd", -3, WF, ONE, Key, Some(s::sadd)),
    spec("save", 1, A, NONE, All, None),
    spec("scan", -2, &["readonly"], NONE, All, None),
    spec("scard", 2, RF, ONE, Key, Some(s::scard)),
    spec("sdiff", -2, R, ALL_KEYS, Keys, Some(s::sdiff)),
    spec(
        "select",
        2,
        &["loading", "stale", "fast"],
        NONE,
        Server,
        None,
    ),
    spec("set", -3, W, ONE, Key, Some(st::set)),
    spec("setex", 4, W, ONE, Key, Some(st::setex)),
    spec("setnx", 3, WF, ONE, Key, Some(st::setnx)),
    spec("sinter", -2, R, ALL_KEYS, Keys, Some(s::sinter)),
    spec("sismember", 3, RF, ONE, Key, Some(s::sismember)),
    spec("smembers", 2, R, ONE, Key, Some(s::smembers)),
    spec("smismember", -3, RF, ONE, Key, Some(s::smismember)),
    spec("srem", -3, WNF, ONE, Key, Some(s::srem)),
    spec("strlen", 2, RF, ONE, Key, Some(st::strlen)),
    spec("subscribe", -2, PS, NONE, Server, None),
    spec("sunion", -2, R, ALL_KEYS, Keys, Some(s::sunion)),
    spec(
        "time",
        1,
        &["random", "loading", "stale", "fast"],
        NONE,
        Server,
        None,
    ),
    spec("ttl", 2, RF, ONE, Key, Some(k::ttl)),
    spec("type", 2, RF, ONE, Key, Some(k::type_)),
    spec("unlink", -2, WNF, ALL_KEYS, Keys, Some(del)),
    spec("unsubscribe", -1, PS, NONE, Server, None),
    spec("wait", 3, &["noscript"], NONE, Server, None),
];

/// The command named `name` (any case): one hash lookup (a binary search over the names was
/// 3.7 % of the server's CPU time under `redis-benchmark -t get`).
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    static BY_NAME: std::sync::OnceLock<HashMap<&'static [u8], &'static Spec, FixedHash>> =
        std::sync::OnceLock::new();
    if name.len() > 16 {
        return None;
    }
    let mut buf = [0u8; 16];
    let lower = &mut buf[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    let map = BY_NAME.get_or_init(|| TABLE.iter().map(|s| (s.name.as_bytes(), s)).collect());
    map.get(&*lower).copied()
}

/// The command names are ours, not a client's: a fixed-seed hash is enough.
type FixedHash = foldhash::fast::FixedState;

impl Spec {
    /// Whether `n` arguments (the name counted) fit the arity.
    pub fn arity_ok(&self, n: usize) -> bool {
        if self.arity >= 0 {
            n == self.arity as usize
        } else {
            n >= (-self.arity) as usize
        }
    }

    /// Whether the command changes data.
    pub fn is_write(&self) -> bool {
        self.flags.contains(&"write")
    }

    /// The key positions in a command of `n` arguments.
    pub fn key_positions(&self, n: usize) -> impl Iterator<Item = usize> {
        let first = self.first.max(0) as usize;
        let last = if self.last < 0 {
            n as i64 + self.last as i64
        } else {
            self.last as i64
        };
        let step = self.step.max(1) as usize;
        let end = if first == 0 {
            0
        } else {
            (last + 1).max(0) as usize
        };
        (first..end.min(n)).step_by(step)
    }

    /// COMMAND INFO's entry for this command.
    pub fn write_info(&self, out: &mut Out) {
        out.array(6);
        out.bulk(self.name.as_bytes());
        out.int(self.arity as i64);
        out.array(self.flags.len());
        for f in self.flags {
            out.simple(f);
        }
        out.int(self.first as i64);
        out.int(self.last as i64);
        out.int(self.step as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_found_in_any_case() {
        assert!(TABLE.windows(2).all(|w| w[0].name < w[1].name));
        assert_eq!(lookup(b"GeT").map(|s| s.name), Some("get"));
        assert!(lookup(b"nosuchcommand").is_none());
        let mset = lookup(b"mset").expect("mset");
        assert_eq!(mset.key_positions(5).collect::<Vec<_>>(), vec![1, 3]);
        let blpop = lookup(b"blpop").expect("blpop");
        assert_eq!(blpop.key_positions(4).collect::<Vec<_>>(), vec![1, 2]);
        assert!(!lookup(b"ping").expect("ping").arity_ok(0));
    }
}
