//! String commands on one shard: GET SET (EX PX EXAT PXAT NX XX KEEPTTL GET) GETSET GETDEL
//! SETNX SETEX PSETEX APPEND STRLEN INCR DECR INCRBY DECRBY INCRBYFLOAT, and the per-shard parts
//! of MGET / MSET / MSETNX. Each takes the shard's keyspace, the command and the reply buffer;
//! arity was checked by the dispatcher (`commands.rs`).

use super::db::{Db, Value, WRONGTYPE};
use super::resp::{Cmd, Out, parse_i64};

pub(super) const NOT_INT: &str = "ERR value is not an integer or out of range";
pub(super) const SYNTAX: &str = "ERR syntax error";
const OVERFLOW: &str = "ERR increment or decrement would overflow";
const NOT_FLOAT: &str = "ERR value is not a valid float";

/// Reads a string value: `Err` for another type.
fn get_str<'a>(db: &'a mut Db, key: &[u8]) -> Result<Option<&'a [u8]>, ()> {
    match db.get(key) {
        None => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s)),
        Some(_) => Err(()),
    }
}

pub(super) fn get(db: &mut Db, c: &Cmd, out: &mut Out) {
    match get_str(db, c.arg(1)) {
        Ok(v) => out.opt_bulk(v),
        Err(()) => out.error(WRONGTYPE),
    }
}

/// An expiry given in `unit_ms` units, relative (`abs == false`) or absolute: the absolute
/// time in ms, or `None` when the number is invalid (≤ 0 or overflowing), as Redis refuses.
pub(super) fn expire_time(now: u64, n: &[u8], unit_ms: i64, abs: bool) -> Option<i64> {
    let n = parse_i64(n)?;
    if n <= 0 && !abs {
        return None;
    }
    let ms = n.checked_mul(unit_ms)?;
    if abs {
        (ms > 0).then_some(ms)
    } else {
        ms.checked_add(now as i64)
    }
}

pub(super) fn set(db: &mut Db, c: &Cmd, out: &mut Out) {
    let (key, val) = (c.arg(1), c.arg(2));
    let (mut nx, mut xx, mut get, mut keep) = (false, false, false, false);
    let mut expire: Option<(usize, i64, bool)> = None;
    let mut i = 3;
    while i < c.len() {
        let a = c.arg(i);
        let has_next = i + 1 < c.len();
        let unit = if a.eq_ignore_ascii_case(b"EX") {
            Some((1000, false))
        } else if a.eq_ignore_ascii_case(b"PX") {
            Some((1, false))
        } else if a.eq_ignore_ascii_case(b"EXAT") {
            Some((1000, true))
        } else if a.eq_ignore_ascii_case(b"PXAT") {
            Some((1, true))
        } else {
            None
        };
        if let Some((u, abs)) = unit {
            if expire.is_some() || keep || !has_next {
                return out.error(SYNTAX);
            }
            expire = Some((i + 1, u, abs));
            i += 2;
            continue;
        }
        if a.eq_ignore_ascii_case(b"NX") && !xx {
            nx = true;
        } else if a.eq_ignore_ascii_case(b"XX") && !nx {
            xx = true;
        } else if a.eq_ignore_ascii_case(b"GET") {
            get = true;
        } else if a.eq_ignore_ascii_case(b"KEEPTTL") && expire.is_none() {
            keep = true;
        } else {
            return out.error(SYNTAX);
        }
        i += 1;
    }
    let at = match expire {
        Some((j, u, abs)) => match expire_time(db.now(), c.arg(j), u, abs) {
            Some(t) => Some(t as u64),
            None => return out.error("ERR invalid expire time in 'set' command"),
        },
        None => None,
    };
    let old = if get {
        match get_str(db, key) {
            Ok(v) => Some(v.map(<[u8]>::to_vec)),
            Err(()) => return out.error(WRONGTYPE),
        }
    } else {
        None
    };
    let exists = (nx || xx) && db.contains(key);
    if (nx && exists) || (xx && !exists) {
        return match old {
            Some(v) => out.opt_bulk(v.as_deref()),
            None => out.nil(),
        };
    }
    db.set_str(key, val, at, keep);
    match old {
        Some(v) => out.opt_bulk(v.as_deref()),
        None => out.ok(),
    }
}

