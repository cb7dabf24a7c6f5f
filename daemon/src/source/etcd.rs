//! An etcd v3 source: vassal files from the keys directly under a prefix, kept in step
//! by a full read and a watch, mirrored to local disk ([`super::mirror`]).
//!
//! # The client: etcd's JSON gateway over HTTP/1.1
//!
//! etcd serves its v3 API as gRPC and, on the same port, as JSON over HTTP through its
//! gRPC gateway (`POST /v3/kv/range`, `/v3/watch` as a stream of JSON objects,
//! `/v3/auth/authenticate`, `/v3/maintenance/status`; etcd 3.4, Debian 12's, serves
//! both `/v3/` and `/v3beta/`, 3.5 only `/v3/`). The common Rust gRPC client crates
//! generate code with `protoc` at build time, which would make a system package (or a
//! downloaded binary) part of `cargo build`. The gateway needs nothing of the sort:
//! this module is a small client over hyper (already rsgid's HTTP library) and
//! serde_json, with TLS through rustls (pure Rust; the `ring` provider needs only the C
//! compiler every Rust build already has; no OpenSSL headers, no cmake). Keys and
//! values travel base64-encoded, as the gateway wants.
//!
//! # Failure rules
//!
//! A full read at a revision, then a watch from the next one. Every event changes the
//! in-memory key set; the vassal files are recomputed from it ([`super::diff::plan`]) and
//! only the difference is written to the local copy, then the actor is told. After a
//! broken watch the source resumes from the last revision applied; if that revision
//! was compacted it reads the prefix again and applies only the difference. Endpoints
//! are tried in turn. Nothing here ever empties the local copy on an error: only an
//! answer from the store changes it.
//!
//! # A member that dies, hangs, or loses the quorum
//!
//! Every request has a deadline ([`CONNECT_TIMEOUT`], [`REQUEST_TIMEOUT`]). A killed
//! member closes the watch at once. A stopped (hung) member says nothing: a watch quiet
//! for [`IDLE_CHECK`] is checked with a linearizable read ([`quorum_check`]); no answer
//! within [`REQUEST_TIMEOUT`] is an error, and the source moves to the next endpoint
//! and resumes its watch there from the revision it had. A member cut off from the
//! quorum still runs and still answers a status request (the old idle check), and a
//! watch on it stays open and silent while the other members go on changing, so a
//! status request proves nothing: every request carries etcd's require-leader mark
//! ([`REQUIRE_LEADER`], what etcd's own Go client sets on its watches), so that such a
//! member refuses a new request at once ("etcdserver: no leader") and cancels an open
//! watch after a few election timeouts, and the idle check is a read that needs the
//! quorum.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use super::diff::{self, Kv, Kvs};
use super::mirror::Mirror;
use super::{EtcdUrl, SourceReport};
use crate::scan::vassal_name;

/// Time to connect (TCP and TLS) to one endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time for one request's answer (a range read, a status check, a watch's creation).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// A watch quiet this long is checked with a status request.
pub const IDLE_CHECK: Duration = Duration::from_secs(5);
/// First retry delay after an error; doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest retry delay: a store that comes back is caught up within about this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The header that asks etcd to refuse, or cancel, a request on a member that has no
/// leader: the JSON gateway passes `Grpc-Metadata-*` headers on as gRPC metadata, and
/// etcd's `hasleader: true` metadata is its require-leader mark.
pub const REQUIRE_LEADER: (&str, &str) = ("grpc-metadata-hasleader", "true");

/// How to reach etcd: TLS files and credentials, shared by every etcd source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdOptions {
    /// CA certificate (PEM) to verify the servers with; setting it turns TLS on.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for servers that ask for one.
    pub cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub key: Option<PathBuf>,
    /// User name for etcd's authentication.
    pub user: Option<String>,
    /// The user's password (from a file or the environment, never a flag).
    pub password: Option<String>,
}

