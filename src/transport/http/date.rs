//! The `Date` header value (IMF-fixdate), formatted once per second per thread.

use std::cell::RefCell;

thread_local! {
    static CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Appends the current `Date` value, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`, to `out`.
pub fn append_now(out: &mut Vec<u8>) {
    let secs = now_secs();
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            c.1 = format(secs);
            c.0 = secs;
        }
        out.extend_from_slice(&c.1);
    });
}

/// Seconds since the Unix epoch, from the kernel's coarse wall clock where it has one (a plain
/// read of the time the kernel last stored, no clock-source access: one call per response
/// showed as ~1.3 % of the HTTP server's CPU with the precise clock). The coarse clock lags by
/// at most one timer tick (a few milliseconds), which a one-second `Date` header cannot show.
fn now_secs() -> u64 {
    crate::runtime::io::sys::coarse_unix_secs()
}

/// Formats `secs` since the Unix epoch as an IMF-fixdate (29 bytes).
pub fn format(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    let mut b = [0u8; 29];
    b[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    b[3] = b',';
    b[4] = b' ';
    two(&mut b[5..7], d as u64);
    b[7] = b' ';
    b[8..11].copy_from_slice(MONTHS[(mo - 1) as usize]);
    b[11] = b' ';
    let y = y.clamp(0, 9999) as u64;
    two(&mut b[12..14], y / 100);
    two(&mut b[14..16], y % 100);
    b[16] = b' ';
    two(&mut b[17..19], h);
    b[19] = b':';
    two(&mut b[20..22], m);
    b[22] = b':';
    two(&mut b[23..25], s);
    b[25..29].copy_from_slice(b" GMT");
    b
}

fn two(dst: &mut [u8], v: u64) {
    dst[0] = b'0' + (v / 10 % 10) as u8;
    dst[1] = b'0' + (v % 10) as u8;
}

#[cfg(test)]
mod tests {
    #[test]
    fn coarse_clock_agrees_with_the_system_clock() {
        use std::time::{SystemTime, UNIX_EPOCH};
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let coarse = super::now_secs();
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        // The coarse clock lags by at most a tick: it may read the previous second.
        assert!(
            coarse + 1 >= before && coarse <= after,
            "{before} <= {coarse} <= {after}"
        );
    }

    #[test]
    fn formats_known_dates() {
        assert_eq!(
            &super::format(784_111_777),
            b"Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(&super::format(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            &super::format(951_782_400),
            b"Tue, 29 Feb 2000 00:00:00 GMT"
        );
        assert_eq!(
            &super::format(1_795_392_000),
            b"Mon, 23 Nov 2026 00:00:00 GMT"
        );
    }
}
