//! Files for multipart endpoints (`upload_image`, …): from bytes, a path, or a reader.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
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

    /// The multipart part for one attempt.
    pub(crate) async fn part(&self) -> Result<reqwest::multipart::Part, std::io::Error> {
        let body = match &self.source {
            Source::Bytes(bytes) => reqwest::Body::from(bytes.clone()),
            Source::Path(path) => {
                let bytes = tokio::fs::read(path).await?;
                if bytes.len() as u64 != self.len {
                    return Err(std::io::Error::other(format!(
                        "the file changed size since it was checked ({} bytes, now {})",
                        self.len,
                        bytes.len()
                    )));
                }
                reqwest::Body::from(bytes)
            }
            Source::Reader(reader) => {
                let reader = crate::mutex::lock(reader)
                    .take()
                    .ok_or_else(|| {
                        std::io::Error::other(
                            "a reader can be sent once, and this one already was; upload from bytes or a path to allow retries",
                        )
                    })?;
                reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(reader))
            }
        };
        let part = reqwest::multipart::Part::stream_with_length(body, self.len)
            .file_name(self.file_name.clone());
        match &self.content_type {
            Some(mime) => part
                .mime_str(mime)
                .map_err(|e| std::io::Error::other(format!("invalid content type `{mime}`: {e}"))),
            None => Ok(part),
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
