//! A TCP echo server: bytes are read on the event loops and handed to an echo actor on the same
//! core (sharded, one per app worker), which sends them back. `--addr HOST:PORT`,
//! `--framed` to echo length-prefixed frames instead of raw bytes, `--accept
//! incoming-cpu|distribute|reuseport` to choose how connections spread over the loops. Stops on SIGINT/SIGTERM.
//!
//! ```text
//! cargo run --release --example echo_server -- --addr 127.0.0.1:9090
//! ```
#[path = "common/args.rs"]
mod args;

use percore::runtime::partition::RoundRobin;
use percore::runtime::signal::TerminationSignals;
use percore::runtime::{Actor, Context, Runtime, ShardedAddr};
use percore::transport::{
    AcceptMode, CodecProtocol, FrameCall, LengthPrefixed, RawBytes, Server, ServerOptions,
};

struct Echo;
impl Actor for Echo {
    type Msg = FrameCall<RawBytes>;
    async fn handle(&mut self, mut call: FrameCall<RawBytes>, _ctx: &mut Context<Self>) {
        let bytes = std::mem::take(&mut call.frame);
        call.reply_raw(bytes, false);
    }
}

struct FramedEcho;
impl Actor for FramedEcho {
    type Msg = FrameCall<LengthPrefixed>;
    async fn handle(&mut self, mut call: FrameCall<LengthPrefixed>, _ctx: &mut Context<Self>) {
        let frame = std::mem::take(&mut call.frame);
        // An encode error (frame over max_frame) cannot happen: it was decoded with the same limit.
        let _ = call.reply(&frame);
    }
}

fn main() -> std::process::ExitCode {
    args::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = args::Args::parse(
        &["--addr", "--accept"],
        &["--framed"],
        "[--addr HOST:PORT] [--framed] [--accept incoming-cpu|distribute|reuseport]",
    );
    let addr: std::net::SocketAddr = args.get_or("--addr", "127.0.0.1:9090".parse()?);
    let framed = args.has("--framed");
    let mut opts = ServerOptions::default();
    if let Some(mode) = args.get::<String>("--accept") {
        opts.accept = match mode.as_str() {
            "reuseport" => AcceptMode::ReusePort,
            "distribute" => AcceptMode::Distribute,
            "incoming-cpu" => AcceptMode::IncomingCpu,
            other => args.fail(format_args!(
                "--accept {other:?}: use incoming-cpu (the default), distribute or reuseport"
            )),
        };
    }
    let signals = TerminationSignals::block()?;
    let rt = Runtime::auto()?;
    let h = rt.handle();
    let server = if framed {
        let echo: ShardedAddr<FramedEcho, ()> =
            rt.spawn_sharded(|_| FramedEcho, RoundRobin::default())?;
        Server::bind(
            &h,
            addr,
            CodecProtocol::new(LengthPrefixed::default(), echo),
            opts,
        )?
    } else {
        let echo: ShardedAddr<Echo, ()> = rt.spawn_sharded(|_| Echo, RoundRobin::default())?;
        Server::bind(&h, addr, CodecProtocol::new(RawBytes, echo), opts)?
    };
    println!("listening on {}", server.local_addr());
    let sig = signals.wait();
    println!("{sig}: stopping");
    server.stop();
    println!("stopped (clean: {})", rt.shutdown().clean);
    Ok(())
}
