//! The simulator's reading of request bodies: shapes and limits as the server checks them
//! (kf-api.md §2.1, §5, §6), with its error codes. Written from the API's facts, not from
//! the client's generated types, so the two check each other.

use serde_json::Value;

/// A refusal: the `errcode` and `errmsg` the server answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the simulator refused: errcode {code}, {message}")]
pub struct Refusal {
    pub code: i64,
    pub message: String,
}

impl Refusal {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

fn invalid(what: impl std::fmt::Display) -> Refusal {
    Refusal::new(40058, format!("invalid parameter: {what}"))
}

pub struct SyncRequest {
    pub open_kfid: String,
    pub cursor: Option<String>,
    pub token: Option<String>,
    pub limit: usize,
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

fn string<'a>(body: &'a Value, key: &str) -> Result<Option<&'a str>, Refusal> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format_args!("`{key}` must be a string"))),
    }
}

fn required<'a>(body: &'a Value, key: &str) -> Result<&'a str, Refusal> {
    match string(body, key)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(invalid(format_args!("missing `{key}`"))),
    }
}

fn at_most(value: &str, key: &str, bytes: usize) -> Result<(), Refusal> {
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
    if let Some(format) = body.get("voice_format")
        && !matches!(format.as_u64(), Some(0 | 1))
    {
        return Err(invalid("`voice_format` must be 0 or 1"));
    }
    Ok(SyncRequest {
        open_kfid,
        cursor,
        token,
        limit,
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
