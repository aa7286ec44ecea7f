//! Key commands on one shard: TYPE EXPIRE PEXPIRE EXPIREAT PEXPIREAT (NX XX GT LT) PERSIST
//! TTL PTTL EXPIRETIME PEXPIRETIME, and the per-shard parts of DEL UNLINK EXISTS KEYS SCAN
//! DBSIZE FLUSHDB; Redis's glob matcher for KEYS and SCAN MATCH.

use super::cmd_string::{NOT_INT, SYNTAX};
use super::db::Db;
use super::resp::{Cmd, Out, parse_i64};

pub(super) fn type_(db: &mut Db, c: &Cmd, out: &mut Out) {
    let t = db.get(c.arg(1)).map_or("none", |v| v.type_name());
    out.simple(t);
}

fn expire_generic(db: &mut Db, c: &Cmd, out: &mut Out, unit: i64, abs: bool, name: &str) {
    let key = c.arg(1);
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for a in c.args().skip(3) {
        match a.to_ascii_uppercase().as_slice() {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"GT" => gt = true,
            b"LT" => lt = true,
            _ => {
                return out.error(&format!(
                    "ERR Unsupported option {}",
                    String::from_utf8_lossy(a)
                ));
            }
        }
    }
    if nx && (xx || gt || lt) {
        return out.error("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return out.error("ERR GT and LT options at the same time are not compatible");
    }
    let Some(n) = parse_i64(c.arg(2)) else {
        return out.error(NOT_INT);
    };
    let at = match n.checked_mul(unit).and_then(|ms| {
        if abs {
            Some(ms)
        } else {
            ms.checked_add(db.now() as i64)
        }
    }) {
        Some(t) => t,
        None => return out.error(&format!("ERR invalid expire time in '{name}' command")),
    };
    if !db.contains(key) {
        return out.int(0);
    }
    let cur = db.expire_at(key);
    // A missing TTL counts as infinite for GT/LT.
    let ok = match cur {
        Some(t) => !(nx || (gt && at <= t as i64) || (lt && at >= t as i64)),
        None => !xx && !gt,
    };
    if !ok {
        return out.int(0);
    }
    if at <= db.now() as i64 {
        db.remove(key);
    } else {
        db.set_expire(key, Some(at as u64));
    }
    out.int(1);
}

pub(super) fn expire(db: &mut Db, c: &Cmd, out: &mut Out) {
    expire_generic(db, c, out, 1000, false, "expire");
}

pub(super) fn pexpire(db: &mut Db, c: &Cmd, out: &mut Out) {
    expire_generic(db, c, out, 1, false, "pexpire");
}

pub(super) fn expireat(db: &mut Db, c: &Cmd, out: &mut Out) {
    expire_generic(db, c, out, 1000, true, "expireat");
}

pub(super) fn pexpireat(db: &mut Db, c: &Cmd, out: &mut Out) {
    expire_generic(db, c, out, 1, true, "pexpireat");
}

pub(super) fn persist(db: &mut Db, c: &Cmd, out: &mut Out) {
    let key = c.arg(1);
    if db.contains(key) && db.expire_at(key).is_some() {
        db.set_expire(key, None);
        out.int(1);
    } else {
        out.int(0);
    }
}

fn ttl_generic(db: &mut Db, c: &Cmd, out: &mut Out, ms: bool, absolute: bool) {
    let key = c.arg(1);
    if !db.contains(key) {
        return out.int(-2);
    }
    match db.expire_at(key) {
        None => out.int(-1),
        Some(t) if absolute => out.int(if ms { t as i64 } else { (t / 1000) as i64 }),
        Some(t) => {
            let left = t.saturating_sub(db.now()) as i64;
            out.int(if ms { left } else { (left + 500) / 1000 });
        }
    }
}

pub(super) fn ttl(db: &mut Db, c: &Cmd, out: &mut Out) {
    ttl_generic(db, c, out, false, false);
}

pub(super) fn pttl(db: &mut Db, c: &Cmd, out: &mut Out) {
    ttl_generic(db, c, out, true, false);
}

pub(super) fn expiretime(db: &mut Db, c: &Cmd, out: &mut Out) {
    ttl_generic(db, c, out, false, true);
}

pub(super) fn pexpiretime(db: &mut Db, c: &Cmd, out: &mut Out) {
    ttl_generic(db, c, out, true, true);
}

/// DEL / UNLINK part: keys removed.
pub(super) fn del_part(db: &mut Db, keys: &[&[u8]]) -> i64 {
    keys.iter()
        .filter(|k| db.contains(k) && db.remove(k).is_some())
        .count() as i64
}

/// EXISTS part: keys that exist (a key named twice counts twice, as in Redis).
pub(super) fn exists_part(db: &mut Db, keys: &[&[u8]]) -> i64 {
    keys.iter().filter(|k| db.contains(k)).count() as i64
}

/// KEYS part: the live keys matching `pattern`.
pub(super) fn keys_part(db: &mut Db, pattern: &[u8]) -> Vec<Vec<u8>> {
    let all = pattern == b"*";
    db.keys()
        .filter(|(k, _)| all || glob_match(pattern, k))
        .filter(|(k, _)| !db.is_expired(k))
        .map(|(k, _)| k.to_vec())
        .collect()
}

/// SCAN options.
pub(super) struct ScanOpts {
    pub pattern: Option<Vec<u8>>,
    pub count: usize,
    pub type_: Option<Vec<u8>>,
}

/// Parses SCAN's options after the cursor.
pub(super) fn scan_opts(c: &Cmd) -> Result<ScanOpts, &'static str> {
    let mut o = ScanOpts {
        pattern: None,
        count: 10,
        type_: None,
    };
    let mut i = 2;
    while i < c.len() {
        let a = c.arg(i).to_ascii_uppercase();
        if i + 1 >= c.len() {
            return Err(SYNTAX);
        }
        let v = c.arg(i + 1);
        match a.as_slice() {
            b"MATCH" => o.pattern = Some(v.to_vec()),
            b"COUNT" => match parse_i64(v) {
                Some(n) if n >= 1 => o.count = n as usize,
                Some(_) => return Err(SYNTAX),
                None => return Err(NOT_INT),
            },
            b"TYPE" => o.type_ = Some(v.to_ascii_lowercase()),
            _ => return Err(SYNTAX),
        }
        i += 2;
    }
    Ok(o)
}

