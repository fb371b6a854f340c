//! A fault-injecting HTTP proxy for tests and benchmarks.
//!
//! It listens on 127.0.0.1, forwards every request to an S3 server, and, per bucket (the first
//! path segment: clients use path-style addressing), injects 500/503 responses, connection
//! resets and added latency at chosen rates, answers a chosen status (403 AccessDenied, say),
//! or cuts response bodies short. It counts what it sees, so tests can assert which requests
//! were made, and how many were in flight at once, so benchmarks can tell whether a client
//! keeps to its concurrency limit.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, CONNECTION, TRANSFER_ENCODING};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// What to do to the requests of one bucket.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    /// Share of requests answered with 500 InternalError or 503 SlowDown (half each).
    pub error_rate: f64,
    /// Share of requests whose connection is closed without an answer.
    pub reset_rate: f64,
    /// Added before forwarding each request.
    pub latency: Duration,
    /// Every request is answered 503 ServiceUnavailable.
    pub down: bool,
    /// When set, the rule applies only to requests whose query string contains this text
    /// (for example `partNumber=2`); others pass untouched.
    pub only_query: Option<String>,
    /// Every request is answered with this status and S3 error code instead of being
    /// forwarded (after `down`, before the random faults).
    pub reply: Option<ErrorReply>,
    /// Successful GET answers are forwarded with their headers (the full Content-Length
    /// included), but the connection is closed after this many body bytes, as when a
    /// connection breaks while the body streams.
    pub cut_body_after: Option<u64>,
}

/// An S3 error answer: status, code, and the XML body S3 sends with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// HTTP status, for example 403.
    pub status: u16,
    /// S3 error code, for example `AccessDenied`.
    pub code: String,
}

impl ErrorReply {
    /// The answer `status` with the S3 error `code`.
    pub fn new(status: u16, code: &str) -> Self {
        ErrorReply {
            status,
            code: code.to_string(),
        }
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// HTTP method.
    pub method: String,
    /// Bucket (first path segment).
    pub bucket: String,
    /// Query string.
    pub query: String,
    /// Whether it carried `x-amz-copy-source` (CopyObject or UploadPartCopy).
    pub copy: bool,
    /// Whether it carried `If-None-Match: *` (a write only if the key does not exist).
    pub create_only: bool,
    /// Whether a fault was injected instead of forwarding.
    pub faulted: bool,
    /// The `Range` header, when there was one.
    pub range: Option<String>,
    /// The `If-Match` header, when there was one.
    pub if_match: Option<String>,
    /// Its `x-amz-*` headers, names in lower case, those of the signature left out.
    pub amz: std::collections::BTreeMap<String, String>,
}

#[derive(Default)]
struct State {
    rules: HashMap<String, Rule>,
    default_rule: Rule,
    seen: Vec<Seen>,
    /// Requests received and not yet answered.
    in_flight: usize,
    /// The highest `in_flight` since it was last taken.
    max_in_flight: usize,
}

/// Counts one request in flight from the moment the proxy has its head until the handler
/// returns, whichever way it returns (answer, injected fault or reset).
struct InFlight(Arc<Mutex<State>>);

impl InFlight {
    fn start(state: &Arc<Mutex<State>>) -> Self {
        let mut s = state.lock().unwrap();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.lock().unwrap();
        s.in_flight -= 1;
    }
}

/// A running proxy; it stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (for example `http://127.0.0.1:5000`).
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let upstream: Arc<str> = upstream.trim_end_matches('/').into();
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let random = Arc::new(AtomicU64::new(0x9E37_79B9_7F4A_7C15));
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (state, client, upstream, random) = (
                    shared.clone(),
                    client.clone(),
                    upstream.clone(),
                    random.clone(),
                );
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        handle(
                            req,
                            state.clone(),
                            client.clone(),
                            upstream.clone(),
                            random.clone(),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FaultProxy { addr, state, task })
    }

    /// The URL clients use as their endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the rule for one bucket.
    pub fn set_rule(&self, bucket: &str, rule: Rule) {
        self.state
            .lock()
            .unwrap()
            .rules
            .insert(bucket.to_string(), rule);
    }

    /// Sets the rule for buckets without a rule of their own.
    pub fn set_default_rule(&self, rule: Rule) {
        self.state.lock().unwrap().default_rule = rule;
    }

    /// Removes every rule: all requests pass untouched.
    pub fn clear_rules(&self) {
        let mut state = self.state.lock().unwrap();
        state.rules.clear();
        state.default_rule = Rule::default();
    }

    /// Everything seen so far, and forgets it.
    pub fn take_seen(&self) -> Vec<Seen> {
        std::mem::take(&mut self.state.lock().unwrap().seen)
    }

    /// Requests received and not yet answered, now.
    pub fn in_flight(&self) -> usize {
        self.state.lock().unwrap().in_flight
    }

    /// The most requests that were in flight at once since the last call (or since the start),
    /// and starts counting again from the number in flight now. A request counts from the
    /// moment the proxy has read its head until its answer is ready, added latency included:
    /// what a client sees as one request outstanding.
    pub fn take_max_in_flight(&self) -> usize {
        let mut state = self.state.lock().unwrap();
        let max = state.max_in_flight;
        state.max_in_flight = state.in_flight;
        max
    }
}

