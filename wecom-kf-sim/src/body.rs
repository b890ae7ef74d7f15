//! The simulator's reading of request bodies: shapes and limits as the server checks them
//! (docs 94670, 94677, 95122 and the management pages), with its error codes. Written from
//! the API's facts, not from the client's generated types, so the two check each other.

use serde_json::Value;

/// A refusal: the `errcode` and `errmsg` the server answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the simulator refused: errcode {code}, {message}")]
pub struct Refusal {
    /// The `errcode`.
    pub code: i64,
    /// The `errmsg`.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

pub(super) fn invalid(what: impl std::fmt::Display) -> Refusal {
    Refusal::new(40058, format!("invalid parameter: {what}"))
}

pub struct SyncRequest {
    pub open_kfid: String,
    pub cursor: Option<String>,
    pub token: Option<String>,
    pub limit: usize,
    /// `voice_format: 1`: voice as SILK instead of AMR.
    pub silk: bool,
}

/// A message to send, from `send_msg` (touser + open_kfid) or `send_msg_on_event` (code).
pub struct Outgoing {
    pub touser: String,
    pub open_kfid: Option<String>,
    pub code: Option<String>,
    pub msgid: Option<String>,
    pub msgtype: String,
    pub payload: Value,
}

pub(super) fn string<'a>(body: &'a Value, key: &str) -> Result<Option<&'a str>, Refusal> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format_args!("`{key}` must be a string"))),
    }
}

pub(super) fn required<'a>(body: &'a Value, key: &str) -> Result<&'a str, Refusal> {
    match string(body, key)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(invalid(format_args!("missing `{key}`"))),
    }
}

pub(super) fn at_most(value: &str, key: &str, bytes: usize) -> Result<(), Refusal> {
    if value.len() > bytes {
        return Err(invalid(format_args!("`{key}` is over {bytes} bytes")));
    }
    Ok(())
}

pub fn sync_request(body: &Value) -> Result<SyncRequest, Refusal> {
    let open_kfid = required(body, "open_kfid")?.to_owned();
    let cursor = string(body, "cursor")?.map(str::to_owned);
    let token = string(body, "token")?.map(str::to_owned);
    if let Some(cursor) = &cursor {
        at_most(cursor, "cursor", 64)?;
    }
    if let Some(token) = &token {
        at_most(token, "token", 128)?;
    }
    let limit = match body.get("limit") {
        None => 1000,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=1000) => n as usize,
            _ => return Err(invalid("`limit` must be 1 to 1000")),
        },
    };
    let silk = match body.get("voice_format") {
        None | Some(Value::Null) => false,
        Some(format) => match format.as_u64() {
            Some(0) => false,
            Some(1) => true,
            _ => return Err(invalid("`voice_format` must be 0 or 1")),
        },
    };
    Ok(SyncRequest {
        open_kfid,
        cursor,
        token,
        limit,
        silk,
    })
}

/// `kf/recall_msg`.
pub struct Recall {
    pub open_kfid: String,
    pub msgid: String,
}

pub fn recall_request(body: &Value) -> Result<Recall, Refusal> {
    let open_kfid = open_kfid(body)?;
    let msgid = required(body, "msgid")?;
    at_most(msgid, "msgid", 64)?;
    Ok(Recall {
        open_kfid,
        msgid: msgid.to_owned(),
    })
}

pub fn send_request(body: &Value) -> Result<Outgoing, Refusal> {
    let touser = required(body, "touser")?.to_owned();
    let open_kfid = required(body, "open_kfid")?.to_owned();
    message(body, touser, Some(open_kfid), None)
}

pub fn event_request(body: &Value) -> Result<Outgoing, Refusal> {
    let code = required(body, "code")?.to_owned();
    message(body, String::new(), None, Some(code))
}

fn message(
    body: &Value,
    touser: String,
    open_kfid: Option<String>,
    code: Option<String>,
) -> Result<Outgoing, Refusal> {
    let msgid = string(body, "msgid")?.map(str::to_owned);
    if let Some(msgid) = &msgid {
        let charset_ok = msgid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if msgid.is_empty() || msgid.len() > 32 || !charset_ok {
            return Err(invalid("`msgid` must be 1 to 32 of [0-9a-zA-Z_-]"));
        }
    }
    let msgtype = string(body, "msgtype")?.unwrap_or_default().to_owned();
    let payload = body.get(&msgtype).cloned().unwrap_or(Value::Null);
    check_payload(&msgtype, &payload)?;
    Ok(Outgoing {
        touser,
        open_kfid,
        code,
        msgid,
        msgtype,
        payload,
    })
}

