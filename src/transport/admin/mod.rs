//! The runtime's admin face: [`AdminServer`] serves `/metrics` (Prometheus text), `/health`
//! (liveness), `/ready` (readiness, 503 when not ready), `/dashboard` (a live, self-contained
//! page) and `/dashboard/state` (the JSON it polls) on an address the user chooses —
//! [`Runtime::serve_admin`](AdminExt::serve_admin) or [`AdminServer::bind`].
//!
//! Requests are parsed on the event loops like any HTTP request, but the pages are rendered on
//! the admin server's own thread, never on a worker: a scrape that walks 100,000 actors must
//! not stall the workers (the actor index is walked a bounded number of entries per lock
//! hold). Owns the admin routes and their rendering thread; the figures come from the runtime.
//!
//! ```no_run
//! use percore::runtime::Runtime;
//! use percore::transport::admin::AdminExt;
//!
//! let rt = Runtime::auto().unwrap();
//! let admin = rt.serve_admin("127.0.0.1:9100".parse().unwrap()).unwrap();
//! println!("metrics on http://{}/metrics", admin.local_addr());
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crossbeam::channel::{Receiver, Sender};

use crate::runtime::supervision::SupervisorReport;
use crate::runtime::{ActorTypeSnapshot, DeadLetter, Handle, MetricsSnapshot, Readiness, Runtime};
use crate::transport::TransportError;
use crate::transport::http::{HttpCall, HttpReply, HttpServer, Response, Router};
use crate::transport::server::Target;

/// The dashboard page (no external resources).
const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// Most requests waiting for the render thread; beyond it callers get 503 (a scrape storm
/// cannot grow memory without bound).
const QUEUE: usize = 64;

#[derive(Debug, Clone, Copy)]
pub(crate) enum Page {
    Metrics,
    Health,
    Ready,
    Dashboard,
    State,
}

/// What `/dashboard/state` answers.
#[derive(Debug, serde::Serialize)]
pub struct DashboardState {
    /// Milliseconds since the Unix epoch.
    pub now_unix_ms: u64,
    /// Seconds since the admin server started.
    pub uptime_s: f64,
    /// Readiness (as `/ready`).
    pub ready: Readiness,
    /// Per mesh node counters (app workers first).
    pub workers: Vec<MetricsSnapshot>,
    /// App workers.
    pub app_workers: usize,
    /// Event loops.
    pub io: Vec<IoLoop>,
    /// Actor types.
    pub actor_types: Vec<ActorTypeSnapshot>,
    /// The supervision tree from the root.
    pub supervision: SupervisorReport,
    /// Dead letters ever recorded.
    pub dead_letters_total: u64,
    /// The latest dead letters (up to 20, newest last).
    pub dead_letters: Vec<DeadLetter>,
    /// Extra sections the application publishes (training progress, storage, …), by name.
    pub extra: Vec<(String, serde_json::Value)>,
}

/// One event loop in [`DashboardState`].
#[derive(Debug, serde::Serialize)]
pub struct IoLoop {
    /// Its index.
    pub index: usize,
    /// Its backend.
    pub backend: String,
    /// Turns.
    pub turns: u64,
    /// Completions.
    pub completions: u64,
    /// Live handlers (connections, listeners, files).
    pub handlers: u64,
}

/// A section the application adds to the dashboard's state (called on the admin thread).
pub type Extra = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// The admin pages' render thread and dashboard sections, for routes mounted on any router
/// ([`mount`]); the pages answer while this lives.
pub struct AdminPages {
    // Dropping the last sender (this one and the routes') ends the render thread.
    _tx: Sender<(Page, HttpReply)>,
    extras: Arc<std::sync::Mutex<Vec<(String, Extra)>>>,
}

impl std::fmt::Debug for AdminPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminPages").finish_non_exhaustive()
    }
}

impl AdminPages {
    /// Adds a section to `/dashboard/state` (and the page): `f` is called at each poll, on
    /// the admin thread.
    pub fn add_dashboard_section(
        &self,
        name: impl Into<String>,
        f: impl Fn() -> serde_json::Value + Send + Sync + 'static,
    ) {
        self.extras
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.into(), Arc::new(f)));
    }
}

/// Adds `/metrics`, `/health`, `/ready`, `/dashboard` and `/dashboard/state` for `handle`'s
/// runtime to `router` (to serve them from an HTTP server of your own, next to your routes).
#[allow(clippy::result_large_err)] // `Target`'s error type; never built here
pub fn mount(handle: &Handle, router: Router) -> Result<(Router, AdminPages), TransportError> {
    let (tx, rx) = crossbeam::channel::bounded::<(Page, HttpReply)>(QUEUE);
    let extras: Arc<std::sync::Mutex<Vec<(String, Extra)>>> = Default::default();
    let h = handle.clone();
    let ex = extras.clone();
    std::thread::Builder::new()
        .name("percore-admin".into())
        .spawn(move || render_loop(h, rx, ex))
        .map_err(TransportError::Thread)?;
    let route = |page: Page| -> Target<HttpCall> {
        let tx = tx.clone();
        Target::from_fn(move |call: HttpCall, _| {
            let (_, reply) = call.into_parts();
            if let Err(e) = tx.try_send((page, reply)) {
                let (_, reply) = e.into_inner();
                reply.respond(
                    Response::text(503, "the admin server is busy; retry\n")
                        .header("Retry-After", "1"),
                );
            }
            Ok(())
        })
    };
    let router = router
        .get("/metrics", route(Page::Metrics))
        .get("/health", route(Page::Health))
        .get("/ready", route(Page::Ready))
        .get("/dashboard", route(Page::Dashboard))
        .get("/dashboard/state", route(Page::State));
    Ok((router, AdminPages { _tx: tx, extras }))
}

