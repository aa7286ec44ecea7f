//! The RESP protocol on percore's server ([`ServerProtocol`]): each connection's input is
//! decoded on its event loop, and each command is routed to the shard that owns its key — run
//! right there when that shard lives on the loop's own core (the common case with co-located
//! loops: no message, no wake-up), sent to the owner's [`ShardActor`] otherwise, or split over
//! the shards and gathered when its keys are spread. Server commands (PING, AUTH, INFO,
//! CONFIG, CLIENT, COMMAND, HELLO...) are answered on the loop. Owns routing, connection
//! sessions and server settings; the data is the shards'.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use percore::runtime::{Addr, TrySendError};
use percore::transport::{ConnInfo, Decoded, Dispatched, Responder, ServerProtocol};

use super::cmd_keys::{self, glob_match};
use super::cmd_set::SetOp;
use super::commands::{self, Route, Spec};
use super::gather::{self, Gather, Part, PartOut};
use super::resp::{self, Cmd, Limits, Out, Parsed};
use super::shard::{self, ShardActor, ShardMsg};
use super::slot;

/// A connection's session.
#[derive(Debug, Clone)]
struct Session {
    peer: Option<SocketAddr>,
    since: Instant,
    name: Option<Vec<u8>>,
    authed: bool,
    lib_name: Option<Vec<u8>>,
    lib_ver: Option<Vec<u8>>,
}

/// Settings fixed at start (shown by INFO and CONFIG GET).
#[derive(Debug, Clone)]
pub struct Fixed {
    /// The address served.
    pub addr: SocketAddr,
    /// Data directory (persistence on) or `None`.
    pub dir: Option<PathBuf>,
    /// `appendfsync` name.
    pub appendfsync: &'static str,
    /// Most clients.
    pub maxclients: usize,
}

/// Everything the protocol shares between loops.
pub struct State {
    shards: Vec<Addr<ShardActor>>,
    fixed: Fixed,
    /// Whether `requirepass` is set (read on every command without a lock).
    auth_required: AtomicBool,
    password: Mutex<Option<Vec<u8>>>,
    max_bulk: AtomicUsize,
    sessions: Mutex<HashMap<u64, Session>>,
    connections: AtomicU64,
    /// When the last SAVE / BGSAVE finished (Unix seconds; the start time before any).
    last_save: AtomicU64,
    started: Instant,
    run_id: String,
    /// Commands run, per thread (each thread writes only its own counter).
    counters: Mutex<Vec<Arc<AtomicU64>>>,
    /// Pub/sub subscriptions.
    pubsub: super::pubsub::PubSub,
    /// `maxmemory` and its policy.
    mem: Arc<super::evict::MemConfig>,
    /// Connections inside MULTI: their queued commands.
    multi: Mutex<HashMap<u64, Multi>>,
    /// How many connections are inside MULTI (lets every other command skip the lock).
    in_multi: AtomicUsize,
}

/// A transaction being queued.
#[derive(Default)]
struct Multi {
    cmds: Vec<(Cmd, &'static Spec)>,
    /// A command was refused while queuing: EXEC answers EXECABORT.
    failed: bool,
}

/// The RESP server protocol.
#[derive(Clone)]
pub struct Resp(pub Arc<State>);

thread_local! {
    static COUNTER: std::cell::OnceCell<Arc<AtomicU64>> = const { std::cell::OnceCell::new() };
}

impl State {
    /// A protocol over `shards` (shard i on app worker i).
    pub fn new(
        shards: Vec<Addr<ShardActor>>,
        fixed: Fixed,
        requirepass: Option<Vec<u8>>,
        mem: Arc<super::evict::MemConfig>,
    ) -> State {
        let run_id: String = {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("{:040x}", t ^ ((std::process::id() as u128) << 64))
        };
        State {
            shards,
            fixed,
            auth_required: AtomicBool::new(requirepass.is_some()),
            password: Mutex::new(requirepass),
            max_bulk: AtomicUsize::new(resp::DEFAULT_MAX_BULK),
            sessions: Mutex::new(HashMap::new()),
            connections: AtomicU64::new(0),
            last_save: AtomicU64::new(super::db::now_ms() / 1000),
            started: Instant::now(),
            run_id: run_id[..40].to_string(),
            counters: Mutex::new(Vec::new()),
            pubsub: super::pubsub::PubSub::default(),
            mem,
            multi: Mutex::new(HashMap::new()),
            in_multi: AtomicUsize::new(0),
        }
    }

    /// Sets `proto-max-bulk-len`.
    pub fn set_max_bulk(&self, n: usize) {
        self.max_bulk.store(n, Ordering::Relaxed);
    }

    fn count_command(&self) {
        COUNTER.with(|c| {
            let c = c.get_or_init(|| {
                let a = Arc::new(AtomicU64::new(0));
                if let Ok(mut v) = self.counters.lock() {
                    v.push(a.clone());
                }
                a
            });
            c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        });
    }

    fn commands_processed(&self) -> u64 {
        self.counters
            .lock()
            .map(|v| v.iter().map(|c| c.load(Ordering::Relaxed)).sum())
            .unwrap_or(0)
    }

    fn shard_of(&self, key: &[u8]) -> usize {
        // One shard owns every slot: no hash to compute (the CRC16 and the divisions were
        // 6 % of a one-worker server's CPU under `redis-benchmark -t get -P 16`).
        match self.shards.len() {
            1 => 0,
            n => slot::slot(key) as usize % n,
        }
    }
}

fn err(resp: Responder, msg: &str) -> Dispatched<Cmd> {
    let mut o = Out::new();
    o.error(msg);
    Dispatched::Answer(resp.answer(o.into_bytes(), false))
}

fn answer(resp: Responder, out: Out) -> Dispatched<Cmd> {
    Dispatched::Answer(resp.answer(out.into_bytes(), false))
}

/// Redis's text for an unknown command.
fn unknown(c: &Cmd) -> String {
    let mut s = format!(
        "ERR unknown command '{}', with args beginning with: ",
        String::from_utf8_lossy(c.arg(0))
    );
    for a in c.args().skip(1).take(20) {
        s.push_str(&format!("'{}' ", String::from_utf8_lossy(a)));
    }
    s
}

impl ServerProtocol for Resp {
    type Request = Cmd;

