//! Shared emulator state, per-request context, routing, common response headers, request
//! recording, scripted faults and the optional token-bucket throttle.

use crate::model::Directory;
use crate::types::{Endpoint, Fault, FaultRule, Modes, RecordedRequest};
use crate::util::{SplitMix, graph_date, new_guid, percent_decode};
use crate::{Config, control, graph, token};
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub(crate) const ODATA_JSON: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";
pub(crate) const GRAPH_CONTEXT: &str = "https://graph.microsoft.com/v1.0/$metadata";
const AGS_DIAGNOSTIC: &str = r#"{"ServerInfo":{"DataCenter":"North Europe","Slice":"E","Ring":"5","ScaleUnit":"003","RoleInstance":"EMU-GRAPH-01"}}"#;

/// An access token the emulator issued.
#[derive(Debug, Clone)]
pub(crate) struct IssuedToken {
    pub(crate) exp: u64,
    pub(crate) roles: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Recorded requests; the oldest are dropped beyond [`REQUEST_LOG_CAP`].
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    /// How many entries were dropped from the front (keeps indexes stable).
    dropped: usize,
    pub(crate) list: Vec<RecordedRequest>,
}

const REQUEST_LOG_CAP: usize = 200_000;

impl RequestLog {
    /// Forget everything recorded so far (requests in flight are then not recorded).
    pub(crate) fn clear(&mut self) {
        self.dropped += self.list.len();
        self.list.clear();
    }
}

pub(crate) struct Shared {
    pub(crate) config: Config,
    /// Per-instance key for skiptokens and deltatokens.
    pub(crate) secret: String,
    pub(crate) dir: RwLock<Directory>,
    pub(crate) modes: RwLock<Modes>,
    pub(crate) faults: Mutex<Vec<(FaultRule, usize)>>,
    pub(crate) requests: Mutex<RequestLog>,
    pub(crate) tokens: Mutex<HashMap<String, IssuedToken>>,
    pub(crate) clock_offset: AtomicU64,
    pub(crate) rng: Mutex<SplitMix>,
    pub(crate) started: Instant,
    pub(crate) base_url: String,
    pub(crate) bucket: Mutex<Bucket>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(config: Config, dir: Directory, base_url: String) -> Self {
        let seed = config.seed;
        let capacity = config.throttle_ru_per_10s.unwrap_or(0) as f64;
        Self {
            config,
            secret: new_guid(),
            dir: RwLock::new(dir),
            modes: RwLock::new(Modes::default()),
            faults: Mutex::new(Vec::new()),
            requests: Mutex::new(RequestLog::default()),
            tokens: Mutex::new(HashMap::new()),
            clock_offset: AtomicU64::new(0),
            rng: Mutex::new(SplitMix::new(seed ^ 0xA5A5_5A5A)),
            started: Instant::now(),
            base_url,
            bucket: Mutex::new(Bucket {
                tokens: capacity,
                last: Instant::now(),
            }),
        }
    }

    pub(crate) fn dir(&self) -> RwLockReadGuard<'_, Directory> {
        self.dir.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn dir_mut(&self) -> RwLockWriteGuard<'_, Directory> {
        self.dir.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn modes(&self) -> Modes {
        self.modes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn modes_mut(&self) -> RwLockWriteGuard<'_, Modes> {
        self.modes.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, Vec<(FaultRule, usize)>> {
        lock(&self.faults)
    }

    pub(crate) fn requests(&self) -> MutexGuard<'_, RequestLog> {
        lock(&self.requests)
    }

