//! [`KvOptions`] and [`Durability`]: every knob of the key-value store, its default and why,
//! settable from code, TOML (serde) and the environment ([`KvOptions::from_env`]).

use std::time::Duration;

use serde::Deserialize;

use crate::storage::error::{Result, StorageError};

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Acknowledged once in the shard's write buffer; written to the OS within
    /// [`KvOptions::flush_interval`] or [`KvOptions::write_buffer_bytes`], never fsynced by
    /// the write path. A process crash loses at most that window; an OS crash loses what the
    /// kernel had not written back. Like Redis `appendfsync no`.
    None,
    /// Acknowledged after an `fdatasync` that covers it. One sync covers every write that
    /// arrived in the last `interval` (or `max_bytes`, whichever comes first): like Redis
    /// `appendfsync everysec` with a tighter interval, or RocksDB's group commit.
    GroupCommit {
        /// Longest wait before a sync.
        #[serde(with = "humantime_ms")]
        interval: Duration,
        /// Sync early once this many bytes wait.
        max_bytes: usize,
    },
    /// Acknowledged after an `fdatasync` that covers it, started as soon as the previous sync
    /// ends (writes arriving during a sync share the next one).
    Sync,
}

impl Default for Durability {
    /// `GroupCommit { 2 ms, 1 MiB }`: durable acknowledgements at a small latency cost.
    fn default() -> Self {
        Durability::GroupCommit {
            interval: Duration::from_millis(2),
            max_bytes: 1 << 20,
        }
    }
}

mod humantime_ms {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        if !(ms.is_finite() && ms >= 0.0) {
            return Err(serde::de::Error::custom("milliseconds must be >= 0"));
        }
        Ok(Duration::from_secs_f64(ms / 1000.0))
    }
}

/// Options of a key-value store (every shard gets the same).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KvOptions {
    /// When writes are acknowledged. Default: group commit every 2 ms or 1 MiB.
    pub durability: Durability,
    /// A segment is sealed and a new one started past this size. Default 64 MiB: large enough
    /// that rotation is rare, small enough that compacting one is quick.
    pub max_segment_bytes: u64,
    /// Longest key. Default 4 KiB (at most 65,535: the record stores 16 bits).
    pub max_key_bytes: usize,
    /// Longest value. Default 16 MiB.
    pub max_value_bytes: usize,
    /// `Durability::None`: buffered writes reach the OS at least this often. Default 10 ms.
    #[serde(with = "humantime_ms")]
    pub flush_interval: Duration,
    /// `Durability::None`: a buffer this large is written at once. Default 1 MiB.
    pub write_buffer_bytes: usize,
    /// Run compaction in the background. Default on.
    pub compaction: bool,
    /// Compact when at least this share of the sealed segments' bytes is stale. Default 0.6
    /// (Bitcask's `frag_merge_trigger`): compaction then reads at most 2.5 bytes and writes
    /// at most 0.67 per byte it reclaims, at up to 2.5× the live data on disk.
    pub compaction_min_garbage_ratio: f64,
    /// …and at least this many stale bytes. Default 16 MiB.
    pub compaction_min_garbage_bytes: u64,
    /// Reserve each new segment's space with `fallocate` (so a full disk shows up when a
    /// segment starts, before any write into it is acknowledged). Default on.
    pub preallocate: bool,
    /// Bytes of the most recently written log kept in memory per shard for reads (a copy
    /// instead of a system call; the write path pays nothing for it). Default 64 MiB; 0 turns
    /// it off.
    pub read_cache_bytes: usize,
    /// How long a sharded store waits for a shard's answer. Default 30 s.
    #[serde(with = "humantime_ms")]
    pub request_timeout: Duration,
}

impl Default for KvOptions {
    fn default() -> Self {
        KvOptions {
            durability: Durability::default(),
            max_segment_bytes: 64 << 20,
            max_key_bytes: 4096,
            max_value_bytes: 16 << 20,
            flush_interval: Duration::from_millis(10),
            write_buffer_bytes: 1 << 20,
            compaction: true,
            compaction_min_garbage_ratio: 0.6,
            compaction_min_garbage_bytes: 16 << 20,
            preallocate: true,
            read_cache_bytes: 64 << 20,
            request_timeout: Duration::from_secs(30),
        }
    }
}

