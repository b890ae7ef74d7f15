//! One error type, split by "did the request leave?", so a caller knows whether a failed
//! send may still reach the customer.

use std::fmt;

use crate::ErrCode;
use crate::validate::Invalid;

/// Everything a call can fail with.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A field broke a limit of the API file, or couldn't be encoded. Nothing was sent.
    Invalid(Invalid),

    /// The HTTP exchange failed. `delivery` says whether WeCom may have received the
    /// request; a send that `MaybeSent` is never retried automatically.
    Transport {
        /// The endpoint called, as the API file names it (`kf/send_msg`).
        endpoint: &'static str,
        /// Whether the request may have reached WeCom.
        delivery: Delivery,
        /// What reqwest saw (its URL left out: it carries the token).
        source: reqwest::Error,
    },

    /// WeCom answered with something that isn't the documented response. `path` is where in
    /// the JSON decoding stopped (`msg_list[3].send_time`).
    Decode {
        /// The endpoint called, as the API file names it (`kf/send_msg`).
        endpoint: &'static str,
        /// Where in the JSON decoding stopped.
        path: String,
        /// What was wrong there.
        message: String,
    },

    /// The answer was an HTTP redirect. WeCom's API never redirects, so this is a proxy, a
    /// captive portal or a wrong `base_url`; it is not followed, because the URL carries the
    /// access token (or the secret) and a 307 would post the body again elsewhere. The
    /// request may have arrived.
    Redirected {
        /// The endpoint called, as the API file names it (`kf/send_msg`).
        endpoint: &'static str,
        /// The redirect's HTTP status (301, 302, 307, …).
        status: u16,
    },

    /// The answer's body is larger than the client reads (`limit` bytes): not a WeCom
    /// answer, whose pages are far smaller. Reading stopped there; the request may have
    /// arrived.
    TooLarge {
        /// The endpoint called, as the API file names it (`kf/send_msg`).
        endpoint: &'static str,
        /// How many bytes the client reads at most.
        limit: usize,
    },

    /// A file to upload is larger than its media type allows (`limit` bytes; voice 2 MB,
    /// images and videos 10 MB, files 20 MB). Nothing was sent: shrink or re-encode it, or
    /// send it as another type (a large image as a `file`).
    UploadTooLarge {
        /// The media type the file uploads as.
        kind: crate::media::MediaType,
        /// The file's size in bytes.
        len: u64,
        /// The most WeCom takes for that type, in bytes.
        limit: u64,
    },

    /// A downloaded file is larger than the `limit` set for it (`max_bytes`): refused before
    /// reading when the answer announced its length `len`, else stopped when the download
    /// reached the limit.
    DownloadTooLarge {
        /// The `max_bytes` set for the download.
        limit: u64,
        /// The length the answer announced, if it did.
        len: Option<u64>,
    },

    /// The writer a download streamed into failed. What it wrote before stays written.
    Write(std::io::Error),

    /// A download stopped after some of the file was received, with `cause`. The bytes
    /// before `resume_from` were delivered (to the writer, or as chunks); start again there
    /// with `resume_from(resume_from)` to get the rest. After a [`Write`](Error::Write)
    /// failure part of the failed chunk may have been written too: truncate to
    /// `resume_from` first.
    Incomplete {
        /// The endpoint called, as the API file names it (`kf/send_msg`).
        endpoint: &'static str,
        /// How many bytes of the file were delivered: where to resume.
        resume_from: u64,
        /// Why the download stopped.
        cause: Box<Error>,
    },

    /// A request that isn't safe to repeat (a send) was answered "busy" at least once, and
    /// the call then failed with `cause`. WeCom says a busy request wasn't processed, but
    /// that isn't proof, so the message may have arrived. Retries carry the same
    /// `retry_id` (the `msgid`), which is why a retry refused as a duplicate id (WeCom's
    /// code for that is undocumented; the simulator answers 40058) most likely means
    /// the first attempt was delivered. Don't send it again under a new id without
    /// checking (a `msg_send_fail` event names the id if delivery failed).
    MaybeDelivered {
        /// The endpoint called, as the API file names it (`kf/send_msg`).
        endpoint: &'static str,
        /// The `msgid` every attempt carried, if the request has one.
        retry_id: Option<String>,
        /// How the last attempt failed.
        cause: Box<Error>,
    },

    /// WeCom refused the request with a non-zero `errcode`.
    Api {
        /// WeCom's `errcode`.
        code: ErrCode,
        /// WeCom's `errmsg`, as it was sent.
        message: String,
    },

    /// The client was built with missing or invalid settings.
    Config(String),

    /// A file to upload couldn't be read (or, from a reader, was already sent). Nothing
    /// was sent for this attempt.
    Upload {
        /// The request's file field (`media`).
        field: &'static str,
        /// Why the file couldn't be read.
        source: std::io::Error,
    },

    /// No access token for now: fetching one failed with `cause` (here, or in another
    /// process sharing the token store), and no fetch starts for `retry_in`, a window that
    /// doubles with each failure in a row, so a wrong secret or an outage costs one
    /// `gettoken` per window instead of one per call (WeCom blocks IPs that repeat wrong
    /// secrets). Every call that waited on that fetch gets this. Nothing was sent;
    /// [`code`](Error::code) is the cause's.
    TokenUnavailable {
        /// How the last fetch failed.
        cause: std::sync::Arc<Error>,
        /// How long until the next fetch may start.
        retry_in: std::time::Duration,
    },

    /// Another process sharing the token store failed to fetch the token: what it saw.
    FetchFailedElsewhere {
        /// The `errcode` it got, if WeCom answered.
        code: Option<ErrCode>,
        /// Its error with every cause, as text.
        message: String,
    },

    /// A [`TokenStore`](crate::TokenStore) failed to load, save or invalidate the token.
    TokenStore(Box<dyn std::error::Error + Send + Sync>),
}

