//! The simulator over HTTP: WeCom's API under `/cgi-bin/`, the control API under `/sim/`.

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::world::{GET_ENDPOINTS, MediaFile};
use super::{Fault, MAX_MEDIA_BYTES, MediaKind, Refusal, ServicerAvailability, Simulator, samples};

pub async fn serve(listener: tokio::net::TcpListener, sim: Simulator) {
    let app = axum::Router::new()
        .route("/cgi-bin/gettoken", get(gettoken))
        .route("/cgi-bin/kf/{*endpoint}", get(kf_api).post(kf_api))
        .route("/cgi-bin/media/upload", post(media_upload))
        .route("/cgi-bin/media/get", get(media_get))
        .route("/sim/customer/enter", post(customer_enters))
        .route("/sim/customer/link", post(customer_opens_link))
        .route("/sim/customer/message", post(customer_says))
        .route("/sim/customer/media", post(customer_sends_media))
        .route("/sim/customer/refuse", post(customer_refuses))
        .route("/sim/media", post(add_media))
        .route("/sim/push", post(push_raw))
        .route("/sim/servicer/take", post(servicer_takes))
        .route("/sim/servicer/status", post(servicer_becomes))
        .route("/sim/session/end", post(session_ends))
        .route("/sim/sent", get(sent))
        .route("/sim/clock/advance", post(advance))
        .route("/sim/faults", post(inject))
        .route("/sim/tokens/revoke", post(revoke))
        // Uploads go up to 20 MB, base64 in control bodies a third more; the limits are
        // the simulated server's to enforce.
        .layer(DefaultBodyLimit::max(40 << 20))
        .with_state(sim);
    // The server ends with the runtime; an accept error has nowhere better to go.
    if let Err(error) = axum::serve(listener, app).await {
        tracing::warn!(%error, "the simulator stopped serving");
    }
}

type Params = Query<HashMap<String, String>>;

/// What an injected fault does to one request.
enum Injected {
    /// Answer this instead of the real response.
    Replace(Response),
    /// Handle the request, then hold the answer back this long: the request arrived,
    /// the client just doesn't hear back in time.
    DelayAnswer(Duration),
    /// Handle the request, send the headers and this many bytes of the body, hang up.
    CutAfter(u64),
}

fn fault(sim: &Simulator, path: &str) -> Option<Injected> {
    let fault = sim.world().take_fault(path)?;
    Some(match fault {
        Fault::Busy => {
            Injected::Replace(Json(json!({"errcode": -1, "errmsg": "system busy"})).into_response())
        }
        Fault::Status(code) => Injected::Replace(
            StatusCode::from_u16(code)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response(),
        ),
        Fault::Delay(delay) => Injected::DelayAnswer(delay),
        Fault::Hangup => Injected::Replace(Response::new(Body::new(BrokenBody))),
        Fault::HangupAfter(bytes) => Injected::CutAfter(bytes),
    })
}

/// Answers with `answer`, or with what the injected fault says.
async fn respond(injected: Option<Injected>, answer: impl FnOnce() -> Response) -> Response {
    match injected {
        Some(Injected::Replace(response)) => response,
        Some(Injected::DelayAnswer(delay)) => {
            let response = answer();
            tokio::time::sleep(delay).await;
            response
        }
        Some(Injected::CutAfter(bytes)) => {
            answer().map(|body| Body::new(CutBody::new(body, bytes)))
        }
        None => answer(),
    }
}

/// A body that fails as soon as it is read: the connection drops after the headers.
struct BrokenBody;

impl http_body::Body for BrokenBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated hangup",
        ))))
    }
}

/// A body that passes the first `left` bytes of another, then fails: the connection drops
/// mid-body. The headers (and `Content-Length`) stay those of the whole answer.
struct CutBody {
    inner: Body,
    left: u64,
    /// Set once the prefix went out: a short pause before the failure, so the server
    /// flushes the prefix rather than dropping it with the connection.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl CutBody {
    fn new(inner: Body, left: u64) -> Self {
        CutBody {
            inner,
            left,
            pause: None,
        }
    }
}

