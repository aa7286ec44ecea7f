//! List commands on one shard: LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP (with count) LLEN LRANGE
//! LINDEX LSET LREM LTRIM. BLPOP/BRPOP's waiting lives with the shard (`shard.rs`), which uses
//! [`pop`] here once an element is there.

use super::cmd_string::NOT_INT;
use super::db::{Db, ListVal, Value, WRONGTYPE};
use super::persist::{Kind, seq_bytes};
use super::resp::{Cmd, Out, parse_i64};

fn read<'a>(db: &'a mut Db, key: &[u8]) -> Result<Option<&'a ListVal>, ()> {
    match db.get(key) {
        None => Ok(None),
        Some(Value::List(l)) => Ok(Some(l)),
        Some(_) => Err(()),
    }
}

fn list_mut<'a>(db: &'a mut Db, key: &[u8]) -> Result<Option<&'a mut ListVal>, ()> {
    match db.get_mut(key) {
        None => Ok(None),
        Some(Value::List(l)) => Ok(Some(l)),
        Some(_) => Err(()),
    }
}

/// Pushes `elems` at the head (`left`) or the tail; `only_existing`: LPUSHX/RPUSHX. Returns
/// the new length (0 when nothing was pushed to a missing key).
pub(super) fn push(
    db: &mut Db,
    key: &[u8],
    elems: &[&[u8]],
    left: bool,
    only_existing: bool,
) -> Result<usize, ()> {
    match list_mut(db, key)? {
        Some(_) => {}
        None if only_existing => return Ok(0),
        None => {
            db.create(key, Value::List(Box::default()));
        }
    }
    for e in elems {
        let Ok(Some(l)) = list_mut(db, key) else {
            unreachable!("the list exists")
        };
        let seq = if left {
            let s = l.head_seq();
            l.items.push_front((s, (*e).into()));
            s
        } else {
            let s = l.tail_seq();
            l.items.push_back((s, (*e).into()));
            s
        };
        db.log_elem(Kind::List, key, &seq_bytes(seq), Some(e));
    }
    Ok(match list_mut(db, key)? {
        Some(l) => l.items.len(),
        None => 0,
    })
}

fn push_cmd(db: &mut Db, c: &Cmd, out: &mut Out, left: bool, x: bool) {
    let elems: Vec<&[u8]> = c.args().skip(2).collect();
    match push(db, c.arg(1), &elems, left, x) {
        Ok(n) => out.int(n as i64),
        Err(()) => out.error(WRONGTYPE),
    }
}

pub(super) fn lpush(db: &mut Db, c: &Cmd, out: &mut Out) {
    push_cmd(db, c, out, true, false);
}

pub(super) fn rpush(db: &mut Db, c: &Cmd, out: &mut Out) {
    push_cmd(db, c, out, false, false);
}

pub(super) fn lpushx(db: &mut Db, c: &Cmd, out: &mut Out) {
    push_cmd(db, c, out, true, true);
}

pub(super) fn rpushx(db: &mut Db, c: &Cmd, out: &mut Out) {
    push_cmd(db, c, out, false, true);
}

/// Pops up to `n` elements from the head (`left`) or tail; `Ok(None)` for a missing key.
pub(super) fn pop(
    db: &mut Db,
    key: &[u8],
    n: usize,
    left: bool,
) -> Result<Option<Vec<Box<[u8]>>>, ()> {
    let Some(l) = list_mut(db, key)? else {
        return Ok(None);
    };
    let mut got = Vec::with_capacity(n.min(l.items.len()));
    let mut seqs = Vec::with_capacity(got.capacity());
    for _ in 0..n {
        let e = if left {
            l.items.pop_front()
        } else {
            l.items.pop_back()
        };
        let Some((s, v)) = e else { break };
        seqs.push(s);
        got.push(v);
    }
    for s in seqs {
        db.log_elem(Kind::List, key, &seq_bytes(s), None);
    }
    db.drop_if_empty(key);
    Ok(Some(got))
}

