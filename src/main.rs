//! The `percore` command-line tool.
//!
//! - `percore info [--profile NAME|all] [--json]`: detected hardware and the resolved
//!   configuration of a profile (default: `Config::auto()`: `PERCORE_PROFILE`, else Production,
//!   plus overrides).
//! - `percore demo [--seconds N]`: starts the runtime on embedded defaults and runs a short
//!   sharded-counter workload (N seconds, at least 1) and an ask ping-pong between two workers,
//!   printing what it measured.
//! - `percore serve [--port 6379] [--dir ./percore-data] [--appendfsync everysec] ...`: the
//!   Redis-protocol server (`serve/`), until SIGINT or SIGTERM.

mod serve;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use percore::runtime::config::{Config, Profile};
use percore::runtime::detect::Hardware;
use percore::runtime::partition::HashPartitioner;
use percore::runtime::{Actor, Context, Reply, Runtime};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "percore",
    version,
    about = "percore: a thread-per-core actor runtime"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the detected hardware and the resolved configuration.
    Info {
        /// Profile to resolve (`all` prints every profile); default: from the environment.
        #[arg(long)]
        profile: Option<String>,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Run a short demo workload on the auto-configured runtime: sharded counters fed from
    /// every worker, then an ask ping-pong between two workers.
    Demo {
        /// How long the sharded-counter phase runs, in whole seconds (at least 1).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
        seconds: u64,
    },
    /// Serve the Redis protocol (RESP2) on a sharded, durable keyspace: `redis-cli -p 6379`.
    Serve(serve::ServeArgs),
    /// Inspect stores on disk.
    Storage {
        #[command(subcommand)]
        cmd: StorageCmd,
    },
}