    pub(crate) fn tokens(&self) -> MutexGuard<'_, HashMap<String, IssuedToken>> {
        lock(&self.tokens)
    }

    pub(crate) fn rng(&self) -> MutexGuard<'_, SplitMix> {
        lock(&self.rng)
    }

    /// The emulator clock (Unix seconds): real time plus [`crate::Emulator::advance_clock`].
    pub(crate) fn now_secs(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .saturating_add(self.clock_offset.load(Ordering::SeqCst))
    }

    pub(crate) fn advance_clock(&self, secs: u64) {
        self.clock_offset.fetch_add(secs, Ordering::SeqCst);
    }

    /// Find the fault for a request, counting it against every matching rule in order until
    /// one fires.
    fn take_fault(&self, class: Option<Endpoint>, graph: bool) -> Option<Fault> {
        let mut faults = self.faults();
        for (rule, seen) in faults.iter_mut() {
            let matches = match rule.endpoint {
                Endpoint::Any => true,
                Endpoint::AnyGraph => graph,
                e => class == Some(e),
            };
            if !matches || *seen >= rule.skip + rule.times {
                continue;
            }
            *seen += 1;
            if *seen > rule.skip {
                return Some(rule.fault.clone());
            }
        }
        None
    }

    /// Token-bucket throttle: `Err(retry_after_secs)` when over budget, else `Ok(Some(pct))`
    /// (usage fraction to report once above 0.8).
    fn throttle(&self, cost: u32) -> Result<Option<f64>, u64> {
        let Some(capacity) = self.config.throttle_ru_per_10s else {
            return Ok(None);
        };
        let capacity = capacity.max(1) as f64;
        let rate = capacity / 10.0;
        let mut b = lock(&self.bucket);
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(capacity);
        b.last = now;
        let cost = f64::from(cost);
        if b.tokens < cost {
            // Usage keeps counting while throttled.
            b.tokens = (b.tokens - cost).max(-capacity);
            let wait = ((cost - b.tokens) / rate).ceil().max(1.0);
            return Err(wait as u64);
        }
        b.tokens -= cost;
        let used = 1.0 - b.tokens / capacity;
        Ok((used >= 0.8).then_some(used))
    }
}

/// Per-request context.
pub(crate) struct Ctx<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) req: &'a HttpRequest,
    pub(crate) request_id: String,
    pub(crate) client_request_id: String,
    pub(crate) now: u64,
    /// `http://host:port` as the client addressed us (for absolute links).
    pub(crate) origin: String,
}

impl<'a> Ctx<'a> {
    fn new(shared: &'a Shared, req: &'a HttpRequest) -> Self {
        let request_id = new_guid();
        let client_request_id = header(req, "client-request-id")
            .filter(|v| !v.is_empty() && HeaderValue::from_str(v).is_ok())
            .unwrap_or_else(|| request_id.clone());
        let origin = match header(req, "host") {
            Some(h) if !h.is_empty() => format!("http://{h}"),
            _ => shared.base_url.clone(),
        };
        Self {
            shared,
            req,
            request_id,
            client_request_id,
            now: shared.now_secs(),
            origin,
        }
    }

    pub(crate) fn header(&self, name: &str) -> Option<String> {
        header(self.req, name)
    }

    /// A Graph error with the standard envelope.
    pub(crate) fn error(&self, status: u16, code: &str, message: &str) -> HttpResponse {
        let body = json!({
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": graph_date(self.now),
                    "request-id": self.request_id,
                    "client-request-id": self.client_request_id,
                }
            }
        });
        let mut resp = HttpResponse::build(status_code(status));
        resp.content_type("application/json");
        if status == 401 {
            resp.insert_header((
                "WWW-Authenticate",
                r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000""#,
            ));
        }
        resp.body(body.to_string())
    }

    pub(crate) fn json(&self, body: &Value) -> HttpResponse {
        HttpResponse::Ok()
            .content_type(ODATA_JSON)
            .insert_header(("OData-Version", "4.0"))
            .body(serde_json::to_vec(body).unwrap_or_default())
    }
}

pub(crate) fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub(crate) fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Decoded, non-empty path segments.
fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect()
}

pub(crate) fn is_delta_segment(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "delta" | "delta()" | "microsoft.graph.delta" | "microsoft.graph.delta()"
    )
}

/// Which fault-rule endpoint a request belongs to (`None` for other requests).
fn classify(segs: &[String]) -> Option<Endpoint> {
    let s: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let s: Vec<&str> = s.iter().map(String::as_str).collect();
    match s.as_slice() {
        [_, "oauth2", "v2.0", "token"] => Some(Endpoint::Token),
        ["v1.0", "users", d] if is_delta_segment(d) => Some(Endpoint::UsersDelta),
        ["v1.0", "groups", d] if is_delta_segment(d) => Some(Endpoint::GroupsDelta),
        ["v1.0", "users", ..] => Some(Endpoint::Users),
        ["v1.0", "groups", _, "members" | "transitivemembers", ..] => Some(Endpoint::Members),
        ["v1.0", "groups", ..] => Some(Endpoint::Groups),
        _ => None,
    }
}

