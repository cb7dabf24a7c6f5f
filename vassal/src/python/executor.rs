//! Where app calls run.
//!
//! - [`Executor::Inline`] (`threads = 1`): the I/O thread calls the app itself. The
//!   worker could do nothing else meanwhile (one app thread is one request at a time,
//!   as in uWSGI's sync mode), so a thread hop would only add latency.
//! - [`Executor::Pool`] (`threads = N > 1`): N app threads, each attached to the
//!   interpreter once; they release the GIL while they wait for work and while they
//!   wait for the client to take a streamed chunk. The I/O thread awaits the answer on
//!   a oneshot channel and never holds the GIL across an `.await`. The pool counts
//!   its busy threads (a job counts from the moment it is queued until its thread is
//!   done with it, streamed body included): the accept loops wait for a free thread
//!   before they accept ([`Executor::wait_free`]), as uWSGI's threads accept only when
//!   one is free, so a busy worker leaves new connections to the other workers. A
//!   connection just accepted reserves a thread until its request arrives, but only
//!   for [`SLOW_CLIENT_GRACE`]: slow or silent clients never keep a worker from
//!   accepting (see [`Reservation`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use super::{App, Request};
use crate::response::{Body, ChunkSource, Response};

/// How many streamed chunks may wait between an app thread and the I/O thread.
const STREAM_QUEUE: usize = 8;

struct Job {
    req: Request,
    reply: tokio::sync::oneshot::Sender<Response>,
}

/// Runs app calls (see the module docs).
pub enum Executor {
    /// Call the app on the calling thread.
    Inline(Arc<App>),
    /// Send calls to a pool of app threads.
    Pool(Pool),
}

/// A pool of app threads.
pub struct Pool {
    jobs: mpsc::Sender<Job>,
    busy: Arc<Busy>,
}

/// An app thread counted as busy for a connection just accepted, until its first
/// request reaches the pool (which then keeps counting it) or the connection ends
/// without one. Without it a worker could accept several connections in the moment
/// before their requests arrive, all "while a thread is free", and connections would
/// not spread over the prefork workers. But a reservation only counts while it is
/// young: once one is older than [`SLOW_CLIENT_GRACE`], the clients are slow (or
/// silent) and the worker accepts on its running requests alone, so that no number
/// of such clients can keep it from accepting (reading request heads is the async
/// front's job).
pub struct Reservation(Option<(Arc<Busy>, u64)>);

/// How long a reservation counts against the pool: a request that has not arrived
/// this long after its connection was accepted comes from a slow client.
pub const SLOW_CLIENT_GRACE: Duration = Duration::from_millis(500);

impl Reservation {
    /// The job of the connection's first request takes the count over (its thread
    /// releases it when done).
    fn pass_to_job(mut self) {
        if let Some((busy, id)) = self.0.take() {
            busy.forget(id);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some((busy, id)) = self.0.take() {
            busy.forget(id);
            busy.done();
        }
    }
}

/// How many of the pool's threads have a job (or a reservation), and a wake-up when
/// one is done.
struct Busy {
    threads: usize,
    /// Jobs and reservations.
    count: AtomicUsize,
    /// The reservations outstanding, by id (ids grow: the first is the oldest), with
    /// when each was made.
    reservations: Mutex<BTreeMap<u64, Instant>>,
    next_id: AtomicU64,
    freed: tokio::sync::Notify,
}

impl Busy {
    fn new(threads: usize) -> Busy {
        Busy {
            threads,
            count: AtomicUsize::new(0),
            reservations: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            freed: tokio::sync::Notify::new(),
        }
    }

    /// One more thread has (or will have) a job.
    fn claim(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// A thread is done with its job.
    fn done(&self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_one();
    }

    /// A reservation made now; its id.
    fn remember(&self, now: Instant) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.reservations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, now);
        id
    }

    fn forget(&self, id: u64) {
        self.reservations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Whether a thread is free at `now`, and if not, when a reservation turns stale
    /// (a reason to look again).
    fn free_at(&self, now: Instant) -> (bool, Option<Instant>) {
        let count = self.count.load(Ordering::Acquire);
        let reservations = self
            .reservations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let oldest = reservations.values().next().copied();
        (
            counts_free(self.threads, count, reservations.len(), oldest, now),
            oldest.map(|t| t + SLOW_CLIENT_GRACE),
        )
    }

    /// Wait until a thread is free (see [`counts_free`]).
    async fn wait_free(&self) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a thread freed in between still wakes us.
            freed.as_mut().enable();
            let (free, stale_at) = self.free_at(Instant::now());
            if free {
                return;
            }
            match stale_at {
                Some(at) => {
                    tokio::select! {
                        _ = freed => {}
                        _ = tokio::time::sleep_until(at.into()) => {}
                    }
                }
                None => freed.await,
            }
        }
    }
}

/// The accept rule: a thread is free when fewer than `threads` jobs and reservations
/// are out; reservations count only while the oldest of them is younger than
/// [`SLOW_CLIENT_GRACE`] (an older one means slow clients: then only jobs count).
fn counts_free(
    threads: usize,
    count: usize,
    reserved: usize,
    oldest: Option<Instant>,
    now: Instant,
) -> bool {
    let stale = oldest.is_some_and(|t| now.saturating_duration_since(t) >= SLOW_CLIENT_GRACE);
    let effective = if stale {
        count.saturating_sub(reserved)
    } else {
        count
    };
    effective < threads
}