fn pop_cmd(db: &mut Db, c: &Cmd, out: &mut Out, left: bool) {
    let count = if c.len() > 2 {
        match parse_i64(c.arg(2)) {
            Some(n) if n >= 0 => Some(n as usize),
            _ => return out.error("ERR value is out of range, must be positive"),
        }
    } else {
        None
    };
    match pop(db, c.arg(1), count.unwrap_or(1), left) {
        Err(()) => out.error(WRONGTYPE),
        Ok(None) => match count {
            Some(_) => out.nil_array(),
            None => out.nil(),
        },
        Ok(Some(v)) => match count {
            Some(_) => {
                out.array(v.len());
                v.iter().for_each(|e| out.bulk(e));
            }
            None => out.opt_bulk(v.first().map(|e| &e[..])),
        },
    }
}

pub(super) fn lpop(db: &mut Db, c: &Cmd, out: &mut Out) {
    pop_cmd(db, c, out, true);
}

pub(super) fn rpop(db: &mut Db, c: &Cmd, out: &mut Out) {
    pop_cmd(db, c, out, false);
}

pub(super) fn llen(db: &mut Db, c: &Cmd, out: &mut Out) {
    match read(db, c.arg(1)) {
        Ok(l) => out.int(l.map_or(0, |l| l.items.len()) as i64),
        Err(()) => out.error(WRONGTYPE),
    }
}

/// Redis's index normalisation for ranges: returns (start, end) inclusive, or `None` when
/// empty.
fn range(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut s = if start < 0 { len + start } else { start };
    let mut e = if end < 0 { len + end } else { end };
    if s < 0 {
        s = 0;
    }
    if s > e || s >= len {
        return None;
    }
    if e >= len {
        e = len - 1;
    }
    Some((s as usize, e as usize))
}

pub(super) fn lrange(db: &mut Db, c: &Cmd, out: &mut Out) {
    let (Some(s), Some(e)) = (parse_i64(c.arg(2)), parse_i64(c.arg(3))) else {
        return out.error(NOT_INT);
    };
    match read(db, c.arg(1)) {
        Err(()) => out.error(WRONGTYPE),
        Ok(None) => out.array(0),
        Ok(Some(l)) => match range(l.items.len(), s, e) {
            None => out.array(0),
            Some((s, e)) => {
                out.array(e - s + 1);
                for (_, v) in l.items.range(s..=e) {
                    out.bulk(v);
                }
            }
        },
    }
}

fn index(len: usize, i: i64) -> Option<usize> {
    let i = if i < 0 { len as i64 + i } else { i };
    (i >= 0 && (i as usize) < len).then_some(i as usize)
}

pub(super) fn lindex(db: &mut Db, c: &Cmd, out: &mut Out) {
    let Some(i) = parse_i64(c.arg(2)) else {
        return out.error(NOT_INT);
    };
    match read(db, c.arg(1)) {
        Err(()) => out.error(WRONGTYPE),
        Ok(None) => out.nil(),
        Ok(Some(l)) => out.opt_bulk(index(l.items.len(), i).map(|i| &l.items[i].1[..])),
    }
}

pub(super) fn lset(db: &mut Db, c: &Cmd, out: &mut Out) {
    let key = c.arg(1);
    let Some(i) = parse_i64(c.arg(2)) else {
        return out.error(NOT_INT);
    };
    let seq = match list_mut(db, key) {
        Err(()) => return out.error(WRONGTYPE),
        Ok(None) => return out.error("ERR no such key"),
        Ok(Some(l)) => match index(l.items.len(), i) {
            None => return out.error("ERR index out of range"),
            Some(i) => {
                l.items[i].1 = c.arg(3).into();
                l.items[i].0
            }
        },
    };
    db.log_elem(Kind::List, key, &seq_bytes(seq), Some(c.arg(3)));
    out.ok();
}

