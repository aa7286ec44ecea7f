//! One shard of the server: the keyspace of one app worker ([`Shard`], reachable on its own
//! thread through [`local`] so that a connection served on the same core runs commands with no
//! hop at all), its append log (a [`KvShard`] of the storage layer, written in command order),
//! the clients blocked in BLPOP/BRPOP on its keys, and the [`ShardActor`] that other cores
//! send commands and command parts to. Owns the shard's data and its durability; knows nothing
//! of the wire beyond the reply bytes it hands back.
//!
//! Durability (`appendfsync`): a command's changes are appended to the log in the order the
//! commands ran (a write that has to wait for the disk holds the ones behind it in order).
//! `always`: the reply is sent once an `fdatasync` covers the change. `everysec`: the reply is
//! sent at once and a group commit syncs within a second. `no`: the reply is sent at once and
//! the OS writes the log when it likes. A failed log write turns the shard's writes into
//! `MISCONF` errors, as Redis does when it cannot write its AOF.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use percore::runtime::{Actor, Context, Handle, Reply};
use percore::storage::file::FileIo;
use percore::storage::kv::{KvOptions, KvShard, Op};
use percore::transport::Responder;

use super::commands::Spec;
use super::db::{Db, LogOp, Value, now_ms};
use super::persist::{self, Kind};
use super::resp::{Cmd, Out};

/// What a command's durability waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// No persistence at all.
    Off,
    /// `appendfsync no`.
    No,
    /// `appendfsync everysec`.
    EverySec,
    /// `appendfsync always`.
    Always,
}

type Ack = Box<dyn FnOnce(Result<(), String>)>;

/// A client blocked in BLPOP/BRPOP.
struct Waiter {
    keys: Vec<Vec<u8>>,
    left: bool,
    resp: Option<Responder>,
    id: u64,
}

/// One shard's state, owned by its worker thread.
pub struct Shard {
    /// The shard's number (= its app worker).
    pub index: usize,
    /// The keyspace.
    pub db: RefCell<Db>,
    kv: Option<KvShard>,
    fsync: Fsync,
    /// Changes waiting behind a log write that had to wait, in command order.
    queue: RefCell<VecDeque<(Vec<LogOp>, Option<Ack>)>>,
    draining: Cell<bool>,
    /// The first log write error (writes are refused after it).
    failed: RefCell<Option<String>>,
    waiters: RefCell<VecDeque<Waiter>>,
    next_waiter: Cell<u64>,
    /// When the last SAVE finished (Unix seconds).
    pub last_save: Cell<u64>,
    /// Changes since the last SAVE.
    pub dirty: Cell<u64>,
    /// Memory limit and policy (shared).
    mem: Arc<super::evict::MemConfig>,
    /// This shard's view of memory in use.
    gauge: RefCell<super::evict::Gauge>,
}

thread_local! {
    static LOCAL: RefCell<Option<Rc<Shard>>> = const { RefCell::new(None) };
}

/// The shard owned by the calling thread, if it is an app worker running one.
pub fn local() -> Option<Rc<Shard>> {
    LOCAL.with(|l| l.borrow().clone())
}

/// Spawns a task on this worker that runs to its end (percore's `JoinHandle` aborts its task
/// when dropped; these tasks have nobody to join them).
pub fn spawn(fut: impl std::future::Future<Output = ()> + 'static) {
    percore::runtime::spawn_local(fut).detach();
}

/// [`spawn`], or `Err` off a percore worker (a dedicated I/O thread).
pub fn try_spawn(fut: impl std::future::Future<Output = ()> + 'static) -> Result<(), ()> {
    percore::runtime::try_spawn_local(fut)
        .map(percore::runtime::JoinHandle::detach)
        .map_err(|_| ())
}

/// The MISCONF error of a shard whose log cannot be written.
fn misconf(e: &str) -> String {
    format!("MISCONF Errors writing to the append log, writes are refused until restart: {e}")
}