/// What went wrong talking to etcd.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// No connection, no answer in time, a broken stream.
    #[error("{endpoint}: {message}")]
    Transport {
        /// The endpoint.
        endpoint: String,
        /// What happened.
        message: String,
    },
    /// etcd answered with an error.
    #[error("{endpoint}: etcd says: {message}")]
    Server {
        /// The endpoint.
        endpoint: String,
        /// etcd's message.
        message: String,
        /// gRPC code (16: unauthenticated).
        code: i64,
    },
    /// TLS files that cannot be used.
    #[error("etcd TLS: {0}")]
    Tls(String),
}

type Sender = http1::SendRequest<Full<Bytes>>;

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// A small etcd v3 client over the JSON gateway, with endpoint failover.
pub struct Client {
    endpoints: Vec<String>,
    current: usize,
    tls: Option<tokio_rustls::TlsConnector>,
    user: Option<(String, String)>,
    token: Option<String>,
    /// A kept-alive connection for unary requests, to `endpoints[current]`.
    unary: Option<Sender>,
}

/// Build the TLS client config from PEM files.
pub fn tls_connector(opts: &EtcdOptions) -> Result<Option<tokio_rustls::TlsConnector>, EtcdError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let Some(ca) = &opts.ca else {
        if opts.cert.is_some() || opts.key.is_some() {
            return Err(EtcdError::Tls(
                "a client certificate needs the CA too (etcd_ca)".into(),
            ));
        }
        return Ok(None);
    };
    let tls = |what: &std::path::Path, e: &dyn std::fmt::Display| {
        EtcdError::Tls(format!("{}: {e}", what.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| tls(ca, &e))? {
        let cert = cert.map_err(|e| tls(ca, &e))?;
        roots.add(cert).map_err(|e| tls(ca, &e))?;
    }
    if roots.is_empty() {
        return Err(tls(ca, &"no certificate in the file"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EtcdError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let config = match (&opts.cert, &opts.key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| tls(cert, &e))?
                .collect::<Result<_, _>>()
                .map_err(|e| tls(cert, &e))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls(key, &e))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| tls(cert, &e))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(EtcdError::Tls("etcd_cert and etcd_key go together".into())),
    };
    Ok(Some(tokio_rustls::TlsConnector::from(Arc::new(config))))
}

impl Client {
    /// A client for `endpoints` (`HOST:PORT`), TLS when `tls` is set.
    pub fn new(
        endpoints: Vec<String>,
        tls: Option<tokio_rustls::TlsConnector>,
        opts: &EtcdOptions,
    ) -> Client {
        Client {
            endpoints,
            current: 0,
            tls,
            user: opts
                .user
                .clone()
                .map(|u| (u, opts.password.clone().unwrap_or_default())),
            token: None,
            unary: None,
        }
    }

    fn endpoint(&self) -> &str {
        self.endpoints
            .get(self.current)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Give up on the current endpoint: the next request goes to the next one (with a
    /// fresh token, when a user is configured: an expired token breaks a watch with
    /// nothing but an error message).
    pub fn fail_over(&mut self) {
        self.unary = None;
        self.token = None;
        if !self.endpoints.is_empty() {
            self.current = (self.current + 1) % self.endpoints.len();
        }
    }

    fn transport(&self, message: impl std::fmt::Display) -> EtcdError {
        EtcdError::Transport {
            endpoint: self.endpoint().to_owned(),
            message: message.to_string(),
        }
    }

    async fn connect(&self) -> Result<Sender, EtcdError> {
        let ep = self.endpoint().to_owned();
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&ep))
            .await
            .map_err(|_| self.transport("connect timed out"))?
            .map_err(|e| self.transport(format!("connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let host = ep
                    .rsplit_once(':')
                    .map_or(ep.as_str(), |(h, _)| h)
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned();
                let name = rustls_pki_types::ServerName::try_from(host)
                    .map_err(|e| self.transport(format!("TLS server name: {e}")))?;
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(name, tcp))
                    .await
                    .map_err(|_| self.transport("TLS handshake timed out"))?
                    .map_err(|e| self.transport(format!("TLS: {e}")))?;
                Box::new(stream)
            }
        };
        let (send, conn) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.transport(format!("HTTP: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    fn request(&self, path: &str, body: &Value) -> Result<http::Request<Full<Bytes>>, EtcdError> {
        let mut req = http::Request::post(path)
            .header(http::header::HOST, self.endpoint())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(REQUIRE_LEADER.0, REQUIRE_LEADER.1);
        if let Some(t) = &self.token {
            req = req.header(http::header::AUTHORIZATION, t.as_str());
        }
        req.body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| self.transport(e))
    }

    /// Authenticate when a user is configured and there is no token yet.
    async fn ensure_token(&mut self) -> Result<(), EtcdError> {
        if self.token.is_some() {
            return Ok(());
        }
        let Some((name, password)) = self.user.clone() else {
            return Ok(());
        };
        let answer = self
            .unary_raw(
                "/v3/auth/authenticate",
                &json!({ "name": name, "password": password }),
            )
            .await?;
        match answer.get("token").and_then(Value::as_str) {
            Some(t) => {
                self.token = Some(t.to_owned());
                Ok(())
            }
            None => Err(EtcdError::Server {
                endpoint: self.endpoint().to_owned(),
                message: "authenticate: no token in the answer".into(),
                code: 16,
            }),
        }
    }

    /// One JSON request and its answer (with authentication when configured).
    pub async fn unary(&mut self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        self.ensure_token().await?;
        match self.unary_raw(path, body).await {
            // An expired or revoked token: once more with a new one.
            Err(EtcdError::Server { code: 16, .. }) if self.user.is_some() => {
                self.token = None;
                self.ensure_token().await?;
                self.unary_raw(path, body).await
            }
            other => other,
        }
    }

    async fn unary_raw(&mut self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let mut send = match self.unary.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        let req = self.request(path, body)?;
        let fut = async {
            send.ready().await.map_err(|e| self.transport(e))?;
            let resp = send
                .send_request(req)
                .await
                .map_err(|e| self.transport(e))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| self.transport(e))?
                .to_bytes();
            Ok::<_, EtcdError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, fut)
            .await
            .map_err(|_| self.transport("no answer in time"))??;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.transport(format!("not JSON ({status}): {e}")))?;
        if let Some(err) = server_error(&value) {
            return Err(EtcdError::Server {
                endpoint: self.endpoint().to_owned(),
                message: err.0,
                code: err.1,
            });
        }
        if !status.is_success() {
            return Err(self.transport(format!("HTTP {status}")));
        }
        self.unary = Some(send);
        Ok(value)
    }

    /// Start a watch; the answer's body is the stream of watch responses.
    pub async fn watch(&mut self, body: &Value) -> Result<hyper::body::Incoming, EtcdError> {
        self.ensure_token().await?;
        let mut send = self.connect().await?;
        let req = self.request("/v3/watch", body)?;
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, async {
            send.ready().await.map_err(|e| self.transport(e))?;
            send.send_request(req).await.map_err(|e| self.transport(e))
        })
        .await
        .map_err(|_| self.transport("no answer in time"))??;
        if !resp.status().is_success() {
            if resp.status() == http::StatusCode::UNAUTHORIZED {
                self.token = None;
            }
            return Err(self.transport(format!("watch: HTTP {}", resp.status())));
        }
        Ok(resp.into_body())
    }
}

