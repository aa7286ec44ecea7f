//! Error types of the runtime core: spawning, sending to actors, asking, joining tasks, starting
//! and stopping the runtime. Each says what happened and what to do next.

use std::fmt;
use std::time::Duration;

/// The actor behind an address has stopped (or is stopping) and accepts no more messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the actor has stopped and accepts no more messages; spawn a new one or drop this address")]
pub struct Stopped;

/// Why [`Addr::tell`](crate::runtime::Addr::tell) failed. The message comes back to the caller.
#[derive(PartialEq, Eq, thiserror::Error)]
pub enum SendError<M> {
    /// The actor has stopped; the message was not delivered.
    #[error("the actor has stopped; the message was not delivered")]
    Stopped(M),
}

impl<M> SendError<M> {
    /// Takes back the message that could not be delivered.
    pub fn into_inner(self) -> M {
        match self {
            SendError::Stopped(m) => m,
        }
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError::Stopped(..)")
    }
}

/// Why [`Addr::try_tell`](crate::runtime::Addr::try_tell) failed. The message comes back.
#[derive(PartialEq, Eq, thiserror::Error)]
pub enum TrySendError<M> {
    /// The mailbox is at capacity; retry later or use `tell`, which waits for room.
    #[error("the actor's mailbox is full; retry later or use `tell`, which waits for room")]
    Full(M),
    /// The actor has stopped; the message was not delivered.
    #[error("the actor has stopped; the message was not delivered")]
    Stopped(M),
}

impl<M> TrySendError<M> {
    /// Takes back the message that could not be delivered.
    pub fn into_inner(self) -> M {
        match self {
            TrySendError::Full(m) | TrySendError::Stopped(m) => m,
        }
    }
    /// True for [`TrySendError::Full`].
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }
}

impl<M> fmt::Debug for TrySendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("TrySendError::Full(..)"),
            TrySendError::Stopped(_) => f.write_str("TrySendError::Stopped(..)"),
        }
    }
}

/// Why an [`Addr::ask`](crate::runtime::Addr::ask) got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    /// The actor was stopped (or had stopped) before it replied.
    #[error("the actor stopped before it replied")]
    Stopped,
    /// The handler dropped the [`Reply`](crate::runtime::Reply) without sending a value, or
    /// panicked while holding it.
    #[error(
        "the actor dropped the reply without answering (or panicked while handling the request)"
    )]
    NoReply,
    /// No answer came within the timeout.
    #[error(
        "no reply within {0:?}; the actor may be overloaded or stuck: raise the timeout or check its mailbox"
    )]
    Timeout(Duration),
}

/// Why a [`JoinHandle`](crate::runtime::JoinHandle) gave no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The task was aborted (explicitly, by dropping its handle, or by runtime shutdown).
    #[error("the task was cancelled before it finished")]
    Cancelled,
    /// The task panicked; the panic message is kept.
    #[error("the task panicked: {0}")]
    Panicked(String),
}

/// Errors from starting the runtime or placing work on it.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The supervisor has stopped for good (it gave up, or was stopped); it takes no children.
    #[error("supervisor {0:?} has stopped; start a new supervisor for new children")]
    SupervisorStopped(String),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::runtime::config::ConfigError),
    /// A worker thread could not be started.
    #[error(
        "could not start worker thread {worker}: {source}; check the process's thread limit (ulimit -u)"
    )]
    ThreadSpawn {
        /// Index of the worker.
        worker: usize,
        /// The OS error.
        source: std::io::Error,
    },
    /// The worker index does not exist.
    #[error("no app worker {worker}: this runtime has {workers} (0..{workers})")]
    NoSuchWorker {
        /// The index asked for.
        worker: usize,
        /// How many app workers there are.
        workers: usize,
    },
    /// The external node index does not exist or is already attached.
    #[error("external node {index} is not available: {reason}")]
    ExternalNode {
        /// The index asked for.
        index: usize,
        /// Why.
        reason: &'static str,
    },
    /// The call needs a percore worker (or `block_on`) thread.
    #[error(
        "this must be called on a percore worker or inside Runtime::block_on; use a Handle from other threads"
    )]
    NotInRuntime,
    /// There is no I/O worker with this index.
    #[error(
        "I/O worker {index} does not exist: this runtime has {io_workers} (set io_workers >= 1 with the builder, a profile or PERCORE_IO_WORKERS)"
    )]
    NoIoWorker {
        /// The index asked for.
        index: usize,
        /// How many I/O workers there are.
        io_workers: usize,
    },
    /// An I/O worker could not start.
    #[error("I/O worker {index} could not start its {backend} event loop: {source}")]
    IoWorker {
        /// Which I/O worker.
        index: usize,
        /// The backend it tried.
        backend: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The runtime is shutting down and takes no new work.
    #[error("the runtime is shutting down and accepts no new work")]
    ShuttingDown,
}
