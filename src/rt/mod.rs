//! The macro's runtime: everything the code `endpoints!` generates calls, and nothing else.
//!
//! Generated code reaches it as `rt` (`use ::wecom_kf::__private as rt;`), through the
//! hidden [`__private`](crate::__private) module, so a user's crate needs no dependency of its
//! own for the expansion to compile:
//! - [`endpoint`]: an endpoint's description (`Endpoint`, `Auth`, `HttpMethod`), the
//!   `Request` and `FileRequest` traits the client sends, `RawCall` and `Ack`;
//! - [`json`]: serde helpers for generated types (keyed and inline unions, lenient
//!   structs, strings sent as numbers), reading received items without a `Value`;
//! - [`rules`]: the rule structs generated `Validate` impls check values with.

pub(crate) mod endpoint;
pub(crate) mod json;
pub(crate) mod rules;