// Each message leaves its source out: `source()` returns it, and `chain` joins them.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(invalid) => fmt::Display::fmt(invalid, f),
            Error::Transport {
                endpoint, delivery, ..
            } => write!(f, "`{endpoint}` failed in transport ({delivery})"),
            Error::Decode {
                endpoint,
                path,
                message,
            } => write!(
                f,
                "`{endpoint}` answered with a body that doesn't decode at `{path}`: {message}"
            ),
            Error::Redirected { endpoint, status } => write!(
                f,
                "`{endpoint}` answered with a redirect (HTTP {status}), which is not followed: check `base_url` and any proxy"
            ),
            Error::TooLarge { endpoint, limit } => write!(
                f,
                "`{endpoint}` answered with a body over {limit} bytes; not read further"
            ),
            Error::UploadTooLarge { kind, len, limit } => write!(
                f,
                "the {kind} is {len} bytes; WeCom takes at most {limit} (refused before sending)"
            ),
            Error::DownloadTooLarge { limit, len } => {
                f.write_str("the file is ")?;
                match len {
                    Some(len) => write!(f, "{len} bytes, more")?,
                    None => f.write_str("larger")?,
                }
                write!(f, " than the {limit} bytes allowed; not read further")
            }
            Error::Write(_) => f.write_str("the download's writer failed"),
            Error::Incomplete {
                endpoint,
                resume_from,
                ..
            } => write!(
                f,
                "`{endpoint}` stopped after {resume_from} bytes of the file"
            ),
            Error::MaybeDelivered {
                endpoint, retry_id, ..
            } => {
                write!(
                    f,
                    "`{endpoint}` may have been delivered: an attempt was answered busy, and the call then failed"
                )?;
                match retry_id {
                    Some(id) => write!(f, " (retries carried the id {id:?})"),
                    None => Ok(()),
                }
            }
            Error::Api { code, message } => f.write_str(&api_message(*code, message)),
            Error::Config(why) => write!(f, "invalid client configuration: {why}"),
            Error::Upload { field, .. } => write!(f, "can't upload `{field}`"),
            Error::TokenUnavailable { retry_in, .. } => write!(
                f,
                "no access token: fetching one failed; the next fetch may start in {retry_in:?}"
            ),
            Error::FetchFailedElsewhere { message, .. } => {
                write!(
                    f,
                    "another process failed to fetch the access token: {message}"
                )
            }
            Error::TokenStore(_) => f.write_str("the token store failed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Invalid(invalid) => invalid.source(),
            Error::Transport { source, .. } => Some(source),
            Error::Write(source) | Error::Upload { source, .. } => Some(source),
            Error::Incomplete { cause, .. } | Error::MaybeDelivered { cause, .. } => {
                Some(cause.as_ref())
            }
            Error::TokenUnavailable { cause, .. } => Some(cause.as_ref()),
            Error::TokenStore(source) => Some(source.as_ref()),
            Error::Decode { .. }
            | Error::Redirected { .. }
            | Error::TooLarge { .. }
            | Error::UploadTooLarge { .. }
            | Error::DownloadTooLarge { .. }
            | Error::Api { .. }
            | Error::Config(_)
            | Error::FetchFailedElsewhere { .. } => None,
        }
    }
}

