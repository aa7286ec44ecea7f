//! Fuzzes the `LengthPrefixed` codec: decoding arbitrary bytes never panics and respects the
//! frame limit, and encode → decode round-trips payloads up to `max_frame`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore::transport::{Codec, CodecError, LengthPrefixed};

const HEADER: usize = percore::transport::codec::LENGTH_HEADER;

fn check_decode(codec: &mut LengthPrefixed, buf: &[u8]) {
    let max = codec.max_frame();
    let announced = buf
        .first_chunk::<HEADER>()
        .map(|h| u32::from_be_bytes(*h) as usize);
    match codec.decode(buf) {
        Ok(Some((msg, used))) => {
            assert!(used <= buf.len(), "consumed {used} of {} bytes", buf.len());
            assert!(
                msg.len() <= max,
                "frame of {} bytes over max_frame {max}",
                msg.len()
            );
            assert_eq!(
                Some(msg.len()),
                announced,
                "payload length differs from the header"
            );
            assert_eq!(used, HEADER + msg.len());
            assert_eq!(msg, &buf[HEADER..used]);
        }
        Ok(None) => match announced {
            None => assert!(buf.len() < HEADER),
            Some(len) => {
                assert!(
                    len <= max,
                    "frame of {len} bytes over max_frame {max} not rejected"
                );
                assert!(buf.len() < HEADER + len, "complete frame not decoded");
            }
        },
        Err(CodecError::FrameTooLarge { len, max: m }) => {
            assert_eq!(Some(len), announced);
            assert_eq!(m, max);
            assert!(
                len > max,
                "frame of {len} bytes rejected with max_frame {max}"
            );
        }
        Err(e) => panic!("decode returned {e:?}"),
    }
    // Any frame larger than max_frame is rejected, whatever follows its header.
    if let Some(len) = announced {
        if len > max {
            assert_eq!(
                codec.decode(buf),
                Err(CodecError::FrameTooLarge { len, max })
            );
        }
    }
    // At end of stream: a frame, nothing (empty input) or a typed error; never a panic.
    match codec.decode_eof(buf) {
        Ok(Some((_, used))) => assert!(used <= buf.len()),
        Ok(None) => assert!(buf.is_empty()),
        Err(CodecError::Truncated { have, need }) => {
            assert_eq!(have, buf.len());
            assert!(need > have);
        }
        Err(CodecError::FrameTooLarge { len, max: m }) => assert!(len > m),
    }
    // Decoding a whole stream consumes at most what is there.
    let mut rest = buf;
    while let Ok(Some((_, used))) = codec.decode(rest) {
        assert!(used > 0 && used <= rest.len());
        rest = &rest[used..];
    }
}

fn check_round_trip(codec: &mut LengthPrefixed, payload: &[u8]) {
    let max = codec.max_frame();
    let prefix = b"prev".to_vec();
    let mut dst = prefix.clone();
    match codec.encode(payload, &mut dst) {
        Ok(()) => {
            assert!(
                payload.len() <= max,
                "encoded {} bytes over max_frame {max}",
                payload.len()
            );
            assert_eq!(
                &dst[..prefix.len()],
                &prefix[..],
                "encode changed earlier bytes"
            );
            let wire = &dst[prefix.len()..];
            assert_eq!(wire.len(), HEADER + payload.len());
            assert_eq!(
                codec.decode(wire),
                Ok(Some((payload.to_vec(), wire.len()))),
                "round trip failed"
            );
            // Every strict prefix of the frame asks for more bytes.
            for cut in [0, 1, HEADER - 1, HEADER, wire.len() - 1] {
                if cut < wire.len() {
                    assert_eq!(codec.decode(&wire[..cut]), Ok(None), "cut at {cut}");
                }
            }
        }
        Err(e) => {
            assert!(
                payload.len() > max,
                "payload of {} bytes refused: {e:?}",
                payload.len()
            );
            assert_eq!(
                e,
                CodecError::FrameTooLarge {
                    len: payload.len(),
                    max
                }
            );
            assert_eq!(dst, prefix, "failed encode changed dst");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Default codec (8 MiB frames) on the raw bytes.
    let mut big = LengthPrefixed::default();
    check_decode(&mut big, data);

    // Small max_frame (0..=1024) from the first two bytes; the rest is input.
    let Some((h, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let mut small = LengthPrefixed::new(usize::from(u16::from_le_bytes(*h)) % 1025);
    check_decode(&mut small, rest);
    check_round_trip(&mut small, rest);
    check_round_trip(&mut big, rest);

    // Several messages ('|' separates them) in one stream: decode gives them back in order.
    let msgs: Vec<&[u8]> = rest.split(|b| *b == b'|').collect();
    let mut wire = Vec::new();
    let mut sent = Vec::new();
    for m in &msgs {
        if small.encode(m, &mut wire).is_ok() {
            sent.push(m.to_vec());
        }
    }
    let mut got = Vec::new();
    let mut at = &wire[..];
    while let Some((m, used)) = small.decode(at).expect("encoded stream decodes") {
        got.push(m);
        at = &at[used..];
    }
    assert!(at.is_empty(), "{} bytes left", at.len());
    assert_eq!(got, sent);
});
