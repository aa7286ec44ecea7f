//! The protocol-agnostic server (`percore::transport::Server`) with a framed codec, on every
//! I/O configuration: what happens at the edges of a stream (a peer that closes in the middle
//! of a frame) is counted and closes only that connection.

mod common;
use common::{modes, runtime};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use percore::runtime::{Actor, Context};
use percore::transport::{CodecProtocol, FrameCall, LengthPrefixed, Server, ServerOptions};

struct Echo;
impl Actor for Echo {
    type Msg = FrameCall<LengthPrefixed>;
    async fn handle(&mut self, mut call: FrameCall<LengthPrefixed>, _ctx: &mut Context<Self>) {
        let frame = std::mem::take(&mut call.frame);
        call.reply(&frame).expect("within the codec's limit");
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

#[test]
fn a_frame_cut_short_by_the_peer_is_counted_as_truncated() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let echo = rt.spawn_actor_on(0, || Echo).unwrap();
        let srv = Server::bind(
            &rt.handle(),
            "127.0.0.1:0".parse().unwrap(),
            CodecProtocol::new(LengthPrefixed::new(1024), echo),
            ServerOptions::default(),
        )
        .unwrap();
        let addr = srv.local_addr();
        let mut good = TcpStream::connect(addr).unwrap();
        good.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

        // A whole frame, then half of one, then the peer shuts its side: the whole one is
        // answered, the half one is a truncated frame (CodecError::Truncated), and the
        // connection closes.
        let mut cut = TcpStream::connect(addr).unwrap();
        cut.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut bytes = frame(b"whole");
        bytes.extend_from_slice(&frame(b"cut short")[..7]);
        cut.write_all(&bytes).unwrap();
        cut.shutdown(std::net::Shutdown::Write).unwrap();
        let mut echoed = vec![0u8; 9];
        cut.read_exact(&mut echoed)
            .expect("the echo (read_exact retries EINTR)");
        assert_eq!(echoed, frame(b"whole"), "{b:?}/{co}");
        let mut tmp = [0u8; 8];
        loop {
            match cut.read(&mut tmp) {
                Ok(0) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                other => panic!("{b:?}/{co}: expected a close, got {other:?}"),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while srv.stats().truncated.load(Ordering::Relaxed) == 0 {
            assert!(
                Instant::now() < deadline,
                "{b:?}/{co}: truncation not counted"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(srv.stats().truncated.load(Ordering::Relaxed), 1);

        // A peer that shuts its side after whole frames only is not truncated.
        let mut clean = TcpStream::connect(addr).unwrap();
        clean
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        clean.write_all(&frame(b"bye")).unwrap();
        clean.shutdown(std::net::Shutdown::Write).unwrap();
        let mut echoed = vec![0u8; 7];
        clean
            .read_exact(&mut echoed)
            .expect("the echo (read_exact retries EINTR)");
        assert_eq!(echoed, frame(b"bye"));

        // The other connection never noticed.
        good.write_all(&frame(b"still here")).unwrap();
        let mut echoed = vec![0u8; 14];
        good.read_exact(&mut echoed)
            .expect("the echo (read_exact retries EINTR)");
        assert_eq!(echoed, frame(b"still here"), "{b:?}/{co}");
        assert_eq!(
            srv.stats().truncated.load(Ordering::Relaxed),
            1,
            "{b:?}/{co}"
        );
        rt.shutdown();
    }
}