impl Error {
    /// Whether the failed request may still have taken effect (for a send: may reach the
    /// customer). Only [`Delivery::NotSent`] proves it didn't: refused before sending,
    /// never connected, or refused by WeCom.
    pub fn delivery(&self) -> Delivery {
        match self {
            Error::Transport { delivery, .. } => *delivery,
            // Something answered, so the request arrived somewhere.
            Error::Redirected { .. }
            | Error::TooLarge { .. }
            | Error::DownloadTooLarge { .. }
            | Error::Decode { .. }
            | Error::MaybeDelivered { .. } => Delivery::MaybeSent,
            // Downloads change nothing on the server: this says whether the request arrived.
            Error::Incomplete { .. } | Error::Write(_) => Delivery::MaybeSent,
            Error::Invalid(_)
            | Error::UploadTooLarge { .. }
            | Error::Api { .. }
            | Error::Config(_)
            | Error::Upload { .. }
            | Error::TokenUnavailable { .. }
            | Error::FetchFailedElsewhere { .. }
            | Error::TokenStore(_) => Delivery::NotSent,
        }
    }

    /// The WeCom error code: of an `Api` error, or of the error a wrapper carries.
    pub fn code(&self) -> Option<ErrCode> {
        match self {
            Error::Api { code, .. } => Some(*code),
            Error::MaybeDelivered { cause, .. } | Error::Incomplete { cause, .. } => cause.code(),
            Error::TokenUnavailable { cause, .. } => cause.code(),
            Error::FetchFailedElsewhere { code, .. } => *code,
            _ => None,
        }
    }
}

/// `error` and every error under it on one line, `outer: inner: innermost`: what logs and
/// the texts the crate keeps (a failed turn, a failure shared with other processes) show,
/// since the crate's errors leave out of `Display` the source that `source()` returns.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}

fn api_message(code: ErrCode, message: &str) -> String {
    let mut text = format!("WeCom refused the request: errcode {code}");
    if !message.is_empty() {
        text.push_str(&format!(", errmsg {message:?}"));
    }
    if let Some(hint) = code.hint() {
        text.push_str(". ");
        text.push_str(hint);
    }
    text
}

impl From<Invalid> for Error {
    fn from(e: Invalid) -> Self {
        match e.too_large_upload() {
            Some(upload) => Error::UploadTooLarge {
                kind: upload.kind,
                len: upload.len,
                limit: upload.limit,
            },
            None => Error::Invalid(e),
        }
    }
}

/// Whether a failed request may have reached WeCom and taken effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// It certainly did not take effect: the connection was never made (or, for
    /// [`Error::delivery`], the request was refused before sending or by WeCom).
    NotSent,
    /// The body may have been written (a timeout, a reset, a bad status): it may have arrived.
    MaybeSent,
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Delivery::NotSent => "not sent",
            Delivery::MaybeSent => "may have been delivered",
        })
    }
}

/// How the client treats an error code; set per code in the API file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// Retrying the same request won't help.
    Never,
    /// The server is busy: wait and retry. WeCom says the request wasn't processed; for a
    /// request that isn't safe to repeat, the client doesn't take its word for it (see
    /// [`Error::MaybeDelivered`]).
    Backoff,
    /// The app is over a rate limit, a block that lasts about a minute: wait longer
    /// ([`ClientBuilder::rate_limit_backoff`](crate::ClientBuilder::rate_limit_backoff)) and retry.
    RateLimited,
    /// The access token is stale: drop it, fetch a new one, retry once.
    RefreshToken,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_leaves_the_source_to_source_and_chain_shows_both() {
        let error = Error::Write(std::io::Error::other("disk full"));
        assert_eq!(error.to_string(), "the download's writer failed");
        let source = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("disk full"));
        assert_eq!(chain(&error), "the download's writer failed: disk full");
    }

    #[test]
    fn invalid_shows_as_itself() {
        let error = Error::from(Invalid::new("msgid", "is 40 bytes; at most 32 allowed"));
        assert_eq!(
            error.to_string(),
            "invalid `msgid`: is 40 bytes; at most 32 allowed (refused before sending)"
        );
        assert!(std::error::Error::source(&error).is_none());
    }
}