/// The gateway's error object (`{"error": "...", "code": N}`), if `v` is one.
fn server_error(v: &Value) -> Option<(String, i64)> {
    let e = v.get("error")?;
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| e.as_str())
        .or_else(|| e.get("message").and_then(Value::as_str))
        .unwrap_or("unknown error")
        .to_owned();
    let code = v
        .get("code")
        .or_else(|| e.get("http_code"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    Some((message, code))
}

/// The key just past every key starting with `prefix` (etcd's `range_end`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff: to the end of the keyspace.
    vec![0]
}

/// The body of a range read of every key under `prefix`.
pub fn range_body(prefix: &str) -> Value {
    let prefix = prefix.as_bytes();
    json!({
        "key": B64.encode(prefix),
        "range_end": B64.encode(prefix_end(prefix)),
    })
}

/// The idle check's request: a linearizable count of the keys under `prefix` (no
/// `serializable`), which only a member in touch with the quorum answers; cheap, as it
/// sends back no key.
pub fn quorum_check(prefix: &str) -> Value {
    let mut body = range_body(prefix);
    body["count_only"] = Value::Bool(true);
    body
}

/// A JSON number that the gateway sends as a string (int64 fields).
fn int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// One key-value of a gateway answer: (key, kv).
fn parse_kv(v: &Value) -> Option<(String, Kv)> {
    let key = B64.decode(v.get("key")?.as_str()?).ok()?;
    let key = String::from_utf8(key).ok()?;
    let value = match v.get("value").and_then(Value::as_str) {
        Some(s) => B64.decode(s).ok()?,
        None => Vec::new(),
    };
    Some((
        key,
        Kv {
            mod_revision: int(v.get("mod_revision")),
            value,
        },
    ))
}

