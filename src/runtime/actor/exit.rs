//! Why an actor stopped: [`ExitReason`], the [`Down`] notice a monitor receives, and
//! [`ActorError`], the error a fallible handler returns. Owns only these values; who sends them
//! is the run loop's and the supervisor's business.

use std::fmt;

/// The error a fallible handler ([`Actor::try_handle`](super::Actor::try_handle)) returns: any
/// error type converts into it with `?`. Returning one counts as a failure, exactly like a panic.
pub type ActorError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why one incarnation of an actor ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// It stopped itself with [`Context::stop`](super::Context::stop).
    Normal,
    /// It was stopped for good: [`Addr::stop`](super::Addr::stop), its supervisor stopping it, or
    /// the runtime shutting down.
    Shutdown,
    /// It was killed with [`Addr::kill`](super::Addr::kill) (or by its supervisor restarting a
    /// sibling group); counts as a failure.
    Killed,
    /// A handler, `started` or `stopping` panicked, a handler returned an error, or
    /// [`Context::fail`](super::Context::fail) was called: the message says which.
    Failed(String),
    /// A linked actor failed and this one did not trap exits.
    Linked {
        /// The failed actor's id.
        id: u64,
        /// The failed actor's name.
        name: String,
    },
}

impl ExitReason {
    /// True for the reasons a transient child is restarted after: everything but `Normal` and
    /// `Shutdown`.
    pub fn is_failure(&self) -> bool {
        !matches!(self, ExitReason::Normal | ExitReason::Shutdown)
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("stopped normally"),
            ExitReason::Shutdown => f.write_str("shut down"),
            ExitReason::Killed => f.write_str("killed"),
            ExitReason::Failed(m) => write!(f, "failed: {m}"),
            ExitReason::Linked { id, name } => write!(f, "linked actor {name} (id {id}) failed"),
        }
    }
}

/// The notice a monitor ([`Context::monitor`](super::Context::monitor)) or an actor that traps
/// exits ([`Context::trap_exits`](super::Context::trap_exits)) receives when the watched actor's
/// incarnation ends. A supervised actor that is restarted keeps its address; watch it again (for
/// example in `started`) to hear about the next incarnation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    /// The watched actor's id ([`Addr::id`](super::Addr::id)).
    pub id: u64,
    /// The watched actor's name.
    pub name: String,
    /// Why it ended.
    pub reason: ExitReason,
    /// True when its supervisor is about to restart it (same address, fresh state).
    pub restarting: bool,
}
