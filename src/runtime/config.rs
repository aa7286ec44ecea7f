//! TEMPORARY shim with the agreed API; replaced by the real config at merge.
#![allow(missing_docs, dead_code)]
use std::time::Duration;
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Development,
    Testing,
    Production,
    Performance,
    LowLatency,
    HighThroughput,
    Minimal,
    Embedded,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoBackend {
    Auto,
    Uring,
    Mio,
}
#[derive(Clone, Debug)]
pub struct Placement {
    pub app: Vec<Option<usize>>,
    pub io: Vec<Option<usize>>,
    pub accel: Vec<Option<usize>>,
}
#[derive(Clone, Debug)]
pub struct Config {
    pub profile: Profile,
    pub app_workers: usize,
    pub io_workers: usize,
    pub accel_workers: usize,
    pub pin_workers: bool,
    pub numa_aware: bool,
    pub ring_capacity: usize,
    pub injector_capacity: usize,
    pub mailbox_capacity: usize,
    pub spin_before_park: Duration,
    pub tasks_per_tick: usize,
    pub shutdown_timeout: Duration,
    pub io_backend: IoBackend,
    pub max_connections: usize,
    pub seed: u64,
    pub placement: Placement,
}
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid {setting}")]
    Invalid {
        setting: String,
        value: String,
        expected: String,
    },
}
impl Config {
    pub fn testing(n: usize) -> Config {
        Config {
            profile: Profile::Testing,
            app_workers: n,
            io_workers: 0,
            accel_workers: 0,
            pin_workers: false,
            numa_aware: false,
            ring_capacity: 1024,
            injector_capacity: 1024,
            mailbox_capacity: 1024,
            spin_before_park: Duration::from_micros(50),
            tasks_per_tick: 64,
            shutdown_timeout: Duration::from_secs(5),
            io_backend: IoBackend::Auto,
            max_connections: 10000,
            seed: 1,
            placement: Placement {
                app: vec![None; n],
                io: vec![],
                accel: vec![],
            },
        }
    }
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
    pub fn auto() -> Result<Config, ConfigError> {
        Ok(Self::testing(2))
    }
}
