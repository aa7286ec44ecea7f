//! TEMPORARY shim with the agreed API; replaced by the real builder at merge.
#![allow(missing_docs)]
use super::config::{Config, ConfigError, Profile};
use std::marker::PhantomData;
use std::num::NonZeroUsize;
pub struct NeedsProfile;
pub struct Ready;
pub struct Builder<S> {
    cfg: Option<Config>,
    _s: PhantomData<S>,
}
impl Builder<NeedsProfile> {
    pub fn new() -> Self {
        Builder {
            cfg: None,
            _s: PhantomData,
        }
    }
    pub fn profile(self, _p: Profile) -> Builder<Ready> {
        Builder {
            cfg: Some(Config::testing(2)),
            _s: PhantomData,
        }
    }
}
impl Builder<Ready> {
    pub fn app_workers(mut self, n: NonZeroUsize) -> Self {
        let c = self.cfg.as_mut().unwrap();
        c.app_workers = n.get();
        c.placement.app = vec![None; n.get()];
        self
    }
    pub fn config(self) -> Result<Config, ConfigError> {
        Ok(self.cfg.unwrap())
    }
}