impl Executor {
    /// An executor for `threads` app threads. Starting the pool spawns threads: call it
    /// only in a worker (after any fork).
    pub fn new(app: Arc<App>, threads: u32) -> std::io::Result<Executor> {
        if threads <= 1 {
            return Ok(Executor::Inline(app));
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let busy = Arc::new(Busy::new(threads as usize));
        for i in 0..threads {
            let app = Arc::clone(&app);
            let rx = Arc::clone(&rx);
            let busy = Arc::clone(&busy);
            std::thread::Builder::new()
                .name(format!("rsgi-app-{i}"))
                .spawn(move || app_thread(&app, &rx, &busy))?;
        }
        Ok(Executor::Pool(Pool { jobs: tx, busy }))
    }

    /// Wait until an app thread is free (at once for [`Executor::Inline`]: the accept
    /// loop itself is the app thread).
    pub async fn wait_free(&self) {
        if let Executor::Pool(pool) = self {
            pool.busy.wait_free().await;
        }
    }

    /// Count a thread as busy for a connection just accepted (none for
    /// [`Executor::Inline`]); see [`Reservation`].
    pub fn reserve(&self) -> Option<Reservation> {
        let Executor::Pool(pool) = self else {
            return None;
        };
        pool.busy.claim();
        let id = pool.busy.remember(Instant::now());
        Some(Reservation(Some((Arc::clone(&pool.busy), id))))
    }

    /// Run the app for `req`, on the thread `reservation` holds if there is one.
    pub async fn call_reserved(&self, req: Request, reservation: Option<Reservation>) -> Response {
        match self {
            Executor::Inline(app) => Python::attach(|py| app.call(py, req)),
            Executor::Pool(pool) => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                match reservation {
                    Some(r) => r.pass_to_job(),
                    None => pool.busy.claim(),
                }
                if pool.jobs.send(Job { req, reply }).is_err() {
                    pool.busy.done();
                    return Response::error(503);
                }
                answer.await.unwrap_or_else(|_| Response::error(500))
            }
        }
    }
}

fn app_thread(app: &App, jobs: &Mutex<mpsc::Receiver<Job>>, busy: &Busy) {
    Python::attach(|py| loop {
        let job = py.detach(|| match jobs.lock() {
            Ok(rx) => rx.recv().ok(),
            Err(_) => None,
        });
        let Some(job) = job else { return };
        let mut resp = app.call(py, job.req);
        match std::mem::replace(&mut resp.body, Body::Empty) {
            Body::Stream(source) => {
                let (tx, rx) = tokio::sync::mpsc::channel(STREAM_QUEUE);
                resp.body = Body::Channel(rx);
                if job.reply.send(resp).is_ok() {
                    py.detach(|| pump(source, &tx));
                }
            }
            body => {
                resp.body = body;
                let _ = job.reply.send(resp);
            }
        }
        busy.done();
    });
}

/// Feed a streamed body to the I/O thread until it ends or the client goes away. The
/// source is dropped at the end, which runs the app's `close()`.
fn pump(
    mut source: Box<dyn ChunkSource>,
    tx: &tokio::sync::mpsc::Sender<Result<bytes::Bytes, crate::response::StreamError>>,
) {
    loop {
        match source.next_chunk() {
            Ok(Some(chunk)) => {
                if tx.blocking_send(Ok(chunk)).is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                break;
            }
        }
    }
    drop(source);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_rule_table() {
        let t0 = Instant::now();
        let young = Some(t0);
        let g = SLOW_CLIENT_GRACE;
        // (threads, jobs + reservations, reservations, oldest, now, free)
        let rows = [
            (2, 0, 0, None, t0, true),
            (2, 1, 0, None, t0, true),
            (2, 2, 0, None, t0, false),
            // Young reservations count: connections spread over the workers.
            (2, 2, 2, young, t0, false),
            (2, 2, 1, young, t0 + g / 2, false),
            // An old one means slow clients: only jobs count.
            (2, 2, 2, young, t0 + g, true),
            (2, 3, 1, young, t0 + g, false),
            (2, 500, 499, young, t0 + g * 10, true),
        ];
        for (i, (threads, count, reserved, oldest, now, want)) in rows.into_iter().enumerate() {
            assert_eq!(
                counts_free(threads, count, reserved, oldest, now),
                want,
                "row {i}"
            );
        }
    }

    #[test]
    fn accepting_waits_for_a_free_thread() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let busy = Arc::new(Busy::new(2));
            let ready = |b: &Arc<Busy>| {
                let b = Arc::clone(b);
                tokio::spawn(async move { b.wait_free().await })
            };
            // Free threads: no wait.
            ready(&busy).await.expect("task");
            busy.claim();
            busy.claim();
            let waiter = ready(&busy);
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            assert!(!waiter.is_finished(), "both threads are busy");
            // A thread finishing on another OS thread wakes the waiter.
            let b = Arc::clone(&busy);
            std::thread::spawn(move || b.done()).join().expect("thread");
            tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
                .await
                .expect("woken")
                .expect("task");
            assert_eq!(busy.count.load(Ordering::Acquire), 1);
        });
    }
}
