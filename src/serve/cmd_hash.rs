//! Hash commands on one shard: HSET HMSET HSETNX HGET HMGET HDEL HEXISTS HGETALL HKEYS HVALS
//! HLEN HSTRLEN HINCRBY HINCRBYFLOAT.

use super::cmd_string::{NOT_INT, fmt_f64, parse_f64};
use super::db::{Db, HashVal, Value, WRONGTYPE};
use super::persist::Kind;
use super::resp::{Cmd, Out, parse_i64};

/// The hash at `key` for reading: `Err` for another type.
fn read<'a>(db: &'a mut Db, key: &[u8]) -> Result<Option<&'a HashVal>, ()> {
    match db.get(key) {
        None => Ok(None),
        Some(Value::Hash(h)) => Ok(Some(h)),
        Some(_) => Err(()),
    }
}

/// Makes sure `key` holds a hash (creating it); `Err` for another type.
fn ensure(db: &mut Db, key: &[u8]) -> Result<(), ()> {
    match db.get_mut(key) {
        Some(Value::Hash(_)) => Ok(()),
        Some(_) => Err(()),
        None => {
            db.create(key, Value::Hash(Box::default()));
            Ok(())
        }
    }
}

fn hash_mut<'a>(db: &'a mut Db, key: &[u8]) -> &'a mut HashVal {
    match db.get_mut(key) {
        Some(Value::Hash(h)) => h,
        _ => unreachable!("ensure() made it a hash"),
    }
}

/// Sets fields; returns how many were new.
fn set_fields(db: &mut Db, key: &[u8], pairs: &[&[u8]]) -> Result<i64, ()> {
    ensure(db, key)?;
    let mut added = 0;
    for p in pairs.chunks(2) {
        if hash_mut(db, key).insert(p[0].into(), p[1].into()).is_none() {
            added += 1;
        }
        db.log_elem(Kind::Hash, key, p[0], Some(p[1]));
    }
    Ok(added)
}

fn hset_args(c: &Cmd, name: &str, out: &mut Out) -> Option<Vec<u8>> {
    if !c.len().is_multiple_of(2) {
        out.error(&format!(
            "ERR wrong number of arguments for '{name}' command"
        ));
        return None;
    }
    Some(Vec::new())
}

pub(super) fn hset(db: &mut Db, c: &Cmd, out: &mut Out) {
    if hset_args(c, "hset", out).is_none() {
        return;
    }
    let args: Vec<&[u8]> = c.args().skip(2).collect();
    match set_fields(db, c.arg(1), &args) {
        Ok(n) => out.int(n),
        Err(()) => out.error(WRONGTYPE),
    }
}

pub(super) fn hmset(db: &mut Db, c: &Cmd, out: &mut Out) {
    if hset_args(c, "hmset", out).is_none() {
        return;
    }
    let args: Vec<&[u8]> = c.args().skip(2).collect();
    match set_fields(db, c.arg(1), &args) {
        Ok(_) => out.ok(),
        Err(()) => out.error(WRONGTYPE),
    }
}

pub(super) fn hsetnx(db: &mut Db, c: &Cmd, out: &mut Out) {
    let (key, f) = (c.arg(1), c.arg(2));
    match read(db, key) {
        Err(()) => return out.error(WRONGTYPE),
        Ok(Some(h)) if h.contains_key(f) => return out.int(0),
        Ok(_) => {}
    }
    match set_fields(db, key, &[f, c.arg(3)]) {
        Ok(_) => out.int(1),
        Err(()) => out.error(WRONGTYPE),
    }
}

pub(super) fn hget(db: &mut Db, c: &Cmd, out: &mut Out) {
    match read(db, c.arg(1)) {
        Ok(h) => out.opt_bulk(h.and_then(|h| h.get(c.arg(2))).map(|v| &v[..])),
        Err(()) => out.error(WRONGTYPE),
    }
}

pub(super) fn hmget(db: &mut Db, c: &Cmd, out: &mut Out) {
    match read(db, c.arg(1)) {
        Ok(h) => {
            out.array(c.len() - 2);
            for f in c.args().skip(2) {
                out.opt_bulk(h.and_then(|h| h.get(f)).map(|v| &v[..]));
            }
        }
        Err(()) => out.error(WRONGTYPE),
    }
}

