//! `percore serve`: a Redis-protocol server built only from percore's public API — the model
//! of how to build a sharded service on percore.
//!
//! - Each app worker owns one shard of the keyspace (`shard.rs`): a key lives on the shard its
//!   hash slot picks (`slot.rs`, Redis Cluster's CRC16 and hash tags).
//! - Connections are served by percore's [`Server`] on the event loops (`protocol.rs`): RESP2
//!   is decoded there (`resp.rs`) and a command runs at once when its key's shard is on the
//!   loop's own core, else it travels to the owner shard's actor; commands over keys on
//!   several shards are split and gathered (`gather.rs`).
//! - Persistence goes through the storage layer: one [`KvShard`](percore::storage::kv::KvShard)
//!   log per shard in `DIR/shard-N/`, one record per string or collection element
//!   (`persist.rs`), with Redis's `appendfsync always|everysec|no`.
//!
//! ```text
//! cargo run --release -- serve            # listening on 127.0.0.1:6379
//! redis-cli -p 6379 ping                  # PONG
//! ```
//!
//! - Pub/sub across cores (`pubsub.rs`, pushed through the transport's `Pusher`), `maxmemory`
//!   with Redis's eviction policies (`evict.rs`), an HTTP face with `--admin` (`admin.rs`).
//!
//! - MULTI/EXEC on the shard that owns the transaction's keys, logged as one batch.
//!
//! Compared with redis-server 7: RESP2 only (HELLO 3 answers NOPROTO), one database (SELECT 0),
//! no WATCH or Lua yet; commands over keys on several shards are not atomic across shards
//! (MSETNX, BLPOP/BRPOP and MULTI/EXEC need their keys on one shard: use a hash tag; RENAME
//! across shards is not crash-atomic). Must not touch: percore's internals (only its public
//! API).

mod admin;
mod cmd_hash;
mod cmd_keys;
mod cmd_list;
mod cmd_set;
mod cmd_string;
mod commands;
mod db;
mod evict;
mod gather;
mod persist;
mod protocol;
mod pubsub;
mod resp;
mod shard;
mod slot;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use percore::runtime::Runtime;
use percore::runtime::partition::HashPartitioner;
use percore::runtime::signal::TerminationSignals;
use percore::storage::kv::{Durability, KvOptions};
use percore::transport::{Server, ServerOptions};

use shard::{Fsync, ShardActor, ShardConfig, ShardMsg};

/// `percore serve`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// TCP port.
    #[arg(long, default_value_t = 6379)]
    pub port: u16,
    /// Address to listen on (loopback by default: expose it on purpose).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Data directory (one `shard-N/` append log per shard).
    #[arg(long, default_value = "./percore-data")]
    pub dir: PathBuf,
    /// Persistence on (`yes`) or off (`no`: nothing is written to disk).
    #[arg(long, default_value = "yes", value_parser = ["yes", "no"])]
    pub appendonly: String,
    /// When writes reach the disk: `always` (acknowledged after fsync), `everysec` (group
    /// commit every second: a crash loses at most about the last second), `no` (the OS decides).
    #[arg(long, default_value = "everysec", value_parser = ["always", "everysec", "no"])]
    pub appendfsync: String,
    /// Password clients must give with AUTH before other commands.
    #[arg(long)]
    pub requirepass: Option<String>,
    /// App workers, hence shards (default: the runtime's zero-config choice for this machine).
    #[arg(long)]
    pub workers: Option<NonZeroUsize>,
    /// Also serve the HTTP admin face here (`GET/PUT/DELETE /kv/{key}`, and the runtime's
    /// `/metrics`, `/health`, `/ready` and `/dashboard`).
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Memory limit (bytes, or with a unit: 100mb, 2gb; 0: none), as Redis's `maxmemory`:
    /// the allocator's bytes in use for the whole process.
    #[arg(long, default_value = "0", value_parser = parse_memory)]
    pub maxmemory: u64,
    /// What goes when memory is over `maxmemory`: noeviction, allkeys-lru, allkeys-lfu,
    /// allkeys-random, volatile-lru, volatile-lfu, volatile-random, volatile-ttl.
    #[arg(long, default_value = "noeviction", value_parser = parse_policy)]
    pub maxmemory_policy: evict::Policy,
    /// Largest bulk argument accepted, in bytes (Redis's `proto-max-bulk-len`).
    #[arg(long, default_value_t = resp::DEFAULT_MAX_BULK)]
    pub proto_max_bulk_len: usize,
}

type Error = Box<dyn std::error::Error>;

/// A memory size as Redis reads one: bytes, or a number with k kb m mb g gb (case-insensitive;
/// k = 1000, kb = 1024).
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let l = s.trim().to_ascii_lowercase();
    let (num, mul) = [
        ("gb", 1u64 << 30),
        ("mb", 1 << 20),
        ("kb", 1 << 10),
        ("g", 1_000_000_000),
        ("m", 1_000_000),
        ("k", 1000),
        ("b", 1),
    ]
    .iter()
    .find_map(|(suf, m)| l.strip_suffix(suf).map(|n| (n.to_string(), *m)))
    .unwrap_or((l.clone(), 1));
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| format!("'{s}' is not a memory size (bytes, or e.g. 100mb, 2gb)"))
}

