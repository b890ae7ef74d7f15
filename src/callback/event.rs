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
    #[serde(rename = "OpenKfId")]
    open_kfid: Option<String>,
}

/// "Messages are waiting for `open_kfid`": pull them with `sync_msg` and `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KfMsgOrEvent {
    /// The corp id (or the 客服组件 id for component apps).
    pub to_user_name: String,
    /// Unix seconds.
    pub create_time: u64,
    /// Pass it as `sync_msg`'s `token`; valid 10 minutes.
    pub token: Secret,
    pub open_kfid: String,
}

/// A decrypted callback. Events other than `kf_msg_or_event` are kept with their XML.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallbackEvent {
    KfMsgOrEvent(KfMsgOrEvent),
    /// Any other event (`kf_account_auth_change`, …), as received.
    Other {
        msg_type: Option<String>,
        event: Option<String>,
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
            _ => Ok(CallbackEvent::Other {
                msg_type: plain.msg_type,
                event: plain.event,
                xml,
            }),
        }
    }
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
            Ok(CallbackEvent::Other { event, xml, .. }) => {
                assert_eq!(event.as_deref(), Some("kf_account_auth_change"));
                assert_eq!(xml, auth);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            CallbackEvent::parse("<xml><Event>".into()),
            Err(CallbackError::Xml(_))
        ));
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