#[derive(Subcommand)]
enum StorageCmd {
    /// Check a key-value store (a `KvStore` directory with `shard-N/` inside, or one shard's
    /// directory) without changing it: every segment and hint file is read and every record's
    /// CRC checked. Prints corrupt bytes and torn tails with file and offset; exits with 1 when
    /// anything is corrupt.
    Check {
        /// The store's directory.
        dir: std::path::PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    if let Some(dir) = percore::accelerator::device::private_runtime_dir() {
        // SAFETY: the first statement of `main`: no other thread exists yet to read the
        // environment while it changes.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", dir) };
    }
    init_tracing();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let res = match cli.cmd {
        Cmd::Info { profile, json } => info(profile.as_deref(), json),
        Cmd::Demo { seconds } => demo(seconds),
        Cmd::Serve(args) => serve::run(args),
        Cmd::Storage {
            cmd: StorageCmd::Check { dir, json },
        } => match storage_check(&dir, json) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("percore: {e}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,wgpu_hal=off,naga=warn,wgpu_core=warn"));
    // Colour only on a terminal: a log written to a file or a pipe stays plain text.
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Sections other layers add to `info` (the accelerator's adapters, …).
fn extra_info_sections() -> Result<Vec<(String, Value)>, Box<dyn std::error::Error>> {
    use percore::accelerator::{AccelOptions, adapters_on, choose};
    let opts = AccelOptions::from_env()?;
    let found = adapters_on(opts.apis);
    let sel = choose(opts.backend, &found);
    let accel = json!({
        "policy": opts.backend,
        "gpu_feature": cfg!(feature = "gpu"),
        "adapters": found,
        "selected": {
            "backend": if sel.adapter.is_some() { "gpu" } else { "cpu" },
            "adapter": sel.adapter.map(|i| found[i].name.clone()),
            "reason": sel.reason,
        },
    });
    Ok(vec![("accelerator".to_string(), accel)])
}

/// The storage section: block devices, the data directory's filesystem and direct-I/O
/// alignment, and which path file I/O takes (`PERCORE_DATA_DIR`, else the current directory).
fn storage_info(c: &Config, hw: &Hardware) -> Value {
    use percore::runtime::config::IoBackend;
    use percore::storage::disks;
    let dir = std::env::var_os("PERCORE_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    let loops = c.io_colocated || c.io_workers > 0;
    let uring = match c.io_backend {
        IoBackend::Uring => true,
        IoBackend::Mio => false,
        IoBackend::Auto => hw.io_uring.missing_required().is_none(),
    };
    let (path, why) = match (loops, uring) {
        (false, _) => ("blocking pool", "no I/O event loop in this configuration"),
        (true, true) => (
            "io_uring",
            "file operations are SQEs on the I/O event loops",
        ),
        (true, false) => (
            "blocking pool",
            "the event loops run mio: pread/pwrite on the blocking pool",
        ),
    };
    json!({
        "file_io": { "path": path, "why": why },
        "data_dir": disks::data_dir(&dir),
        "block_devices": disks::block_devices(),
    })
}

fn print_storage(v: &Value) {
    println!(
        "\nStorage (file I/O: {} — {})",
        v["file_io"]["path"].as_str().unwrap_or("?"),
        v["file_io"]["why"].as_str().unwrap_or("?")
    );
    let d = &v["data_dir"];
    if d.is_null() {
        println!("  data directory: not found (set PERCORE_DATA_DIR)");
    } else {
        let dio = if d["dio"].is_null() {
            "none reported (direct I/O falls back to buffered)".to_string()
        } else {
            format!(
                "memory {} B, offset {} B",
                d["dio"]["mem"], d["dio"]["offset"]
            )
        };
        println!(
            "  data directory {}: {} on {} (mounted at {}), O_DIRECT alignment {dio}",
            d["path"].as_str().unwrap_or("?"),
            d["fs_type"].as_str().unwrap_or("?"),
            d["source"].as_str().unwrap_or("?"),
            d["mount_point"].as_str().unwrap_or("?"),
        );
    }
    let empty = Vec::new();
    let devs = v["block_devices"].as_array().unwrap_or(&empty);
    println!(
        "  {:<10} {:>10} {:<10} {:>8} {:>9}  model",
        "device", "size", "kind", "logical", "physical"
    );
    for b in devs {
        let kind = if b["nvme"].as_bool() == Some(true) {
            "nvme"
        } else if b["rotational"].as_bool() == Some(true) {
            "rotational"
        } else {
            "ssd/virtual"
        };
        println!(
            "  {:<10} {:>8.1}GB {:<10} {:>8} {:>9}  {}",
            b["name"].as_str().unwrap_or("?"),
            b["bytes"].as_u64().unwrap_or(0) as f64 / 1e9,
            kind,
            b["logical_block"].as_u64().unwrap_or(0),
            b["physical_block"].as_u64().unwrap_or(0),
            b["model"].as_str().unwrap_or("-")
        );
    }
}

/// The accelerator section as a table: one row per adapter, then the selection.
fn print_accelerator(v: &Value) {
    println!(
        "\nAccelerator (policy {}, gpu feature {})",
        v["policy"].as_str().unwrap_or("?"),
        v["gpu_feature"]
    );
    let empty = Vec::new();
    let list = v["adapters"].as_array().unwrap_or(&empty);
    if list.is_empty() {
        println!("  no wgpu adapter found");
    } else {
        println!(
            "  {:<3} {:<34} {:<7} {:<10} {:>12} {:>10} {:>8}",
            "#", "adapter", "api", "kind", "max binding", "max wg/dim", "wg size"
        );
        for (i, a) in list.iter().enumerate() {
            let l = &a["limits"];
            println!(
                "  {:<3} {:<34} {:<7} {:<10} {:>12} {:>10} {:>8}",
                i,
                a["name"].as_str().unwrap_or("?"),
                a["backend"].as_str().unwrap_or("?"),
                a["kind"].as_str().unwrap_or("?"),
                l["max_storage_buffer_binding_size"]
                    .as_u64()
                    .map_or("?".into(), mib),
                l["max_compute_workgroups_per_dimension"].to_string(),
                l["max_compute_invocations_per_workgroup"].to_string(),
            );
        }
    }
    let s = &v["selected"];
    println!(
        "  selected: {} {} ({})",
        s["backend"].as_str().unwrap_or("?"),
        s["adapter"].as_str().unwrap_or(""),
        s["reason"].as_str().unwrap_or("")
    );
}

fn info(profile: Option<&str>, as_json: bool) -> Result<(), Box<dyn std::error::Error>> {
    let hw = Hardware::detect();
    let configs: Vec<Config> = match profile {
        Some("all") => Profile::ALL
            .iter()
            .map(|p| Config::for_profile(*p, &hw))
            .collect(),
        Some(name) => {
            let p: Profile = name.parse()?;
            let mut c = Config::for_profile(p, &hw);
            c.apply_env(|k| std::env::var(k).ok())?;
            c.placement = percore::runtime::config::plan_placement(&c, &hw);
            c.validate()?;
            vec![c]
        }
        None => vec![Config::from_env_with(&hw, |k| std::env::var(k).ok())?],
    };
    let mut extra = extra_info_sections()?;
    extra.push(("storage".to_string(), storage_info(&configs[0], &hw)));
    if as_json {
        let mut doc = json!({ "hardware": hw, "configs": configs });
        for (k, v) in extra {
            doc[k] = v;
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    print_hardware(&hw);
    print_configs(&configs);
    for (k, v) in extra {
        if k == "accelerator" {
            print_accelerator(&v);
        } else if k == "storage" {
            print_storage(&v);
        } else {
            println!("\n{k}\n{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / (1 << 20) as f64)
}

fn print_hardware(hw: &Hardware) {
    println!("Hardware (source: {})", hw.source);
    let rows: Vec<(&str, String)> = vec![
        (
            "logical CPUs",
            format!("{} {:?}", hw.logical_cpus, hw.cpu_ids),
        ),
        ("physical cores", hw.physical_cores.to_string()),
        ("SMT siblings", format!("{:?}", hw.smt_siblings)),
        ("packages", hw.packages.to_string()),
        (
            "NUMA nodes",
            hw.numa_nodes
                .iter()
                .map(|n| format!("node{}: cpus {:?}, {}", n.id, n.cpus, mib(n.memory_bytes)))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        (
            "caches (cpu0)",
            hw.caches
                .iter()
                .map(|c| format!("L{} {} {} KiB", c.level, c.kind, c.size_bytes / 1024))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "memory",
            format!(
                "{} total, {} available",
                mib(hw.memory_total),
                mib(hw.memory_available)
            ),
        ),
        (
            "cgroup limits",
            format!(
                "cpu {}, memory {}",
                hw.cgroup_cpu_limit
                    .map_or("none".into(), |c| format!("{c:.2}")),
                hw.cgroup_memory_limit.map_or("none".into(), mib)
            ),
        ),
        (
            "io_uring",
            format!(
                "{} ({}); multishot: {}; ops: {}",
                if hw.io_uring.available {
                    "available"
                } else {
                    "unavailable"
                },
                hw.io_uring.reason,
                hw.io_uring.multishot,
                hw.io_uring.ops.join(" ")
            ),
        ),
    ];
    for (k, v) in rows {
        println!("  {k:<16} {v}");
    }
}

fn print_configs(configs: &[Config]) {
    println!("\nConfiguration");
    type Field = (&'static str, Box<dyn Fn(&Config) -> String>);
    let fields: Vec<Field> = vec![
        ("profile", Box::new(|c| c.profile.to_string())),
        ("app_workers", Box::new(|c| c.app_workers.to_string())),
        (
            "io_workers",
            Box::new(|c| {
                if c.io_colocated {
                    format!("0 ({} co-located)", c.app_workers)
                } else {
                    c.io_workers.to_string()
                }
            }),
        ),
        ("io_colocated", Box::new(|c| c.io_colocated.to_string())),
        ("accel_workers", Box::new(|c| c.accel_workers.to_string())),
        ("accel_backend", Box::new(|c| c.accel_backend.to_string())),
        ("pin_workers", Box::new(|c| c.pin_workers.to_string())),
        ("numa_aware", Box::new(|c| c.numa_aware.to_string())),
        ("ring_capacity", Box::new(|c| c.ring_capacity.to_string())),
        (
            "mailbox_capacity",
            Box::new(|c| c.mailbox_capacity.to_string()),
        ),
        (
            "spin_before_park",
            Box::new(|c| format!("{:?}", c.spin_before_park)),
        ),
        ("tasks_per_tick", Box::new(|c| c.tasks_per_tick.to_string())),
        (
            "shutdown_timeout",
            Box::new(|c| format!("{:?}", c.shutdown_timeout)),
        ),
        (
            "io_backend",
            Box::new(|c| format!("{:?}", c.io_backend).to_lowercase()),
        ),
        (
            "max_connections",
            Box::new(|c| c.max_connections.to_string()),
        ),
        ("seed", Box::new(|c| format!("{:#x}", c.seed))),
        ("app placement", Box::new(|c| cpus(&c.placement.app))),
        (
            "io placement",
            Box::new(|c| {
                if c.io_colocated {
                    "on the app workers".into()
                } else {
                    cpus(&c.placement.io)
                }
            }),
        ),
        ("accel placement", Box::new(|c| cpus(&c.placement.accel))),
    ];
    let width = configs
        .iter()
        .flat_map(|c| fields.iter().map(move |(_, f)| f(c).len()))
        .max()
        .unwrap_or(8)
        .clamp(8, 32);
    for (name, f) in &fields {
        let cells: Vec<String> = configs
            .iter()
            .map(|c| format!("{:<width$}", f(c)))
            .collect();
        println!("  {name:<17} {}", cells.join(" "));
    }
    println!(
        "  (placement: the CPU each worker is pinned to, in worker order; * unpinned, - none)"
    );
}

fn cpus(v: &[Option<usize>]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.iter()
        .map(|c| c.map_or("*".to_string(), |c| c.to_string()))
        .collect::<Vec<_>>()
        .join(",")
}

struct Counter {
    n: u64,
}
enum CMsg {
    Add(u64),
    Get(Reply<u64>),
}
impl Actor for Counter {
    type Msg = CMsg;
    async fn handle(&mut self, msg: CMsg, _ctx: &mut Context<Self>) {
        match msg {
            CMsg::Add(k) => self.n += k,
            CMsg::Get(r) => {
                let _ = r.send(self.n);
            }
        }
    }
}

fn demo(seconds: u64) -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::auto()?;
    println!(
        "runtime: profile {}, {} app workers, mailbox {}, ring {}",
        rt.config().profile,
        rt.workers(),
        rt.config().mailbox_capacity,
        rt.config().ring_capacity
    );
    let shards = rt.spawn_sharded::<Counter, u64, _, _>(|_| Counter { n: 0 }, HashPartitioner)?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut producers = Vec::new();
    for w in 0..rt.workers() {
        let s = shards.clone();
        producers.push(rt.spawn_on(w, move || async move {
            let mut sent = 0u64;
            let mut key = w as u64;
            while Instant::now() < deadline {
                for _ in 0..1024 {
                    key = key
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    s.tell(&key, CMsg::Add(1)).await.expect("shard alive");
                }
                sent += 1024;
            }
            sent
        })?);
    }
    let t0 = Instant::now();
    let (sent, counted) = rt.block_on(async {
        let mut sent = 0;
        for p in producers {
            sent += p.await?;
        }
        let mut counted = 0;
        while counted < sent {
            counted = 0;
            for a in shards.all() {
                counted += a.ask(CMsg::Get, Duration::from_secs(5)).await?;
            }
        }
        Ok::<_, Box<dyn std::error::Error>>((sent, counted))
    })?;
    let el = t0.elapsed().as_secs_f64();
    println!(
        "sharded counters: {sent} keyed tells, {counted} counted, {:.2} M msg/s",
        sent as f64 / el / 1e6
    );
    println!(
        "  per worker (ring envelopes: one carries a batch of up to 64 messages to another core):"
    );
    for (i, m) in rt.metrics().iter().enumerate().take(rt.workers()) {
        println!(
            "  worker {i}: envelopes in {} out {}, task polls {}, busy {:.0} ms",
            m.messages_in,
            m.messages_out,
            m.tasks_polled,
            m.busy_ns as f64 / 1e6
        );
    }
    // Ping-pong: sequential asks from worker 0 to an actor on the last worker (on one worker
    // when there is only one).
    let last = rt.workers() - 1;
    let pong = rt.spawn_actor_on(last, || Counter { n: 0 })?;
    let rounds = 20_000u32;
    let h = rt.spawn_on(0, move || async move {
        let t0 = Instant::now();
        for _ in 0..rounds {
            pong.ask(CMsg::Get, Duration::from_secs(5)).await?;
        }
        Ok::<_, percore::runtime::AskError>(t0.elapsed())
    })?;
    let took = rt.block_on(h)??;
    println!(
        "ping-pong: {rounds} asks worker 0 -> worker {last}, {:.2} us per round trip",
        took.as_secs_f64() * 1e6 / f64::from(rounds)
    );
    let report = rt.shutdown();
    println!("shutdown: clean {} in {:?}", report.clean, report.elapsed);
    Ok(())
}

/// `percore storage check DIR`: true when nothing is corrupt.
fn storage_check(dir: &std::path::Path, json: bool) -> Result<bool, Box<dyn std::error::Error>> {
    use percore::storage::kv::{KvOptions, check};
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()).into());
    }
    let mut shards: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("shard-"))
        })
        .collect();
    shards.sort();
    if shards.is_empty() {
        shards.push(dir.to_path_buf());
    }
    // The largest segment size allowed: a frame is never bigger than its segment.
    let opts = KvOptions {
        max_segment_bytes: (1 << 32) - 1,
        ..KvOptions::default()
    };
    let mut clean = true;
    let mut reports = Vec::new();
    for s in &shards {
        let r = check(s, &opts)?;
        clean &= r.is_clean();
        if !json {
            println!("{}:\n{r}", s.display());
        }
        reports.push((s.display().to_string(), r));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(clean)
}
