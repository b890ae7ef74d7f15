//! Downloads of `binary` endpoints (`download_media`): ranged requests of at most 20 MiB,
//! each answer streamed as it arrives, an interrupted one asked again from the last byte
//! received, and the file's name, type and length reported beside what its bytes show.

use std::fmt;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_RANGE, CONTENT_TYPE, HeaderMap};
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use tokio::time::Instant;

use super::{MediaFormat, MediaInfo, disposition};
use crate::client::{Answer, Payload, payload};
use crate::error::Delivery;
use crate::retry::Wait;
use crate::rt::endpoint::{Endpoint, FileRequest};
use crate::{Client, Error};

/// The largest range WeCom serves in one answer (doc 96486: larger files "must be fetched
/// in Range chunks of at most 20 MB", else 830002).
pub const MAX_CHUNK_BYTES: u64 = 20 << 20;

/// What a download into memory accepts unless told otherwise: the largest file `sync_msg`
/// hands out (bigger ones arrive as a text notice instead).
pub const DEFAULT_MAX_IN_MEMORY: u64 = 20 << 20;

/// Enough of a file's start for [`MediaFormat::sniff`].
const SNIFF_BYTES: usize = 64;

/// How a download runs: set through the generated builder (`max_bytes`, `resume_from`,
/// `chunk_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadOptions {
    max_bytes: Option<u64>,
    resume_from: u64,
    chunk_size: u64,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            max_bytes: None,
            resume_from: 0,
            chunk_size: MAX_CHUNK_BYTES,
        }
    }
}

impl DownloadOptions {
    /// Refuses a file over `limit` bytes.
    pub fn max_bytes(self, limit: u64) -> Self {
        DownloadOptions {
            max_bytes: Some(limit),
            ..self
        }
    }

    /// Starts at byte `offset`.
    pub fn resume_from(self, offset: u64) -> Self {
        DownloadOptions {
            resume_from: offset,
            ..self
        }
    }

    /// At most `bytes` per ranged request, between 1 and [`MAX_CHUNK_BYTES`].
    pub fn chunk_size(self, bytes: u64) -> Self {
        DownloadOptions {
            chunk_size: bytes.clamp(1, MAX_CHUNK_BYTES),
            ..self
        }
    }
}

/// A file downloaded into memory.
#[derive(Clone, PartialEq, Eq)]
pub struct Media {
    /// The bytes from where the download started (the whole file, unless resumed).
    pub bytes: Bytes,
    /// Its name, declared type, length, and the format its bytes show.
    pub info: MediaInfo,
}

impl fmt::Debug for Media {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bytes may be megabytes: their length says enough.
        f.debug_struct("Media")
            .field("bytes", &format_args!("{} bytes", self.bytes.len()))
            .field("info", &self.info)
            .finish()
    }
}

/// A download streamed into a writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Its name, declared type, length, and the format its first bytes show (when the
    /// download started at byte 0).
    pub info: MediaInfo,
    /// The bytes this call wrote.
    pub written: u64,
}

/// A request, ready to send, or why it can't be.
type Prepared = Result<(Payload, Vec<(String, String)>), Option<Error>>;

/// A download, a chunk at a time: [`next_chunk`](Self::next_chunk) gives the file's bytes
/// in order as they arrive, asking for the next range when one ends and again from the
/// last byte received when one fails (as the client's retry policy allows).
pub struct MediaChunks {
    client: Client,
    endpoint: Endpoint,
    prepared: Prepared,
    options: DownloadOptions,
    /// The next byte of the file to receive.
    position: u64,
    /// The file's length, once an answer said it.
    total: Option<u64>,
    info: Option<MediaInfo>,
    /// The file's first bytes, for sniffing (only when the download started at 0).
    head: Vec<u8>,
    body: Option<Body>,
    /// Failed answers in a row, without a byte received in between.
    failures: u32,
    /// When the last byte arrived (or the download started).
    progress_at: Instant,
    done: bool,
}

/// One answer being read.
struct Body {
    source: Source,
    /// Bytes to drop before the first one wanted: a server that ignored `Range` sends the
    /// file from its start.
    skip: u64,
    /// The end (exclusive) of the bytes this answer announced, when it did.
    end: Option<u64>,
    /// Whether it answered a range (206): one that ends short without a known total is the
    /// file's end.
    ranged: bool,
    /// Where the range asked for ended (exclusive).
    asked_end: u64,
}

enum Source {
    Stream(reqwest::Response),
    /// A body already read (a file that looked like a JSON error, and wasn't).
    Read(Option<Bytes>),
}