    fn decode(&self, input: &[u8]) -> Decoded<Cmd> {
        let limits = Limits {
            max_bulk: self.0.max_bulk.load(Ordering::Relaxed),
        };
        let mut at = 0;
        loop {
            match resp::parse(&input[at..], &limits) {
                Ok(Parsed::Cmd(c, n)) => return Decoded::Request(c, at + n),
                Ok(Parsed::Skip(n)) => at += n,
                Ok(Parsed::Incomplete) => return Decoded::Incomplete,
                Err(e) => {
                    let mut o = Out::new();
                    o.error(&format!("ERR {e}"));
                    return Decoded::Reject {
                        response: Some(o.into_bytes()),
                        reason: e.to_string(),
                    };
                }
            }
        }
    }

    fn dispatch(&self, req: Cmd, resp: Responder, conn: u64) -> Dispatched<Cmd> {
        self.route(req, resp, conn)
    }

    fn opened(&self, conn: &ConnInfo) {
        self.0.connections.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.0.sessions.lock() {
            s.insert(
                conn.id,
                Session {
                    peer: conn.peer,
                    since: Instant::now(),
                    name: None,
                    authed: false,
                    lib_name: None,
                    lib_ver: None,
                },
            );
        }
    }

    fn closed(&self, conn: &ConnInfo) {
        if let Ok(mut s) = self.0.sessions.lock() {
            s.remove(&conn.id);
        }
        self.0.pubsub.drop_conn(conn.id);
        if self.0.in_multi.load(Ordering::Relaxed) > 0
            && let Ok(mut m) = self.0.multi.lock()
            && m.remove(&conn.id).is_some()
        {
            self.0.in_multi.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn may_move(&self, conn: &ConnInfo) -> bool {
        // A subscriber's messages are pushed to the loop it is on.
        self.0.pubsub.count(conn.id) == 0
    }

    fn unavailable_response(&self) -> Option<Vec<u8>> {
        Some(b"-ERR the shard serving this key has stopped\r\n".to_vec())
    }

    fn dropped_response(&self) -> Option<Vec<u8>> {
        Some(b"-ERR internal error: the reply was lost\r\n".to_vec())
    }

    fn max_input(&self) -> usize {
        // Redis's client-query-buffer-limit (1 GiB), and at least one max-size bulk.
        (1usize << 30).max(self.0.max_bulk.load(Ordering::Relaxed) + (1 << 20))
    }

    fn too_large_response(&self) -> Option<Vec<u8>> {
        Some(b"-ERR Protocol error: query buffer limit exceeded\r\n".to_vec())
    }

    fn truncated(&self, _input: &[u8]) -> Option<String> {
        // A client that hangs up mid-command is not the server's error (Redis is silent too).
        None
    }
}

impl Resp {
    fn route(&self, c: Cmd, resp: Responder, conn: u64) -> Dispatched<Cmd> {
        let st = &self.0;
        st.count_command();
        let Some(spec) = commands::lookup(c.arg(0)) else {
            self.multi_failed(conn);
            return err(resp, &unknown(&c));
        };
        if !spec.arity_ok(c.len()) {
            self.multi_failed(conn);
            return err(
                resp,
                &format!("ERR wrong number of arguments for '{}' command", spec.name),
            );
        }
        if st.auth_required.load(Ordering::Relaxed)
            && !spec.flags.contains(&"no_auth")
            && !self.authed(conn)
        {
            return err(resp, "NOAUTH Authentication required.");
        }
        if st.pubsub.any() && !spec.flags.contains(&"pubsub") && spec.name != "quit" {
            let subscribed = st.pubsub.count(conn) > 0;
            if subscribed && spec.name == "ping" {
                let mut o = Out::new();
                o.array(2);
                o.bulk(b"pong");
                o.bulk(c.arg(1));
                return answer(resp, o);
            }
            if subscribed {
                return err(
                    resp,
                    &format!(
                        "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                        spec.name
                    ),
                );
            }
        }
        if st.in_multi.load(Ordering::Relaxed) > 0
            && !matches!(spec.name, "multi" | "exec" | "discard" | "quit")
        {
            let queued = match st.multi.lock() {
                Ok(mut m) => match m.get_mut(&conn) {
                    Some(t) if spec.exec.is_some() => {
                        t.cmds.push((c, spec));
                        return answer(resp, {
                            let mut o = Out::new();
                            o.simple("QUEUED");
                            o
                        });
                    }
                    Some(t) => {
                        t.failed = true;
                        Some(spec.name)
                    }
                    None => None,
                },
                Err(_) => None,
            };
            if let Some(name) = queued {
                return err(
                    resp,
                    &format!(
                        "ERR '{name}' inside MULTI is not supported by percore serve; run it outside the transaction"
                    ),
                );
            }
        }
        match spec.route {
            Route::Key => self.to_shard(st.shard_of(c.arg(1)), c, spec, resp),
            Route::Keys => self.keys_cmd(c, spec, resp),
            Route::All => self.all_cmd(c, spec, resp),
            Route::Server => self.server_cmd(c, spec, resp, conn),
        }
    }

    fn authed(&self, conn: u64) -> bool {
        self.0
            .sessions
            .lock()
            .map(|s| s.get(&conn).is_some_and(|s| s.authed))
            .unwrap_or(false)
    }

    /// Runs a whole command on shard `i`: here if it is this core's, else through its actor.
    fn to_shard(&self, i: usize, c: Cmd, spec: &'static Spec, resp: Responder) -> Dispatched<Cmd> {
        if let Some(s) = shard::local()
            && s.index == i
        {
            let mut slot = Some(resp);
            let r = s.run(spec, &c, || {
                let resp = slot.take().expect("taken once");
                Box::new(move |b| resp.send(b, false))
            });
            return match (r, slot) {
                (Ok(bytes), Some(resp)) => Dispatched::Answer(resp.answer(bytes, false)),
                _ => Dispatched::Sent,
            };
        }
        match self.0.shards[i].try_tell(ShardMsg::Cmd(c, spec, resp)) {
            Ok(()) => Dispatched::Sent,
            Err(TrySendError::Full(ShardMsg::Cmd(c, _, resp))) => Dispatched::Full(c, resp),
            Err(e) => match e.into_inner() {
                ShardMsg::Cmd(_, _, resp) => {
                    err(resp, "ERR the shard serving this key has stopped")
                }
                _ => unreachable!("a Cmd message comes back as sent"),
            },
        }
    }

    /// Sends part `i` of `g` to shard `to` (run here when it is this core's).
    fn send_part(&self, to: usize, p: Part, g: Arc<Gather>, i: usize) {
        if let Some(s) = shard::local()
            && s.index == to
        {
            if let Part::Save = p {
                let g2 = g.clone();
                if super::shard::try_spawn(async move {
                    gather::run_part(&s, p, g2, i).await;
                })
                .is_err()
                {
                    g.complete(i, PartOut::Err("ERR cannot run SAVE here".into()));
                }
                return;
            }
            return gather::run_part_now(&s, p, g, i);
        }
        let addr = self.0.shards[to].clone();
        if let Err(e) = addr.try_tell(ShardMsg::Part(p, g.clone(), i)) {
            let stopped = matches!(e, TrySendError::Stopped(_));
            let msg = e.into_inner();
            if stopped
                || super::shard::try_spawn(async move {
                    let _ = addr.tell(msg).await;
                })
                .is_err()
            {
                g.complete(
                    i,
                    PartOut::Err("ERR a shard is busy or stopped; retry".into()),
                );
            }
        }
    }

    /// Sends parts (shard, part) of one gather.
    fn fan_out(&self, parts: Vec<(usize, Part)>, g: Arc<Gather>) -> Dispatched<Cmd> {
        for (i, (to, p)) in parts.into_iter().enumerate() {
            self.send_part(to, p, g.clone(), i);
        }
        Dispatched::Sent
    }

    fn keys_cmd(&self, c: Cmd, spec: &'static Spec, resp: Responder) -> Dispatched<Cmd> {
        let st = &self.0;
        let name = spec.name;
        let n = c.len();
        let positions: Vec<usize> = spec.key_positions(n).collect();
        let owners: Vec<usize> = positions.iter().map(|&p| st.shard_of(c.arg(p))).collect();
        let one = owners.windows(2).all(|w| w[0] == w[1]);
        match name {
            "blpop" | "brpop" => {
                let Some(t) = super::cmd_string::parse_f64(c.arg(n - 1)) else {
                    return err(resp, "ERR timeout is not a float or out of range");
                };
                if t < 0.0 {
                    return err(resp, "ERR timeout is negative");
                }
                if !one {
                    return err(resp, &cross_shard(name));
                }
                let keys: Vec<Vec<u8>> = positions.iter().map(|&p| c.arg(p).to_vec()).collect();
                let timeout = (t > 0.0).then(|| Duration::from_secs_f64(t));
                let left = name == "blpop";
                let to = owners[0];
                if let Some(s) = shard::local()
                    && s.index == to
                {
                    shard::bpop(&s, keys, left, timeout, resp);
                    return Dispatched::Sent;
                }
                return match st.shards[to].try_tell(ShardMsg::BPop(keys, left, timeout, resp)) {
                    Ok(()) => Dispatched::Sent,
                    Err(e) => match e.into_inner() {
                        ShardMsg::BPop(.., resp) => err(resp, "ERR the shard is busy; retry"),
                        _ => unreachable!("a BPop message comes back as sent"),
                    },
                };
            }
            "rename" => {
                let (src, dst) = (c.arg(1).to_vec(), c.arg(2).to_vec());
                let to = (owners[1] != owners[0]).then(|| st.shards[owners[1]].clone());
                let g = Gather::new(
                    1,
                    resp,
                    Box::new(|_| {
                        let mut o = Out::new();
                        o.ok();
                        o.into_bytes()
                    }),
                );
                return self.fan_out(vec![(owners[0], Part::Rename { src, dst, to })], g);
            }
            "mset" | "msetnx" if n.is_multiple_of(2) => {
                return err(
                    resp,
                    &format!("ERR wrong number of arguments for '{name}' command"),
                );
            }
            "msetnx" if !one => return err(resp, &cross_shard(name)),
            _ => {}
        }
        if one {
            return self.to_shard(owners[0], c, spec, resp);
        }
        // Group the keys by shard, remembering each key's place in the command.
        let mut by: Vec<(usize, Vec<usize>)> = Vec::new();
        for (j, &o) in owners.iter().enumerate() {
            match by.iter_mut().find(|(s, _)| *s == o) {
                Some((_, v)) => v.push(j),
                None => by.push((o, vec![j])),
            }
        }
        let key = |j: usize| c.arg(positions[j]).to_vec();
        // (part, index in part) of every key, in command order.
        let mut order = vec![(0usize, 0usize); positions.len()];
        for (p, (_, js)) in by.iter().enumerate() {
            for (k, &j) in js.iter().enumerate() {
                order[j] = (p, k);
            }
        }
        let parts: Vec<(usize, Part)> = by
            .iter()
            .map(|(s, js)| {
                let keys: Vec<Vec<u8>> = js.iter().map(|&j| key(j)).collect();
                let p = match name {
                    "mget" => Part::MGet(keys),
                    "mset" => Part::MSet(
                        js.iter()
                            .map(|&j| (key(j), c.arg(positions[j] + 1).to_vec()))
                            .collect(),
                    ),
                    "del" | "unlink" => Part::Del(keys),
                    "exists" => Part::Exists(keys),
                    _ => Part::Members(keys),
                };
                (*s, p)
            })
            .collect();
        let finish: Box<dyn FnOnce(Vec<PartOut>) -> Vec<u8> + Send> = match name {
            "mget" => Box::new(move |outs| {
                let mut items: Vec<Vec<Vec<u8>>> = outs.into_iter().map(items_of).collect();
                let mut out = Out::new();
                out.array(order.len());
                for (p, k) in order {
                    match items.get_mut(p).and_then(|v| v.get_mut(k)) {
                        Some(e) => out.raw(e),
                        None => out.nil(),
                    }
                }
                out.into_bytes()
            }),
            "mset" => Box::new(|_| b"+OK\r\n".to_vec()),
            "del" | "unlink" | "exists" => Box::new(sum_ints),
            "sinter" => gather::finish_setop(SetOp::Inter, order),
            "sunion" => gather::finish_setop(SetOp::Union, order),
            _ => gather::finish_setop(SetOp::Diff, order),
        };
        let g = Gather::new(parts.len(), resp, finish);
        self.fan_out(parts, g)
    }

    fn all_cmd(&self, c: Cmd, spec: &'static Spec, resp: Responder) -> Dispatched<Cmd> {
        let n = self.0.shards.len();
        let every =
            |mk: &dyn Fn() -> Part| -> Vec<(usize, Part)> { (0..n).map(|i| (i, mk())).collect() };
        match spec.name {
            "keys" => {
                let pat = c.arg(1).to_vec();
                let g = Gather::new(
                    n,
                    resp,
                    Box::new(|outs| {
                        let all: Vec<Vec<u8>> = outs.into_iter().flat_map(items_of).collect();
                        let mut out = Out::new();
                        out.array(all.len());
                        all.iter().for_each(|k| out.bulk(k));
                        out.into_bytes()
                    }),
                );
                self.fan_out(every(&|| Part::Keys(pat.clone())), g)
            }
            "dbsize" => {
                let g = Gather::new(n, resp, Box::new(sum_ints));
                self.fan_out(every(&|| Part::DbSize), g)
            }
            "flushdb" | "flushall" => {
                if let Some(a) = (c.len() > 1).then(|| c.arg(1).to_ascii_uppercase())
                    && (c.len() > 2 || (a != b"ASYNC" && a != b"SYNC"))
                {
                    return err(resp, super::cmd_string::SYNTAX);
                }
                let g = Gather::new(n, resp, Box::new(|_| b"+OK\r\n".to_vec()));
                self.fan_out(every(&|| Part::Flush), g)
            }
            "save" => {
                let me = self.0.clone();
                let g = Gather::new(
                    n,
                    resp,
                    Box::new(move |_| {
                        me.last_save
                            .store(super::db::now_ms() / 1000, Ordering::Relaxed);
                        b"+OK\r\n".to_vec()
                    }),
                );
                self.fan_out(every(&|| Part::Save), g)
            }
            "bgsave" => {
                // Runs in the background; the reply does not wait for it.
                let mut o = Out::new();
                o.simple("Background saving started");
                let bytes = o.into_bytes();
                let me = self.0.clone();
                let g = Gather::new_detached(
                    n,
                    Box::new(move |outs| {
                        if outs.iter().all(|o| !matches!(o, PartOut::Err(_))) {
                            me.last_save
                                .store(super::db::now_ms() / 1000, Ordering::Relaxed);
                        }
                        Vec::new()
                    }),
                );
                for (i, (to, p)) in every(&|| Part::Save).into_iter().enumerate() {
                    self.send_part(to, p, g.clone(), i);
                }
                Dispatched::Answer(resp.answer(bytes, false))
            }
            "scan" => self.scan(c, resp),
            other => err(resp, &format!("ERR '{other}' is not routed")),
        }
    }

    /// SCAN: the cursor holds the shard in its high bits and the position inside the shard
    /// in its low 40 bits (see `cmd_keys::scan_part` for why positions count down).
    fn scan(&self, c: Cmd, resp: Responder) -> Dispatched<Cmd> {
        let Some(cursor) = std::str::from_utf8(c.arg(1))
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return err(resp, "ERR invalid cursor");
        };
        let opts = match cmd_keys::scan_opts(&c) {
            Ok(o) => o,
            Err(e) => return err(resp, e),
        };
        let n = self.0.shards.len() as u64;
        let (shard, pos) = (cursor >> 40, cursor & ((1 << 40) - 1));
        if shard >= n {
            let mut o = Out::new();
            o.array(2);
            o.bulk(b"0");
            o.array(0);
            return answer(resp, o);
        }
        let g = Gather::new(
            1,
            resp,
            Box::new(move |outs| {
                let (keys, next) = match outs.into_iter().next() {
                    Some(PartOut::Scan(k, nx)) => (k, nx),
                    _ => (Vec::new(), 0),
                };
                let cur = if next > 0 {
                    (shard << 40) | next
                } else if shard + 1 < n {
                    (shard + 1) << 40
                } else {
                    0
                };
                let mut o = Out::new();
                o.array(2);
                o.bulk(cur.to_string().as_bytes());
                o.array(keys.len());
                keys.iter().for_each(|k| o.bulk(k));
                o.into_bytes()
            }),
        );
        self.fan_out(vec![(shard as usize, Part::Scan(pos, opts))], g)
    }

    fn session<R>(&self, conn: u64, f: impl FnOnce(&mut Session) -> R) -> Option<R> {
        self.0.sessions.lock().ok()?.get_mut(&conn).map(f)
    }

    fn server_cmd(
        &self,
        c: Cmd,
        spec: &'static Spec,
        resp: Responder,
        conn: u64,
    ) -> Dispatched<Cmd> {
        let st = &self.0;
        let mut o = Out::new();
        match spec.name {
            "ping" => match c.len() {
                1 => o.simple("PONG"),
                2 => o.bulk(c.arg(1)),
                _ => return err(resp, "ERR wrong number of arguments for 'ping' command"),
            },
            "echo" => o.bulk(c.arg(1)),
            "quit" => {
                o.ok();
                return Dispatched::Answer(resp.answer(o.into_bytes(), true));
            }
            "select" => match resp::parse_i64(c.arg(1)) {
                Some(0) => o.ok(),
                Some(_) => o.error("ERR DB index is out of range"),
                None => o.error(super::cmd_string::NOT_INT),
            },
            "time" => {
                let d = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                o.array(2);
                o.bulk(d.as_secs().to_string().as_bytes());
                o.bulk(d.subsec_micros().to_string().as_bytes());
            }
            "wait" => match (resp::parse_i64(c.arg(1)), resp::parse_i64(c.arg(2))) {
                // No replicas: none acknowledge, at once (what Redis answers without replicas).
                (Some(_), Some(t)) if t >= 0 => o.int(0),
                (Some(_), Some(_)) => o.error("ERR timeout is negative"),
                _ => o.error(super::cmd_string::NOT_INT),
            },
            "multi" => match st.multi.lock() {
                Ok(m) if m.contains_key(&conn) => o.error("ERR MULTI calls can not be nested"),
                Ok(mut m) => {
                    m.insert(conn, Multi::default());
                    st.in_multi.fetch_add(1, Ordering::Relaxed);
                    o.ok();
                }
                Err(_) => o.error("ERR internal error"),
            },
            "discard" => match st.multi.lock().ok().and_then(|mut m| m.remove(&conn)) {
                Some(_) => {
                    st.in_multi.fetch_sub(1, Ordering::Relaxed);
                    o.ok();
                }
                None => o.error("ERR DISCARD without MULTI"),
            },
            "exec" => return self.exec(resp, conn),
            "lastsave" => o.int(st.last_save.load(Ordering::Relaxed) as i64),
            "subscribe" | "psubscribe" => {
                let names: Vec<&[u8]> = c.args().skip(1).collect();
                let p = resp.pusher();
                st.pubsub
                    .subscribe(conn, &p, &names, spec.name == "psubscribe", &mut o);
            }
            "unsubscribe" | "punsubscribe" => {
                let names: Vec<&[u8]> = c.args().skip(1).collect();
                st.pubsub
                    .unsubscribe(conn, &names, spec.name == "punsubscribe", &mut o);
            }
            "publish" => o.int(st.pubsub.publish(c.arg(1), c.arg(2)) as i64),
            "pubsub" => match (c.arg(1).to_ascii_uppercase().as_slice(), c.len()) {
                (b"CHANNELS", 2 | 3) => {
                    let chans = st.pubsub.channels((c.len() == 3).then(|| c.arg(2)));
                    o.array(chans.len());
                    chans.iter().for_each(|ch| o.bulk(ch));
                }
                (b"NUMSUB", n) => {
                    o.array((n - 2) * 2);
                    for ch in c.args().skip(2) {
                        o.bulk(ch);
                        o.int(st.pubsub.numsub(ch) as i64);
                    }
                }
                (b"NUMPAT", 2) => o.int(st.pubsub.numpat() as i64),
                _ => o.error(&format!(
                    "ERR unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
                    String::from_utf8_lossy(c.arg(1))
                )),
            },
            "auth" => return self.auth(&c, resp, conn),
            "hello" => return self.hello(&c, resp, conn),
            "client" => return self.client(&c, resp, conn),
            "command" => return self.command(&c, resp),
            "config" => return self.config(&c, resp),
            "info" => return self.info(&c, resp),
            other => o.error(&format!("ERR '{other}' is not routed")),
        }
        answer(resp, o)
    }

    /// A command was refused while `conn` queues a transaction: EXEC will abort it.
    fn multi_failed(&self, conn: u64) {
        if self.0.in_multi.load(Ordering::Relaxed) > 0
            && let Ok(mut m) = self.0.multi.lock()
            && let Some(t) = m.get_mut(&conn)
        {
            t.failed = true;
        }
    }

    /// EXEC: the queued commands run back to back on the one shard that owns all their keys
    /// (nothing else runs on that shard in between), and their changes reach the log as one
    /// atomic batch. Keys on several shards: CROSSSLOT, as Redis Cluster answers.
    fn exec(&self, resp: Responder, conn: u64) -> Dispatched<Cmd> {
        let st = &self.0;
        let Some(t) = st.multi.lock().ok().and_then(|mut m| m.remove(&conn)) else {
            return err(resp, "ERR EXEC without MULTI");
        };
        st.in_multi.fetch_sub(1, Ordering::Relaxed);
        if t.failed {
            return err(
                resp,
                "EXECABORT Transaction discarded because of previous errors.",
            );
        }
        let mut owners = t.cmds.iter().flat_map(|(c, spec)| {
            spec.key_positions(c.len())
                .map(|p| st.shard_of(c.arg(p)))
                .collect::<Vec<_>>()
        });
        let first = owners.next();
        if owners.any(|o| Some(o) != first) {
            return err(
                resp,
                "CROSSSLOT Keys in request don't hash to the same shard (a MULTI/EXEC transaction needs its keys together: give them a hash tag such as {user1}:a and {user1}:b)",
            );
        }
        let to = first
            .or_else(|| shard::local().map(|s| s.index))
            .unwrap_or(0);
        if let Some(s) = shard::local()
            && s.index == to
        {
            let mut slot = Some(resp);
            let r = s.run_all(&t.cmds, || {
                let resp = slot.take().expect("taken once");
                Box::new(move |b| resp.send(b, false))
            });
            return match (r, slot) {
                (Ok(bytes), Some(resp)) => Dispatched::Answer(resp.answer(bytes, false)),
                _ => Dispatched::Sent,
            };
        }
        match st.shards[to].try_tell(ShardMsg::Multi(t.cmds, resp)) {
            Ok(()) => Dispatched::Sent,
            Err(e) => match e.into_inner() {
                ShardMsg::Multi(_, resp) => err(resp, "ERR the shard is busy; retry"),
                _ => unreachable!("a Multi message comes back as sent"),
            },
        }
    }

    fn check_password(&self, user: Option<&[u8]>, pass: &[u8]) -> Result<(), &'static str> {
        let pw = self.0.password.lock().ok().and_then(|p| p.clone());
        match pw {
            None => Err(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ),
            Some(p) if p == pass && user.is_none_or(|u| u == b"default") => Ok(()),
            Some(_) => Err("WRONGPASS invalid username-password pair or user is disabled."),
        }
    }

