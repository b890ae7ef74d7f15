//! Files for multipart endpoints (`upload_image`, …): from bytes, a path, or a reader.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncRead;

/// A file to upload. Its length is known before anything is sent, so the endpoint's size
/// limits are checked first ([`Error::Invalid`](crate::Error::Invalid)), as for any field.
///
/// ```no_run
/// # async fn run(client: wecom_kf::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use wecom_kf::Upload;
///
/// let logo = Upload::from_path("logo.png").await?;
/// let uploaded = client.upload_image(logo).await?;
/// client.send_image("wmUSER", "wkKFID", uploaded.media_id).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Upload {
    file_name: String,
    content_type: Option<String>,
    len: u64,
    source: Source,
}

#[derive(Clone)]
enum Source {
    Bytes(Bytes),
    /// Read again for every attempt, so a retry sends the whole file.
    Path(PathBuf),
    /// Streamed once: a retry after it was sent fails instead of sending half a file.
    Reader(Arc<Mutex<Option<Box<dyn AsyncRead + Send + Unpin>>>>),
}

impl Default for Source {
    fn default() -> Self {
        Source::Bytes(Bytes::new())
    }
}

impl Upload {
    /// A file held in memory. `file_name` is what the customer sees for `file` messages.
    pub fn from_bytes(file_name: impl Into<String>, bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Upload {
            file_name: file_name.into(),
            content_type: None,
            len: bytes.len() as u64,
            source: Source::Bytes(bytes),
        }
    }

    /// A file on disk, named after its last path component; read when it is sent.
    pub async fn from_path(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref();
        let len = tokio::fs::metadata(path).await?.len();
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Upload {
            file_name,
            content_type: None,
            len,
            source: Source::Path(path.to_owned()),
        })
    }

    /// A stream of exactly `len` bytes, sent as it is read. It can be sent once: an upload
    /// that needs a second attempt (a refreshed token, a retry) fails with
    /// [`Error::Upload`](crate::Error::Upload) instead.
    pub fn from_reader(
        file_name: impl Into<String>,
        len: u64,
        reader: impl AsyncRead + Send + Unpin + 'static,
    ) -> Self {
        Upload {
            file_name: file_name.into(),
            content_type: None,
            len,
            source: Source::Reader(Arc::new(Mutex::new(Some(Box::new(reader))))),
        }
    }

    /// The part's `Content-Type` (`image/png`, …); none is sent when unset.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// The file name sent with the part.
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// The length in bytes, as the size limits see it.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What this file sends for one attempt: its bytes, or its reader.
    async fn content(&self) -> Result<Content, std::io::Error> {
        match &self.source {
            Source::Bytes(bytes) => Ok(Content::Bytes(bytes.clone())),
            Source::Path(path) => {
                let bytes = tokio::fs::read(path).await?;
                if bytes.len() as u64 != self.len {
                    return Err(std::io::Error::other(format!(
                        "the file changed size since it was checked ({} bytes, now {})",
                        self.len,
                        bytes.len()
                    )));
                }
                Ok(Content::Bytes(bytes.into()))
            }
            Source::Reader(reader) => {
                let reader = crate::mutex::lock(reader).take().ok_or_else(|| {
                    std::io::Error::other(
                        "a reader can be sent once, and this one already was; upload from bytes or a path to allow retries",
                    )
                })?;
                Ok(Content::Reader(Streamed::new(reader, self.len)))
            }
        }
    }

    /// The part's headers: its disposition (the name, and the file name quoted as reqwest
    /// quoted it, a backslash before `\` and `"`, with line breaks written as browsers
    /// write them, `%0D` and `%0A`, so that no name breaks out of its header line) and its
    /// type.
    fn part_headers(&self, name: &str, boundary: &str) -> Result<String, std::io::Error> {
        let file_name = self
            .file_name
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\r', "%0D")
            .replace('\n', "%0A");
        let mut headers = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\""
        );
        if let Some(mime) = &self.content_type {
            if !is_media_type(mime) {
                return Err(std::io::Error::other(format!(
                    "invalid content type `{mime}`: not a `type/subtype` of visible ASCII"
                )));
            }
            headers.push_str("\r\nContent-Type: ");
            headers.push_str(mime);
        }
        headers.push_str("\r\n\r\n");
        Ok(headers)
    }
}