fn check_payload(msgtype: &str, payload: &Value) -> Result<(), Refusal> {
    const KNOWN: &[&str] = &[
        "text",
        "image",
        "voice",
        "video",
        "file",
        "link",
        "miniprogram",
        "msgmenu",
        "location",
        "ca_link",
    ];
    if !KNOWN.contains(&msgtype) {
        return Err(Refusal::new(
            40008,
            format!("invalid message type `{msgtype}`"),
        ));
    }
    if !payload.is_object() {
        return Err(invalid(format_args!("missing `{msgtype}` object")));
    }
    match msgtype {
        "text" => {
            let content = string(payload, "content")?.unwrap_or_default();
            if content.is_empty() {
                return Err(Refusal::new(44004, "empty content"));
            }
            if content.len() > 2048 {
                return Err(Refusal::new(45002, "content size out of limit"));
            }
        }
        "image" | "voice" | "video" | "file" => {
            if string(payload, "media_id")?.is_none_or(str::is_empty) {
                return Err(Refusal::new(41006, "media_id missing"));
            }
        }
        "link" => {
            required(payload, "title")?;
            required(payload, "thumb_media_id")?;
            let url = required(payload, "url")?;
            at_most(url, "url", 2048)?;
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(invalid("`url` must start with http:// or https://"));
            }
        }
        "miniprogram" => {
            for key in ["appid", "thumb_media_id", "pagepath"] {
                required(payload, key)?;
            }
        }
        "msgmenu" => check_menu(payload)?,
        "location" => {
            for (key, limit) in [("latitude", 90.0), ("longitude", 180.0)] {
                match payload.get(key).and_then(Value::as_f64) {
                    Some(x) if x.abs() <= limit => {}
                    _ => return Err(invalid(format_args!("`{key}` must be within ±{limit}"))),
                }
            }
        }
        _ => {
            required(payload, "link_url")?;
        }
    }
    Ok(())
}

fn check_menu(menu: &Value) -> Result<(), Refusal> {
    for key in ["head_content", "tail_content"] {
        if let Some(text) = string(menu, key)? {
            at_most(text, key, 1024)?;
        }
    }
    let items = match menu.get("list") {
        None => return Ok(()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid("`list` must be an array")),
    };
    if items.len() > 10 {
        return Err(Refusal::new(95008, "menu item count exceeds 10"));
    }
    for item in items {
        let kind = string(item, "type")?.unwrap_or_default();
        let limits: &[(&str, usize)] = match kind {
            "click" => &[("id", 128), ("content", 128)],
            "view" => &[("url", 2048), ("content", 1024)],
            "miniprogram" => &[("appid", 32), ("pagepath", 1024), ("content", 1024)],
            "text" => &[("content", 256)],
            _ => {
                return Err(Refusal::new(
                    95009,
                    format!("invalid menu item type `{kind}`"),
                ));
            }
        };
        let fields = item.get(kind).unwrap_or(&Value::Null);
        for (key, bytes) in limits {
            at_most(required(fields, key)?, key, *bytes)?;
        }
    }
    Ok(())
}

// -- the management endpoints --------------------------------------------------------

pub(super) fn number(body: &Value, key: &str) -> Result<Option<u64>, Refusal> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(format_args!("`{key}` must be a non-negative integer"))),
    }
}

/// A list of strings, empty when absent; at most `max` of them.
fn strings(body: &Value, key: &str, max: usize) -> Result<Vec<String>, Refusal> {
    list(body, key, max, "non-empty strings", |item| {
        item.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
    })
}

/// A list of ids, empty when absent; at most `max` of them.
fn numbers(body: &Value, key: &str, max: usize) -> Result<Vec<u64>, Refusal> {
    list(body, key, max, "integers", Value::as_u64)
}

/// A list at `key`, empty when absent, of at most `max` items that `read` accepts.
fn list<T>(
    body: &Value,
    key: &str,
    max: usize,
    what: &str,
    read: impl Fn(&Value) -> Option<T>,
) -> Result<Vec<T>, Refusal> {
    let items = match body.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid(format_args!("`{key}` must be a list"))),
    };
    if items.len() > max {
        return Err(invalid(format_args!("`{key}` holds more than {max} items")));
    }
    items
        .iter()
        .map(|item| read(item).ok_or_else(|| invalid(format_args!("`{key}` must hold {what}"))))
        .collect()
}