/// Resource-unit cost of a Graph request (throttling documentation).
fn resource_units(segs: &[String], query: &str) -> u32 {
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let mut cost: i32 = match lower.get(1).map(String::as_str) {
        Some("users") => 2,
        Some("groups") if lower.get(3).is_some_and(|s| s == "members") => 3,
        Some("groups") if lower.get(3).is_some_and(|s| s == "transitivemembers") => 5,
        _ => 1,
    };
    let q = crate::query::Query::parse(query).unwrap_or_default();
    if q.select.is_some() {
        cost -= 1;
    }
    if q.top
        .as_deref()
        .and_then(|t| t.parse::<u32>().ok())
        .is_some_and(|t| t < 20)
    {
        cost -= 1;
    }
    if q.expand.is_some() {
        cost += 1;
    }
    cost.max(1) as u32
}

/// The single actix handler: everything goes through here.
pub(crate) async fn entry(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let shared: &Shared = &shared;
    if req.path().starts_with("/_emulator") {
        return control::handle(shared, &req, &body);
    }
    let ctx = Ctx::new(shared, &req);
    let idx = record_start(&ctx);
    let segs = segments(req.path());
    let class = classify(&segs);
    let is_graph = segs.first().is_some_and(|s| s == "v1.0");
    let fault = shared.take_fault(class, is_graph);
    let fault_name = fault.as_ref().map(|f| format!("{f:?}"));
    let ru = if is_graph {
        resource_units(&segs, req.query_string())
    } else {
        1
    };
    let mut throttle_pct = None;
    let mut throttled = false;
    let mut resp = match fault {
        Some(Fault::Hang(d)) => {
            tokio::time::sleep(d).await;
            handle(&ctx, &segs, &body)
        }
        Some(Fault::MalformedJson) => truncate(handle(&ctx, &segs, &body)),
        Some(Fault::ResetConnection) => reset(handle(&ctx, &segs, &body)),
        Some(f) => fault_response(&ctx, &f, &segs),
        None if is_graph => match shared.throttle(ru) {
            Ok(pct) => {
                throttle_pct = pct;
                handle(&ctx, &segs, &body)
            }
            Err(wait) => {
                throttled = true;
                fault_response(
                    &ctx,
                    &Fault::TooManyRequests {
                        retry_after: Some(wait),
                    },
                    &segs,
                )
            }
        },
        None => handle(&ctx, &segs, &body),
    };
    let headers = resp.headers_mut();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    put("request-id", &ctx.request_id);
    put("client-request-id", &ctx.client_request_id);
    put("x-ms-ags-diagnostic", AGS_DIAGNOSTIC);
    put("x-ms-resource-unit", &ru.to_string());
    if let Some(p) = throttle_pct {
        put(
            "x-ms-throttle-limit-percentage",
            &format!("{:.1}", p.min(1.8)),
        );
    }
    if !is_graph {
        put("x-ms-request-id", &ctx.request_id);
    }
    let fault_name = if throttled {
        Some("Throttled".to_string())
    } else {
        fault_name
    };
    record_end(shared, idx, resp.status().as_u16(), fault_name);
    resp
}

fn record_start(ctx: &Ctx<'_>) -> usize {
    let req = ctx.req;
    let rec = RecordedRequest {
        method: req.method().to_string(),
        path_and_query: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| req.path().to_string()),
        status: 0,
        retry_attempt: header(req, "retry-attempt"),
        client_request_id: header(req, "client-request-id"),
        authorization_present: req.headers().contains_key("authorization"),
        at: Instant::now(),
        at_ms: u64::try_from(ctx.shared.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        fault: None,
    };
    let mut log = ctx.shared.requests();
    if log.list.len() >= REQUEST_LOG_CAP {
        let n = REQUEST_LOG_CAP / 10;
        log.list.drain(..n);
        log.dropped += n;
    }
    log.list.push(rec);
    log.dropped + log.list.len() - 1
}

fn record_end(shared: &Shared, idx: usize, status: u16, fault: Option<String>) {
    let mut log = shared.requests();
    let Some(local) = idx.checked_sub(log.dropped) else {
        return;
    };
    if let Some(r) = log.list.get_mut(local) {
        r.status = status;
        r.fault = fault;
    }
}

/// Normal handling of a non-control request.
fn handle(ctx: &Ctx<'_>, segs: &[String], body: &[u8]) -> HttpResponse {
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    match lower.first().map(String::as_str) {
        Some("v1.0") => graph::handle(ctx, &segs[1..]),
        Some(_)
            if lower.len() == 4
                && lower[1] == "oauth2"
                && lower[2] == "v2.0"
                && lower[3] == "token" =>
        {
            token::token_endpoint(ctx, &segs[0], body)
        }
        _ => ctx.error(
            404,
            "Request_ResourceNotFound",
            &format!("No endpoint matches '{}'.", ctx.req.path()),
        ),
    }
}