pub(super) fn setnx(db: &mut Db, c: &Cmd, out: &mut Out) {
    if db.contains(c.arg(1)) {
        out.int(0);
    } else {
        db.set_str(c.arg(1), c.arg(2), None, false);
        out.int(1);
    }
}

fn setex_in(db: &mut Db, c: &Cmd, out: &mut Out, unit: i64, name: &str) {
    match expire_time(db.now(), c.arg(2), unit, false) {
        Some(t) => {
            db.set_str(c.arg(1), c.arg(3), Some(t as u64), false);
            out.ok();
        }
        None => out.error(&format!("ERR invalid expire time in '{name}' command")),
    }
}

pub(super) fn setex(db: &mut Db, c: &Cmd, out: &mut Out) {
    setex_in(db, c, out, 1000, "setex");
}

pub(super) fn psetex(db: &mut Db, c: &Cmd, out: &mut Out) {
    setex_in(db, c, out, 1, "psetex");
}

pub(super) fn getset(db: &mut Db, c: &Cmd, out: &mut Out) {
    match get_str(db, c.arg(1)) {
        Ok(v) => {
            let v = v.map(<[u8]>::to_vec);
            db.set_str(c.arg(1), c.arg(2), None, false);
            out.opt_bulk(v.as_deref());
        }
        Err(()) => out.error(WRONGTYPE),
    }
}

pub(super) fn getdel(db: &mut Db, c: &Cmd, out: &mut Out) {
    match get_str(db, c.arg(1)) {
        Ok(Some(v)) => {
            out.bulk(v);
            db.remove(c.arg(1));
        }
        Ok(None) => out.nil(),
        Err(()) => out.error(WRONGTYPE),
    }
}

pub(super) fn append(db: &mut Db, c: &Cmd, out: &mut Out) {
    let key = c.arg(1);
    let new = match get_str(db, key) {
        Ok(Some(v)) => [v, c.arg(2)].concat(),
        Ok(None) => c.arg(2).to_vec(),
        Err(()) => return out.error(WRONGTYPE),
    };
    db.set_str(key, &new, None, true);
    out.int(new.len() as i64);
}

pub(super) fn strlen(db: &mut Db, c: &Cmd, out: &mut Out) {
    match get_str(db, c.arg(1)) {
        Ok(v) => out.int(v.map_or(0, <[u8]>::len) as i64),
        Err(()) => out.error(WRONGTYPE),
    }
}

fn incr_by(db: &mut Db, key: &[u8], by: i64, out: &mut Out) {
    let cur = match get_str(db, key) {
        Ok(Some(v)) => match parse_i64(v) {
            Some(n) => n,
            None => return out.error(NOT_INT),
        },
        Ok(None) => 0,
        Err(()) => return out.error(WRONGTYPE),
    };
    let Some(n) = cur.checked_add(by) else {
        return out.error(OVERFLOW);
    };
    let mut tmp = [0; 20];
    db.set_str(key, super::resp::fmt_i64(n, &mut tmp), None, true);
    out.int(n);
}

pub(super) fn incr(db: &mut Db, c: &Cmd, out: &mut Out) {
    incr_by(db, c.arg(1), 1, out);
}

pub(super) fn decr(db: &mut Db, c: &Cmd, out: &mut Out) {
    incr_by(db, c.arg(1), -1, out);
}

pub(super) fn incrby(db: &mut Db, c: &Cmd, out: &mut Out) {
    match parse_i64(c.arg(2)) {
        Some(n) => incr_by(db, c.arg(1), n, out),
        None => out.error(NOT_INT),
    }
}

pub(super) fn decrby(db: &mut Db, c: &Cmd, out: &mut Out) {
    match parse_i64(c.arg(2)).and_then(i64::checked_neg) {
        Some(n) => incr_by(db, c.arg(1), n, out),
        None => out.error(NOT_INT),
    }
}