impl Source {
    async fn chunk(&mut self) -> Result<Option<Bytes>, reqwest::Error> {
        match self {
            Source::Stream(response) => response.chunk().await,
            Source::Read(body) => Ok(body.take()),
        }
    }
}

impl fmt::Debug for MediaChunks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the answer: its URL carries the access token.
        f.debug_struct("MediaChunks")
            .field("endpoint", &self.endpoint.name)
            .field("position", &self.position)
            .field("total", &self.total)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl MediaChunks {
    /// A download of `request` (what generated builders call). Nothing is sent before the
    /// first [`next_chunk`](Self::next_chunk); a request that breaks a limit of the API
    /// file fails there with [`Error::Invalid`].
    pub fn new<R: FileRequest>(client: &Client, request: &R, options: DownloadOptions) -> Self {
        let endpoint = R::ENDPOINT;
        let prepared = request
            .validate()
            .map_err(Error::from)
            .and_then(|()| payload(&endpoint, request))
            .map_err(Some);
        MediaChunks {
            client: client.clone(),
            endpoint,
            prepared,
            options,
            position: options.resume_from,
            total: None,
            info: None,
            head: Vec::new(),
            body: None,
            failures: 0,
            progress_at: Instant::now(),
            done: false,
        }
    }

    /// What is known of the file: after the first chunk, its declared type, name and
    /// length; the sniffed format once its first bytes arrived.
    pub fn info(&self) -> Option<&MediaInfo> {
        self.info.as_ref()
    }

    /// The next byte of the file to arrive: where a new download would resume.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The file's next bytes, `None` once it is complete. An error after part of the file
    /// arrived is [`Error::Incomplete`], which says where to resume; calling again after
    /// an error asks again from there.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            if self.done {
                return Ok(None);
            }
            let Some(body) = self.body.as_mut() else {
                if self.total.is_some_and(|total| self.position >= total) {
                    self.done = true;
                    continue;
                }
                match self.open().await {
                    Ok(Some(body)) => self.body = Some(body),
                    Ok(None) => self.done = true,
                    Err(error) => return Err(self.incomplete(error)),
                }
                continue;
            };
            let failure = match body.source.chunk().await {
                Ok(Some(mut bytes)) => {
                    let skipped = usize::try_from(body.skip)
                        .map_or(bytes.len(), |skip| skip.min(bytes.len()));
                    // `skipped` is at most the chunk's length, which fits both types.
                    body.skip -= skipped as u64;
                    let _ = bytes.split_to(skipped);
                    if bytes.is_empty() {
                        continue;
                    }
                    let end = body.end;
                    return self.arrived(bytes, end).map(Some);
                }
                Ok(None) => {
                    let (end, ranged, asked_end) = (body.end, body.ranged, body.asked_end);
                    self.body = None;
                    if end.is_some_and(|end| self.position < end) {
                        self.malformed(
                            "body",
                            &format!("the answer ended at byte {} of the file", self.position),
                        )
                    } else {
                        // Without a known length, a whole-file answer or a short range is
                        // the end of the file.
                        if self.total.is_none() && (!ranged || self.position < asked_end) {
                            self.done = true;
                        }
                        continue;
                    }
                }
                Err(error) => {
                    self.body = None;
                    Error::Transport {
                        endpoint: self.endpoint.name,
                        delivery: Delivery::MaybeSent,
                        source: error.without_url(),
                    }
                }
            };
            self.retry_after(failure).await?;
        }
    }

    /// Takes in `bytes` that arrived, within the answer's announced `end` and the cap.
    fn arrived(&mut self, bytes: Bytes, end: Option<u64>) -> Result<Bytes, Error> {
        let arrived = self.position.checked_add(bytes.len() as u64);
        let Some(arrived) = arrived.filter(|a| end.is_none_or(|end| *a <= end)) else {
            let error = self.malformed(
                "Content-Range",
                "the answer carried more bytes than it announced",
            );
            return Err(self.incomplete(error));
        };
        if let Some(limit) = self.options.max_bytes.filter(|limit| arrived > *limit) {
            return Err(self.incomplete(Error::DownloadTooLarge { limit, len: None }));
        }
        if self.options.resume_from == 0 && self.head.len() < SNIFF_BYTES {
            let wanted = (SNIFF_BYTES - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..wanted]);
            if let Some(info) = self.info.as_mut() {
                info.format = MediaFormat::sniff(&self.head);
            }
        }
        self.position = arrived;
        self.failures = 0;
        self.progress_at = Instant::now();
        Ok(bytes)
    }

    /// Reads the whole file into memory, refusing one over `max_bytes` (by default
    /// [`DEFAULT_MAX_IN_MEMORY`]). What arrived before a failure is dropped with it, so the
    /// error is the cause itself, never [`Error::Incomplete`].
    pub async fn into_memory(mut self) -> Result<Media, Error> {
        let limit = self.options.max_bytes.unwrap_or(DEFAULT_MAX_IN_MEMORY);
        self.options.max_bytes = Some(limit);
        let mut bytes = Vec::new();
        loop {
            let chunk = match self.next_chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(Error::Incomplete { cause, .. }) => return Err(*cause),
                Err(error) => return Err(error),
            };
            if bytes.is_empty() {
                // The announced length is the server's word; the cap bounds what is reserved.
                let expected = self
                    .total
                    .unwrap_or(0)
                    .min(limit)
                    .saturating_sub(self.options.resume_from);
                bytes.reserve(usize::try_from(expected).unwrap_or(0));
            }
            bytes.extend_from_slice(&chunk);
        }
        let mut info = self.finished_info();
        if self.options.resume_from == 0 {
            info.format = MediaFormat::sniff(&bytes);
        }
        Ok(Media {
            bytes: Bytes::from(bytes),
            info,
        })
    }

    /// Writes the file into `writer` as it arrives.
    pub async fn to_writer<W>(mut self, writer: &mut W) -> Result<Downloaded, Error>
    where
        W: AsyncWrite + Unpin + Send + ?Sized,
    {
        let start = self.position;
        while let Some(chunk) = self.next_chunk().await? {
            if let Err(error) = writer.write_all(&chunk).await {
                // `position` already counts this chunk; resume from where it began.
                self.position = self.position.saturating_sub(chunk.len() as u64);
                return Err(self.incomplete(Error::Write(error)));
            }
        }
        if let Err(error) = writer.flush().await {
            return Err(self.incomplete(Error::Write(error)));
        }
        Ok(Downloaded {
            info: self.finished_info(),
            written: self.position.saturating_sub(start),
        })
    }

    /// The file's info once the download ended (an empty download says only its length).
    fn finished_info(&mut self) -> MediaInfo {
        let mut info = self.info.take().unwrap_or(MediaInfo {
            format: None,
            declared_mime: None,
            filename: None,
            len: self.total,
        });
        if info.len.is_none() && self.options.resume_from == 0 {
            info.len = Some(self.position);
        }
        info
    }

    /// Sends the request for the next range; `None` when the file turned out complete.
    async fn open(&mut self) -> Result<Option<Body>, Error> {
        let (payload, query) = match &mut self.prepared {
            Ok(prepared) => (&prepared.0, &prepared.1),
            Err(error) => {
                return Err(error.take().unwrap_or_else(|| {
                    Error::Config("this download's request was refused before".into())
                }));
            }
        };
        let last = self
            .position
            .saturating_add(self.options.chunk_size.saturating_sub(1))
            .min(self.total.map_or(u64::MAX, |total| total.saturating_sub(1)));
        let range = format!("bytes={}-{last}", self.position);
        let answer = self
            .client
            .fetch_file(&self.endpoint, payload, query, &range)
            .await?;
        let (source, status, headers) = match answer {
            Answer::File(response) => {
                let (status, headers) = (response.status(), response.headers().clone());
                (Source::Stream(response), status, headers)
            }
            Answer::Json(bytes, head) => {
                let (status, headers) = match head {
                    Some(head) => (head.status, head.headers),
                    None => (StatusCode::OK, HeaderMap::new()),
                };
                let len = bytes.len() as u64;
                let mut headers = headers;
                // The length that was read, whatever the header said.
                headers.insert(reqwest::header::CONTENT_LENGTH, len.into());
                (Source::Read(Some(bytes)), status, headers)
            }
        };
        let asked_end = last.saturating_add(1);
        let body = match status.as_u16() {
            206 => {
                let (first, end, total) = content_range(&headers)
                    .and_then(|r| r.span.map(|(first, last)| (first, last, r.total)))
                    .ok_or_else(|| {
                        self.malformed("Content-Range", "a 206 answer without a byte range")
                    })?;
                if first != self.position || end < first {
                    return Err(self.malformed(
                        "Content-Range",
                        &format!("asked for byte {}, got bytes {first}-{end}", self.position),
                    ));
                }
                self.total = total.or(self.total);
                Body {
                    source,
                    skip: 0,
                    end: Some(end.saturating_add(1)),
                    ranged: true,
                    asked_end,
                }
            }
            416 => {
                // Past the end: fine when the file is exactly what was already received.
                let total = content_range(&headers).and_then(|r| r.total);
                return match total {
                    Some(total) if total <= self.position => {
                        self.total = Some(total);
                        self.describe(&headers, Some(total));
                        Ok(None)
                    }
                    _ => Err(self.malformed(
                        "Content-Range",
                        &format!("byte {} is past the file's end", self.position),
                    )),
                };
            }
            _ => {
                // The whole file: the server ignored the range.
                let len = headers
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                self.total = len.or(self.total);
                Body {
                    source,
                    skip: self.position,
                    end: self.total,
                    ranged: false,
                    asked_end,
                }
            }
        };
        self.describe(&headers, self.total);
        if let (Some(limit), Some(total)) = (self.options.max_bytes, self.total)
            && total > limit
        {
            return Err(Error::DownloadTooLarge {
                limit,
                len: Some(total),
            });
        }
        Ok(Some(body))
    }

    /// Takes the file's type and name from its first answer.
    fn describe(&mut self, headers: &HeaderMap, total: Option<u64>) {
        let info = self.info.get_or_insert_with(|| MediaInfo {
            format: None,
            declared_mime: headers
                .get(CONTENT_TYPE)
                .and_then(|t| t.to_str().ok())
                .map(str::to_owned),
            filename: headers
                .get(CONTENT_DISPOSITION)
                .and_then(|d| disposition::filename(d.as_bytes())),
            len: None,
        });
        info.len = total.or(info.len);
    }

    /// Waits before asking again from the last byte received, or gives up with `error`
    /// when the retry policy says so.
    async fn retry_after(&mut self, error: Error) -> Result<(), Error> {
        // The deadline counts from the last byte received: a long download that keeps
        // moving is never cut off, a stalled one is.
        let stalled = self.progress_at.elapsed();
        match self
            .client
            .retries()
            .next(Wait::Backoff, self.failures, stalled)
        {
            Some(wait) => {
                self.failures += 1;
                tracing::warn!(
                    endpoint = self.endpoint.name,
                    resume_from = self.position,
                    retry = self.failures,
                    wait_ms = wait.as_millis() as u64,
                    error = %crate::error::chain(&error),
                    "download interrupted; asking again from the last byte received"
                );
                tokio::time::sleep(wait).await;
                Ok(())
            }
            None => Err(self.incomplete(error)),
        }
    }

    /// `error`, saying where to resume if part of the file arrived; the answer being read
    /// is dropped, so a next call asks again from there.
    fn incomplete(&mut self, error: Error) -> Error {
        self.body = None;
        if self.position > self.options.resume_from {
            Error::Incomplete {
                endpoint: self.endpoint.name,
                resume_from: self.position,
                cause: Box::new(error),
            }
        } else {
            error
        }
    }

    fn malformed(&self, path: &str, message: &str) -> Error {
        Error::Decode {
            endpoint: self.endpoint.name,
            path: path.to_owned(),
            message: message.to_owned(),
        }
    }
}