    fn auth(&self, c: &Cmd, resp: Responder, conn: u64) -> Dispatched<Cmd> {
        let (user, pass) = match c.len() {
            2 => (None, c.arg(1)),
            3 => (Some(c.arg(1)), c.arg(2)),
            _ => return err(resp, super::cmd_string::SYNTAX),
        };
        match self.check_password(user, pass) {
            Ok(()) => {
                self.session(conn, |s| s.authed = true);
                let mut o = Out::new();
                o.ok();
                answer(resp, o)
            }
            Err(e) => err(resp, e),
        }
    }

    fn hello(&self, c: &Cmd, resp: Responder, conn: u64) -> Dispatched<Cmd> {
        let mut i = 1;
        if c.len() > 1 {
            match resp::parse_i64(c.arg(1)) {
                Some(2) => {}
                Some(3) => return err(resp, "NOPROTO unsupported protocol version"),
                Some(_) => return err(resp, "NOPROTO unsupported protocol version"),
                None => {
                    return err(
                        resp,
                        "ERR Protocol version is not an integer or out of range",
                    );
                }
            }
            i = 2;
        }
        let mut name = None;
        while i < c.len() {
            let a = c.arg(i).to_ascii_uppercase();
            if a == b"AUTH" && i + 2 < c.len() {
                if let Err(e) = self.check_password(Some(c.arg(i + 1)), c.arg(i + 2)) {
                    return err(resp, e);
                }
                self.session(conn, |s| s.authed = true);
                i += 3;
            } else if a == b"SETNAME" && i + 1 < c.len() {
                name = Some(c.arg(i + 1).to_vec());
                i += 2;
            } else {
                return err(
                    resp,
                    &format!(
                        "ERR Syntax error in HELLO option '{}'",
                        String::from_utf8_lossy(c.arg(i))
                    ),
                );
            }
        }
        if self.0.auth_required.load(Ordering::Relaxed) && !self.authed(conn) {
            return err(
                resp,
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
            );
        }
        if let Some(n) = name {
            self.session(conn, |s| s.name = Some(n));
        }
        let mut o = Out::new();
        o.array(14);
        o.bulk(b"server");
        o.bulk(b"redis");
        o.bulk(b"version");
        o.bulk(REDIS_VERSION.as_bytes());
        o.bulk(b"proto");
        o.int(2);
        o.bulk(b"id");
        o.int(conn as i64 + 1);
        o.bulk(b"mode");
        o.bulk(b"standalone");
        o.bulk(b"role");
        o.bulk(b"master");
        o.bulk(b"modules");
        o.array(0);
        answer(resp, o)
    }

