//! Your own binary protocol on percore's event loops: a line protocol where `INCR key\n` adds
//! one to a counter and answers its value, and `GET key\n` reads it. `ServerProtocol::decode`
//! runs on the event loop; counters live in sharded actors (one per app worker), so a key's
//! state is owned by exactly one core. `--addr HOST:PORT` serves until SIGINT/SIGTERM;
//! without it the example talks to itself and exits.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};

use percore::runtime::partition::HashPartitioner;
use percore::runtime::signal::TerminationSignals;
use percore::runtime::{Actor, Context, Runtime, ShardedAddr, TrySendError};
use percore::transport::{Decoded, Dispatched, Responder, Server, ServerOptions, ServerProtocol};

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
                resp.discard();
                Dispatched::Answer(b"ERR stopped\n".to_vec(), true)
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .iter()
        .position(|a| a == "--addr")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let signals = TerminationSignals::block()?;
    let rt = Runtime::auto()?;
    let counters: ShardedAddr<Counters, str> = rt.spawn_sharded(
        |_| Counters {
            map: HashMap::new(),
        },
        HashPartitioner,
    )?;
    let bind = addr
        .clone()
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()?;
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
        let mut s = std::net::TcpStream::connect(server.local_addr())?;
        s.write_all(b"INCR apples\nINCR apples\nINCR pears\nGET apples\nGET plums\n")?;
        let mut r = BufReader::new(s.try_clone()?);
        for cmd in [
            "INCR apples",
            "INCR apples",
            "INCR pears",
            "GET apples",
            "GET plums",
        ] {
            let mut line = String::new();
            r.read_line(&mut line)?;
            println!("{cmd} -> {}", line.trim());
        }
    }
    server.stop();
    rt.shutdown();
    Ok(())
}