impl Shard {
    /// Whether writes must wait for an fsync before their reply.
    pub fn waits(&self) -> bool {
        self.fsync == Fsync::Always
    }

    /// Runs a shard command: executes it on the keyspace, then logs its changes. Returns the
    /// reply now, or hands it to `later` once the changes are durable (`appendfsync always`):
    /// `Err(())` then.
    pub fn run(
        self: &Rc<Self>,
        spec: &Spec,
        cmd: &Cmd,
        later: impl FnOnce() -> Box<dyn FnOnce(Vec<u8>)>,
    ) -> Result<Vec<u8>, ()> {
        let mut out = Out::new();
        if spec.is_write()
            && let Some(e) = self.failed.borrow().as_ref()
        {
            out.error(&misconf(e));
            return Ok(out.into_bytes());
        }
        if spec.flags.contains(&"denyoom") && self.make_room().is_err() {
            out.error(super::evict::OOM);
            // Evictions made before giving up are logged like any change.
            return self.commit_reply(out.into_bytes(), later);
        }
        let exec = spec.exec.expect("routed as a shard command, so it has one");
        {
            let mut db = self.db.borrow_mut();
            db.tick(now_ms());
            exec(&mut db, cmd, &mut out);
        }
        if spec.is_write() {
            self.after_write();
        }
        self.commit_reply(out.into_bytes(), later)
    }