    fn client(&self, c: &Cmd, resp: Responder, conn: u64) -> Dispatched<Cmd> {
        let sub = c.arg(1).to_ascii_uppercase();
        let mut o = Out::new();
        match (sub.as_slice(), c.len()) {
            (b"ID", 2) => o.int(conn as i64 + 1),
            (b"SETNAME", 3) => {
                let n = c.arg(2);
                if n.iter().any(|&b| b <= b' ' || b > b'~') {
                    o.error(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    );
                } else {
                    let n = (!n.is_empty()).then(|| n.to_vec());
                    self.session(conn, |s| s.name = n);
                    o.ok();
                }
            }
            (b"GETNAME", 2) => {
                let n = self.session(conn, |s| s.name.clone()).flatten();
                o.opt_bulk(n.as_deref());
            }
            (b"SETINFO", 4) => {
                let (attr, v) = (c.arg(2).to_ascii_uppercase(), c.arg(3).to_vec());
                match attr.as_slice() {
                    b"LIB-NAME" => {
                        self.session(conn, |s| s.lib_name = Some(v));
                        o.ok();
                    }
                    b"LIB-VER" => {
                        self.session(conn, |s| s.lib_ver = Some(v));
                        o.ok();
                    }
                    _ => o.error(&format!(
                        "ERR Unrecognized option '{}'",
                        String::from_utf8_lossy(c.arg(2))
                    )),
                }
            }
            (b"LIST", _) | (b"INFO", 2) => {
                let sessions: Vec<(u64, Session)> = match self.0.sessions.lock() {
                    Ok(s) => s.iter().map(|(k, v)| (*k, v.clone())).collect(),
                    Err(_) => Vec::new(),
                };
                let mut text = String::new();
                let mut sorted = sessions;
                sorted.sort_by_key(|(k, _)| *k);
                for (id, s) in &sorted {
                    if sub == b"INFO" && *id != conn {
                        continue;
                    }
                    text.push_str(&format!(
                        "id={} addr={} laddr={} fd=-1 name={} age={} idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=NULL user=default redir=-1 resp=2 lib-name={} lib-ver={}\n",
                        id + 1,
                        s.peer.map_or_else(|| "?".into(), |p| p.to_string()),
                        self.0.fixed.addr,
                        String::from_utf8_lossy(s.name.as_deref().unwrap_or_default()),
                        s.since.elapsed().as_secs(),
                        String::from_utf8_lossy(s.lib_name.as_deref().unwrap_or_default()),
                        String::from_utf8_lossy(s.lib_ver.as_deref().unwrap_or_default()),
                    ));
                }
                o.bulk(text.as_bytes());
            }
            _ => o.error(&format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
                String::from_utf8_lossy(c.arg(1))
            )),
        }
        answer(resp, o)
    }