/// The response for a fault that replaces normal handling.
fn fault_response(ctx: &Ctx<'_>, fault: &Fault, segs: &[String]) -> HttpResponse {
    let cfg = &ctx.shared.config;
    match fault {
        Fault::TooManyRequests { retry_after } => {
            let mut resp = ctx.error(
                429,
                "TooManyRequests",
                &format!(
                    "Too many requests from Identifier:{}+{} under category:aadgraph.app.tenant_large. Please try again later.",
                    cfg.client_id, cfg.tenant_id
                ),
            );
            let h = resp.headers_mut();
            if let Some(secs) = retry_after {
                insert(h, "retry-after", &secs.to_string());
            }
            insert(
                h,
                "x-ms-throttle-scope",
                &format!("Tenant_Application/ReadWrite/{}/{}", cfg.client_id, cfg.tenant_id),
            );
            insert(h, "x-ms-throttle-information", "ResourceUnitLimitExceeded");
            resp
        }
        Fault::ServiceUnavailable { retry_after } => {
            let mut resp = ctx.error(
                503,
                "serviceNotAvailable",
                "The service is temporarily unavailable. Please retry after the time specified in the Retry-After header.",
            );
            if let Some(secs) = retry_after {
                insert(resp.headers_mut(), "retry-after", &secs.to_string());
            }
            resp
        }
        Fault::GatewayTimeoutHtml => HttpResponse::build(StatusCode::GATEWAY_TIMEOUT)
            .content_type("text/html")
            .body("<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center><h1>504 Gateway Time-out</h1></center>\r\n</body>\r\n</html>\r\n"),
        Fault::GatewayTimeoutEmpty => HttpResponse::build(StatusCode::GATEWAY_TIMEOUT).finish(),
        Fault::InternalError => ctx.error(500, "UnknownError", ""),
        Fault::ExpiredToken => ctx.error(
            401,
            "InvalidAuthenticationToken",
            "Access token has expired or is not yet valid.",
        ),
        Fault::SyncStateNotFound => ctx.error(
            400,
            "syncStateNotFound",
            "The sync state generation is not found; the delta token is expired or invalid. Please sync again without a token.",
        ),
        Fault::Gone => {
            let location = graph::resync_location(ctx, segs);
            let mut resp = ctx.error(
                410,
                "resyncRequired",
                "The delta token is no longer valid, and the app must reset the sync state.",
            );
            insert(resp.headers_mut(), "location", &location);
            resp
        }
        // Handled in `entry`; keep a sane answer anyway.
        Fault::Hang(_) | Fault::MalformedJson | Fault::ResetConnection => {
            ctx.error(500, "UnknownError", "")
        }
    }
}

fn insert(h: &mut actix_web::http::header::HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(HeaderName::from_static(name), v);
    }
}

/// Keep status and headers, cut the body in half.
fn truncate(resp: HttpResponse) -> HttpResponse {
    let (head, body) = resp.into_parts();
    let bytes = body.try_into_bytes().unwrap_or_default();
    let cut = if bytes.is_empty() {
        Bytes::from_static(b"{\"value\":[{\"id\":\"")
    } else {
        bytes.slice(..bytes.len() / 2)
    };
    let mut resp = head.set_body(BoxBody::new(cut));
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// A body that sends half of the real bytes, then fails so the connection is dropped.
struct BrokenBody {
    first: Option<Bytes>,
    total: u64,
}

impl MessageBody for BrokenBody {
    type Error = std::io::Error;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.total)
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        match this.first.take() {
            Some(b) => Poll::Ready(Some(Ok(b))),
            None => Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "emulated connection reset",
            )))),
        }
    }
}

fn reset(resp: HttpResponse) -> HttpResponse {
    let (head, body) = resp.into_parts();
    let bytes = body.try_into_bytes().unwrap_or_default();
    let bytes = if bytes.len() < 2 {
        Bytes::from_static(b"{\"value\":[{\"id\":\"00000000\"}]}")
    } else {
        bytes
    };
    let total = bytes.len() as u64;
    let first = bytes.slice(..bytes.len() / 2);
    let mut resp = head.set_body(BoxBody::new(BrokenBody {
        first: Some(first),
        total,
    }));
    *resp.status_mut() = StatusCode::OK;
    resp
}
