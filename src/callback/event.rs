//! The XML of callbacks: the outer envelope with its `Encrypt`, and the decrypted event.

use serde::Deserialize;

use super::CallbackError;
use crate::Secret;

/// What WeCom POSTs: `ToUserName`, `AgentID` (often empty) and `Encrypt`.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "Encrypt")]
    encrypt: String,
}

fn xml_error(e: impl std::fmt::Display) -> CallbackError {
    CallbackError::Xml(e.to_string())
}

/// The `Encrypt` element of a POST body.
pub fn encrypt_field(body: &str) -> Result<String, CallbackError> {
    let envelope: Envelope = quick_xml::de::from_str(body).map_err(xml_error)?;
    let encrypt = envelope.encrypt.trim();
    if encrypt.is_empty() {
        return Err(CallbackError::Xml("`Encrypt` is empty".into()));
    }
    Ok(encrypt.to_owned())
}

/// The POST body for an encrypted payload.
pub fn envelope(receive_id: &str, encrypt: &str) -> String {
    // CDATA can't hold `]]>`; corp ids and base64 never contain it, but be exact anyway.
    let receive_id = receive_id.replace("]]>", "]]]]><![CDATA[>");
    format!(
        "<xml><ToUserName><![CDATA[{receive_id}]]></ToUserName>\
         <Encrypt><![CDATA[{encrypt}]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>"
    )
}

#[derive(Deserialize)]
struct Plain {
    #[serde(rename = "ToUserName")]
    to_user_name: Option<String>,
    #[serde(rename = "CreateTime")]
    create_time: Option<String>,
    #[serde(rename = "MsgType")]
    msg_type: Option<String>,
    #[serde(rename = "Event")]
    event: Option<String>,
    #[serde(rename = "Token")]
    token: Option<String>,
    #[serde(rename = "AuthAddOpenKfId", default)]
    auth_added: Vec<String>,
    #[serde(rename = "AuthDelOpenKfId", default)]
    auth_removed: Vec<String>,
    #[serde(rename = "OpenKfId")]
    open_kfid: Option<String>,
}

/// "Messages are waiting for `open_kfid`": pull them with `sync_msg` and `token`.
/// "There are new messages or events for `open_kfid`": pull them with `sync_msg` and `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KfMsgOrEvent {
    /// The corp id (or the 客服组件 id for component apps).
    pub to_user_name: String,
    /// Unix seconds.
    pub create_time: u64,
    /// Pass it as `sync_msg`'s `token`; valid 10 minutes.
    pub token: Secret,
    /// The account the messages are for.
    pub open_kfid: String,
}

/// "Your component app may now serve these accounts, and no longer those."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KfAccountAuthChange {
    /// The component's id.
    pub to_user_name: String,
    /// Unix seconds; 0 when the callback had none.
    pub create_time: u64,
    /// `open_kfid`s newly authorized (`AuthAddOpenKfId`).
    pub added: Vec<String>,
    /// `open_kfid`s no longer authorized (`AuthDelOpenKfId`).
    pub removed: Vec<String>,
}

/// A decrypted callback. Events other than `kf_msg_or_event` are kept with their XML,
/// minus the text of any `Token` element (an incomplete `kf_msg_or_event` still carries
/// its `sync_msg` token, which must not end up in `Debug` or logs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallbackEvent {
    /// New messages or events to pull.
    KfMsgOrEvent(KfMsgOrEvent),
    /// A 微信客服组件 (component) app was given accounts or lost them (doc 97712).
    KfAccountAuthChange(KfAccountAuthChange),
    /// Any other event (`kf_account_auth_change`, …), as received but for `Token`s,
    /// whose text reads `[redacted]`.
    Other {
        /// The `MsgType` element's text, if any.
        msg_type: Option<String>,
        /// The `Event` element's text, if any.
        event: Option<String>,
        /// The decrypted XML, `Token` texts redacted.
        xml: String,
    },
}

impl CallbackEvent {
    /// Parses decrypted XML; what isn't a complete `kf_msg_or_event` is kept as `Other`.
    pub fn parse(xml: String) -> Result<Self, CallbackError> {
        let plain: Plain = quick_xml::de::from_str(&xml).map_err(xml_error)?;
        let create_time = plain
            .create_time
            .as_deref()
            .map(str::trim)
            .map(str::parse::<u64>);
        match (
            plain.event.as_deref(),
            plain.token,
            plain.open_kfid,
            create_time,
        ) {
            (Some("kf_msg_or_event"), Some(token), Some(open_kfid), Some(Ok(create_time))) => {
                Ok(CallbackEvent::KfMsgOrEvent(KfMsgOrEvent {
                    to_user_name: plain.to_user_name.unwrap_or_default(),
                    create_time,
                    token: Secret::new(token),
                    open_kfid,
                }))
            }
            (Some("kf_account_auth_change"), _, _, time) => {
                Ok(CallbackEvent::KfAccountAuthChange(KfAccountAuthChange {
                    to_user_name: plain.to_user_name.unwrap_or_default(),
                    create_time: time.and_then(Result::ok).unwrap_or(0),
                    added: plain.auth_added,
                    removed: plain.auth_removed,
                }))
            }
            _ => Ok(CallbackEvent::Other {
                msg_type: plain.msg_type,
                event: plain.event,
                xml: redact_tokens(xml),
            }),
        }
    }
}

/// What replaces the text of a `Token` element.
const REDACTED: &str = "[redacted]";

