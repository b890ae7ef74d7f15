//! What generated code hands the client: an endpoint's description and a typed body.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::validate::Validate;
use crate::{Client, Error, Upload};

/// A boxed, `Send` future: what awaiting a request builder gives.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The HTTP method of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// The fields go to the query string.
    Get,
    /// The fields are the JSON (or multipart) body.
    Post,
}

/// How a request proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `?access_token=…` from the client's token cache.
    AccessToken,
    /// `?corpid=…&corpsecret=…`: only `gettoken`.
    CorpSecret,
}

/// One endpoint of the API file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The name errors and logs show: the path under `/cgi-bin/` (`kf/send_msg`).
    pub name: &'static str,
    /// GET or POST.
    pub method: HttpMethod,
    /// Under `/cgi-bin/`, without a leading slash.
    pub path: &'static str,
    /// Which credentials the query string carries.
    pub auth: Auth,
    /// Safe to send twice: retried after a timeout or a dropped connection.
    pub idempotent: bool,
    /// The body is `multipart/form-data` ([`Request::files`]); the other fields go to the
    /// query string.
    pub multipart: bool,
    /// The answer is a file's bytes ([`FileRequest`]), or a JSON error.
    pub binary: bool,
    /// Query parameters sent with every call (`type=image`).
    pub query: &'static [(&'static str, &'static str)],
    /// The optional field that makes a retry recognisable (`msgid`): filled with a fresh
    /// id when unset, once per call, so every attempt carries the same one and WeCom can
    /// refuse a repeat instead of delivering the message twice.
    pub retry_key: Option<&'static str>,
}

/// A typed request body; generated for every endpoint (`SendMsgRequest`, …).
pub trait Request: Serialize + Validate {
    /// What the endpoint answers with.
    type Response: DeserializeOwned;
    /// Where and how the request is sent.
    const ENDPOINT: Endpoint;

    /// Reads the answer's body, once its `errcode` says it succeeded: with serde_json, or
    /// the faster way of a page of received items (`SyncMsgResponse::from_body`).
    fn read_response(body: &[u8]) -> Result<Self::Response, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// The files of a multipart endpoint, by part name.
    fn files(&self) -> Vec<(&'static str, &Upload)> {
        Vec::new()
    }

    /// The id in the endpoint's [`retry_key`](Endpoint::retry_key) field, if it has one
    /// and it is set.
    fn retry_id(&self) -> Option<&str> {
        None
    }

    /// A copy with `id` in the [`retry_key`](Endpoint::retry_key) field, unless the
    /// caller set one (`None` then, and for endpoints without a retry key).
    fn with_retry_id(&self, id: &str) -> Option<Self>
    where
        Self: Sized,
    {
        let _ = id;
        None
    }

    /// The JSON body as the client sends it (not validated: see [`Validate`]).
    fn to_body(&self) -> Result<Vec<u8>, serde_json::Error> {
        json_body(self)
    }
}

/// A request whose answer is a file (`response = "binary"` in the API file: `download_media`).
/// Send it with [`MediaChunks::new`](crate::media::MediaChunks::new), or the generated builder.
pub trait FileRequest: Serialize + Validate {
    /// Where and how the request is sent.
    const ENDPOINT: Endpoint;
}

/// Any value as a JSON body: what typed and raw requests both send.
pub(crate) fn json_body<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    // Most bodies fit: one allocation instead of the doubling from an empty buffer.
    let mut body = Vec::with_capacity(256);
    serde_json::to_writer(&mut body, value)?;
    Ok(body)
}

/// The response of endpoints that answer with `errcode`/`errmsg` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ack;

impl<'de> Deserialize<'de> for Ack {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| Ack)
    }
}

/// A request with a raw JSON body, for what the API file doesn't describe yet
/// (`send_msg_raw`). Not validated: the server decides.
#[must_use = "a request does nothing until it is awaited or sent"]
pub struct RawCall<'a, R> {
    client: &'a Client,
    endpoint: Endpoint,
    body: Value,
    response: PhantomData<fn() -> R>,
}

impl<'a, R: DeserializeOwned> RawCall<'a, R> {
    /// A call of `endpoint` through `client` with `body` as it is.
    pub fn new(client: &'a Client, endpoint: Endpoint, body: Value) -> Self {
        RawCall {
            client,
            endpoint,
            body,
            response: PhantomData,
        }
    }

    /// Sends the body as is.
    pub async fn send(self) -> Result<R, Error> {
        self.client.execute_raw(&self.endpoint, &self.body).await
    }
}

impl<'a, R: DeserializeOwned + 'a> IntoFuture for RawCall<'a, R> {
    type Output = Result<R, Error>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}
