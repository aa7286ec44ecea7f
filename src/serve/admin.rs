//! The HTTP face of `percore serve` (`--admin ADDR`), on percore's HTTP server: string keys as
//! resources — `GET /kv/{key}` (200 with the value, 404), `PUT /kv/{key}` (the body becomes the
//! value; 204), `DELETE /kv/{key}` (204, 404) — and `GET /health`. Keys are percent-decoded
//! from the path. Requests run on the key's shard like RESP commands (on the loop's own core
//! when the shard is there), with the same durability. Owns the mapping between HTTP and
//! commands only.

use std::net::SocketAddr;
use std::rc::Rc;

use percore::runtime::{Addr, Handle};
use percore::transport::Target;
use percore::transport::TransportError;
use percore::transport::admin::AdminPages;
use percore::transport::http::{HttpCall, HttpReply, HttpServer, Response, Router};

use super::commands::{self, Spec};
use super::resp::Cmd;
use super::shard::{self, Shard, ShardActor, ShardMsg};
use super::slot;

/// Decodes `%XX` escapes (a malformed one is kept as it is).
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (
                (b[i + 1] as char).to_digit(16),
                (b[i + 2] as char).to_digit(16),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Turns a command's RESP reply into an HTTP response.
pub fn to_http(name: &str, resp: &[u8]) -> Response {
    let body = |r: &[u8]| {
        r.get(1..r.len().saturating_sub(2))
            .unwrap_or_default()
            .to_vec()
    };
    match resp.first() {
        Some(b'$') if resp.starts_with(b"$-1") => Response::text(404, "no such key\n"),
        Some(b'$') => {
            let start = resp.iter().position(|&c| c == b'\n').map_or(0, |p| p + 1);
            let v = resp
                .get(start..resp.len().saturating_sub(2))
                .unwrap_or_default()
                .to_vec();
            Response::new(200)
                .header("Content-Type", "application/octet-stream")
                .body(v)
        }
        Some(b'+') => Response::new(204),
        Some(b':') if name == "del" && resp.starts_with(b":0") => {
            Response::text(404, "no such key\n")
        }
        Some(b':') => Response::new(204),
        Some(b'-') if resp.starts_with(b"-WRONGTYPE") => Response::text(
            409,
            String::from_utf8_lossy(&body(resp)).into_owned() + "\n",
        ),
        Some(b'-') if resp.starts_with(b"-MISCONF") => Response::text(
            503,
            String::from_utf8_lossy(&body(resp)).into_owned() + "\n",
        ),
        _ => Response::text(
            500,
            String::from_utf8_lossy(&body(resp)).into_owned() + "\n",
        ),
    }
}

/// Runs `cmd` on shard `s` and answers the HTTP request (now, or once durable).
pub fn run(s: &Rc<Shard>, spec: &'static Spec, cmd: &Cmd, reply: HttpReply) {
    let mut slot = Some(reply);
    let r = s.run(spec, cmd, || {
        let reply = slot.take().expect("taken once");
        Box::new(move |b: Vec<u8>| reply.respond(to_http(spec.name, &b)))
    });
    if let (Ok(bytes), Some(reply)) = (r, slot) {
        reply.respond(to_http(spec.name, &bytes));
    }
}

// The closures answer every call themselves and never hand one back: the large `Err` of
// `Target`'s signature is never built.
#[allow(clippy::result_large_err)]
fn target(shards: Vec<Addr<ShardActor>>) -> Target<HttpCall> {
    Target::from_fn(move |call: HttpCall, _conn| {
        use percore::transport::http::Method;
        let (req, reply) = call.into_parts();
        let key = percent_decode(req.param("key").unwrap_or_default());
        if key.is_empty() {
            reply.respond(Response::text(400, "a key is needed: /kv/{key}\n"));
            return Ok(());
        }
        let cmd = match req.method {
            Method::Get | Method::Head => Cmd::from_args(&[&b"GET"[..], &key]),
            Method::Put => Cmd::from_args(&[&b"SET"[..], &key, &req.body]),
            Method::Delete => Cmd::from_args(&[&b"DEL"[..], &key]),
            _ => {
                reply.respond(Response::text(405, "GET, PUT or DELETE\n"));
                return Ok(());
            }
        };
        let spec = commands::lookup(cmd.arg(0)).expect("GET, SET and DEL are in the table");
        let to = slot::slot(&key) as usize % shards.len();
        if let Some(s) = shard::local()
            && s.index == to
        {
            run(&s, spec, &cmd, reply);
            return Ok(());
        }
        match shards[to].try_tell(ShardMsg::Http(cmd, spec, reply)) {
            Ok(()) => Ok(()),
            Err(e) => {
                if let ShardMsg::Http(_, _, reply) = e.into_inner() {
                    reply.respond(
                        Response::text(503, "the shard is busy; retry\n")
                            .header("Retry-After", "1"),
                    );
                }
                Ok(())
            }
        }
    })
}

/// Serves the admin face on `addr`: the key routes next to the runtime's admin pages
/// (`/metrics`, `/health`, `/ready`, `/dashboard`); the pages answer while the returned
/// [`AdminPages`] lives.
#[allow(clippy::result_large_err)] // see `target`
pub fn bind(
    handle: &Handle,
    addr: SocketAddr,
    shards: Vec<Addr<ShardActor>>,
) -> Result<(HttpServer, AdminPages), TransportError> {
    let kv = target(shards);
    let router = Router::new()
        .get("/kv/*key", kv.clone())
        .put("/kv/*key", kv.clone())
        .delete("/kv/*key", kv);
    let (router, pages) = percore::transport::admin::mount(handle, router)?;
    Ok((HttpServer::bind(handle, addr, router)?, pages))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_and_reply_mapping() {
        assert_eq!(percent_decode("a%20b%2Fc%zz"), b"a b/c%zz");
        assert_eq!(percent_decode("%4"), b"%4");
        assert_eq!(to_http("get", b"$-1\r\n").status, 404);
        let r = to_http("get", b"$3\r\nabc\r\n");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abc"[..]));
        assert_eq!(to_http("set", b"+OK\r\n").status, 204);
        assert_eq!(to_http("del", b":0\r\n").status, 404);
        assert_eq!(to_http("del", b":1\r\n").status, 204);
        assert_eq!(to_http("get", b"-WRONGTYPE x\r\n").status, 409);
    }
}