/// A float as Redis reads one (`strtold`, no spaces, no NaN).
pub(super) fn parse_f64(s: &[u8]) -> Option<f64> {
    let t = std::str::from_utf8(s).ok()?;
    if t.is_empty() || t.starts_with(char::is_whitespace) || t.ends_with(char::is_whitespace) {
        return None;
    }
    let v: f64 = t.parse().ok()?;
    (!v.is_nan()).then_some(v)
}

/// A float as Redis prints INCRBYFLOAT's result: plain decimal, no exponent, no trailing
/// zeros (`%.17Lg` then trimmed).
pub(super) fn fmt_f64(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e17 {
        return format!("{}", v as i64);
    }
    let s = format!("{v}");
    if s.contains('e') {
        format!("{v:.17}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        s
    }
}

pub(super) fn incrbyfloat(db: &mut Db, c: &Cmd, out: &mut Out) {
    let Some(by) = parse_f64(c.arg(2)) else {
        return out.error(NOT_FLOAT);
    };
    let key = c.arg(1);
    let cur = match get_str(db, key) {
        Ok(Some(v)) => match parse_f64(v) {
            Some(n) => n,
            None => return out.error(NOT_FLOAT),
        },
        Ok(None) => 0.0,
        Err(()) => return out.error(WRONGTYPE),
    };
    let n = cur + by;
    if !n.is_finite() {
        return out.error("ERR increment would produce NaN or Infinity");
    }
    let s = fmt_f64(n);
    db.set_str(key, s.as_bytes(), None, true);
    out.bulk(s.as_bytes());
}

/// MGET's part on one shard: one reply element per key, in the order given.
pub(super) fn mget_part(db: &mut Db, keys: &[&[u8]]) -> Vec<Vec<u8>> {
    keys.iter()
        .map(|k| {
            let mut o = Out::new();
            match get_str(db, k) {
                Ok(v) => o.opt_bulk(v),
                Err(()) => o.nil(),
            }
            o.into_bytes()
        })
        .collect()
}

pub(super) fn mget(db: &mut Db, c: &Cmd, out: &mut Out) {
    let keys: Vec<&[u8]> = c.args().skip(1).collect();
    out.array(keys.len());
    for e in mget_part(db, &keys) {
        out.raw(&e);
    }
}

/// MSET's part on one shard.
pub(super) fn mset_part(db: &mut Db, pairs: &[(&[u8], &[u8])]) {
    for (k, v) in pairs {
        db.set_str(k, v, None, false);
    }
}

pub(super) fn mset(db: &mut Db, c: &Cmd, out: &mut Out) {
    if c.len().is_multiple_of(2) {
        return out.error("ERR wrong number of arguments for 'mset' command");
    }
    let args: Vec<&[u8]> = c.args().skip(1).collect();
    let pairs: Vec<(&[u8], &[u8])> = args.chunks(2).map(|p| (p[0], p[1])).collect();
    mset_part(db, &pairs);
    out.ok();
}

/// MSETNX on one shard (the dispatcher refuses keys spread over shards).
pub(super) fn msetnx(db: &mut Db, c: &Cmd, out: &mut Out) {
    if c.len().is_multiple_of(2) {
        return out.error("ERR wrong number of arguments for 'msetnx' command");
    }
    let args: Vec<&[u8]> = c.args().skip(1).collect();
    if args.chunks(2).any(|p| db.contains(p[0])) {
        return out.int(0);
    }
    for p in args.chunks(2) {
        db.set_str(p[0], p[1], None, false);
    }
    out.int(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_redis() {
        assert_eq!(fmt_f64(10.5), "10.5");
        assert_eq!(fmt_f64(3000.0), "3000");
        assert_eq!(fmt_f64(-0.25), "-0.25");
        assert_eq!(parse_f64(b" 1"), None);
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(parse_f64(b"1e3"), Some(1000.0));
    }
}
