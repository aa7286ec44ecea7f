//! Clean stops on SIGINT and SIGTERM for long-running processes: block both signals before the
//! runtime starts (its threads inherit the mask, so no worker is interrupted), then wait for
//! one on the main thread and shut down. Owns nothing else.
//!
//! ```no_run
//! let guard = percore::runtime::signal::TerminationSignals::block().unwrap();
//! let rt = percore::runtime::Runtime::testing(1).unwrap();
//! let sig = guard.wait();
//! println!("got {sig}, stopping");
//! rt.shutdown();
//! ```

use std::io;

/// SIGINT and SIGTERM, blocked on the calling thread (and threads it starts afterwards).
pub struct TerminationSignals {
    set: libc::sigset_t,
}

impl TerminationSignals {
    /// Blocks SIGINT and SIGTERM on the calling thread. Call before starting the runtime.
    pub fn block() -> io::Result<Self> {
        // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t; the calls only write to it and the thread mask.
        let r = unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
        };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(TerminationSignals { set })
    }

    /// Waits for SIGINT or SIGTERM and returns its name.
    pub fn wait(&self) -> &'static str {
        loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: `self.set` was initialised in `block`; `sig` is valid for writes.
            let r = unsafe { libc::sigwait(&self.set, &mut sig) };
            if r == 0 {
                return match sig {
                    libc::SIGINT => "SIGINT",
                    libc::SIGTERM => "SIGTERM",
                    _ => "signal",
                };
            }
        }
    }
}
