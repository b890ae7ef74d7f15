//! What generated code hands the client: an endpoint's description and a typed body.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::validate::Validate;
use crate::{Client, Error};

/// A boxed, `Send` future: what awaiting a request builder gives.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
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
    pub name: &'static str,
    pub method: HttpMethod,
    /// Under `/cgi-bin/`, without a leading slash.
    pub path: &'static str,
    pub auth: Auth,
    /// Safe to send twice: retried after a timeout or a dropped connection.
    pub idempotent: bool,
}

/// A typed request body; generated for every endpoint (`SendMsgRequest`, …).
pub trait Request: Serialize + Validate {
    type Response: DeserializeOwned;
    const ENDPOINT: Endpoint;
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

// Helpers for the serde impls of generated unions.

/// The string at `key`, the tag that picks a union variant.
pub fn tag_of<'v>(raw: &'v Value, key: &str) -> Result<&'v str, String> {
    match raw.get(key) {
        Some(Value::String(tag)) => Ok(tag),
        Some(other) => Err(format!("`{key}` must be a string, found {other}")),
        None => Err(format!("missing `{key}`")),
    }
}

/// The payload of a keyed union: the object under the key named like the tag.
pub fn payload<'v>(raw: &'v Value, tag: &str) -> Result<&'v Value, serde_json::Error> {
    raw.get(tag)
        .ok_or_else(|| serde::de::Error::custom(format!("missing `{tag}` payload")))
}

pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, serde_json::Error> {
    T::deserialize(value)
}

/// Serializes an inline union variant: the tag beside the payload's own fields.
pub struct Tagged<'a, T> {
    pub key: &'a str,
    pub tag: &'a str,
    pub payload: &'a T,
}

impl<T: Serialize> Serialize for Tagged<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeMap};
        let fields = match serde_json::to_value(self.payload).map_err(S::Error::custom)? {
            Value::Object(fields) => fields,
            _ => {
                return Err(S::Error::custom(
                    "an inline union payload must be an object",
                ));
            }
        };
        let mut map = serializer.serialize_map(Some(fields.len() + 1))?;
        map.serialize_entry(self.key, self.tag)?;
        for (k, v) in &fields {
            if k != self.key {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}