impl http_body::Body for CutBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.left == 0 {
            let pause = this
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(50))));
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "simulated hangup mid-body",
            ))));
        }
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(std::io::Error::other(e)))),
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        match frame.into_data() {
            Ok(mut data) => {
                let keep = usize::try_from(this.left)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                data.truncate(keep);
                this.left -= keep as u64;
                Poll::Ready(Some(Ok(http_body::Frame::data(data))))
            }
            Err(frame) => Poll::Ready(Some(Ok(frame))),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

async fn gettoken(State(sim): State<Simulator>, Query(params): Params) -> Response {
    respond(fault(&sim, "gettoken"), || {
        let answer = sim.world().gettoken(
            params.get("corpid").map(String::as_str),
            params.get("corpsecret").map(String::as_str),
        );
        Json(answer).into_response()
    })
    .await
}

async fn kf_api(
    State(sim): State<Simulator>,
    method: Method,
    Path(endpoint): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> Response {
    let injected = fault(&sim, &format!("kf/{endpoint}"));
    respond(injected, || {
        let mut world = sim.world();
        if let Err(answer) = world.authorize(params.get("access_token").map(String::as_str)) {
            return Json(answer).into_response();
        }
        let request = match parameters(&method, &endpoint, &params, &body) {
            Ok(request) => request,
            Err(refusal) => {
                return Json(json!({"errcode": refusal.code, "errmsg": refusal.message}))
                    .into_response();
            }
        };
        let answer = match endpoint.as_str() {
            "sync_msg" => world.sync_msg(&request),
            "send_msg" => world.send_msg(&request),
            "send_msg_on_event" => world.send_msg_on_event(&request),
            "recall_msg" => world.recall_msg(&request),
            other => match world.manage(other, &request) {
                Some(answer) => answer,
                None => return StatusCode::NOT_FOUND.into_response(),
            },
        };
        Json(answer).into_response()
    })
    .await
}

/// `media/upload`: the `media` part of a multipart body, its type in the query.
async fn media_upload(
    State(sim): State<Simulator>,
    Query(params): Params,
    mut form: Multipart,
) -> Response {
    // Read the whole body first: the answer depends on the part's size.
    let mut media = None;
    loop {
        match form.next_field().await {
            Ok(Some(field)) if field.name() == Some("media") => {
                let file_name = field.file_name().unwrap_or_default().to_owned();
                match field.bytes().await {
                    Ok(bytes) => media = Some((file_name, bytes)),
                    Err(_) => return bad_multipart(),
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => return bad_multipart(),
        }
    }
    respond(fault(&sim, "media/upload"), || {
        let mut world = sim.world();
        if let Err(answer) = world.authorize(params.get("access_token").map(String::as_str)) {
            return Json(answer).into_response();
        }
        let file = media
            .as_ref()
            .map(|(name, bytes)| (name.as_str(), bytes.clone()));
        Json(world.upload_media(params.get("type").map(String::as_str), file)).into_response()
    })
    .await
}

/// The largest body `media/get` sends in one answer: a bigger file or range is 830002
/// (doc 96486).
const MAX_DOWNLOAD: u64 = 20 << 20;

/// `media/get`: the file, or a range of it, or WeCom's JSON error on HTTP 200.
async fn media_get(
    State(sim): State<Simulator>,
    Query(params): Params,
    headers: HeaderMap,
) -> Response {
    respond(fault(&sim, "media/get"), || {
        let file = {
            let world = sim.world();
            if let Err(answer) = world.authorize(params.get("access_token").map(String::as_str)) {
                return Json(answer).into_response();
            }
            match world.media_file(params.get("media_id").map(String::as_str)) {
                Ok(file) => file,
                Err(answer) => return Json(answer).into_response(),
            }
        };
        let range = headers
            .get(header::RANGE)
            .and_then(|value| value.to_str().ok())
            .and_then(ByteRange::parse);
        serve_media(file, range)
    })
    .await
}

fn serve_media(file: MediaFile, range: Option<ByteRange>) -> Response {
    let total = file.bytes.len() as u64;
    let (status, start, end) = match range.map(|r| r.within(total)) {
        None => (StatusCode::OK, 0, total),
        Some(Some((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end),
        Some(None) => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{total}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return response;
        }
    };
    if end - start > MAX_DOWNLOAD {
        return Json(json!({
            "errcode": 830002,
            "errmsg": "media over 20MB: download it in Range chunks of at most 20MB",
        }))
        .into_response();
    }
    // Both within the file's length, which is a usize.
    let body = file.bytes.slice(start as usize..end as usize);
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(file.content_type),
    );
    headers.insert(header::CONTENT_DISPOSITION, attachment(&file.file_name));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if status == StatusCode::PARTIAL_CONTENT {
        let range = format!("bytes {start}-{}/{total}", end - 1);
        if let Ok(value) = HeaderValue::from_str(&range) {
            headers.insert(header::CONTENT_RANGE, value);
        }
    }
    response
}

/// One range of a `Range: bytes=…` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteRange {
    /// `a-b`, both included.
    Between(u64, u64),
    /// `a-`: from `a` to the end.
    From(u64),
    /// `-n`: the last `n` bytes.
    Last(u64),
}

impl ByteRange {
    /// A header naming one range; anything else (several ranges, another unit, `b < a`,
    /// garbage) is ignored, as HTTP allows, and the whole file is the answer.
    fn parse(header: &str) -> Option<Self> {
        let spec = header.trim();
        let (unit, spec) = spec.split_once('=')?;
        if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
            return None;
        }
        let (first, last) = spec.trim().split_once('-')?;
        let number = |s: &str| -> Option<u64> {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        match (first.trim().is_empty(), last.trim().is_empty()) {
            (true, false) => number(last).map(ByteRange::Last),
            (false, true) => number(first).map(ByteRange::From),
            (false, false) => {
                let (a, b) = (number(first)?, number(last)?);
                (a <= b).then_some(ByteRange::Between(a, b))
            }
            (true, true) => None,
        }
    }

    /// The bytes `[start, end)` of a file of `total` bytes, or `None` when nothing of
    /// it is in the file (416).
    fn within(self, total: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::Between(a, b) if a < total => Some((a, b.saturating_add(1).min(total))),
            ByteRange::From(a) if a < total => Some((a, total)),
            ByteRange::Last(n) if n > 0 && total > 0 => Some((total - n.min(total), total)),
            _ => None,
        }
    }
}

/// `attachment; filename="…"`, with `filename*=UTF-8''…` (RFC 6266, RFC 5987) when the
/// name isn't plain ASCII, whose ASCII fallback then has `_` for every other character.
fn attachment(file_name: &str) -> HeaderValue {
    let clean: String = file_name.chars().filter(|c| !c.is_control()).collect();
    let mut fallback = String::with_capacity(clean.len());
    for c in clean.chars() {
        match c {
            '"' | '\\' => {
                fallback.push('\\');
                fallback.push(c);
            }
            c if c.is_ascii() => fallback.push(c),
            _ => fallback.push('_'),
        }
    }
    let mut value = format!("attachment; filename=\"{fallback}\"");
    if !clean.is_ascii() {
        value.push_str("; filename*=UTF-8''");
        for byte in clean.bytes() {
            let plain = byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte);
            if plain {
                value.push(char::from(byte));
            } else {
                value.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

fn bad_multipart() -> Response {
    Json(json!({"errcode": 40058, "errmsg": "invalid parameter: not a multipart body"}))
        .into_response()
}

/// A request's parameters as one JSON object: the query of a GET endpoint (without the
/// token), the body of any other. The wrong method is refused like WeCom does, with 40058.
fn parameters(
    method: &Method,
    endpoint: &str,
    params: &HashMap<String, String>,
    body: &[u8],
) -> Result<Value, Refusal> {
    let takes_get = GET_ENDPOINTS.contains(&endpoint);
    if takes_get != (method == Method::GET) {
        let expected = if takes_get { "GET" } else { "POST" };
        return Err(Refusal::new(
            40058,
            format!("invalid parameter: `kf/{endpoint}` takes {expected}"),
        ));
    }
    if takes_get {
        let query = params
            .iter()
            .filter(|(key, _)| *key != "access_token")
            .map(|(key, value)| (key.clone(), Value::String(value.clone())))
            .collect();
        return Ok(Value::Object(query));
    }
    serde_json::from_slice(body)
        .map_err(|_| Refusal::new(40058, "invalid parameter: body is not JSON"))
}

// -- control API ------------------------------------------------------------------------

fn control<T: serde::Serialize>(result: Result<T, Refusal>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(refusal) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"errcode": refusal.code, "errmsg": refusal.message})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct Conversation {
    open_kfid: String,
    external_userid: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    menu_id: Option<String>,
    #[serde(default)]
    servicer_userid: String,
}

async fn customer_enters(State(sim): State<Simulator>, Json(c): Json<Conversation>) -> Response {
    control(
        sim.customer_enters(&c.open_kfid, &c.external_userid)
            .map(|code| json!({"welcome_code": code})),
    )
}

#[derive(Deserialize)]
struct LinkOpened {
    url: String,
    external_userid: String,
}

async fn customer_opens_link(State(sim): State<Simulator>, Json(l): Json<LinkOpened>) -> Response {
    control(
        sim.customer_opens_link(&l.url, &l.external_userid)
            .map(|code| json!({"welcome_code": code})),
    )
}

async fn customer_says(State(sim): State<Simulator>, Json(c): Json<Conversation>) -> Response {
    let written = match &c.menu_id {
        Some(menu_id) => sim.customer_clicks(&c.open_kfid, &c.external_userid, menu_id, &c.content),
        None => sim.customer_says(&c.open_kfid, &c.external_userid, &c.content),
    };
    control(written.map(|m| json!({"msgid": m.msgid, "callback_token": m.callback_token})))
}

/// `{"open_kfid", "external_userid", "refuse"?: true}`
#[derive(Deserialize)]
struct Refusing {
    open_kfid: String,
    external_userid: String,
    #[serde(default = "yes")]
    refuse: bool,
}

fn yes() -> bool {
    true
}

async fn customer_refuses(State(sim): State<Simulator>, Json(r): Json<Refusing>) -> Response {
    let changed = if r.refuse {
        sim.customer_refuses_messages(&r.open_kfid, &r.external_userid)
    } else {
        sim.customer_accepts_messages(&r.open_kfid, &r.external_userid)
    };
    control(changed.map(|()| json!({})))
}

/// The bytes of a control request's file: decoded from `content_base64`, generated to
/// `size` bytes with the kind's magic, or the built-in sample (with its name).
#[derive(Deserialize)]
struct FileSpec {
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    content_base64: Option<String>,
    #[serde(default)]
    size: Option<u64>,
}

impl FileSpec {
    fn bytes(&self, kind: MediaKind) -> Result<(Option<String>, Bytes), Refusal> {
        match (&self.content_base64, self.size) {
            (Some(_), Some(_)) => Err(Refusal::new(
                40058,
                "give `content_base64` or `size`, not both",
            )),
            (Some(encoded), None) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map(|bytes| (self.filename.clone(), Bytes::from(bytes)))
                .map_err(|e| Refusal::new(40058, format!("`content_base64`: {e}"))),
            (None, Some(size)) => match usize::try_from(size) {
                Ok(size) if (1..=MAX_MEDIA_BYTES).contains(&size) => {
                    Ok((self.filename.clone(), samples::generated(kind, size)))
                }
                _ => Err(Refusal::new(
                    40058,
                    format!("`size` must be 1 to {MAX_MEDIA_BYTES} bytes"),
                )),
            },
            (None, None) => {
                let (name, bytes) = samples::sample(kind);
                let name = self.filename.clone().unwrap_or_else(|| name.to_owned());
                Ok((Some(name), bytes))
            }
        }
    }
}

fn media_kind(name: &str, key: &str) -> Result<MediaKind, Refusal> {
    MediaKind::parse(name).ok_or_else(|| {
        Refusal::new(
            40058,
            format!("`{key}` must be image, voice, video or file, not `{name}`"),
        )
    })
}

/// `{"open_kfid", "external_userid", "msgtype", "filename"?, "content_base64"? | "size"?}`
#[derive(Deserialize)]
struct MediaMessage {
    open_kfid: String,
    external_userid: String,
    msgtype: String,
    #[serde(flatten)]
    file: FileSpec,
}

async fn customer_sends_media(
    State(sim): State<Simulator>,
    Json(m): Json<MediaMessage>,
) -> Response {
    let sent = media_kind(&m.msgtype, "msgtype").and_then(|kind| {
        let (name, bytes) = m.file.bytes(kind)?;
        sim.customer_sends_media(
            &m.open_kfid,
            &m.external_userid,
            kind,
            bytes,
            name.as_deref(),
        )
    });
    control(sent.map(|m| {
        json!({
            "msgid": m.msgid, "callback_token": m.callback_token,
            "media_id": m.media_id, "silk_media_id": m.silk_media_id,
        })
    }))
}

/// `{"type", "filename"?, "content_base64"? | "size"?}`
#[derive(Deserialize)]
struct MediaSpec {
    r#type: String,
    #[serde(flatten)]
    file: FileSpec,
}

async fn add_media(State(sim): State<Simulator>, Json(m): Json<MediaSpec>) -> Response {
    let added = media_kind(&m.r#type, "type").and_then(|kind| {
        let (name, bytes) = m.file.bytes(kind)?;
        let len = bytes.len();
        let media_id = sim.add_media(kind, bytes, name.as_deref())?;
        Ok(json!({"media_id": media_id, "len": len}))
    });
    control(added)
}

/// `{"open_kfid", "item": {…}}`
#[derive(Deserialize)]
struct Push {
    open_kfid: String,
    item: Value,
}

async fn push_raw(State(sim): State<Simulator>, Json(p): Json<Push>) -> Response {
    control(
        sim.push_raw(&p.open_kfid, p.item)
            .map(|token| json!({"callback_token": token})),
    )
}

async fn servicer_takes(State(sim): State<Simulator>, Json(c): Json<Conversation>) -> Response {
    control(
        sim.servicer_takes(&c.open_kfid, &c.external_userid, &c.servicer_userid)
            .map(|code| json!({"msg_code": code})),
    )
}

/// `{"open_kfid": …, "servicer_userid": …, "status": "receiving" | "stopped" | "suspended"}`
#[derive(Deserialize)]
struct StatusChange {
    open_kfid: String,
    servicer_userid: String,
    status: String,
}

async fn servicer_becomes(State(sim): State<Simulator>, Json(c): Json<StatusChange>) -> Response {
    let availability = match c.status.as_str() {
        "receiving" => ServicerAvailability::Receiving,
        "stopped" => ServicerAvailability::Stopped,
        "suspended" => ServicerAvailability::Suspended,
        other => {
            return control(Err::<(), _>(Refusal::new(
                40058,
                format!("unknown servicer status `{other}`"),
            )));
        }
    };
    control(
        sim.servicer_becomes(&c.open_kfid, &c.servicer_userid, availability)
            .map(|()| json!({})),
    )
}

async fn session_ends(State(sim): State<Simulator>, Json(c): Json<Conversation>) -> Response {
    control(
        sim.session_ends(&c.open_kfid, &c.external_userid, &c.servicer_userid)
            .map(|code| json!({"msg_code": code})),
    )
}

async fn sent(State(sim): State<Simulator>) -> Response {
    control(Ok::<_, Refusal>(sim.sent()))
}

#[derive(Deserialize)]
struct Advance {
    seconds: u64,
}

async fn advance(State(sim): State<Simulator>, Json(a): Json<Advance>) -> Response {
    control(
        sim.try_advance(Duration::from_secs(a.seconds))
            .map(|()| json!({})),
    )
}

/// The most requests one fault may be injected for over HTTP: more than any test makes,
/// so a larger number is a mistake (a typo, a sign bug) worth a 400.
const MAX_FAULT_TIMES: usize = 1_000_000;

/// `{"path": "kf/send_msg", "fault": "busy" | "hangup" | {"status": 500} | {"delay_ms": 300}
/// | {"hangup_after_bytes": 1024}, "times": 2}`
#[derive(Deserialize)]
struct Inject {
    path: String,
    fault: FaultSpec,
    #[serde(default = "one")]
    times: usize,
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FaultSpec {
    Named(String),
    Status { status: u16 },
    Delay { delay_ms: u64 },
    CutAfter { hangup_after_bytes: u64 },
}

async fn inject(State(sim): State<Simulator>, Json(i): Json<Inject>) -> Response {
    if i.times > MAX_FAULT_TIMES {
        return control(Err::<(), _>(Refusal::new(
            40058,
            format!(
                "`times` is {}; at most {MAX_FAULT_TIMES} requests take one fault",
                i.times
            ),
        )));
    }
    let fault = match i.fault {
        FaultSpec::Named(name) if name == "busy" => Fault::Busy,
        FaultSpec::Named(name) if name == "hangup" => Fault::Hangup,
        FaultSpec::Named(name) => {
            return control(Err::<(), _>(Refusal::new(
                40058,
                format!("unknown fault `{name}`"),
            )));
        }
        FaultSpec::Status { status } => Fault::Status(status),
        FaultSpec::Delay { delay_ms } => Fault::Delay(Duration::from_millis(delay_ms)),
        FaultSpec::CutAfter { hangup_after_bytes } => Fault::HangupAfter(hangup_after_bytes),
    };
    sim.inject(&i.path, fault, i.times);
    control(Ok::<_, Refusal>(json!({})))
}

#[derive(Deserialize)]
struct Revoke {
    errcode: i64,
}

async fn revoke(State(sim): State<Simulator>, Json(r): Json<Revoke>) -> Response {
    sim.revoke_tokens(r.errcode);
    control(Ok::<_, Refusal>(json!({})))
}
