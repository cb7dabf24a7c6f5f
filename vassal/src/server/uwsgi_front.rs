//! The uwsgi front end (nginx's `uwsgi_pass`: one request per connection, as nginx's
//! uwsgi module has no upstream keep-alive): read the packet ([`crate::uwsgi`] parses
//! it, [`crate::cgi`] makes the variables), answer through the core, write the answer
//! as raw HTTP ([`Wire::Uwsgi`]) and close. The close path answers most uwsgi requests
//! from the accept loop with the same parser ([`parse_uwsgi_head`]); this task-based
//! path takes the rest, from where the close path left them ([`UwsgiStart`]).

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::conn::Conn;
use super::core::{self, Outcome, Ticket, Worker};
use super::write::{self, send, Wire};
use crate::cgi::{self, CgiVars, ConnInfo};
use crate::python::{Request, Reservation};
use crate::response::Response;
use crate::uwsgi;

/// Where the general uwsgi path starts on a connection.
pub(super) enum UwsgiStart {
    /// Read the request; these bytes of it were read already.
    Read(BytesMut),
    /// The head is parsed: read the rest of the body (`buf` holds its start).
    Body {
        cgi: CgiVars,
        buf: BytesMut,
        length: usize,
    },
    /// Answer this status and close.
    Refuse(u16, Option<CgiVars>),
}

pub(super) async fn handle_uwsgi(
    mut conn: Conn,
    info: ConnInfo,
    worker: Arc<Worker>,
    start: UwsgiStart,
    reserved: Option<Reservation>,
) {
    let started = Instant::now();
    let request = async {
        match start {
            UwsgiStart::Read(buf) => read_uwsgi(&mut conn, &worker, &info, buf).await,
            UwsgiStart::Body { cgi, buf, length } => {
                read_uwsgi_body(&mut conn, cgi, buf, length, worker.socket_timeout).await
            }
            UwsgiStart::Refuse(status, cgi) => Err(UwsgiRead::Status(status, cgi)),
        }
    };
    // `socket-timeout` bounds each read (as in uWSGI), not the whole request: an
    // upload may take long, a client may not stay silent.
    let (mut cgi, body) = match request.await {
        Ok(r) => r,
        Err(UwsgiRead::Closed) => return,
        Err(UwsgiRead::Status(status, cgi)) => {
            let _ = respond(&mut conn, Response::error(status), false).await;
            if let Some(cgi) = cgi {
                Ticket::new(&cgi, started).finish(&worker, Outcome::server(status));
            }
            return;
        }
    };
    let head = core::is_head(&cgi);
    worker.routes.apply(&mut cgi);
    let mut ticket = Ticket::new(&cgi, started);
    let fd = conn.fd();
    let resp = core::answer(
        &worker,
        &mut ticket,
        Request { cgi, body, head },
        reserved,
        fd,
    )
    .await;
    let resp = write::checked(resp);
    let (status, exception) = (resp.status, resp.exception);
    let file = matches!(resp.body, crate::response::Body::File { .. });
    let (out, framing) = write::head(&resp, Wire::Uwsgi, head, b"");
    let head = core::head_stats(&out);
    let sent = send::write_response(&mut conn, out, resp.body, framing)
        .await
        .unwrap_or(0);
    ticket.finish(
        &worker,
        Outcome {
            status,
            bytes: sent,
            exception,
            head,
            file,
        },
    );
}

/// Write `resp` (already [`write::checked`]) on a uwsgi connection; returns the body
/// bytes sent. The caller closes the connection by dropping it.
async fn respond(conn: &mut Conn, resp: Response, head: bool) -> io::Result<u64> {
    let (out, framing) = write::head(&resp, Wire::Uwsgi, head, b"");
    send::write_response(conn, out, resp.body, framing).await
}

pub(super) enum UwsgiRead {
    /// The client went away or sent garbage: close without answering.
    Closed,
    /// Answer with this status, then close.
    Status(u16, Option<CgiVars>),
}