fn parse_policy(s: &str) -> Result<evict::Policy, String> {
    evict::Policy::parse(s).ok_or_else(|| {
        let names: Vec<&str> = evict::Policy::ALL.iter().map(|p| p.0).collect();
        format!("'{s}' is not a policy; one of: {}", names.join(", "))
    })
}

/// Checks (or writes) `DIR/META`: the number of shards the data was written with.
fn check_meta(dir: &Path, shards: usize) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let meta = dir.join("SERVE-META");
    let want = format!("percore-serve 1\nshards {shards}\n");
    match std::fs::read_to_string(&meta) {
        Ok(s) if s == want => Ok(()),
        Ok(s) => Err(format!(
            "{} was written by a server with another layout ({}); start with --workers set to its shard count, or use another --dir",
            dir.display(),
            s.lines().nth(1).unwrap_or("unknown").trim()
        )
        .into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&meta, want).map_err(|e| format!("writing {}: {e}", meta.display()))?;
            Ok(())
        }
        Err(e) => Err(format!("reading {}: {e}", meta.display()).into()),
    }
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> Result<(), Error> {
    let signals = TerminationSignals::block()?;
    let rt = Runtime::builder()
        .auto()?
        .accel_workers(0)
        .when(args.workers.is_some(), |b| {
            b.app_workers(args.workers.unwrap_or(NonZeroUsize::MIN))
        })
        .build()?;
    let h = rt.handle();
    let n = h.workers();
    let fsync = match (args.appendonly.as_str(), args.appendfsync.as_str()) {
        ("no", _) => Fsync::Off,
        (_, "always") => Fsync::Always,
        (_, "no") => Fsync::No,
        _ => Fsync::EverySec,
    };
    let dir = (fsync != Fsync::Off).then(|| args.dir.clone());
    if let Some(d) = &dir {
        check_meta(d, n)?;
    }
    let kv = KvOptions {
        durability: match fsync {
            Fsync::Always => Durability::Sync,
            Fsync::EverySec => Durability::GroupCommit {
                interval: Duration::from_secs(1),
                max_bytes: 64 << 20,
            },
            _ => Durability::None,
        },
        max_key_bytes: 65535,
        max_value_bytes: 32 << 20,
        // Values are served from memory; the log is read back only on restart.
        read_cache_bytes: 0,
        ..KvOptions::default()
    };
    let mem = Arc::new(evict::MemConfig::new(args.maxmemory, args.maxmemory_policy));
    let cfg = ShardConfig {
        mem: mem.clone(),
        dir: dir.clone(),
        fsync,
        kv,
        handle: h.clone(),
        loaded: Arc::new(Mutex::new(vec![0; n])),
    };
    let shards: percore::runtime::ShardedAddr<ShardActor, [u8]> =
        rt.spawn_sharded(move |i| ShardActor::new(i, cfg.clone()), HashPartitioner)?;
    let addrs: Vec<_> = shards.all().to_vec();
    let mut keys = 0;
    for a in &addrs {
        let r = rt.block_on(a.ask(ShardMsg::Opened, Duration::from_secs(3600)));
        match r {
            Ok(Ok(k)) => keys += k,
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => return Err(format!("a shard did not open: {e}").into()),
        }
    }
    let addr = SocketAddr::new(args.bind, args.port);
    let opts = ServerOptions {
        // Redis's `timeout 0`: idle clients stay connected.
        idle_timeout: Duration::from_secs(10 * 365 * 24 * 3600),
        request_timeout: Duration::from_secs(10 * 365 * 24 * 3600),
        ..ServerOptions::default()
    };
    let fixed = protocol::Fixed {
        addr,
        dir: dir.clone(),
        appendfsync: match fsync {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
            Fsync::No | Fsync::Off => "no",
        },
        maxclients: h.config().max_connections,
    };
    let state = protocol::State::new(
        addrs.clone(),
        fixed,
        args.requirepass.map(String::into_bytes),
        mem,
    );
    state.set_max_bulk(args.proto_max_bulk_len);
    let server = Server::bind(&h, addr, protocol::Resp(Arc::new(state)), opts)?;
    let admin = match args.admin {
        Some(a) => Some(admin::bind(&h, a, addrs.clone())?),
        None => None,
    };
    let persistence = match &dir {
        Some(d) => format!(
            "append log in {} (appendfsync {})",
            d.display(),
            args.appendfsync
        ),
        None => "no persistence".to_string(),
    };
    println!(
        "listening on {} ({n} shards, {keys} keys loaded, {persistence})",
        server.local_addr()
    );
    if let Some((a, _pages)) = &admin {
        println!("admin HTTP on {}", a.local_addr());
    }
    let why = signals.wait();
    println!("{why}: stopping");
    if let Some((a, _pages)) = admin {
        let _ = rt.block_on(a.shutdown(Duration::from_secs(5)));
    }
    let report = rt.block_on(server.shutdown(Duration::from_secs(5)));
    tracing::info!(?report, "server stopped");
    let mut failed = None;
    for a in &addrs {
        match rt.block_on(a.ask(ShardMsg::Close, Duration::from_secs(60))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = Some(e),
            Err(e) => failed = Some(e.to_string()),
        }
    }
    rt.shutdown();
    match failed {
        Some(e) => Err(format!("flushing the append log: {e}").into()),
        None => {
            println!("stopped cleanly");
            Ok(())
        }
    }
}