fn bad(name: &'static str, value: impl ToString, why: &'static str) -> StorageError {
    StorageError::Config {
        name,
        value: value.to_string(),
        why,
    }
}

impl KvOptions {
    /// The defaults for a runtime profile, chosen like the runtime's own settings:
    /// - `Testing`: `Sync` and 8 MiB segments and cache (strongest, small, deterministic).
    /// - `LowLatency`: `Sync`, whose acknowledgement waits only for the next `fdatasync`
    ///   (a group commit waits up to its interval first).
    /// - `HighThroughput`: group commit every 10 ms or 4 MiB, 4 MiB write buffer.
    /// - `Minimal`, `Embedded`: 16 MiB segments, 4 MiB read cache, compaction from 4 MiB of
    ///   garbage (little memory and disk).
    /// - the rest (`Development`, `Production`, `Performance`): [`KvOptions::default`].
    pub fn for_profile(profile: crate::runtime::config::Profile) -> KvOptions {
        use crate::runtime::config::Profile as P;
        let d = KvOptions::default();
        match profile {
            P::Testing => KvOptions {
                durability: Durability::Sync,
                max_segment_bytes: 8 << 20,
                read_cache_bytes: 8 << 20,
                ..d
            },
            P::LowLatency => KvOptions {
                durability: Durability::Sync,
                ..d
            },
            P::HighThroughput => KvOptions {
                durability: Durability::GroupCommit {
                    interval: Duration::from_millis(10),
                    max_bytes: 4 << 20,
                },
                write_buffer_bytes: 4 << 20,
                ..d
            },
            P::Minimal | P::Embedded => KvOptions {
                max_segment_bytes: 16 << 20,
                read_cache_bytes: 4 << 20,
                compaction_min_garbage_bytes: 4 << 20,
                ..d
            },
            P::Development | P::Production | P::Performance => d,
        }
    }

    /// The options for a runtime: its profile's defaults ([`for_profile`](Self::for_profile)),
    /// then the environment ([`from_env`](Self::from_env)), like
    /// `AccelOptions::for_runtime`. TOML: [`from_toml`](Self::from_toml); code: the public
    /// fields (`KvOptions { durability: Durability::Sync, ..KvOptions::for_runtime(cfg)? }`).
    ///
    /// # Errors
    /// A malformed `PERCORE_KV_*` variable.
    pub fn for_runtime(cfg: &crate::runtime::config::Config) -> Result<KvOptions> {
        Self::for_profile(cfg.profile).from_env()
    }

    /// Checks the limits the record format imposes.
    pub fn validate(&self) -> Result<()> {
        if self.max_key_bytes == 0 || self.max_key_bytes > u16::MAX as usize {
            return Err(bad(
                "max_key_bytes",
                self.max_key_bytes,
                "must be 1..=65535",
            ));
        }
        if self.max_value_bytes > (1 << 30) {
            return Err(bad(
                "max_value_bytes",
                self.max_value_bytes,
                "must be <= 1 GiB",
            ));
        }
        if self.max_segment_bytes < 4096 || self.max_segment_bytes > (1 << 32) - 1 {
            return Err(bad(
                "max_segment_bytes",
                self.max_segment_bytes,
                "must be 4 KiB ..< 4 GiB",
            ));
        }
        if !(0.0..=1.0).contains(&self.compaction_min_garbage_ratio) {
            return Err(bad(
                "compaction_min_garbage_ratio",
                self.compaction_min_garbage_ratio,
                "must be within 0..=1",
            ));
        }
        if let Durability::GroupCommit { max_bytes: 0, .. } = self.durability {
            return Err(bad("durability.max_bytes", 0, "must be > 0"));
        }
        Ok(())
    }

    /// Parses a TOML table (the `[kv]` section of a config file), e.g.
    /// `durability = "sync"` or `durability = { group_commit = { interval = 2, max_bytes = 1048576 } }`.
    pub fn from_toml(s: &str) -> Result<KvOptions> {
        let o: KvOptions =
            toml::from_str(s).map_err(|e| bad("toml", e.message().to_string(), "parse error"))?;
        o.validate()?;
        Ok(o)
    }

