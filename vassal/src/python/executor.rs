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
//!   one is free, so a busy worker leaves new connections to the other workers. Only
//!   complete requests count: a connection whose request has not arrived holds no
//!   thread (a slow or silent client cannot keep the worker from accepting; reading
//!   request heads is the async front's job, for any number of connections).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

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

/// How many of the pool's threads have a job, and a wake-up when one is done.
struct Busy {
    threads: usize,
    count: AtomicUsize,
    freed: tokio::sync::Notify,
}

impl Busy {
    fn new(threads: usize) -> Busy {
        Busy {
            threads,
            count: AtomicUsize::new(0),
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

    fn has_free(&self) -> bool {
        self.count.load(Ordering::Acquire) < self.threads
    }

    /// Wait until fewer jobs than threads are out.
    async fn wait_free(&self) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a thread freed in between still wakes us.
            freed.as_mut().enable();
            if self.has_free() {
                return;
            }
            freed.await;
        }
    }
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

    /// Run the app for `req` (on an app thread once one is free: a request counts
    /// against the pool from the moment it is queued).
    pub async fn call(&self, req: Request) -> Response {
        match self {
            Executor::Inline(app) => Python::attach(|py| app.call(py, req)),
            Executor::Pool(pool) => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                pool.busy.claim();
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