pub(super) fn hdel(db: &mut Db, c: &Cmd, out: &mut Out) {
    let key = c.arg(1);
    match read(db, key) {
        Err(()) => return out.error(WRONGTYPE),
        Ok(None) => return out.int(0),
        Ok(Some(_)) => {}
    }
    let mut n = 0;
    for f in c.args().skip(2) {
        if hash_mut(db, key).remove(f).is_some() {
            n += 1;
            db.log_elem(Kind::Hash, key, f, None);
        }
    }
    db.drop_if_empty(key);
    out.int(n);
}

pub(super) fn hexists(db: &mut Db, c: &Cmd, out: &mut Out) {
    match read(db, c.arg(1)) {
        Ok(h) => out.int(h.is_some_and(|h| h.contains_key(c.arg(2))) as i64),
        Err(()) => out.error(WRONGTYPE),
    }
}

fn listing(db: &mut Db, c: &Cmd, out: &mut Out, keys: bool, vals: bool) {
    match read(db, c.arg(1)) {
        Ok(None) => out.array(0),
        Ok(Some(h)) => {
            out.array(h.len() * (keys as usize + vals as usize));
            for (k, v) in h.iter() {
                if keys {
                    out.bulk(k);
                }
                if vals {
                    out.bulk(v);
                }
            }
        }
        Err(()) => out.error(WRONGTYPE),
    }
}

pub(super) fn hgetall(db: &mut Db, c: &Cmd, out: &mut Out) {
    listing(db, c, out, true, true);
}

pub(super) fn hkeys(db: &mut Db, c: &Cmd, out: &mut Out) {
    listing(db, c, out, true, false);
}

pub(super) fn hvals(db: &mut Db, c: &Cmd, out: &mut Out) {
    listing(db, c, out, false, true);
}

pub(super) fn hlen(db: &mut Db, c: &Cmd, out: &mut Out) {
    match read(db, c.arg(1)) {
        Ok(h) => out.int(h.map_or(0, |h| h.len()) as i64),
        Err(()) => out.error(WRONGTYPE),
    }
}

pub(super) fn hstrlen(db: &mut Db, c: &Cmd, out: &mut Out) {
    match read(db, c.arg(1)) {
        Ok(h) => out.int(h.and_then(|h| h.get(c.arg(2))).map_or(0, |v| v.len()) as i64),
        Err(()) => out.error(WRONGTYPE),
    }
}

pub(super) fn hincrby(db: &mut Db, c: &Cmd, out: &mut Out) {
    let (key, f) = (c.arg(1), c.arg(2));
    let Some(by) = parse_i64(c.arg(3)) else {
        return out.error(NOT_INT);
    };
    let cur = match read(db, key) {
        Err(()) => return out.error(WRONGTYPE),
        Ok(h) => match h.and_then(|h| h.get(f)) {
            None => 0,
            Some(v) => match parse_i64(v) {
                Some(n) => n,
                None => return out.error("ERR hash value is not an integer"),
            },
        },
    };
    let Some(n) = cur.checked_add(by) else {
        return out.error("ERR increment or decrement would overflow");
    };
    let mut tmp = [0; 20];
    let s = super::resp::fmt_i64(n, &mut tmp).to_vec();
    let _ = set_fields(db, key, &[f, &s]);
    out.int(n);
}

pub(super) fn hincrbyfloat(db: &mut Db, c: &Cmd, out: &mut Out) {
    let (key, f) = (c.arg(1), c.arg(2));
    let Some(by) = parse_f64(c.arg(3)) else {
        return out.error("ERR value is not a valid float");
    };
    let cur = match read(db, key) {
        Err(()) => return out.error(WRONGTYPE),
        Ok(h) => match h.and_then(|h| h.get(f)) {
            None => 0.0,
            Some(v) => match parse_f64(v) {
                Some(n) => n,
                None => return out.error("ERR hash value is not a float"),
            },
        },
    };
    let n = cur + by;
    if !n.is_finite() {
        return out.error("ERR increment would produce NaN or Infinity");
    }
    let s = fmt_f64(n);
    let _ = set_fields(db, key, &[f, s.as_bytes()]);
    out.bulk(s.as_bytes());
}