/// Whether `mime` reads as a media type (`image/png`, `text/plain; charset=utf-8`): what
/// can go in a part's `Content-Type` line.
fn is_media_type(mime: &str) -> bool {
    let essence = mime.split(';').next().unwrap_or_default().trim();
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    matches!(essence.split_once('/'), Some((kind, sub)) if token(kind) && token(sub))
        && mime.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

/// One attempt's `multipart/form-data` body of `files`, by part name: its
/// `Content-Type` header, its length, and the body, which streams a reader's bytes as they
/// are read. Written here rather than by reqwest's `multipart` feature, which would add
/// crates to every build (MIME guessing) for a form of one file.
pub(crate) async fn multipart_body(
    files: &[(&'static str, Upload)],
) -> Result<(String, u64, reqwest::Body), crate::Error> {
    let boundary = format!("wecom-kf-{}", crate::client::fresh_retry_id());
    let mut pieces = std::collections::VecDeque::new();
    let mut len = 0u64;
    for (name, upload) in files {
        let failed = |source| crate::Error::Upload {
            field: name,
            source,
        };
        let headers = upload.part_headers(name, &boundary).map_err(failed)?;
        let content = upload.content().await.map_err(failed)?;
        len = len
            .saturating_add(headers.len() as u64)
            .saturating_add(upload.len)
            .saturating_add(2);
        pieces.push_back(Content::Bytes(headers.into()));
        pieces.push_back(content);
        pieces.push_back(Content::Bytes(Bytes::from_static(b"\r\n")));
    }
    let end = format!("--{boundary}--\r\n");
    len = len.saturating_add(end.len() as u64);
    pieces.push_back(Content::Bytes(end.into()));
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let body = reqwest::Body::wrap(Form { pieces, left: len });
    Ok((content_type, len, body))
}

/// A piece of a form: bytes at hand, or a file's reader.
enum Content {
    Bytes(Bytes),
    Reader(Streamed),
}

/// A reader that owes `left` more bytes, read a chunk at a time.
struct Streamed {
    /// Behind a mutex only to be `Sync`, as a request body must; never locked (each poll
    /// has it to itself).
    reader: Mutex<Box<dyn AsyncRead + Send + Unpin>>,
    left: u64,
    /// The chunk being read; kept across a `Pending`, so a slow reader isn't given a
    /// fresh buffer on every poll.
    buffer: BytesMut,
}

/// A form's body: its pieces in order, `left` bytes in all.
struct Form {
    pieces: std::collections::VecDeque<Content>,
    left: u64,
}

/// Bytes read from a reader at a time.
const READ_CHUNK: usize = 64 * 1024;

impl http_body::Body for Form {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        let form = self.get_mut();
        loop {
            let Some(piece) = form.pieces.front_mut() else {
                return Poll::Ready(None);
            };
            let bytes = match piece {
                Content::Bytes(bytes) => {
                    let bytes = std::mem::take(bytes);
                    form.pieces.pop_front();
                    bytes
                }
                Content::Reader(streamed) => match streamed.poll_chunk(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(error)) => return Poll::Ready(Some(Err(error))),
                    Poll::Ready(Ok(Some(bytes))) => bytes,
                    Poll::Ready(Ok(None)) => {
                        form.pieces.pop_front();
                        continue;
                    }
                },
            };
            if bytes.is_empty() {
                continue;
            }
            form.left = form.left.saturating_sub(bytes.len() as u64);
            return Poll::Ready(Some(Ok(http_body::Frame::data(bytes))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

impl Streamed {
    fn new(reader: Box<dyn AsyncRead + Send + Unpin>, len: u64) -> Self {
        Streamed {
            reader: Mutex::new(reader),
            left: len,
            buffer: BytesMut::new(),
        }
    }

    /// The next bytes; `None` once the reader has given them all and ended. A reader that
    /// ends early, or goes on past its length, is an error: the body would not be the
    /// length it said.
    fn poll_chunk(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Result<Option<Bytes>, std::io::Error>> {
        // Once all is read, one byte more is asked for: an end, or a reader that goes on.
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .clamp(1, READ_CHUNK);
        self.buffer.resize(want, 0);
        let reader = self.reader.get_mut().unwrap_or_else(|e| e.into_inner());
        let mut read = tokio::io::ReadBuf::new(&mut self.buffer);
        match std::pin::Pin::new(reader).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                if n == 0 {
                    return Poll::Ready(if self.left == 0 {
                        Ok(None)
                    } else {
                        Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!(
                                "the reader ended {} bytes short of the length it was given",
                                self.left
                            ),
                        ))
                    });
                }
                if self.left == 0 {
                    return Poll::Ready(Err(std::io::Error::other(
                        "the reader went on past the length it was given",
                    )));
                }
                // `n <= want <= left`: a `ReadBuf` fills at most its length, `want`.
                self.left -= n as u64;
                self.buffer.truncate(n);
                Poll::Ready(Ok(Some(self.buffer.split().freeze())))
            }
        }
    }
}

impl fmt::Debug for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::Bytes(_) => "bytes",
            Source::Path(_) => "path",
            Source::Reader(_) => "reader",
        };
        f.debug_struct("Upload")
            .field("file_name", &self.file_name)
            .field("len", &self.len)
            .field("source", &source)
            .finish_non_exhaustive()
    }
}

/// Equal when they would send the same file: same name, type and length, and the same
/// bytes, path or (shared) reader.
impl PartialEq for Upload {
    fn eq(&self, other: &Self) -> bool {
        let same_source = match (&self.source, &other.source) {
            (Source::Bytes(a), Source::Bytes(b)) => a == b,
            (Source::Path(a), Source::Path(b)) => a == b,
            (Source::Reader(a), Source::Reader(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same_source
            && self.file_name == other.file_name
            && self.content_type == other.content_type
            && self.len == other.len
    }
}