/// The admin HTTP server and its render thread.
pub struct AdminServer {
    http: HttpServer,
    pages: AdminPages,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("addr", &self.http.local_addr())
            .finish()
    }
}

impl AdminServer {
    /// Serves the admin routes for `handle`'s runtime on `addr`.
    #[allow(clippy::result_large_err)] // `Target`'s error type; never built here
    pub fn bind(handle: &Handle, addr: SocketAddr) -> Result<AdminServer, TransportError> {
        let (router, pages) = mount(handle, Router::new())?;
        let http = HttpServer::bind(handle, addr, router)?;
        Ok(AdminServer { http, pages })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// Adds a section to `/dashboard/state` (and the page): `f` is called at each poll, on
    /// the admin thread.
    pub fn add_dashboard_section(
        &self,
        name: impl Into<String>,
        f: impl Fn() -> serde_json::Value + Send + Sync + 'static,
    ) {
        self.pages.add_dashboard_section(name, f);
    }

    /// Stops accepting admin connections.
    pub fn stop(&self) {
        self.http.stop();
    }

    /// Lets the server run until its runtime shuts down (the routes keep the render thread).
    pub fn detach(self) {
        self.http.detach();
    }
}

/// `rt.serve_admin(addr)`: the admin server as a method of the runtime.
pub trait AdminExt {
    /// Serves `/metrics`, `/health`, `/ready` and `/dashboard` on `addr`.
    #[allow(clippy::result_large_err)]
    fn serve_admin(&self, addr: SocketAddr) -> Result<AdminServer, TransportError>;
}

impl AdminExt for Runtime {
    fn serve_admin(&self, addr: SocketAddr) -> Result<AdminServer, TransportError> {
        AdminServer::bind(&self.handle(), addr)
    }
}

impl AdminExt for Handle {
    fn serve_admin(&self, addr: SocketAddr) -> Result<AdminServer, TransportError> {
        AdminServer::bind(self, addr)
    }
}

fn render_loop(
    h: Handle,
    rx: Receiver<(Page, HttpReply)>,
    extras: Arc<std::sync::Mutex<Vec<(String, Extra)>>>,
) {
    // Below the workers in the scheduler's eyes: where the render thread shares a CPU with a
    // worker (no spare core), the worker keeps its CPU while a scrape renders (Linux applies a
    // nice value per thread). Best effort: a refusal leaves the default priority.
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10) {
        tracing::debug!(error = %e, "could not lower the admin thread's priority");
    }
    let started = Instant::now();
    while let Ok((page, reply)) = rx.recv() {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            render(&h, page, started, &extras)
        }));
        match r {
            Ok(resp) => reply.respond(resp),
            Err(p) => {
                let msg = crate::runtime::executor::panic_message(&*p);
                tracing::error!(panic = %msg, ?page, "admin page failed");
                reply.respond(Response::text(500, format!("admin page failed: {msg}\n")));
            }
        }
    }
}

fn render(
    h: &Handle,
    page: Page,
    started: Instant,
    extras: &std::sync::Mutex<Vec<(String, Extra)>>,
) -> Response {
    match page {
        Page::Metrics => Response::new(200)
            .header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            .body(h.prometheus()),
        Page::Health => Response::json(
            200,
            &serde_json::json!({
                "status": "alive",
                "uptime_s": started.elapsed().as_secs_f64(),
                "workers": h.workers(),
            }),
        ),
        Page::Ready => {
            let r = h.readiness();
            Response::json(if r.ready { 200 } else { 503 }, &r)
        }
        Page::Dashboard => Response::new(200)
            .header("Content-Type", "text/html; charset=utf-8")
            .header("Cache-Control", "no-store")
            .body(DASHBOARD_HTML),
        Page::State => {
            let dl = h.dead_letters();
            let mut recent = dl.recent();
            let keep = recent.len().saturating_sub(20);
            recent.drain(..keep);
            let io = (0..h.io_workers())
                .filter_map(|i| {
                    let s = h.io_stats(i)?;
                    let r = |a: &std::sync::atomic::AtomicU64| {
                        a.load(std::sync::atomic::Ordering::Relaxed)
                    };
                    Some(IoLoop {
                        index: i,
                        backend: h
                            .io_backend(i)
                            .map_or("unknown".into(), |b| format!("{b:?}").to_lowercase()),
                        turns: r(&s.turns),
                        completions: r(&s.completions),
                        handlers: r(&s.handlers),
                    })
                })
                .collect();
            let extra: Vec<(String, Extra)> =
                extras.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let state = DashboardState {
                now_unix_ms: SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                uptime_s: started.elapsed().as_secs_f64(),
                ready: h.readiness(),
                workers: h.metrics(),
                app_workers: h.workers(),
                io,
                actor_types: h.actor_types(),
                supervision: h.root_supervisor().report(),
                dead_letters_total: dl.total(),
                dead_letters: recent,
                extra: extra.into_iter().map(|(n, f)| (n, f())).collect(),
            };
            Response::json(200, &state).header("Cache-Control", "no-store")
        }
    }
}