    fn command(&self, c: &Cmd, resp: Responder) -> Dispatched<Cmd> {
        let mut o = Out::new();
        if c.len() == 1 {
            o.array(commands::TABLE.len());
            commands::TABLE.iter().for_each(|s| s.write_info(&mut o));
            return answer(resp, o);
        }
        match c.arg(1).to_ascii_uppercase().as_slice() {
            b"COUNT" => o.int(commands::TABLE.len() as i64),
            b"INFO" => {
                if c.len() == 2 {
                    o.array(commands::TABLE.len());
                    commands::TABLE.iter().for_each(|s| s.write_info(&mut o));
                } else {
                    o.array(c.len() - 2);
                    for n in c.args().skip(2) {
                        match commands::lookup(n) {
                            Some(s) => s.write_info(&mut o),
                            None => o.nil_array(),
                        }
                    }
                }
            }
            // No documentation is served: redis-cli then uses its built-in hints.
            b"DOCS" => o.array(0),
            _ => o.error(&format!(
                "ERR unknown subcommand '{}'. Try COMMAND HELP.",
                String::from_utf8_lossy(c.arg(1))
            )),
        }
        answer(resp, o)
    }

    fn config_values(&self) -> Vec<(&'static str, String)> {
        let f = &self.0.fixed;
        let pw = self
            .0
            .password
            .lock()
            .ok()
            .and_then(|p| p.clone())
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .unwrap_or_default();
        vec![
            ("port", f.addr.port().to_string()),
            ("bind", f.addr.ip().to_string()),
            (
                "dir",
                f.dir
                    .as_ref()
                    .map_or_else(String::new, |d| d.display().to_string()),
            ),
            (
                "appendonly",
                if f.dir.is_some() { "yes" } else { "no" }.into(),
            ),
            ("appendfsync", f.appendfsync.into()),
            ("requirepass", pw),
            (
                "proto-max-bulk-len",
                self.0.max_bulk.load(Ordering::Relaxed).to_string(),
            ),
            ("databases", "1".into()),
            ("save", String::new()),
            ("timeout", "0".into()),
            ("maxclients", f.maxclients.to_string()),
            ("maxmemory", self.0.mem.maxmemory().to_string()),
            ("maxmemory-policy", self.0.mem.policy().name().to_string()),
            ("maxmemory-samples", self.0.mem.samples().to_string()),
        ]
    }