    /// Applies `PERCORE_KV_DURABILITY` (`none`, `sync`, `group` or `group:MS:BYTES`),
    /// `PERCORE_KV_SEGMENT_BYTES` and `PERCORE_KV_COMPACTION` (`0`/`1`) on top of `self`.
    pub fn from_env(mut self) -> Result<KvOptions> {
        if let Ok(v) = std::env::var("PERCORE_KV_DURABILITY") {
            self.durability = parse_durability(&v)?;
        }
        if let Ok(v) = std::env::var("PERCORE_KV_SEGMENT_BYTES") {
            self.max_segment_bytes = v
                .trim()
                .parse()
                .map_err(|_| bad("PERCORE_KV_SEGMENT_BYTES", &v, "not a number"))?;
        }
        if let Ok(v) = std::env::var("PERCORE_KV_COMPACTION") {
            self.compaction = match v.trim() {
                "0" | "false" | "off" => false,
                "1" | "true" | "on" => true,
                _ => return Err(bad("PERCORE_KV_COMPACTION", &v, "expected 0 or 1")),
            };
        }
        self.validate()?;
        Ok(self)
    }
}

/// `none`, `sync`, `group` (the default group commit) or `group:MS:BYTES`.
pub fn parse_durability(v: &str) -> Result<Durability> {
    let v = v.trim().to_ascii_lowercase();
    let mut parts = v.split(':');
    match parts.next() {
        Some("none") => Ok(Durability::None),
        Some("sync") => Ok(Durability::Sync),
        Some("group") => {
            let (ms, bytes) = (parts.next(), parts.next());
            match (ms, bytes) {
                (None, _) => Ok(Durability::default()),
                (Some(ms), Some(b)) => Ok(Durability::GroupCommit {
                    interval: Duration::from_secs_f64(
                        ms.parse::<f64>()
                            .ok()
                            .filter(|m| m.is_finite() && *m >= 0.0)
                            .ok_or_else(|| bad("durability", &v, "bad milliseconds"))?
                            / 1000.0,
                    ),
                    max_bytes: b
                        .parse()
                        .ok()
                        .filter(|b| *b > 0)
                        .ok_or_else(|| bad("durability", &v, "bad byte count"))?,
                }),
                _ => Err(bad("durability", &v, "expected group:MS:BYTES")),
            }
        }
        _ => Err(bad(
            "durability",
            &v,
            "expected none, sync, group or group:MS:BYTES",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_pick_their_durability_and_sizes() {
        use crate::runtime::config::Profile;
        assert_eq!(
            KvOptions::for_profile(Profile::Testing).durability,
            Durability::Sync
        );
        assert_eq!(
            KvOptions::for_profile(Profile::LowLatency).durability,
            Durability::Sync
        );
        assert_eq!(
            KvOptions::for_profile(Profile::Production),
            KvOptions::default()
        );
        assert_eq!(
            KvOptions::for_profile(Profile::Embedded).read_cache_bytes,
            4 << 20
        );
        assert!(matches!(
            KvOptions::for_profile(Profile::HighThroughput).durability,
            Durability::GroupCommit { max_bytes, .. } if max_bytes == 4 << 20
        ));
        for p in Profile::ALL {
            KvOptions::for_profile(p).validate().unwrap();
        }
    }

    #[test]
    fn durability_parses_from_text_and_toml() {
        assert_eq!(parse_durability("sync").unwrap(), Durability::Sync);
        assert_eq!(parse_durability("NONE").unwrap(), Durability::None);
        assert_eq!(
            parse_durability("group:5:4096").unwrap(),
            Durability::GroupCommit {
                interval: Duration::from_millis(5),
                max_bytes: 4096
            }
        );
        assert!(parse_durability("group:x:1").is_err());
        assert!(parse_durability("always").is_err());
        let o = KvOptions::from_toml(
            "durability = { group_commit = { interval = 1.5, max_bytes = 100 } }\nmax_key_bytes = 100",
        )
        .unwrap();
        assert_eq!(o.max_key_bytes, 100);
        assert_eq!(
            o.durability,
            Durability::GroupCommit {
                interval: Duration::from_micros(1500),
                max_bytes: 100
            }
        );
        assert_eq!(
            KvOptions::from_toml("durability = \"sync\"")
                .unwrap()
                .durability,
            Durability::Sync
        );
        assert!(KvOptions::from_toml("max_key_bytes = 70000").is_err());
        assert!(KvOptions::from_toml("no_such_option = 1").is_err());
    }
}