/// What one watch response says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMsg {
    /// The watch exists.
    Created,
    /// Events: (key, `Some(kv)` for a put, `None` for a delete), and the revision they
    /// bring the source to.
    Events(Vec<(String, Option<Kv>)>, i64),
    /// No events up to this revision (a progress notification).
    Progress(i64),
    /// The start revision was compacted: read again.
    Compacted(i64),
    /// The watch was cancelled or failed.
    Failed(String),
}

/// Parse one JSON object of the watch stream (pure).
pub fn parse_watch(v: &Value) -> WatchMsg {
    if let Some((message, _)) = server_error(v) {
        return WatchMsg::Failed(message);
    }
    let Some(r) = v.get("result") else {
        return WatchMsg::Failed(format!("unexpected watch answer: {v}"));
    };
    let compact = int(r.get("compact_revision"));
    if compact > 0 {
        return WatchMsg::Compacted(compact);
    }
    if r.get("canceled").and_then(Value::as_bool) == Some(true) {
        let why = r
            .get("cancel_reason")
            .and_then(Value::as_str)
            .unwrap_or("cancelled by the server");
        return WatchMsg::Failed(why.to_owned());
    }
    if r.get("created").and_then(Value::as_bool) == Some(true) {
        return WatchMsg::Created;
    }
    let header_rev = int(r.get("header").and_then(|h| h.get("revision")));
    let events = r.get("events").and_then(Value::as_array);
    match events {
        Some(events) if !events.is_empty() => {
            let mut out = Vec::new();
            let mut rev = 0;
            for e in events {
                let Some(kv) = e.get("kv") else { continue };
                let Some((key, kv)) = parse_kv(kv) else {
                    continue;
                };
                rev = rev.max(kv.mod_revision);
                let delete = e.get("type").and_then(Value::as_str) == Some("DELETE");
                out.push((key, (!delete).then_some(kv)));
            }
            WatchMsg::Events(out, rev)
        }
        _ => WatchMsg::Progress(header_rev),
    }
}

/// Split complete JSON objects off the front of `buf` (the stream may cut an object
/// anywhere); what is left is the start of the next one.
pub fn split_objects(buf: &mut Vec<u8>) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<Value>();
    let mut used = 0;
    loop {
        match it.next() {
            Some(Ok(v)) => {
                used = it.byte_offset();
                out.push(v);
            }
            Some(Err(e)) if e.is_eof() => break,
            Some(Err(e)) => return Err(format!("bad JSON in the watch stream: {e}")),
            None => break,
        }
    }
    buf.drain(..used);
    Ok(out)
}

/// Why a watch ended.
enum WatchEnd {
    Compacted(i64),
    Failed(EtcdError),
}

/// Reports a source's state to the actor; false when the actor is gone.
pub type Reporter = Box<dyn Fn(SourceReport) -> bool + Send>;

/// One etcd source: its client, its key set, its local copy.
pub struct EtcdSource {
    index: usize,
    url: EtcdUrl,
    client: Client,
    mirror: Mirror,
    kvs: Kvs,
    errors: u64,
    state: &'static str,
    message: Option<String>,
    report: Reporter,
    /// The (key, reason) pairs already warned about.
    warned: Vec<(String, &'static str)>,
}

impl EtcdSource {
    /// A source for `url`, mirrored in `mirror`, reporting through `report` as source
    /// `index`. Until it reaches the store it serves the copy and says `stale`.
    pub fn new(
        index: usize,
        url: EtcdUrl,
        client: Client,
        mirror: Mirror,
        report: Reporter,
    ) -> EtcdSource {
        let kvs = mirror
            .entries()
            .values()
            .filter(|e| !e.key.is_empty())
            .map(|e| {
                (
                    e.key.clone(),
                    Kv {
                        mod_revision: e.mod_revision,
                        value: e.value.clone(),
                    },
                )
            })
            .collect();
        EtcdSource {
            index,
            url,
            client,
            mirror,
            kvs,
            errors: 0,
            state: "stale",
            message: None,
            report,
            warned: Vec::new(),
        }
    }