/// What [`parse_uwsgi_head`] found in the bytes read so far.
pub(super) enum UwsgiHead {
    /// More bytes are needed for the vars.
    Incomplete,
    /// The vars are parsed (and split off the buffer, which now starts with the body);
    /// the body is `length` bytes.
    Parsed { cgi: CgiVars, length: usize },
}

/// Parse a uwsgi request head from `buf` once it is complete.
pub(super) fn parse_uwsgi_head(
    buf: &mut BytesMut,
    worker: &Worker,
    info: &ConnInfo,
) -> Result<UwsgiHead, UwsgiRead> {
    let (header, head_len) = match uwsgi::check(buf, worker.buffer_size) {
        Ok(found) => found,
        Err(uwsgi::Error::Incomplete) => return Ok(UwsgiHead::Incomplete),
        Err(uwsgi::Error::TooLarge { size, limit }) => {
            crate::log::line(format_args!(
                "rsgi: uwsgi request vars of {size} bytes exceed buffer-size {limit}; \
                 raise buffer-size (max 65535)"
            ));
            return Err(UwsgiRead::Closed);
        }
        Err(uwsgi::Error::Malformed(why)) => {
            crate::log::line(format_args!("rsgi: malformed uwsgi packet: {why}"));
            return Err(UwsgiRead::Closed);
        }
    };
    if header.modifier1 != 0 && header.modifier1 != 30 {
        crate::log::line(format_args!(
            "rsgi: uwsgi modifier1 {} is not a WSGI request; closing",
            header.modifier1
        ));
        return Err(UwsgiRead::Closed);
    }
    let head = buf.split_to(head_len).freeze();
    let vars = uwsgi::parse_vars(&head, header).map_err(|e| {
        crate::log::line(format_args!("rsgi: malformed uwsgi packet: {e}"));
        UwsgiRead::Closed
    })?;
    let cgi = match cgi::from_uwsgi(vars, header.modifier1, info) {
        Ok(c) => c,
        Err(e) => {
            crate::log::line(format_args!("rsgi: bad uwsgi request: {e}"));
            return Err(UwsgiRead::Status(400, None));
        }
    };
    let length = cgi.content_length.unwrap_or(0);
    if worker.limit_post > 0 && length > worker.limit_post {
        return Err(UwsgiRead::Status(413, Some(cgi)));
    }
    let length = usize::try_from(length).map_err(|_| UwsgiRead::Status(413, None))?;
    Ok(UwsgiHead::Parsed { cgi, length })
}

async fn read_uwsgi(
    conn: &mut Conn,
    worker: &Worker,
    info: &ConnInfo,
    mut buf: BytesMut,
) -> Result<(CgiVars, Bytes), UwsgiRead> {
    buf.reserve(4096);
    loop {
        match parse_uwsgi_head(&mut buf, worker, info)? {
            UwsgiHead::Parsed { cgi, length } => {
                return read_uwsgi_body(conn, cgi, buf, length, worker.socket_timeout).await
            }
            UwsgiHead::Incomplete => read_more(conn, &mut buf, worker.socket_timeout).await?,
        }
    }
}

/// Read what the client sent next into `buf`; its end, an error or `timeout` of
/// silence closes.
async fn read_more(
    conn: &mut Conn,
    buf: &mut BytesMut,
    timeout: Duration,
) -> Result<(), UwsgiRead> {
    match tokio::time::timeout(timeout, conn.read_buf(buf)).await {
        Ok(Ok(0) | Err(_)) | Err(_) => Err(UwsgiRead::Closed),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Read the rest of a `length`-byte body whose start is in `buf`.
async fn read_uwsgi_body(
    conn: &mut Conn,
    cgi: CgiVars,
    mut buf: BytesMut,
    length: usize,
    timeout: Duration,
) -> Result<(CgiVars, Bytes), UwsgiRead> {
    while buf.len() < length {
        buf.reserve(length - buf.len());
        read_more(conn, &mut buf, timeout).await?;
    }
    buf.truncate(length);
    Ok((cgi, buf.freeze()))
}
