//! The runtime: pinned per-core app workers, each with its own single-threaded executor; the
//! SPSC ring mesh between them (plus injectors for outside threads); typed actors, sharded
//! actors and partitioners; hardware detection, profiles and configuration; metrics.
//! Knows nothing of the layers above it (transport, storage, accelerator, ml).
//!
//! ```
//! use percore::runtime::{Actor, Context, Runtime};
//!
//! struct Hello;
//! impl Actor for Hello {
//!     type Msg = String;
//!     async fn handle(&mut self, name: String, ctx: &mut Context<Self>) {
//!         println!("hello {name} from worker {}", ctx.worker());
//!     }
//! }
//!
//! let rt = Runtime::testing(2).unwrap();
//! let hello = rt.spawn_actor_on(0, || Hello).unwrap();
//! rt.block_on(async { hello.tell("world".into()).await.unwrap() });
//! rt.shutdown();
//! ```

pub mod actor;
pub mod breaker;
mod bufpool;
pub mod builder;
pub mod config;
pub mod detect;
pub mod envelope;
pub mod error;
pub mod executor;
mod handle;
pub mod io;
pub(crate) mod mesh;
pub mod metrics;
pub mod oneshot;
pub mod partition;
pub mod prometheus;
pub mod retry;
pub mod ring;
mod rt;
pub mod sharded;
mod shutdown;
pub mod signal;
pub mod supervision;
pub(crate) mod sync;
pub mod task;
pub mod time;
pub mod user_metrics;
mod worker;

pub use actor::{
    Actor, ActorError, ActorTypeSnapshot, Addr, Context, DeadLetter, DeadLetterReason, DeadLetters,
    Down, ExitReason, NameError, Reply, TimerId,
};
pub use error::{AskError, JoinError, RuntimeError, SendError, Stopped, TrySendError};
pub use executor::{consume_budget, current_worker, yield_now};
pub use handle::{Handle, Readiness, STALL_LIMIT, spawn_actor, spawn_actor_with_capacity};
pub use mesh::ExternalNode;
#[allow(deprecated)]
pub use metrics::WorkerMetrics;
pub use metrics::{MetricsSnapshot, NodeMetrics};
pub use rt::Runtime;
pub use sharded::ShardedAddr;
pub use shutdown::ShutdownReport;
pub use task::{JoinHandle, spawn_local, try_spawn_local};
pub use time::{Elapsed, Interval, Sleep, interval, sleep, sleep_until, timeout};