    /// The report for the actor as things are now.
    pub fn status(&self, changed: bool) -> SourceReport {
        let keys = self
            .mirror
            .entries()
            .iter()
            .filter_map(|(file, e)| {
                let (name, _) = vassal_name(file)?;
                Some((name, (e.key.clone(), e.mod_revision)))
            })
            .collect();
        SourceReport {
            index: self.index,
            state: self.state,
            revision: self.mirror.revision(),
            errors: self.errors,
            message: self.message.clone(),
            endpoint: (self.state == "up").then(|| self.client.endpoint().to_owned()),
            keys,
            changed,
        }
    }

    fn send(&self, changed: bool) -> bool {
        (self.report)(self.status(changed))
    }

    /// Bring the local copy to the key set; tell the actor.
    fn apply(&mut self, revision: i64) -> Result<(), EtcdError> {
        let (want, ignored) = diff::plan(&self.url.prefix, &self.kvs);
        for (key, why) in ignored {
            if !self.warned.contains(&(key.clone(), why)) {
                tracing::warn!(source = %self.url, key = %key, "not a vassal: {why}");
                self.warned.push((key, why));
            }
        }
        let ops = diff::diff(self.mirror.entries(), &want);
        let changed =
            self.mirror
                .apply(&ops, &want, revision)
                .map_err(|e| EtcdError::Transport {
                    endpoint: "local copy".into(),
                    message: e.to_string(),
                })?;
        for op in &ops {
            tracing::debug!(source = %self.url, ?op, revision, "local copy");
        }
        self.send(changed);
        Ok(())
    }

    fn failed(&mut self, e: &EtcdError) {
        self.errors += 1;
        let message = e.to_string();
        if self.message.as_deref() != Some(message.as_str()) {
            tracing::warn!(source = %self.url, "etcd: {message} (every vassal keeps running as it is; retrying)");
        }
        self.message = Some(message);
        if self.state == "up" {
            self.state = "unreachable";
        }
        self.client.fail_over();
        self.send(false);
    }

    fn up(&mut self) {
        if self.state != "up" {
            tracing::info!(source = %self.url, revision = self.mirror.revision(), "etcd: in step with the store");
        }
        self.state = "up";
        self.message = None;
    }

    /// Read every key under the prefix and apply the difference.
    async fn full_read(&mut self) -> Result<(), EtcdError> {
        let body = range_body(&self.url.prefix);
        let answer = self.client.unary("/v3/kv/range", &body).await?;
        let revision = int(answer.get("header").and_then(|h| h.get("revision")));
        let kvs: Kvs = answer
            .get("kvs")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(parse_kv).collect())
            .unwrap_or_default();
        self.kvs = kvs;
        self.up();
        self.apply(revision)
    }