/// `xml` with the content of every `Token` element, at any depth, replaced by
/// [`REDACTED`]; unchanged when it has none. Where the reader gives up (inside a Token,
/// or anywhere), the rest is dropped rather than risk keeping a token.
fn redact_tokens(xml: String) -> String {
    use quick_xml::events::Event;
    if !xml.contains("Token") {
        return xml;
    }
    let mut reader = quick_xml::Reader::from_str(&xml);
    let position = |reader: &quick_xml::Reader<&[u8]>| {
        usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX)
    };
    // Byte ranges of Token contents, and where the open Token (depth counted) began.
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let (mut open, mut depth) = (None, 0usize);
    // Where to stop copying: an unclosed Token, or a Token the reader couldn't finish.
    let cut_at = loop {
        let before = position(&reader);
        match reader.read_event() {
            Ok(Event::Start(start)) if start.name().as_ref() == "Token" => {
                if depth == 0 {
                    open = Some(position(&reader));
                }
                depth += 1;
            }
            Ok(Event::End(end)) if end.name().as_ref() == "Token" && depth > 0 => {
                depth -= 1;
                if depth == 0
                    && let Some(from) = open.take()
                {
                    ranges.push((from, before));
                }
            }
            Ok(Event::Eof) => break open,
            Ok(_) => {}
            Err(_) => break Some(open.unwrap_or(before)),
        }
    };
    let mut out = String::with_capacity(xml.len());
    let mut copied = 0;
    for (from, to) in ranges {
        if cut_at.is_some_and(|cut| to > cut) {
            break;
        }
        out.push_str(xml.get(copied..from).unwrap_or_default());
        out.push_str(REDACTED);
        copied = to;
    }
    let end = cut_at.unwrap_or(xml.len()).max(copied);
    out.push_str(xml.get(copied..end).unwrap_or_default());
    if cut_at.is_some() {
        out.push_str(REDACTED);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kf_events_are_typed_and_others_kept() {
        let kf = "<xml><ToUserName><![CDATA[ww1]]></ToUserName><CreateTime>1348831860</CreateTime>\
                  <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event>\
                  <Token><![CDATA[T0K]]></Token><OpenKfId><![CDATA[wk1]]></OpenKfId></xml>";
        match CallbackEvent::parse(kf.into()) {
            Ok(CallbackEvent::KfMsgOrEvent(e)) => {
                assert_eq!(
                    (e.open_kfid.as_str(), e.token.expose(), e.create_time),
                    ("wk1", "T0K", 1348831860)
                );
            }
            other => panic!("{other:?}"),
        }
        let auth = "<xml><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_account_auth_change]]></Event>\
                    <AuthAddOpenKfId><![CDATA[wk1]]></AuthAddOpenKfId><AuthAddOpenKfId><![CDATA[wk2]]></AuthAddOpenKfId></xml>";
        match CallbackEvent::parse(auth.into()) {
            Ok(CallbackEvent::KfAccountAuthChange(change)) => {
                assert_eq!(change.added, ["wk1", "wk2"]);
                assert!(change.removed.is_empty());
                assert_eq!(change.create_time, 0, "none in the callback");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            CallbackEvent::parse("<xml><Event>".into()),
            Err(CallbackError::Xml(_))
        ));
    }

    #[test]
    fn an_incomplete_kf_event_keeps_no_token() {
        // No OpenKfId: not a usable kf_msg_or_event, so it is kept as `Other`.
        let incomplete = "<xml><ToUserName><![CDATA[ww1]]></ToUserName><CreateTime>1348831860</CreateTime>\
                          <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event>\
                          <Token><![CDATA[T0K-kept-secret]]></Token></xml>";
        let event = CallbackEvent::parse(incomplete.into()).expect("parses");
        let CallbackEvent::Other {
            xml, event: name, ..
        } = &event
        else {
            panic!("{event:?}");
        };
        assert_eq!(name.as_deref(), Some("kf_msg_or_event"));
        assert_eq!(
            xml,
            &incomplete.replace("<![CDATA[T0K-kept-secret]]>", REDACTED)
        );
        for shown in [format!("{event:?}"), format!("{event:#?}")] {
            assert!(!shown.contains("T0K-kept-secret"), "{shown}");
        }
    }

    #[test]
    fn every_token_element_is_redacted_and_the_rest_kept() {
        let cases = [
            (
                "<xml><Token>abc</Token><A>1</A></xml>",
                "<xml><Token>[redacted]</Token><A>1</A></xml>",
            ),
            (
                "<xml><B><Token>abc</Token></B><Token>d<Token>e</Token>f</Token></xml>",
                "<xml><B><Token>[redacted]</Token></B><Token>[redacted]</Token></xml>",
            ),
            (
                "<xml><Token/><TokenX>kept</TokenX></xml>",
                "<xml><Token/><TokenX>kept</TokenX></xml>",
            ),
            // The reader gives up inside a Token: nothing from it on is kept.
            (
                "<xml><A>1</A><Token>abc</Tok></xml>",
                "<xml><A>1</A><Token>[redacted]",
            ),
            // ...or after one: what it read is kept, the rest (maybe a Token) is not.
            (
                "<xml><Token>a</Token><B>1</C><Token>b</Token></xml>",
                "<xml><Token>[redacted]</Token><B>1[redacted]",
            ),
        ];
        for (xml, redacted) in cases {
            assert_eq!(redact_tokens(xml.to_owned()), redacted, "{xml}");
        }
    }

    #[test]
    fn the_envelope_needs_exactly_one_encrypt() {
        assert_eq!(
            encrypt_field("<xml><Encrypt><![CDATA[abc]]></Encrypt></xml>")
                .ok()
                .as_deref(),
            Some("abc")
        );
        assert!(encrypt_field("<xml><ToUserName>x</ToUserName></xml>").is_err());
        assert!(encrypt_field("<xml><Encrypt>a</Encrypt><Encrypt>b</Encrypt></xml>").is_err());
        assert!(encrypt_field("not xml").is_err());
    }
}