/// The reason a connection is dropped on purpose.
#[derive(Debug)]
struct InjectedReset;

impl std::fmt::Display for InjectedReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected connection reset")
    }
}

impl std::error::Error for InjectedReset {}

enum Fault {
    None(Duration),
    Error(StatusCode, String),
    Reset,
}

type ProxyBody = BoxBody<Bytes, InjectedReset>;

/// The first bytes of a body, then an error: hyper closes the connection, and the client
/// sees fewer bytes than the Content-Length it was promised.
struct CutBody {
    head: Option<Bytes>,
    /// Hyper flushes what it holds only while the body is pending; an error right after the
    /// first bytes would close the connection before the response head left.
    flushed: Pin<Box<tokio::time::Sleep>>,
}

impl CutBody {
    fn new(head: Bytes) -> Self {
        CutBody {
            head: Some(head),
            flushed: Box::pin(tokio::time::sleep(Duration::from_millis(50))),
        }
    }
}

impl hyper::body::Body for CutBody {
    type Data = Bytes;
    type Error = InjectedReset;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, InjectedReset>>> {
        if let Some(head) = self.head.take().filter(|h| !h.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        match self.flushed.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(InjectedReset))),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: Arc<str>,
    random: Arc<AtomicU64>,
) -> Result<Response<ProxyBody>, InjectedReset> {
    let _in_flight = InFlight::start(&state);
    let bucket = req
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (range, if_match) = (header("range"), header("if-match"));
    let amz = req
        .headers()
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name.starts_with("x-amz-")
                && !matches!(
                    name,
                    "x-amz-date" | "x-amz-content-sha256" | "x-amz-security-token"
                )
        })
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect();
    let (fault, cut) = {
        let mut state = state.lock().unwrap();
        let rule = state
            .rules
            .get(&bucket)
            .unwrap_or(&state.default_rule)
            .clone();
        let applies = rule.only_query.as_deref().is_none_or(|q| query.contains(q));
        let roll = next_unit(&random);
        let fault = if !applies {
            Fault::None(Duration::ZERO)
        } else if rule.down {
            Fault::Error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable".into())
        } else if let Some(reply) = &rule.reply {
            let status = StatusCode::from_u16(reply.status).unwrap_or_else(|_| {
                panic!(
                    "the fault proxy's reply status {} is not an HTTP status",
                    reply.status
                )
            });
            Fault::Error(status, reply.code.clone())
        } else if roll < rule.error_rate / 2.0 {
            Fault::Error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError".into())
        } else if roll < rule.error_rate {
            Fault::Error(StatusCode::SERVICE_UNAVAILABLE, "SlowDown".into())
        } else if roll < rule.error_rate + rule.reset_rate {
            Fault::Reset
        } else {
            Fault::None(rule.latency)
        };
        state.seen.push(Seen {
            method: req.method().to_string(),
            bucket,
            query,
            copy: req.headers().contains_key("x-amz-copy-source"),
            create_only: req
                .headers()
                .get("if-none-match")
                .is_some_and(|v| v.as_bytes() == b"*"),
            faulted: !matches!(fault, Fault::None(_)),
            range,
            if_match,
            amz,
        });
        let cut = rule
            .cut_body_after
            .filter(|_| applies && req.method() == hyper::Method::GET);
        (fault, cut)
    };

    let (mut parts, body) = req.into_parts();
    // The whole request is read first, as a server would before failing it.
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    match fault {
        Fault::Reset => return Err(InjectedReset),
        Fault::Error(status, code) => {
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the fault proxy</Message></Error>"
            );
            return Ok(Response::builder()
                .status(status)
                .header("content-type", "application/xml")
                .body(full(Bytes::from(xml)))
                .expect("static response"));
        }
        Fault::None(latency) if !latency.is_zero() => tokio::time::sleep(latency).await,
        Fault::None(_) => {}
    }

    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    parts.uri = format!("{upstream}{path}")
        .parse()
        .expect("valid upstream URI");
    strip_hop_by_hop(&mut parts.headers);
    let forwarded = Request::from_parts(parts, Full::new(body));
    let response = match client.request(forwarded).await {
        Ok(response) => response,
        Err(_) => return Err(InjectedReset),
    };
    let (mut parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    strip_hop_by_hop(&mut parts.headers);
    let body = match cut {
        Some(after) if parts.status.is_success() && (after as usize) < body.len() => {
            CutBody::new(body.slice(..after as usize)).boxed()
        }
        _ => full(body),
    };
    Ok(Response::from_parts(parts, body))
}

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    for name in [
        CONNECTION,
        TRANSFER_ENCODING,
        HeaderName::from_static("keep-alive"),
    ] {
        headers.remove(name);
    }
}

/// A uniform number in [0, 1) from a shared xorshift state: reproducible, and no dependency.
fn next_unit(state: &AtomicU64) -> f64 {
    let mut x = state.load(Ordering::Relaxed);
    loop {
        let mut y = x;
        y ^= y << 13;
        y ^= y >> 7;
        y ^= y << 17;
        match state.compare_exchange_weak(x, y, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return (y >> 11) as f64 / (1u64 << 53) as f64,
            Err(current) => x = current,
        }
    }
}