/// Every management endpoint names its account this way.
pub fn open_kfid(body: &Value) -> Result<String, Refusal> {
    let open_kfid = required(body, "open_kfid")?;
    at_most(open_kfid, "open_kfid", 64)?;
    Ok(open_kfid.to_owned())
}

/// Names are at most 16 characters, not bytes (94662); 95006 otherwise.
fn account_name(name: &str) -> Result<(), Refusal> {
    if name.is_empty() || name.chars().count() > 16 {
        return Err(Refusal::new(95006, "invalid account name"));
    }
    Ok(())
}

/// An avatar: the `media_id` of an uploaded image, at most 128 bytes.
fn avatar(media_id: &str) -> Result<(), Refusal> {
    if media_id.is_empty() {
        return Err(Refusal::new(41006, "media_id missing"));
    }
    at_most(media_id, "media_id", 128)
}

/// `kf/account/add`.
pub struct NewAccount {
    pub name: String,
    pub media_id: String,
}

pub fn account_add(body: &Value) -> Result<NewAccount, Refusal> {
    let name = string(body, "name")?.unwrap_or_default();
    account_name(name)?;
    let media_id = string(body, "media_id")?.unwrap_or_default();
    avatar(media_id)?;
    Ok(NewAccount {
        name: name.to_owned(),
        media_id: media_id.to_owned(),
    })
}

/// `kf/account/update`: only what is given changes.
pub struct AccountChange {
    pub open_kfid: String,
    pub name: Option<String>,
    pub media_id: Option<String>,
}

pub fn account_update(body: &Value) -> Result<AccountChange, Refusal> {
    let open_kfid = open_kfid(body)?;
    let name = string(body, "name")?;
    if let Some(name) = name {
        account_name(name)?;
    }
    let media_id = string(body, "media_id")?;
    if let Some(media_id) = media_id {
        avatar(media_id)?;
    }
    Ok(AccountChange {
        open_kfid,
        name: name.map(str::to_owned),
        media_id: media_id.map(str::to_owned),
    })
}

/// `kf/account/list`: offset 0 and limit 100 when unset.
pub struct Page {
    pub offset: usize,
    pub limit: usize,
}

pub fn account_list(body: &Value) -> Result<Page, Refusal> {
    let offset = number(body, "offset")?.unwrap_or(0);
    let limit = match number(body, "limit")? {
        None => 100,
        Some(n @ 1..=100) => n,
        Some(_) => return Err(invalid("`limit` must be 1 to 100")),
    };
    Ok(Page {
        offset: usize::try_from(offset).unwrap_or(usize::MAX),
        limit: limit as usize,
    })
}

/// `kf/add_contact_way`.
pub struct ContactWay {
    pub open_kfid: String,
    pub scene: Option<String>,
}

pub fn add_contact_way(body: &Value) -> Result<ContactWay, Refusal> {
    let open_kfid = open_kfid(body)?;
    let scene = string(body, "scene")?;
    if let Some(scene) = scene {
        let charset_ok = scene
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if scene.len() > 32 || !charset_ok {
            return Err(invalid("`scene` must be at most 32 of [0-9a-zA-Z_-]"));
        }
    }
    Ok(ContactWay {
        open_kfid,
        scene: scene.filter(|s| !s.is_empty()).map(str::to_owned),
    })
}

/// `kf/servicer/add` and `kf/servicer/del`: at least one list, each at most 100 long.
pub struct ServicerChange {
    pub open_kfid: String,
    pub userids: Vec<String>,
    pub department_ids: Vec<u64>,
}

pub fn servicer_change(body: &Value) -> Result<ServicerChange, Refusal> {
    let open_kfid = open_kfid(body)?;
    let userids = strings(body, "userid_list", 100)?;
    let department_ids = numbers(body, "department_id_list", 100)?;
    if userids.is_empty() && department_ids.is_empty() {
        return Err(invalid("give `userid_list` or `department_id_list`"));
    }
    Ok(ServicerChange {
        open_kfid,
        userids,
        department_ids,
    })
}

