//! Which shard owns a key: Redis Cluster's hash slot (CRC16-XMODEM of the key, or of its hash
//! tag `{...}`, modulo 16,384), then slot modulo the number of shards. Keys that share a hash
//! tag share a shard, so multi-key commands on them run whole; and the slot is the unit a
//! cluster of nodes would move. Owns this mapping only.
//!
//! CRC16 is written out here (a 256-entry table built at compile time): twelve lines against a
//! dependency, and the test checks it against the value the Redis Cluster specification gives.

/// Hash slots, as in Redis Cluster.
pub const SLOTS: u16 = 16384;

const fn table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u16) << 8;
        let mut j = 0;
        while j < 8 {
            c = if c & 0x8000 != 0 {
                (c << 1) ^ 0x1021
            } else {
                c << 1
            };
            j += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static TABLE: [u16; 256] = table();

/// CRC16-XMODEM (polynomial 0x1021, initial 0), Redis Cluster's key hash.
pub fn crc16(b: &[u8]) -> u16 {
    b.iter().fold(0u16, |crc, &x| {
        (crc << 8) ^ TABLE[(((crc >> 8) as u8) ^ x) as usize]
    })
}

/// The part of `key` that is hashed: the first non-empty `{...}`, else the whole key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(s) = key.iter().position(|&c| c == b'{')
        && let Some(e) = key[s + 1..].iter().position(|&c| c == b'}')
        && e > 0
    {
        return &key[s + 1..s + 1 + e];
    }
    key
}

/// The hash slot of `key`.
pub fn slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_cluster_spec() {
        // The Redis Cluster specification's test vector.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        // `redis-cli cluster keyslot foo` answers 12182.
        assert_eq!(slot(b"foo"), 12182);
    }
}
