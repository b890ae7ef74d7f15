//! The simulator over HTTP: WeCom's API under `/cgi-bin/`, the control API under `/sim/`.

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::world::GET_ENDPOINTS;
use super::{Fault, Refusal, ServicerAvailability, Simulator};

pub async fn serve(listener: tokio::net::TcpListener, sim: Simulator) {
    let app = axum::Router::new()
        .route("/cgi-bin/gettoken", get(gettoken))
        .route("/cgi-bin/kf/{*endpoint}", get(kf_api).post(kf_api))
        .route("/cgi-bin/media/upload", post(media_upload))
        .route("/sim/customer/enter", post(customer_enters))
        .route("/sim/customer/link", post(customer_opens_link))
        .route("/sim/customer/message", post(customer_says))
        .route("/sim/servicer/take", post(servicer_takes))
        .route("/sim/servicer/status", post(servicer_becomes))
        .route("/sim/session/end", post(session_ends))
        .route("/sim/sent", get(sent))
        .route("/sim/clock/advance", post(advance))
        .route("/sim/faults", post(inject))
        .route("/sim/tokens/revoke", post(revoke))
        // Files go up to 20 MB; the limits are the simulated server's to enforce.
        .layer(DefaultBodyLimit::max(32 << 20))
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
                    Ok(bytes) => media = Some((file_name, bytes.len() as u64)),
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
        let file = media.as_ref().map(|(name, len)| (name.as_str(), *len));
        Json(world.upload_media(params.get("type").map(String::as_str), file)).into_response()
    })
    .await
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

/// `{"path": "kf/send_msg", "fault": "busy" | "hangup" | {"status": 500} | {"delay_ms": 300}, "times": 2}`
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