/// One SCAN step on this shard. `pos` is how many positions remain to visit (0: start from
/// the end); positions are visited from the last down, so a key that moves when another is
/// removed (`swap_remove` moves the last key into the hole) moves to a position not yet
/// visited or is seen twice, never missed: every key present for the whole scan is returned.
/// Returns the keys and the positions still to visit (0 when this shard is done).
pub(super) fn scan_part(db: &mut Db, pos: u64, o: &ScanOpts) -> (Vec<Vec<u8>>, u64) {
    let len = db.len() as u64;
    let mut at = if pos == 0 { len } else { pos.min(len) };
    let mut keys = Vec::new();
    let mut visited = 0;
    while at > 0 && visited < o.count {
        at -= 1;
        visited += 1;
        let Some((k, v)) = db.key_at(at as usize) else {
            continue;
        };
        if db.is_expired(k) {
            continue;
        }
        if let Some(t) = &o.type_
            && v.type_name().as_bytes() != t.as_slice()
        {
            continue;
        }
        if let Some(p) = &o.pattern
            && !glob_match(p, k)
        {
            continue;
        }
        keys.push(k.to_vec());
    }
    (keys, at)
}

/// Redis's glob matcher (`stringmatchlen`): `*`, `?`, `[abc]`, `[^a-z]`, `\x`.
pub fn glob_match(p: &[u8], s: &[u8]) -> bool {
    glob(p, s, 0)
}

fn glob(p: &[u8], s: &[u8], depth: usize) -> bool {
    // Redis bounds the recursion the same way (nested stars on long strings).
    if depth > 1000 {
        return false;
    }
    let (mut pi, mut si) = (0, 0);
    while pi < p.len() {
        match p[pi] {
            b'*' => {
                while pi + 1 < p.len() && p[pi + 1] == b'*' {
                    pi += 1;
                }
                if pi + 1 == p.len() {
                    return true;
                }
                for k in si..=s.len() {
                    if glob(&p[pi + 1..], &s[k..], depth + 1) {
                        return true;
                    }
                }
                return false;
            }
            b'?' => {
                if si >= s.len() {
                    return false;
                }
                si += 1;
            }
            b'[' => {
                if si >= s.len() {
                    return false;
                }
                pi += 1;
                let not = pi < p.len() && p[pi] == b'^';
                if not {
                    pi += 1;
                }
                let mut hit = false;
                loop {
                    if pi >= p.len() {
                        pi -= 1;
                        break;
                    }
                    if p[pi] == b'\\' && pi + 1 < p.len() {
                        pi += 1;
                        hit |= p[pi] == s[si];
                    } else if p[pi] == b']' {
                        break;
                    } else if pi + 2 < p.len() && p[pi + 1] == b'-' {
                        let (mut a, mut b) = (p[pi], p[pi + 2]);
                        if a > b {
                            std::mem::swap(&mut a, &mut b);
                        }
                        hit |= s[si] >= a && s[si] <= b;
                        pi += 2;
                    } else {
                        hit |= p[pi] == s[si];
                    }
                    pi += 1;
                }
                if hit == not {
                    return false;
                }
                si += 1;
            }
            b'\\' if pi + 1 < p.len() => {
                pi += 1;
                if si >= s.len() || p[pi] != s[si] {
                    return false;
                }
                si += 1;
            }
            c => {
                if si >= s.len() || c != s[si] {
                    return false;
                }
                si += 1;
            }
        }
        pi += 1;
    }
    si == s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_like_redis() {
        for (p, s, m) in [
            ("*", "", true),
            ("h?llo", "hello", true),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h\\*llo", "h*llo", true),
            ("user:*:name", "user:42:name", true),
            ("user:*:name", "user:42:age", false),
            ("a*b*c", "abbbc", true),
            ("[", "a", false),
        ] {
            assert_eq!(glob_match(p.as_bytes(), s.as_bytes()), m, "{p} {s}");
        }
    }

    #[test]
    fn scan_returns_every_stable_key_despite_removals() {
        let mut db = Db::new(false, Default::default());
        for i in 0..100u32 {
            db.set_str(format!("k{i}").as_bytes(), b"v", None, false);
        }
        let o = ScanOpts {
            pattern: None,
            count: 7,
            type_: None,
        };
        let mut seen = std::collections::HashSet::new();
        let mut pos = 0;
        let mut round = 0;
        loop {
            let (keys, next) = scan_part(&mut db, pos, &o);
            seen.extend(keys);
            // Remove a few "odd" keys while scanning; the even ones stay throughout.
            for j in 0..3 {
                let k = format!("k{}", 2 * (round * 3 + j) + 1);
                db.remove(k.as_bytes());
            }
            round += 1;
            if next == 0 {
                break;
            }
            pos = next;
        }
        for i in (0..100).step_by(2) {
            assert!(seen.contains(format!("k{i}").as_bytes()), "k{i} missed");
        }
    }
}
