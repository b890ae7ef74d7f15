//! The XML of callbacks: the outer envelope with its `Encrypt`, and the decrypted event.

use super::CallbackError;
use crate::Secret;

fn xml_error(e: impl std::fmt::Display) -> CallbackError {
    CallbackError::Xml(e.to_string())
}

/// The text of each element directly under the root, by name and in document order
/// (CDATA read, references resolved, whitespace around text trimmed): all that a
/// callback's XML, the envelope or the event, carries. Deeper elements are skipped.
fn fields(xml: &str) -> Result<Vec<(String, String)>, CallbackError> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut fields = Vec::new();
    let mut open: Option<(String, String)> = None;
    let mut depth = 0usize;
    let name = |start: &quick_xml::events::BytesStart| start.name().as_ref().to_owned();
    loop {
        let event = reader.read_event().map_err(xml_error)?;
        if let (2, Some((_, text))) = (depth, open.as_mut()) {
            match &event {
                Event::Text(part) => text.push_str(&part.xml10_content()),
                Event::CData(part) => text.push_str(&part.xml10_content()),
                Event::GeneralRef(reference) => {
                    match reference.resolve_char_ref().map_err(xml_error)? {
                        Some(char) => text.push(char),
                        None => text.push_str(
                            quick_xml::escape::resolve_predefined_entity(reference).ok_or_else(
                                || xml_error(format!("unknown entity `&{}`", &**reference)),
                            )?,
                        ),
                    }
                }
                _ => {}
            }
        }
        match event {
            Event::Start(start) => {
                depth += 1;
                if depth == 2 {
                    open = Some((name(&start), String::new()));
                }
            }
            Event::Empty(start) if depth == 1 => fields.push((name(&start), String::new())),
            Event::End(_) => {
                if depth == 2
                    && let Some(field) = open.take()
                {
                    fields.push(field);
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof if depth == 0 => return Ok(fields),
            Event::Eof => return Err(xml_error("the XML ends inside an element")),
            _ => {}
        }
    }
}

/// The `Encrypt` element of a POST body.
pub fn encrypt_field(body: &str) -> Result<String, CallbackError> {
    let mut encrypts = fields(body)?
        .into_iter()
        .filter(|(name, _)| name == "Encrypt");
    let (Some((_, encrypt)), None) = (encrypts.next(), encrypts.next()) else {
        return Err(xml_error("not exactly one `Encrypt` element"));
    };
    let encrypt = encrypt.trim();
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

/// The elements of a decrypted event that are read. One of each at most, but for the
/// lists: an event with two tokens or two accounts is refused, not guessed at.
#[derive(Default)]
struct Plain {
    to_user_name: Option<String>,
    create_time: Option<String>,
    msg_type: Option<String>,
    event: Option<String>,
    token: Option<String>,
    auth_added: Vec<String>,
    auth_removed: Vec<String>,
    open_kfid: Option<String>,
}

impl Plain {
    fn read(xml: &str) -> Result<Self, CallbackError> {
        let mut plain = Plain::default();
        for (name, text) in fields(xml)? {
            let single = match name.as_str() {
                "ToUserName" => &mut plain.to_user_name,
                "CreateTime" => &mut plain.create_time,
                "MsgType" => &mut plain.msg_type,
                "Event" => &mut plain.event,
                "Token" => &mut plain.token,
                "OpenKfId" => &mut plain.open_kfid,
                "AuthAddOpenKfId" => {
                    plain.auth_added.push(text);
                    continue;
                }
                "AuthDelOpenKfId" => {
                    plain.auth_removed.push(text);
                    continue;
                }
                _ => continue,
            };
            if single.replace(text).is_some() {
                return Err(xml_error(format!("more than one `{name}` element")));
            }
        }
        Ok(plain)
    }
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
        let plain = Plain::read(&xml)?;
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

    #[test]
    fn element_texts_read_as_xml_means_them() {
        let xml = "<xml>\n  <ToUserName><![CDATA[ww1]]></ToUserName>\n  <CreateTime> 1348831860 </CreateTime>\n  \
                   <Event>kf_msg_or_event</Event><Token>a&amp;b&#x3C;<![CDATA[c]]></Token>\n  \
                   <Extra><OpenKfId>nested, not read</OpenKfId></Extra><OpenKfId>wk1</OpenKfId></xml>";
        let CallbackEvent::KfMsgOrEvent(event) = CallbackEvent::parse(xml.to_owned()).unwrap()
        else {
            panic!("a complete kf_msg_or_event");
        };
        assert_eq!(event.token.expose(), "a&b<c");
        assert_eq!(
            (event.open_kfid.as_str(), event.create_time),
            ("wk1", 1348831860)
        );
        assert_eq!(event.to_user_name, "ww1");
    }

    #[test]
    fn an_event_with_two_of_one_element_is_refused() {
        let two_tokens = "<xml><Event>kf_msg_or_event</Event><Token>a</Token><Token>b</Token><OpenKfId>wk1</OpenKfId><CreateTime>1</CreateTime></xml>";
        assert!(matches!(
            CallbackEvent::parse(two_tokens.to_owned()),
            Err(CallbackError::Xml(_))
        ));
        let lists = "<xml><Event>kf_account_auth_change</Event><AuthAddOpenKfId>wk1</AuthAddOpenKfId><AuthAddOpenKfId>wk2</AuthAddOpenKfId><AuthDelOpenKfId/></xml>";
        let Ok(CallbackEvent::KfAccountAuthChange(change)) = CallbackEvent::parse(lists.to_owned())
        else {
            panic!("an auth change");
        };
        assert_eq!(change.added, ["wk1", "wk2"]);
        assert_eq!(change.removed, [""]);
        assert!(
            CallbackEvent::parse("<xml><Event>x</Event>".to_owned()).is_err(),
            "unclosed"
        );
        assert!(CallbackEvent::parse("<xml><Event>&bogus;</Event></xml>".to_owned()).is_err());
    }
}