/// A `Content-Range: bytes first-last/total` (either side may be `*`).
struct ContentRange {
    span: Option<(u64, u64)>,
    total: Option<u64>,
}

fn content_range(headers: &HeaderMap) -> Option<ContentRange> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        n => Some(n.parse().ok()?),
    };
    let span = match span.trim() {
        "*" => None,
        span => {
            let (first, last) = span.split_once('-')?;
            Some((first.trim().parse().ok()?, last.trim().parse().ok()?))
        }
    };
    Some(ContentRange { span, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The span and total of a `Content-Range` value, `"first-last/total"`, `-` for `*`.
    fn range(value: &str) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_RANGE, value.parse().ok()?);
        content_range(&headers).map(|r| {
            let span = r.span.map_or("-".to_owned(), |(a, b)| format!("{a}-{b}"));
            let total = r.total.map_or("-".to_owned(), |t| t.to_string());
            format!("{span}/{total}")
        })
    }

    #[test]
    fn content_ranges_parse() {
        assert_eq!(range("bytes 0-1023/2048").as_deref(), Some("0-1023/2048"));
        assert_eq!(range("bytes */2048").as_deref(), Some("-/2048"));
        assert_eq!(range("bytes 5-9/*").as_deref(), Some("5-9/-"));
        assert_eq!(range("items 0-1/2"), None);
        assert_eq!(range("bytes 0-x/2"), None);
        assert_eq!(range("bytes 0-1"), None);
    }

    #[test]
    fn chunk_sizes_stay_within_what_wecom_serves() {
        let options = DownloadOptions::default();
        assert_eq!(options.chunk_size, MAX_CHUNK_BYTES);
        assert_eq!(options.chunk_size(u64::MAX).chunk_size, MAX_CHUNK_BYTES);
        assert_eq!(options.chunk_size(0).chunk_size, 1);
    }
}