    /// Watch from the revision after the copy's; returns when the watch ends.
    async fn watch(&mut self) -> WatchEnd {
        let prefix = self.url.prefix.as_bytes();
        let body = json!({ "create_request": {
            "key": B64.encode(prefix),
            "range_end": B64.encode(prefix_end(prefix)),
            "start_revision": (self.mirror.revision() + 1).to_string(),
            "progress_notify": true,
        }});
        let mut stream = match self.client.watch(&body).await {
            Ok(s) => s,
            Err(e) => return WatchEnd::Failed(e),
        };
        let mut buf = Vec::new();
        let endpoint = self.client.endpoint().to_owned();
        let transport = |m: String| EtcdError::Transport {
            endpoint: endpoint.clone(),
            message: m,
        };
        loop {
            let frame = match tokio::time::timeout(IDLE_CHECK, stream.frame()).await {
                Ok(f) => f,
                Err(_) => {
                    // Quiet: is the member still there, and still in the quorum?
                    let check = quorum_check(&self.url.prefix);
                    if let Err(e) = self.client.unary("/v3/kv/range", &check).await {
                        return WatchEnd::Failed(e);
                    }
                    continue;
                }
            };
            let data = match frame {
                None => return WatchEnd::Failed(transport("the watch stream ended".into())),
                Some(Err(e)) => return WatchEnd::Failed(transport(format!("watch: {e}"))),
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) => d,
                    Err(_) => continue,
                },
            };
            buf.extend_from_slice(&data);
            let objects = match split_objects(&mut buf) {
                Ok(o) => o,
                Err(e) => return WatchEnd::Failed(transport(e)),
            };
            for v in objects {
                match parse_watch(&v) {
                    WatchMsg::Created => {
                        self.up();
                        self.send(false);
                    }
                    WatchMsg::Events(events, rev) => {
                        for (key, kv) in events {
                            diff::apply_event(&mut self.kvs, &key, kv);
                        }
                        let rev = rev.max(self.mirror.revision());
                        if let Err(e) = self.apply(rev) {
                            return WatchEnd::Failed(e);
                        }
                    }
                    WatchMsg::Progress(rev) => {
                        if rev > self.mirror.revision() {
                            if let Err(e) = self.apply(rev) {
                                return WatchEnd::Failed(e);
                            }
                        }
                    }
                    WatchMsg::Compacted(rev) => return WatchEnd::Compacted(rev),
                    WatchMsg::Failed(m) => {
                        return WatchEnd::Failed(EtcdError::Server {
                            endpoint: self.client.endpoint().to_owned(),
                            message: m,
                            code: 0,
                        })
                    }
                }
            }
        }
    }

    /// Run until the actor is gone.
    pub async fn run(mut self) {
        if !self.send(false) {
            return;
        }
        let mut backoff = BACKOFF_MIN;
        // Resume from the copy's revision when it has one; the first watch finds out
        // whether it was compacted.
        let mut need_read = self.state != "up";
        loop {
            if need_read {
                match self.full_read().await {
                    Ok(()) => need_read = false,
                    Err(e) => {
                        self.failed(&e);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                }
            }
            match self.watch().await {
                WatchEnd::Compacted(rev) => {
                    tracing::info!(source = %self.url, from = self.mirror.revision(), compacted = rev, "etcd: revision compacted; reading the prefix again");
                    need_read = true;
                    backoff = BACKOFF_MIN;
                }
                WatchEnd::Failed(e) => {
                    let was_up = self.state == "up";
                    self.failed(&e);
                    if was_up {
                        backoff = BACKOFF_MIN;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
            if (self.report)(self.status(false)) {
                continue;
            }
            return;
        }
    }

    /// The source's URL.
    pub fn url(&self) -> &EtcdUrl {
        &self.url
    }
}

/// Every source's first full read, or its failure, before the actor's first scan: so
/// that rsgid started while the store is up starts the store's set, not the copy's.
///
/// Each source tries its endpoints in turn (one round), and the sources read at the
/// same time: a dead member costs a refused connection, a hung one [`REQUEST_TIMEOUT`],
/// and one source's hung member costs the other sources nothing. A read still waiting
/// at `within` counts as that endpoint's failure (the source's task goes on with the
/// next one).
pub async fn first_sync(sources: &mut [EtcdSource], within: Duration) {
    // Joined, not spawned: the sources stay borrowed.
    futures_util::future::join_all(sources.iter_mut().map(|s| s.first_read(within))).await;
}

impl EtcdSource {
    /// One round over the endpoints until a full read works, within `within`.
    async fn first_read(&mut self, within: Duration) {
        let rounds = self.client.endpoints.len().max(1);
        let read = tokio::time::timeout(within, async {
            for _ in 0..rounds {
                match self.full_read().await {
                    Ok(()) => return,
                    Err(e) => self.failed(&e),
                }
            }
        })
        .await;
        if read.is_err() {
            let e = self
                .client
                .transport(format!("no answer within the first {within:?}"));
            self.failed(&e);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn prefix_end_table() {
        assert_eq!(prefix_end(b"/rsgi/"), b"/rsgi0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn split_objects_keeps_a_cut_object() {
        let mut buf = br#"{"a":1}
{"b":2}{"c":"#
            .to_vec();
        let got = split_objects(&mut buf).unwrap();
        assert_eq!(got, vec![json!({"a":1}), json!({"b":2})]);
        assert_eq!(buf, br#"{"c":"#.to_vec());
        buf.extend_from_slice(b"3}\n");
        assert_eq!(split_objects(&mut buf).unwrap(), vec![json!({"c":3})]);
        let mut bad = b"{]".to_vec();
        assert!(split_objects(&mut bad).is_err());
    }

    #[test]
    fn parse_watch_table() {
        // Real answers of etcd 3.4's gateway (key "/r/a.ini", value "hello").
        let created = json!({"result":{"header":{"revision":"2"},"created":true}});
        let put = json!({"result":{"header":{"revision":"5"},"events":[
            {"kv":{"key":"L3IvYS5pbmk=","create_revision":"2","mod_revision":"5","version":"2","value":"aGVsbG8="}}]}});
        let del = json!({"result":{"header":{"revision":"6"},"events":[
            {"type":"DELETE","kv":{"key":"L3IvYS5pbmk=","mod_revision":"6"}}]}});
        let compacted = json!({"result":{"header":{},"canceled":true,"compact_revision":"4"}});
        let progress = json!({"result":{"header":{"revision":"9"}}});
        let error =
            json!({"error":{"grpc_code":16,"http_code":401,"message":"invalid auth token"}});
        let kv = Kv {
            mod_revision: 5,
            value: b"hello".to_vec(),
        };
        assert_eq!(parse_watch(&created), WatchMsg::Created);
        assert_eq!(
            parse_watch(&put),
            WatchMsg::Events(vec![("/r/a.ini".into(), Some(kv))], 5)
        );
        assert_eq!(
            parse_watch(&del),
            WatchMsg::Events(vec![("/r/a.ini".into(), None)], 6)
        );
        assert_eq!(parse_watch(&compacted), WatchMsg::Compacted(4));
        assert_eq!(parse_watch(&progress), WatchMsg::Progress(9));
        assert_eq!(
            parse_watch(&error),
            WatchMsg::Failed("invalid auth token".into())
        );
    }

    #[test]
    fn every_request_requires_a_leader() {
        // A member cut off from the quorum must refuse, not serve a silent watch.
        let mut c = Client::new(
            vec!["a:1".into(), "b:2".into()],
            None,
            &EtcdOptions::default(),
        );
        for path in ["/v3/watch", "/v3/kv/range", "/v3/auth/authenticate"] {
            let req = c.request(path, &json!({})).unwrap();
            assert_eq!(
                req.headers()
                    .get("grpc-metadata-hasleader")
                    .map(|v| v.as_bytes()),
                Some(&b"true"[..]),
                "{path}"
            );
            assert_eq!(req.headers()[http::header::HOST], "a:1");
        }
        c.fail_over();
        let req = c.request("/v3/watch", &json!({})).unwrap();
        assert_eq!(req.headers()[http::header::HOST], "b:2");
        assert!(req.headers().contains_key("grpc-metadata-hasleader"));
    }

    #[test]
    fn the_idle_check_is_a_linearizable_read() {
        let body = quorum_check("/rsgi/all/");
        assert_eq!(body["key"], B64.encode("/rsgi/all/"));
        assert_eq!(body["range_end"], B64.encode("/rsgi/all0"));
        assert_eq!(body["count_only"], true);
        // Serializable reads are answered by any member, even one without the quorum.
        assert!(body.get("serializable").is_none(), "{body}");
        assert!(range_body("/p/").get("serializable").is_none());
        assert!(range_body("/p/").get("count_only").is_none());
    }

    #[test]
    fn server_errors_are_recognised() {
        let v = json!({"error":"etcdserver: mvcc: required revision has been compacted","message":"etcdserver: mvcc: required revision has been compacted","code":11});
        assert_eq!(
            server_error(&v),
            Some((
                "etcdserver: mvcc: required revision has been compacted".into(),
                11
            ))
        );
        assert_eq!(server_error(&json!({"kvs": []})), None);
    }
}
