//! Your own binary protocol on percore's event loops: a line protocol where `INCR key\n` adds
//! one to a counter and answers its value, and `GET key\n` reads it. `ServerProtocol::decode`
//! runs on the event loop; counters live in sharded actors (one per app worker), so a key's
//! state is owned by exactly one core. The client side plugs the same protocol into a
//! `FramedClient` through a `Codec` (`LineCodec`). `--addr HOST:PORT` serves until
//! SIGINT/SIGTERM; without it the example talks to itself (pipelined, then one call at a time)
//! and exits.
#[path = "common/args.rs"]
mod args;

use std::collections::HashMap;
use std::time::Duration;

use percore::runtime::partition::HashPartitioner;
use percore::runtime::signal::TerminationSignals;
use percore::runtime::{Actor, Context, Runtime, ShardedAddr, TrySendError};
use percore::transport::{
    Codec, CodecError, Decoded, Dispatched, FramedClient, Responder, Server, ServerOptions,
    ServerProtocol,
};

/// The client's view of the protocol: commands out as lines, answers in as lines.
#[derive(Clone, Copy)]
struct LineCodec;

impl Codec for LineCodec {
    type In = String;
    type Out = str;

    fn decode(&mut self, buf: &[u8]) -> Result<Option<(String, usize)>, CodecError> {
        match buf.iter().position(|b| *b == b'\n') {
            Some(end) => Ok(Some((
                String::from_utf8_lossy(&buf[..end]).into_owned(),
                end + 1,
            ))),
            None if buf.len() > 1024 => Err(CodecError::FrameTooLarge {
                len: buf.len(),
                max: 1024,
            }),
            None => Ok(None),
        }
    }

    fn encode(&mut self, cmd: &str, dst: &mut Vec<u8>) -> Result<(), CodecError> {
        dst.extend_from_slice(cmd.as_bytes());
        dst.push(b'\n');
        Ok(())
    }
}

enum Cmd {
    Incr(String),
    Get(String),
}

struct Counters {
    map: HashMap<String, u64>,
}

impl Actor for Counters {
    type Msg = (Cmd, Responder);
    async fn handle(&mut self, (cmd, resp): (Cmd, Responder), _ctx: &mut Context<Self>) {
        let v = match cmd {
            Cmd::Incr(k) => {
                let v = self.map.entry(k).or_default();
                *v += 1;
                *v
            }
            Cmd::Get(k) => self.map.get(&k).copied().unwrap_or(0),
        };
        resp.send(format!("{v}\n").into_bytes(), false);
    }
}

struct LineProto {
    counters: ShardedAddr<Counters, str>,
}

impl ServerProtocol for LineProto {
    type Request = Cmd;

    fn decode(&self, input: &[u8]) -> Decoded<Cmd> {
        let Some(end) = input.iter().position(|b| *b == b'\n') else {
            return if input.len() > 1024 {
                Decoded::Reject {
                    response: Some(b"ERR line too long\n".to_vec()),
                    reason: "line over 1 KiB".into(),
                }
            } else {
                Decoded::Incomplete
            };
        };
        let line = String::from_utf8_lossy(&input[..end]).trim().to_string();
        match line.split_once(' ') {
            Some(("INCR", k)) => Decoded::Request(Cmd::Incr(k.to_string()), end + 1),
            Some(("GET", k)) => Decoded::Request(Cmd::Get(k.to_string()), end + 1),
            _ => Decoded::Reject {
                response: Some(b"ERR unknown command\n".to_vec()),
                reason: line,
            },
        }
    }

    fn dispatch(&self, cmd: Cmd, resp: Responder, _conn: u64) -> Dispatched<Cmd> {
        let key = match &cmd {
            Cmd::Incr(k) | Cmd::Get(k) => k.clone(),
        };
        match self.counters.try_tell(&key, (cmd, resp)) {
            Ok(()) => Dispatched::Sent,
            Err(TrySendError::Full((cmd, resp))) => Dispatched::Full(cmd, resp),
            Err(TrySendError::Stopped((_, resp))) => {
                Dispatched::Answer(resp.answer(b"ERR stopped\n".to_vec(), true))
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    args::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = args::Args::parse(&["--addr"], &[], "[--addr HOST:PORT]");
    let addr: Option<std::net::SocketAddr> = args.get("--addr");
    let signals = TerminationSignals::block()?;
    let rt = Runtime::auto()?;
    let counters: ShardedAddr<Counters, str> = rt.spawn_sharded(
        |_| Counters {
            map: HashMap::new(),
        },
        HashPartitioner,
    )?;
    let bind = addr.unwrap_or(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let server = Server::bind(
        &rt.handle(),
        bind,
        LineProto { counters },
        ServerOptions::default(),
    )?;
    println!("listening on {}", server.local_addr());
    if addr.is_some() {
        println!("{}: stopping", signals.wait());
    } else {
        let (h, at) = (rt.handle(), server.local_addr());
        rt.block_on(async move {
            let t = Duration::from_secs(5);
            let mut c = FramedClient::connect(&h, at, LineCodec, t).await?;
            // Pipelined: all commands out, then the answers in order.
            let cmds = ["INCR apples", "INCR apples", "INCR pears", "GET apples"];
            for cmd in cmds {
                c.send(cmd).await?;
            }
            for cmd in cmds {
                let answer = c.recv().await?.unwrap_or_default();
                println!("{cmd} -> {answer}");
            }
            println!("GET plums -> {}", c.call("GET plums").await?);
            Ok::<_, percore::transport::FramedError>(())
        })?;
    }
    server.stop();
    println!("stopped (clean: {})", rt.shutdown().clean);
    Ok(())
}