    fn config(&self, c: &Cmd, resp: Responder) -> Dispatched<Cmd> {
        let mut o = Out::new();
        match (c.arg(1).to_ascii_uppercase().as_slice(), c.len()) {
            (b"GET", n) if n >= 3 => {
                let vals = self.config_values();
                let mut hits: Vec<&(&str, String)> = Vec::new();
                for p in c.args().skip(2) {
                    let p = p.to_ascii_lowercase();
                    for v in &vals {
                        if glob_match(&p, v.0.as_bytes()) && !hits.iter().any(|h| h.0 == v.0) {
                            hits.push(v);
                        }
                    }
                }
                o.array(hits.len() * 2);
                for (k, v) in hits {
                    o.bulk(k.as_bytes());
                    o.bulk(v.as_bytes());
                }
            }
            (b"SET", n) if n >= 4 && n % 2 == 0 => {
                let mut i = 2;
                while i < n {
                    let (k, v) = (c.arg(i).to_ascii_lowercase(), c.arg(i + 1));
                    match k.as_slice() {
                        b"requirepass" => {
                            let p = (!v.is_empty()).then(|| v.to_vec());
                            self.0.auth_required.store(p.is_some(), Ordering::Relaxed);
                            if let Ok(mut pw) = self.0.password.lock() {
                                *pw = p;
                            }
                        }
                        b"maxmemory" => match super::parse_memory(&String::from_utf8_lossy(v)) {
                            Ok(b) => self.0.mem.set_maxmemory(b),
                            Err(e) => {
                                return err(
                                    resp,
                                    &format!(
                                        "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - {e}"
                                    ),
                                );
                            }
                        },
                        b"maxmemory-policy" => {
                            match super::evict::Policy::parse(&String::from_utf8_lossy(v)) {
                                Some(p) => self.0.mem.set_policy(p),
                                None => {
                                    return err(
                                        resp,
                                        "ERR CONFIG SET failed (possibly related to argument 'maxmemory-policy') - argument(s) must be one of the following: volatile-lru, allkeys-lru, volatile-lfu, allkeys-lfu, volatile-random, allkeys-random, volatile-ttl, noeviction",
                                    );
                                }
                            }
                        }
                        b"maxmemory-samples" => match resp::parse_i64(v) {
                            Some(n @ 1..=64) => self.0.mem.set_samples(n as u8),
                            _ => {
                                return err(
                                    resp,
                                    "ERR CONFIG SET failed (possibly related to argument 'maxmemory-samples') - argument must be between 1 and 64 inclusive",
                                );
                            }
                        },
                        b"proto-max-bulk-len" => match resp::parse_i64(v) {
                            Some(b) if b >= 1024 * 1024 => {
                                self.0.max_bulk.store(b as usize, Ordering::Relaxed);
                            }
                            _ => {
                                return err(
                                    resp,
                                    &format!(
                                        "ERR CONFIG SET failed (possibly related to argument '{}') - argument must be a memory value of at least 1mb",
                                        String::from_utf8_lossy(&k)
                                    ),
                                );
                            }
                        },
                        _ if self
                            .config_values()
                            .iter()
                            .any(|(n, _)| n.as_bytes() == k.as_slice()) =>
                        {
                            return err(
                                resp,
                                &format!(
                                    "ERR CONFIG SET failed (possibly related to argument '{}') - can't set immutable config",
                                    String::from_utf8_lossy(&k)
                                ),
                            );
                        }
                        _ => {
                            return err(
                                resp,
                                &format!(
                                    "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                                    String::from_utf8_lossy(&k)
                                ),
                            );
                        }
                    }
                    i += 2;
                }
                o.ok();
            }
            (b"RESETSTAT", 2) => o.ok(),
            _ => o.error(&format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CONFIG HELP.",
                String::from_utf8_lossy(c.arg(1))
            )),
        }
        answer(resp, o)
    }

    fn info(&self, c: &Cmd, resp: Responder) -> Dispatched<Cmd> {
        let want: Vec<String> = c
            .args()
            .skip(1)
            .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
            .collect();
        let me = self.clone();
        let n = self.0.shards.len();
        let g = Gather::new(
            n,
            resp,
            Box::new(move |outs| {
                let text = me.info_text(&want, &gather::sum_info(&outs));
                let mut o = Out::new();
                o.bulk(text.as_bytes());
                o.into_bytes()
            }),
        );
        self.fan_out((0..n).map(|i| (i, Part::Info)).collect(), g)
    }

    fn info_text(&self, want: &[String], t: &gather::ShardInfo) -> String {
        let st = &self.0;
        let all = want.is_empty()
            || want
                .iter()
                .any(|w| w == "all" || w == "everything" || w == "default");
        let show = |s: &str| all || want.iter().any(|w| w == s);
        let mut out = String::new();
        let up = st.started.elapsed().as_secs();
        let clients = st.sessions.lock().map(|s| s.len()).unwrap_or(0);
        let rss = rss_bytes();
        if show("server") {
            out.push_str(&format!(
                "# Server\r\nredis_version:{REDIS_VERSION}\r\npercore_version:{}\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:64\r\nmultiplexing_api:{}\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{up}\r\nuptime_in_days:{}\r\nshards:{}\r\nexecutable:{}\r\nconfig_file:\r\n\r\n",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH,
                "percore",
                std::process::id(),
                st.run_id,
                st.fixed.addr.port(),
                up / 86400,
                st.shards.len(),
                std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
            ));
        }
        if show("clients") {
            out.push_str(&format!(
                "# Clients\r\nconnected_clients:{clients}\r\nmaxclients:{}\r\nblocked_clients:{}\r\n\r\n",
                st.fixed.maxclients, t.blocked
            ));
        }
        if show("memory") {
            let used = super::evict::allocated_bytes();
            let max = st.mem.maxmemory();
            out.push_str(&format!(
                "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nused_memory_dataset:{}\r\nmaxmemory:{max}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{}\r\nmem_allocator:libc\r\n\r\n",
                human(used),
                human(rss),
                t.bytes,
                human(max),
                st.mem.policy().name(),
            ));
        }
        if show("persistence") {
            out.push_str(&format!(
                "# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:0\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:ok\r\naof_enabled:{}\r\naof_rewrite_in_progress:0\r\naof_last_write_status:ok\r\nappendfsync:{}\r\n\r\n",
                t.dirty,
                t.last_save,
                st.fixed.dir.is_some() as u8,
                st.fixed.appendfsync,
            ));
        }
        if show("stats") {
            out.push_str(&format!(
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nexpired_keys:{}\r\nevicted_keys:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\n\r\n",
                st.connections.load(Ordering::Relaxed),
                st.commands_processed(),
                t.expired_keys,
                st.mem.evicted.load(Ordering::Relaxed),
                t.hits,
                t.misses,
            ));
        }
        if show("replication") {
            out.push_str("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n");
        }
        if show("keyspace") {
            out.push_str("# Keyspace\r\n");
            if t.keys > 0 {
                out.push_str(&format!(
                    "db0:keys={},expires={},avg_ttl=0\r\n",
                    t.keys, t.expires
                ));
            }
        }
        out
    }
}

/// A gathered count's reply: the parts' integers summed (DEL, EXISTS, DBSIZE).
fn sum_ints(outs: Vec<PartOut>) -> Vec<u8> {
    let mut out = Out::new();
    out.int(
        outs.iter()
            .map(|o| if let PartOut::Int(n) = o { *n } else { 0 })
            .sum(),
    );
    out.into_bytes()
}

/// A part's encoded elements (none for another kind of part).
fn items_of(o: PartOut) -> Vec<Vec<u8>> {
    match o {
        PartOut::Items(v) => v,
        _ => Vec::new(),
    }
}

/// The Redis version whose behaviour `percore serve` follows (INFO, HELLO).
pub const REDIS_VERSION: &str = "7.0.0";

fn cross_shard(name: &str) -> String {
    format!(
        "CROSSSLOT Keys in request don't hash to the same shard ('{name}' needs its keys together: give them a hash tag such as {{user1}}:a and {{user1}}:b)"
    )
}

fn human(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.2}G", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.2}M", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.2}K", b as f64 / 1024.0),
        b => format!("{b}B"),
    }
}

/// The process's resident set, from `/proc/self/statm`.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}
