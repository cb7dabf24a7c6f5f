//! Where app calls run.
//!
//! - [`Executor::Inline`] (`threads = 1`): the I/O thread calls the app itself. The
//!   worker could do nothing else meanwhile (one app thread is one request at a time,
//!   as in uWSGI's sync mode), so a thread hop would only add latency.
//! - [`Executor::Pool`] (`threads = N > 1`): N app threads, each attached to the
//!   interpreter once; they release the GIL while they wait for work and while they
//!   wait for the client to take a streamed chunk. The I/O thread awaits the answer on
//!   a oneshot channel and never holds the GIL across an `.await`.

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
        for i in 0..threads {
            let app = Arc::clone(&app);
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("rsgi-app-{i}"))
                .spawn(move || app_thread(&app, &rx))?;
        }
        Ok(Executor::Pool(Pool { jobs: tx }))
    }

    /// Run the app for `req`.
    pub async fn call(&self, req: Request) -> Response {
        match self {
            Executor::Inline(app) => Python::attach(|py| app.call(py, req)),
            Executor::Pool(pool) => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                if pool.jobs.send(Job { req, reply }).is_err() {
                    return Response::error(503);
                }
                answer.await.unwrap_or_else(|_| Response::error(500))
            }
        }
    }
}

fn app_thread(app: &App, jobs: &Mutex<mpsc::Receiver<Job>>) {
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