    /// Runs a transaction's commands back to back (EXEC) and logs all their changes as one
    /// batch: the reply is the array of their replies, now or once durable.
    pub fn run_all(
        self: &Rc<Self>,
        cmds: &[(Cmd, &'static Spec)],
        later: impl FnOnce() -> Box<dyn FnOnce(Vec<u8>)>,
    ) -> Result<Vec<u8>, ()> {
        let mut out = Out::new();
        out.array(cmds.len());
        let mut wrote = false;
        for (cmd, spec) in cmds {
            if spec.is_write()
                && let Some(e) = self.failed.borrow().as_ref()
            {
                out.error(&misconf(e));
                continue;
            }
            if spec.flags.contains(&"denyoom") && self.make_room().is_err() {
                out.error(super::evict::OOM);
                continue;
            }
            let exec = spec.exec.expect("only shard commands are queued");
            let mut db = self.db.borrow_mut();
            db.tick(now_ms());
            exec(&mut db, cmd, &mut out);
            wrote |= spec.is_write();
        }
        if wrote {
            self.after_write();
        }
        self.commit_reply(out.into_bytes(), later)
    }

    /// Under `maxmemory`: evicts by the policy until memory is under the limit. `Err` when it
    /// stays over it (`noeviction`, nothing left to evict here, or 10,000 evictions did not
    /// suffice): the write must be refused with the OOM error.
    pub fn make_room(&self) -> Result<(), ()> {
        let max = self.mem.maxmemory();
        if max == 0 {
            return Ok(());
        }
        let mut g = self.gauge.borrow_mut();
        if g.used(now_ms()) <= max {
            return Ok(());
        }
        let (policy, samples) = (self.mem.policy(), self.mem.samples());
        let mut db = self.db.borrow_mut();
        db.tick(now_ms());
        for _ in 0..10_000 {
            match db.evict_one(policy, samples) {
                Some(n) => {
                    g.freed(n);
                    self.mem
                        .evicted
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                None => return Err(()),
            }
            if g.used(now_ms()) <= max {
                return Ok(());
            }
        }
        Err(())
    }

    /// Logs the changes made since the last commit; the reply goes out now (`Ok`) or through
    /// `later` once durable.
    pub fn commit_reply(
        self: &Rc<Self>,
        reply: Vec<u8>,
        later: impl FnOnce() -> Box<dyn FnOnce(Vec<u8>)>,
    ) -> Result<Vec<u8>, ()> {
        let ops = self.db.borrow_mut().take_log();
        if ops.is_empty() {
            return Ok(reply);
        }
        self.dirty.set(self.dirty.get() + 1);
        if !self.waits() {
            self.commit(ops, None);
            return Ok(reply);
        }
        let send = later();
        self.commit(
            ops,
            Some(Box::new(move |r| match r {
                Ok(()) => send(reply),
                Err(e) => {
                    let mut o = Out::new();
                    o.error(&misconf(&e));
                    send(o.into_bytes())
                }
            })),
        );
        Err(())
    }

    /// Appends `ops` to the log in order; `ack` runs when they are durable.
    fn commit(self: &Rc<Self>, ops: Vec<LogOp>, ack: Option<Ack>) {
        let Some(kv) = &self.kv else {
            if let Some(a) = ack {
                a(Ok(()));
            }
            return;
        };
        if self.draining.get() || !self.queue.borrow().is_empty() {
            self.queue.borrow_mut().push_back((ops, ack));
            return;
        }
        let borrowed = borrow_ops(&ops);
        match kv.try_write_ops(&borrowed) {
            Ok(Some(lsn)) => self.after_append(kv, lsn, ack),
            Ok(None) => {
                self.queue.borrow_mut().push_back((ops, ack));
                self.drain();
            }
            Err(e) => self.fail(e.to_string(), ack),
        }
    }

    fn after_append(&self, kv: &KvShard, lsn: u64, ack: Option<Ack>) {
        if let Some(a) = ack {
            kv.on_durable(lsn, Box::new(move |r| a(r.map_err(|e| e.to_string()))));
        }
    }

    fn fail(&self, e: String, ack: Option<Ack>) {
        if self.failed.borrow().is_none() {
            tracing::error!(shard = self.index, error = %e, "append log write failed; refusing writes");
            *self.failed.borrow_mut() = Some(e.clone());
        }
        if let Some(a) = ack {
            a(Err(e));
        }
    }

    /// Writes the queued changes in order, waiting where the log makes it wait.
    fn drain(self: &Rc<Self>) {
        if self.draining.replace(true) {
            return;
        }
        let me = self.clone();
        spawn(async move {
            let kv = me
                .kv
                .as_ref()
                .expect("only shards with a log queue changes");
            loop {
                let next = me.queue.borrow_mut().pop_front();
                let Some((ops, ack)) = next else { break };
                let mut batch = percore::storage::kv::WriteBatch::new();
                for op in ops {
                    match op {
                        LogOp::Put(k, v) => batch.put(k, v),
                        LogOp::Del(k) => batch.delete(k),
                    };
                }
                match kv.write_begin(&batch).await {
                    Ok(lsn) => me.after_append(kv, lsn, ack),
                    Err(e) => me.fail(e.to_string(), ack),
                }
            }
            me.draining.set(false);
        });
    }

    /// Writes and syncs the log, then compacts it (SAVE / BGSAVE): the log then holds one
    /// record per live key or element.
    pub async fn save(&self) -> Result<(), String> {
        if let Some(kv) = &self.kv {
            while self.draining.get() || !self.queue.borrow().is_empty() {
                percore::runtime::sleep(Duration::from_millis(1)).await;
            }
            kv.flush().await.map_err(|e| e.to_string())?;
            kv.compact().await.map_err(|e| e.to_string())?;
        }
        self.last_save.set(now_ms() / 1000);
        self.dirty.set(0);
        Ok(())
    }

    /// Flushes and closes the log (shutdown).
    pub async fn close(&self) -> Result<(), String> {
        if let Some(kv) = &self.kv {
            while self.draining.get() || !self.queue.borrow().is_empty() {
                percore::runtime::sleep(Duration::from_millis(1)).await;
            }
            kv.flush().await.map_err(|e| e.to_string())?;
            kv.close().await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Clients blocked in BLPOP/BRPOP on this shard's keys.
    pub fn blocked(&self) -> usize {
        self.waiters.borrow().len()
    }

    /// Registers a client blocked on `keys` (BLPOP/BRPOP); returns its id for the timeout.
    pub fn block(&self, keys: Vec<Vec<u8>>, left: bool, resp: Responder) -> u64 {
        let id = self.next_waiter.get();
        self.next_waiter.set(id + 1);
        self.waiters.borrow_mut().push_back(Waiter {
            keys,
            left,
            resp: Some(resp),
            id,
        });
        id
    }

    /// A blocked client's timeout: answers it with the null array if it is still waiting.
    pub fn unblock_timeout(&self, id: u64) {
        let w = {
            let mut ws = self.waiters.borrow_mut();
            let pos = ws.iter().position(|w| w.id == id);
            pos.and_then(|p| ws.remove(p))
        };
        if let Some(mut w) = w
            && let Some(r) = w.resp.take()
        {
            r.send(b"*-1\r\n".to_vec(), false);
        }
    }

    /// After a write: serves blocked clients whose keys now hold list elements, oldest first.
    fn after_write(self: &Rc<Self>) {
        if self.waiters.borrow().is_empty() {
            return;
        }
        loop {
            let found = {
                let ws = self.waiters.borrow();
                let mut db = self.db.borrow_mut();
                ws.iter().enumerate().find_map(|(i, w)| {
                    w.keys
                        .iter()
                        .find(|k| matches!(db.get_mut(k), Some(Value::List(_))))
                        .map(|k| (i, k.clone()))
                })
            };
            let Some((i, key)) = found else { return };
            let Some(mut w) = self.waiters.borrow_mut().remove(i) else {
                return;
            };
            let popped = {
                let mut db = self.db.borrow_mut();
                super::cmd_list::pop(&mut db, &key, 1, w.left)
            };
            if let (Ok(Some(v)), Some(r)) = (popped, w.resp.take()) {
                let mut o = Out::new();
                o.array(2);
                o.bulk(&key);
                o.bulk(&v[0]);
                reply(self, o.into_bytes(), r);
            }
        }
    }

    /// Pops for BLPOP/BRPOP at once if a key holds elements: the reply, or `None` to block.
    /// `Err` for WRONGTYPE.
    pub fn try_bpop(&self, keys: &[Vec<u8>], left: bool) -> Result<Option<Vec<u8>>, ()> {
        let mut db = self.db.borrow_mut();
        db.tick(now_ms());
        for k in keys {
            match db.get_mut(k) {
                Some(Value::List(_)) => {
                    let v = super::cmd_list::pop(&mut db, k, 1, left)?;
                    if let Some(v) = v
                        && let Some(e) = v.first()
                    {
                        let mut o = Out::new();
                        o.array(2);
                        o.bulk(k);
                        o.bulk(e);
                        return Ok(Some(o.into_bytes()));
                    }
                }
                Some(_) => return Err(()),
                None => {}
            }
        }
        Ok(None)
    }
}

fn borrow_ops(ops: &[LogOp]) -> Vec<Op<'_>> {
    ops.iter()
        .map(|o| match o {
            LogOp::Put(k, v) => Op::Put(k, v),
            LogOp::Del(k) => Op::Delete(k),
        })
        .collect()
}

/// Rebuilds a keyspace from a shard's log; removes what expired while the server was down.
async fn recover(kv: &KvShard, db: &mut Db) -> Result<usize, String> {
    use std::ops::Bound;
    let now = now_ms();
    let mut dead: Vec<Vec<u8>> = Vec::new();
    // Meta records first (`m`), then elements (`h`, `l`, `s`) attach to their keys.
    let scan_all = async |prefix: u8, f: &mut dyn FnMut(Vec<u8>, Vec<u8>)| {
        let mut start = vec![prefix];
        let mut first = true;
        loop {
            let lo = if first {
                Bound::Included(&start[..])
            } else {
                Bound::Excluded(&start[..])
            };
            let hi = Bound::Excluded(&[prefix + 1][..]);
            let batch = kv.scan(lo, hi, 4096).await.map_err(|e| e.to_string())?;
            let n = batch.len();
            for (k, v) in batch {
                start = k.clone();
                f(k, v);
            }
            first = false;
            if n < 4096 {
                return Ok::<(), String>(());
            }
        }
    };
    let mut bad = 0usize;
    scan_all(b'm', &mut |k, v| {
        let key = &k[1..];
        match persist::parse_meta(&v) {
            Some((kind, exp, payload)) => {
                if exp != 0 && exp <= now {
                    dead.push(key.to_vec());
                    return;
                }
                let val = match kind {
                    Kind::Str => Value::Str(payload.into()),
                    Kind::Hash => Value::Hash(Box::default()),
                    Kind::List => Value::List(Box::default()),
                    Kind::Set => Value::Set(Box::default()),
                };
                db.restore(key, val, (exp != 0).then_some(exp));
            }
            None => bad += 1,
        }
    })
    .await?;
    for tag in [b'h', b'l', b's'] {
        scan_all(tag, &mut |k, v| {
            let Some((_, key, suffix)) = persist::parse_elem(&k) else {
                bad += 1;
                return;
            };
            match db.restore_mut(key) {
                Some(Value::Hash(h)) if tag == b'h' => {
                    h.insert(suffix.into(), v.into());
                }
                Some(Value::List(l)) if tag == b'l' => match persist::seq_from(suffix) {
                    Some(s) => l.items.push_back((s, v.into())),
                    None => bad += 1,
                },
                Some(Value::Set(s)) if tag == b's' => {
                    s.insert(suffix.into());
                }
                // An element whose key expired or was replaced: its records go.
                _ => dead.push(k.clone()),
            }
        })
        .await?;
    }
    if bad > 0 {
        tracing::warn!(
            records = bad,
            "unreadable records in the append log were skipped"
        );
    }
    // Expired keys: remove their meta and element records from the log.
    if !dead.is_empty() {
        let mut batch = percore::storage::kv::WriteBatch::new();
        for k in &dead {
            if k.first().is_some_and(|t| matches!(t, b'h' | b'l' | b's')) && k.len() > 5 {
                batch.delete(k.clone());
            } else {
                batch.delete(persist::meta_key(k));
            }
        }
        kv.write(&batch).await.map_err(|e| e.to_string())?;
    }
    Ok(db.len())
}

/// Messages to a shard from other cores.
pub enum ShardMsg {
    /// Has the shard finished loading? Its key count, or why it could not open.
    Opened(Reply<Result<usize, String>>),
    /// Run a whole command; reply through the responder.
    Cmd(Cmd, &'static Spec, Responder),
    /// Run a part of a command spread over shards.
    Part(super::gather::Part, Arc<super::gather::Gather>, usize),
    /// BLPOP/BRPOP whose keys live here.
    BPop(Vec<Vec<u8>>, bool, Option<Duration>, Responder),
    /// The second half of RENAME: store the value taken from the source shard.
    RenameInto(Vec<u8>, Value, Option<u64>, Responder),
    /// A MULTI/EXEC transaction whose keys live here.
    Multi(Vec<(Cmd, &'static Spec)>, Responder),
    /// A request of the HTTP admin face (GET/PUT/DELETE of a string key).
    Http(Cmd, &'static Spec, percore::transport::http::HttpReply),
    /// Flush and close the log.
    Close(Reply<Result<(), String>>),
}

/// How a shard is opened.
#[derive(Clone)]
pub struct ShardConfig {
    /// `DIR/shard-N` parent, when persistence is on.
    pub dir: Option<PathBuf>,
    /// Durability.
    pub fsync: Fsync,
    /// Log options.
    pub kv: KvOptions,
    /// The runtime's handle (for the file I/O path of the shard's worker).
    pub handle: Handle,
    /// Where a shard's loaded key count is reported.
    pub loaded: Arc<Mutex<Vec<usize>>>,
    /// Memory limit and eviction policy.
    pub mem: Arc<super::evict::MemConfig>,
}

/// The actor of one shard.
pub struct ShardActor {
    index: usize,
    cfg: ShardConfig,
    shard: Result<Rc<Shard>, String>,
}

impl ShardActor {
    /// The actor for shard `index`.
    pub fn new(index: usize, cfg: ShardConfig) -> ShardActor {
        ShardActor {
            index,
            cfg,
            shard: Err("opening".into()),
        }
    }

    async fn open(&self) -> Result<Rc<Shard>, String> {
        let persistent = self.cfg.fsync != Fsync::Off;
        let mut db = Db::new(persistent, self.cfg.mem.clone());
        let kv = match &self.cfg.dir {
            Some(dir) if persistent => {
                let d = dir.join(format!("shard-{}", self.index));
                let io = FileIo::for_worker(&self.cfg.handle, self.index);
                let kv = KvShard::open(io, &d, self.cfg.kv.clone())
                    .await
                    .map_err(|e| format!("opening {}: {e}", d.display()))?;
                let t = Instant::now();
                let n = recover(&kv, &mut db).await?;
                tracing::info!(
                    shard = self.index,
                    keys = n,
                    ms = t.elapsed().as_millis() as u64,
                    "loaded"
                );
                Some(kv)
            }
            _ => None,
        };
        Ok(Rc::new(Shard {
            index: self.index,
            db: RefCell::new(db),
            kv,
            fsync: self.cfg.fsync,
            queue: RefCell::new(VecDeque::new()),
            draining: Cell::new(false),
            failed: RefCell::new(None),
            waiters: RefCell::new(VecDeque::new()),
            next_waiter: Cell::new(0),
            last_save: Cell::new(now_ms() / 1000),
            dirty: Cell::new(0),
            mem: self.cfg.mem.clone(),
            gauge: RefCell::new(super::evict::Gauge::default()),
        }))
    }
}

impl Actor for ShardActor {
    type Msg = ShardMsg;

    async fn started(&mut self, _ctx: &mut Context<Self>) {
        self.shard = self.open().await;
        match &self.shard {
            Ok(s) => {
                LOCAL.with(|l| *l.borrow_mut() = Some(s.clone()));
                if let Ok(mut v) = self.cfg.loaded.lock()
                    && let Some(slot) = v.get_mut(self.index)
                {
                    *slot = s.db.borrow().len();
                }
                // Active expiry: Redis's 10 cycles a second, 1 ms of work each at most.
                let s = s.clone();
                spawn(async move {
                    let mut tick = percore::runtime::interval(Duration::from_millis(100));
                    loop {
                        tick.tick().await;
                        if Rc::strong_count(&s) == 1 {
                            return;
                        }
                        let n = s.db.borrow_mut().active_expire(Duration::from_millis(1));
                        if n > 0 {
                            let _ = s.commit_reply(Vec::new(), || Box::new(|_| {}));
                        }
                    }
                });
            }
            Err(e) => tracing::error!(shard = self.index, error = %e, "shard failed to open"),
        }
    }

    async fn handle(&mut self, msg: ShardMsg, _ctx: &mut Context<Self>) {
        let shard = match (&self.shard, msg) {
            (_, ShardMsg::Opened(r)) => {
                let _ = r.send(
                    self.shard
                        .as_ref()
                        .map(|s| s.db.borrow().len())
                        .map_err(Clone::clone),
                );
                return;
            }
            (Err(e), ShardMsg::Cmd(_, _, resp))
            | (Err(e), ShardMsg::BPop(_, _, _, resp))
            | (Err(e), ShardMsg::Multi(_, resp)) => {
                let mut o = Out::new();
                o.error(&format!("ERR shard unavailable: {e}"));
                resp.send(o.into_bytes(), false);
                return;
            }
            (Err(e), ShardMsg::Part(_, g, i)) => {
                g.complete(
                    i,
                    super::gather::PartOut::Err(format!("ERR shard unavailable: {e}")),
                );
                return;
            }
            (Err(e), ShardMsg::Http(_, _, reply)) => {
                reply.respond(percore::transport::http::Response::text(
                    503,
                    format!("shard unavailable: {e}\n"),
                ));
                return;
            }
            (Err(_), ShardMsg::RenameInto(_, _, _, resp)) => {
                drop(resp);
                return;
            }
            (Err(e), ShardMsg::Close(r)) => {
                let _ = r.send(Err(e.clone()));
                return;
            }
            (Ok(s), m) => (s.clone(), m),
        };
        let (s, msg) = shard;
        match msg {
            ShardMsg::Opened(_) => unreachable!("answered above"),
            ShardMsg::Cmd(cmd, spec, resp) => run_cmd(&s, spec, &cmd, resp),
            ShardMsg::Part(p, g, i) => super::gather::run_part(&s, p, g, i).await,
            ShardMsg::BPop(keys, left, timeout, resp) => bpop(&s, keys, left, timeout, resp),
            ShardMsg::RenameInto(key, v, exp, resp) => {
                s.db.borrow_mut().insert(&key, v, exp);
                s.after_write();
                let mut o = Out::new();
                o.ok();
                reply(&s, o.into_bytes(), resp);
            }
            ShardMsg::Http(cmd, spec, reply) => super::admin::run(&s, spec, &cmd, reply),
            ShardMsg::Multi(cmds, resp) => {
                let mut slot = Some(resp);
                let r = s.run_all(&cmds, || {
                    let resp = slot.take().expect("taken once");
                    Box::new(move |b| resp.send(b, false))
                });
                if let (Ok(bytes), Some(resp)) = (r, slot) {
                    resp.send(bytes, false);
                }
            }
            ShardMsg::Close(r) => {
                let _ = r.send(s.close().await);
            }
        }
    }
}

/// Runs a whole command on shard `s` and replies through `resp` (now, or once durable).
pub fn run_cmd(s: &Rc<Shard>, spec: &Spec, cmd: &Cmd, resp: Responder) {
    let mut slot = Some(resp);
    let r = s.run(spec, cmd, || {
        let resp = slot.take().expect("taken once");
        Box::new(move |b| resp.send(b, false))
    });
    if let (Ok(bytes), Some(resp)) = (r, slot) {
        resp.send(bytes, false);
    }
}

/// Logs the changes made so far and sends `bytes` through `resp` (now or once durable).
pub fn reply(s: &Rc<Shard>, bytes: Vec<u8>, resp: Responder) {
    let mut slot = Some(resp);
    let r = s.commit_reply(bytes, || {
        let resp = slot.take().expect("taken once");
        Box::new(move |b| resp.send(b, false))
    });
    if let (Ok(bytes), Some(resp)) = (r, slot) {
        resp.send(bytes, false);
    }
}

/// BLPOP/BRPOP on shard `s`: pops now, or blocks the client until a push or the timeout.
pub fn bpop(
    s: &Rc<Shard>,
    keys: Vec<Vec<u8>>,
    left: bool,
    timeout: Option<Duration>,
    resp: Responder,
) {
    match s.try_bpop(&keys, left) {
        Err(()) => {
            let mut o = Out::new();
            o.error(super::db::WRONGTYPE);
            resp.send(o.into_bytes(), false);
        }
        Ok(Some(bytes)) => reply(s, bytes, resp),
        Ok(None) => {
            let id = s.block(keys, left, resp);
            if let Some(t) = timeout {
                let s = s.clone();
                spawn(async move {
                    percore::runtime::sleep(t).await;
                    s.unblock_timeout(id);
                });
            }
        }
    }
}
