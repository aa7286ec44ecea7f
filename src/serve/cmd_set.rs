//! Set commands on one shard: SADD SREM SMEMBERS SISMEMBER SMISMEMBER SCARD, and the per-shard
//! part of SINTER / SUNION / SDIFF (each key's members, combined where the reply is built).

use super::db::{Bytes, Db, SetVal, Value, WRONGTYPE};
use super::persist::Kind;
use super::resp::{Cmd, Out};

fn read<'a>(db: &'a mut Db, key: &[u8]) -> Result<Option<&'a SetVal>, ()> {
    match db.get(key) {
        None => Ok(None),
        Some(Value::Set(s)) => Ok(Some(s)),
        Some(_) => Err(()),
    }
}

fn set_mut<'a>(db: &'a mut Db, key: &[u8]) -> Result<Option<&'a mut SetVal>, ()> {
    match db.get_mut(key) {
        None => Ok(None),
        Some(Value::Set(s)) => Ok(Some(s)),
        Some(_) => Err(()),
    }
}

pub(super) fn sadd(db: &mut Db, c: &Cmd, out: &mut Out) {
    let key = c.arg(1);
    match set_mut(db, key) {
        Err(()) => return out.error(WRONGTYPE),
        Ok(None) => {
            db.create(key, Value::Set(Box::default()));
        }
        Ok(Some(_)) => {}
    }
    let mut n = 0;
    for m in c.args().skip(2) {
        let Ok(Some(s)) = set_mut(db, key) else {
            unreachable!("the set exists")
        };
        if s.insert(m.into()) {
            n += 1;
            db.log_elem(Kind::Set, key, m, Some(&[]));
        }
    }
    out.int(n);
}

pub(super) fn srem(db: &mut Db, c: &Cmd, out: &mut Out) {
    let key = c.arg(1);
    let mut n = 0;
    for m in c.args().skip(2) {
        match set_mut(db, key) {
            Err(()) => return out.error(WRONGTYPE),
            Ok(None) => break,
            Ok(Some(s)) => {
                if s.remove(m) {
                    n += 1;
                    db.log_elem(Kind::Set, key, m, None);
                }
            }
        }
    }
    db.drop_if_empty(key);
    out.int(n);
}

pub(super) fn smembers(db: &mut Db, c: &Cmd, out: &mut Out) {
    match read(db, c.arg(1)) {
        Err(()) => out.error(WRONGTYPE),
        Ok(None) => out.array(0),
        Ok(Some(s)) => {
            out.array(s.len());
            s.iter().for_each(|m| out.bulk(m));
        }
    }
}

pub(super) fn sismember(db: &mut Db, c: &Cmd, out: &mut Out) {
    match read(db, c.arg(1)) {
        Err(()) => out.error(WRONGTYPE),
        Ok(s) => out.int(s.is_some_and(|s| s.contains(c.arg(2))) as i64),
    }
}

pub(super) fn smismember(db: &mut Db, c: &Cmd, out: &mut Out) {
    match read(db, c.arg(1)) {
        Err(()) => out.error(WRONGTYPE),
        Ok(s) => {
            out.array(c.len() - 2);
            for m in c.args().skip(2) {
                out.int(s.is_some_and(|s| s.contains(m)) as i64);
            }
        }
    }
}

pub(super) fn scard(db: &mut Db, c: &Cmd, out: &mut Out) {
    match read(db, c.arg(1)) {
        Err(()) => out.error(WRONGTYPE),
        Ok(s) => out.int(s.map_or(0, |s| s.len()) as i64),
    }
}

/// The members of each key (`Ok(vec![])` for a missing key), or `Err` at the first key of
/// another type.
pub(super) fn members_part(db: &mut Db, keys: &[&[u8]]) -> Result<Vec<Vec<Bytes>>, ()> {
    keys.iter()
        .map(|k| read(db, k).map(|s| s.map_or_else(Vec::new, |s| s.iter().cloned().collect())))
        .collect()
}

/// Which set operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SetOp {
    Inter,
    Union,
    Diff,
}

/// Combines the members of each key (in command order) and writes the reply.
pub(super) fn combine(op: SetOp, sets: Vec<Vec<Bytes>>, out: &mut Out) {
    let mut it = sets.into_iter();
    let first: SetVal = it.next().unwrap_or_default().into_iter().collect();
    let mut acc = first;
    for s in it {
        let s: SetVal = s.into_iter().collect();
        match op {
            SetOp::Inter => acc.retain(|m| s.contains(m)),
            SetOp::Union => acc.extend(s),
            SetOp::Diff => acc.retain(|m| !s.contains(m)),
        }
    }
    out.array(acc.len());
    acc.iter().for_each(|m| out.bulk(m));
}

fn setop(db: &mut Db, c: &Cmd, out: &mut Out, op: SetOp) {
    let keys: Vec<&[u8]> = c.args().skip(1).collect();
    match members_part(db, &keys) {
        Ok(sets) => combine(op, sets, out),
        Err(()) => out.error(WRONGTYPE),
    }
}

pub(super) fn sinter(db: &mut Db, c: &Cmd, out: &mut Out) {
    setop(db, c, out, SetOp::Inter);
}

pub(super) fn sunion(db: &mut Db, c: &Cmd, out: &mut Out) {
    setop(db, c, out, SetOp::Union);
}

pub(super) fn sdiff(db: &mut Db, c: &Cmd, out: &mut Out) {
    setop(db, c, out, SetOp::Diff);
}
