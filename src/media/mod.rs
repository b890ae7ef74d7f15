//! Media: downloading what customers send (`download_media`), telling a file's format from
//! its bytes, and uploading and sending in one call (`send_media`).

mod disposition;
mod download;
mod send;
mod sniff;

pub use download::{
    DEFAULT_MAX_IN_MEMORY, DownloadOptions, Downloaded, MAX_CHUNK_BYTES, Media, MediaChunks,
};
pub use send::{MediaSent, SendMedia};
pub use sniff::{MediaFormat, MediaInfo};

use crate::{Received, ReceivedMsg};

/// The `type` of a temporary media file: what it was uploaded as, and what a message of it
/// is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaType {
    /// JPG or PNG.
    Image,
    /// AMR, at most 60 s.
    Voice,
    /// MP4.
    Video,
    /// Anything else; its name is what the customer sees.
    File,
}

impl MediaType {
    /// The wire name: `image`, `voice`, `video` or `file`.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Image => "image",
            MediaType::Voice => "voice",
            MediaType::Video => "video",
            MediaType::File => "file",
        }
    }
}

impl std::fmt::Display for MediaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Received {
    /// The `media_id` of an image, voice, video or file message, for `download_media`;
    /// `None` for other messages and events.
    pub fn media_id(&self) -> Option<&str> {
        self.media().map(|(id, _)| id)
    }

    /// The media type of an image, voice, video or file message.
    pub fn media_type(&self) -> Option<MediaType> {
        self.media().map(|(_, kind)| kind)
    }

    fn media(&self) -> Option<(&str, MediaType)> {
        match self {
            Received::Image(image) => Some((&image.media_id, MediaType::Image)),
            Received::Voice(voice) => Some((&voice.media_id, MediaType::Voice)),
            Received::Video(video) => Some((&video.media_id, MediaType::Video)),
            Received::File(file) => Some((&file.media_id, MediaType::File)),
            _ => None,
        }
    }
}

impl ReceivedMsg {
    /// The `media_id` of an image, voice, video or file message, so a handler can download
    /// whatever arrived:
    ///
    /// ```no_run
    /// # async fn run(client: wecom_kf::Client, msg: wecom_kf::types::ReceivedMsg) -> Result<(), wecom_kf::Error> {
    /// if let Some(media_id) = msg.media_id() {
    ///     let media = client.download_media(media_id).await?;
    ///     println!("{} bytes of {}", media.bytes.len(), media.info.mime());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn media_id(&self) -> Option<&str> {
        self.content.media_id()
    }

    /// The media type of an image, voice, video or file message.
    pub fn media_type(&self) -> Option<MediaType> {
        self.content.media_type()
    }
}