/// A customer's session with an account, as the session and upgrade endpoints name it.
pub struct SessionRef {
    pub open_kfid: String,
    pub external_userid: String,
}

pub fn session_ref(body: &Value) -> Result<SessionRef, Refusal> {
    Ok(SessionRef {
        open_kfid: open_kfid(body)?,
        external_userid: required(body, "external_userid")?.to_owned(),
    })
}

/// `kf/service_state/trans`.
pub struct StateChange {
    pub session: SessionRef,
    pub state: u8,
    pub servicer_userid: Option<String>,
}

pub fn state_change(body: &Value) -> Result<StateChange, Refusal> {
    let session = session_ref(body)?;
    let state = match number(body, "service_state")? {
        Some(n @ 0..=4) => n as u8,
        _ => return Err(invalid("`service_state` must be 0 to 4")),
    };
    let servicer_userid = string(body, "servicer_userid")?
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    Ok(StateChange {
        session,
        state,
        servicer_userid,
    })
}

/// `kf/customer/batchget`.
pub struct CustomerQuery {
    pub external_userids: Vec<String>,
    pub with_context: bool,
}

pub fn customer_batchget(body: &Value) -> Result<CustomerQuery, Refusal> {
    let external_userids = strings(body, "external_userid_list", 100)?;
    if external_userids.is_empty() {
        return Err(invalid(
            "`external_userid_list` must name 1 to 100 customers",
        ));
    }
    let with_context = match number(body, "need_enter_session_context")? {
        None | Some(0) => false,
        Some(1) => true,
        Some(_) => return Err(invalid("`need_enter_session_context` must be 0 or 1")),
    };
    Ok(CustomerQuery {
        external_userids,
        with_context,
    })
}

/// What `kf/customer/upgrade_service` offers a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeOffer {
    /// A member of the corp (专员), type 1.
    Member {
        /// The member's userid.
        userid: String,
        /// The text shown with the offer.
        wording: Option<String>,
    },
    /// A customer group chat, type 2.
    GroupChat {
        /// The group chat's id.
        chat_id: String,
        /// The text shown with the offer.
        wording: Option<String>,
    },
}

pub struct Upgrade {
    pub session: SessionRef,
    pub offer: UpgradeOffer,
}

/// The `type` decides which object must be there: `member` for 1, `groupchat` for 2.
pub fn upgrade_service(body: &Value) -> Result<Upgrade, Refusal> {
    let session = session_ref(body)?;
    let (key, id_key) = match number(body, "type")? {
        Some(1) => ("member", "userid"),
        Some(2) => ("groupchat", "chat_id"),
        _ => return Err(invalid("`type` must be 1 (member) or 2 (groupchat)")),
    };
    let Some(object) = body.get(key).filter(|o| o.is_object()) else {
        return Err(invalid(format_args!(
            "missing `{key}` object for this `type`"
        )));
    };
    let id = required(object, id_key)?.to_owned();
    let wording = string(object, "wording")?.map(str::to_owned);
    let offer = if key == "member" {
        UpgradeOffer::Member {
            userid: id,
            wording,
        }
    } else {
        UpgradeOffer::GroupChat {
            chat_id: id,
            wording,
        }
    };
    Ok(Upgrade { session, offer })
}

/// `kf/get_corp_statistic` and `kf/get_servicer_statistic`: the account (optional: the
/// whole corp without it), the servicer (servicer statistics only) and the days.
pub struct StatisticQuery {
    pub open_kfid: Option<String>,
    pub servicer_userid: Option<String>,
    pub start_time: u64,
    pub end_time: u64,
}

pub fn statistic_query(body: &Value, with_servicer: bool) -> Result<StatisticQuery, Refusal> {
    let open_kfid = match string(body, "open_kfid")?.filter(|s| !s.is_empty()) {
        Some(open_kfid) => {
            at_most(open_kfid, "open_kfid", 64)?;
            Some(open_kfid.to_owned())
        }
        None => None,
    };
    let servicer_userid = if with_servicer {
        string(body, "servicer_userid")?
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    } else {
        None
    };
    let time =
        |key: &str| number(body, key)?.ok_or_else(|| invalid(format_args!("missing `{key}`")));
    Ok(StatisticQuery {
        open_kfid,
        servicer_userid,
        start_time: time("start_time")?,
        end_time: time("end_time")?,
    })
}