pub(super) fn lrem(db: &mut Db, c: &Cmd, out: &mut Out) {
    let key = c.arg(1);
    let Some(count) = parse_i64(c.arg(2)) else {
        return out.error(NOT_INT);
    };
    let val = c.arg(3);
    let removed: Vec<i64> = match list_mut(db, key) {
        Err(()) => return out.error(WRONGTYPE),
        Ok(None) => return out.int(0),
        Ok(Some(l)) => {
            let limit = if count == 0 {
                usize::MAX
            } else {
                count.unsigned_abs() as usize
            };
            let mut hits: Vec<usize> = Vec::new();
            let n = l.items.len();
            for j in 0..n {
                let i = if count < 0 { n - 1 - j } else { j };
                if hits.len() < limit && &l.items[i].1[..] == val {
                    hits.push(i);
                }
            }
            hits.sort_unstable();
            let seqs: Vec<i64> = hits.iter().map(|&i| l.items[i].0).collect();
            let mut k = 0;
            let mut idx = 0;
            l.items.retain(|_| {
                let keep = !(k < hits.len() && hits[k] == idx);
                if !keep {
                    k += 1;
                }
                idx += 1;
                keep
            });
            seqs
        }
    };
    for s in &removed {
        db.log_elem(Kind::List, key, &seq_bytes(*s), None);
    }
    db.drop_if_empty(key);
    out.int(removed.len() as i64);
}

pub(super) fn ltrim(db: &mut Db, c: &Cmd, out: &mut Out) {
    let key = c.arg(1);
    let (Some(s), Some(e)) = (parse_i64(c.arg(2)), parse_i64(c.arg(3))) else {
        return out.error(NOT_INT);
    };
    let removed: Vec<i64> = match list_mut(db, key) {
        Err(()) => return out.error(WRONGTYPE),
        Ok(None) => return out.ok(),
        Ok(Some(l)) => {
            let n = l.items.len();
            let (keep_s, keep_e) = match range(n, s, e) {
                Some(r) => r,
                None => (n, n),
            };
            let mut gone = Vec::new();
            for (i, (seq, _)) in l.items.iter().enumerate() {
                if i < keep_s || i > keep_e || keep_s == n {
                    gone.push(*seq);
                }
            }
            if keep_s == n {
                l.items.clear();
            } else {
                l.items.truncate(keep_e + 1);
                l.items.drain(..keep_s);
            }
            gone
        }
    };
    for s in &removed {
        db.log_elem(Kind::List, key, &seq_bytes(*s), None);
    }
    db.drop_if_empty(key);
    out.ok();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(db: &mut Db, args: &[&str]) -> Vec<u8> {
        let c = Cmd::from_args(args);
        let mut out = Out::new();
        let f = super::super::commands::lookup(c.arg(0))
            .and_then(|s| s.exec)
            .expect("a shard command");
        f(db, &c, &mut out);
        out.into_bytes()
    }

    #[test]
    fn push_pop_trim_rem() {
        let mut db = Db::new(true, Default::default());
        assert_eq!(run(&mut db, &["RPUSH", "l", "a", "b", "c", "b"]), b":4\r\n");
        assert_eq!(run(&mut db, &["LPUSH", "l", "z"]), b":5\r\n");
        assert_eq!(run(&mut db, &["LREM", "l", "-1", "b"]), b":1\r\n");
        assert_eq!(
            run(&mut db, &["LRANGE", "l", "0", "-1"]),
            b"*4\r\n$1\r\nz\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"
        );
        assert_eq!(run(&mut db, &["LTRIM", "l", "1", "-2"]), b"+OK\r\n");
        assert_eq!(
            run(&mut db, &["LRANGE", "l", "0", "-1"]),
            b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        assert_eq!(run(&mut db, &["LTRIM", "l", "5", "10"]), b"+OK\r\n");
        assert_eq!(run(&mut db, &["EXISTS", "l"]), b":0\r\n");
        assert_eq!(run(&mut db, &["LPOP", "l", "2"]), b"*-1\r\n");
    }
}
