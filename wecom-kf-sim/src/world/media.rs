//! Temporary media (docs 94670 and 90254): what `media/upload` accepts, what
//! customers send, and what `media/get` serves. Every file keeps its bytes (shared, never
//! copied: a range of a 45 MB file is a slice of it) for 3 days, like a `media_id`.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use super::{Answer, RETENTION, World, ok, refused};
use crate::body::Refusal;
use crate::samples;

/// The four kinds of temporary media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// JPG or PNG (`image`).
    Image,
    /// AMR voice (`voice`).
    Voice,
    /// MP4 video (`video`).
    Video,
    /// Any file (`file`); its name is what the customer sees.
    File,
}

impl MediaKind {
    /// The `type` of `media/upload` and the `msgtype` of a message carrying it.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Voice => "voice",
            MediaKind::Video => "video",
            MediaKind::File => "file",
        }
    }

    /// The kind named `name` (`"image"`, `"voice"`, `"video"`, `"file"`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "image" => Some(MediaKind::Image),
            "voice" => Some(MediaKind::Voice),
            "video" => Some(MediaKind::Video),
            "file" => Some(MediaKind::File),
            _ => None,
        }
    }

    /// The most `media/upload` takes (§9.8, the larger image limit of the newer copy).
    fn upload_limit(self) -> u64 {
        match self {
            MediaKind::Image | MediaKind::Video => 10 << 20,
            MediaKind::Voice => 2 << 20,
            MediaKind::File => 20 << 20,
        }
    }

    /// The most a customer's message delivers as media; a larger one arrives as a text
    /// hint (§2.2).
    fn receive_limit(self) -> usize {
        match self {
            MediaKind::Image | MediaKind::Voice => 2 << 20,
            MediaKind::Video => 10 << 20,
            MediaKind::File => 20 << 20,
        }
    }

    /// What `media/get` says when neither the name nor the bytes tell.
    fn default_type(self) -> (&'static str, &'static str) {
        match self {
            MediaKind::Image => ("image/jpeg", "jpg"),
            MediaKind::Voice => ("audio/amr", "amr"),
            MediaKind::Video => ("video/mp4", "mp4"),
            MediaKind::File => ("application/octet-stream", "bin"),
        }
    }

    /// The Chinese name in the sim's hint for an oversized file.
    fn label(self) -> &'static str {
        match self {
            MediaKind::Image => "图片",
            MediaKind::Voice => "语音",
            MediaKind::Video => "视频",
            MediaKind::File => "文件",
        }
    }
}

/// The largest single file the simulator keeps (from the control API): far over WeCom's
/// 20 MB, for testing ranged downloads, and still a bounded allocation.
pub const MAX_MEDIA_BYTES: usize = 256 << 20;
/// The most media bytes one simulator holds at once; expired files don't count.
const MAX_STORED_BYTES: usize = 1 << 30;

/// A file the simulator holds under a `media_id`.
pub struct StoredMedia {
    file_name: String,
    content_type: &'static str,
    bytes: Bytes,
    created: Duration,
}

/// What `media/get` serves for a `media_id`.
pub struct MediaFile {
    pub file_name: String,
    pub content_type: &'static str,
    pub bytes: Bytes,
}

/// The MIME type of a file name's extension, for the common ones.
fn type_of_name(file_name: &str) -> Option<&'static str> {
    let (_, extension) = file_name.rsplit_once('.')?;
    Some(match extension.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "amr" => "audio/amr",
        "silk" => "audio/silk",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "zip" => "application/zip",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => return None,
    })
}

/// Media that WeCom holds for the media store: its name, the bytes, their type.
pub struct NewMedia<'a> {
    pub kind: MediaKind,
    pub file_name: Option<&'a str>,
    pub bytes: Bytes,
}

impl World {
    /// Keeps `media` under a new `media_id`, dropping what expired first. Refused (40058)
    /// when it is empty, over [`MAX_MEDIA_BYTES`], or would take the store over its bound.
    pub fn store_media(&mut self, media: NewMedia<'_>) -> Result<String, Refusal> {
        if media.bytes.is_empty() {
            return Err(Refusal::new(44001, "empty media data"));
        }
        if media.bytes.len() > MAX_MEDIA_BYTES {
            return Err(Refusal::new(
                40058,
                format!(
                    "a file of {} bytes is over the simulator's {MAX_MEDIA_BYTES}",
                    media.bytes.len()
                ),
            ));
        }
        self.drop_expired_media();
        let held: usize = self.media_store.values().map(|m| m.bytes.len()).sum();
        if held.saturating_add(media.bytes.len()) > MAX_STORED_BYTES {
            return Err(Refusal::new(
                40058,
                format!("the simulator holds at most {MAX_STORED_BYTES} bytes of media"),
            ));
        }
        let media_id = self.next_id("SIMMEDIA");
        let sniffed = samples::sniff(&media.bytes);
        let (default_type, default_extension) = sniffed.unwrap_or(media.kind.default_type());
        let file_name = match media.file_name.filter(|name| !name.is_empty()) {
            Some(name) => name.to_owned(),
            None => format!("{media_id}.{default_extension}"),
        };
        let content_type = type_of_name(&file_name).unwrap_or(default_type);
        let stored = StoredMedia {
            file_name,
            content_type,
            bytes: media.bytes,
            created: self.now(),
        };
        self.media_store.insert(media_id.clone(), stored);
        Ok(media_id)
    }

    fn drop_expired_media(&mut self) {
        let now = self.now();
        self.media_store
            .retain(|_, m| now.saturating_sub(m.created) < RETENTION);
        let store = &self.media_store;
        self.silk_of
            .retain(|amr, silk| store.contains_key(amr) && store.contains_key(silk));
    }

    /// `media/get`'s lookup: the file, or the JSON error WeCom answers with (41006 when
    /// no `media_id` is given, 40007 when it is unknown or older than 3 days).
    pub fn media_file(&self, media_id: Option<&str>) -> Result<MediaFile, Answer> {
        let Some(media_id) = media_id.filter(|id| !id.is_empty()) else {
            return Err(refused(Refusal::new(41006, "media_id missing")));
        };
        let now = self.now();
        match self.media_store.get(media_id) {
            Some(m) if now.saturating_sub(m.created) < RETENTION => Ok(MediaFile {
                file_name: m.file_name.clone(),
                content_type: m.content_type,
                bytes: m.bytes.clone(),
            }),
            _ => Err(refused(Refusal::new(40007, "invalid media_id"))),
        }
    }

    /// The bytes `media/get` serves for `media_id`, while it does.
    pub fn media_bytes(&self, media_id: &str) -> Option<Bytes> {
        self.media_file(Some(media_id)).ok().map(|file| file.bytes)
    }

    /// Stores an uploaded file as media of type `kind`, with the checks `media/upload`
    /// makes.
    pub fn upload_media(&mut self, kind: Option<&str>, file: Option<(&str, Bytes)>) -> Answer {
        let Some(kind) = kind else {
            return refused(Refusal::new(40005, "invalid file type: `type` is missing"));
        };
        let Some(media_kind) = MediaKind::parse(kind) else {
            return refused(Refusal::new(40005, format!("invalid file type `{kind}`")));
        };
        let Some((file_name, bytes)) = file else {
            return refused(Refusal::new(41006, "media data missing: no `media` part"));
        };
        let len = bytes.len() as u64;
        if len == 0 {
            return refused(Refusal::new(44001, "empty media data"));
        }
        if len <= 5 {
            return refused(Refusal::new(40006, "invalid file size: at least 6 bytes"));
        }
        let max = media_kind.upload_limit();
        if len > max {
            let code = match media_kind {
                MediaKind::Image => 40009,
                MediaKind::Video => 40011,
                _ => 45001,
            };
            return refused(Refusal::new(
                code,
                format!("{kind} of {len} bytes is over {max}"),
            ));
        }
        let media = NewMedia {
            kind: media_kind,
            file_name: Some(file_name),
            bytes,
        };
        let media_id = match self.store_media(media) {
            Ok(media_id) => media_id,
            Err(refusal) => return refused(refusal),
        };
        self.media.push(UploadedMedia {
            media_id: media_id.clone(),
            kind: kind.to_owned(),
            file_name: file_name.to_owned(),
            len,
        });
        let created_at = self.now().as_secs().to_string();
        let mut answer = ok(json!({"type": kind, "media_id": media_id, "created_at": created_at}));
        // WeCom answers uploads with an empty `errmsg`.
        answer["errmsg"] = json!("");
        answer
    }

    /// Everything uploaded so far, oldest first.
    pub fn media(&self) -> Vec<UploadedMedia> {
        self.media.clone()
    }

    /// A customer sends a file: it is kept and its message logged as doc 94670 shows
    /// (`{"msgtype": "voice", "voice": {"media_id": …}}`), opening the 48-hour window like
    /// a text. Voice must be AMR; it is kept in SILK too, under a second id that
    /// `sync_msg` hands out instead when asked for `voice_format: 1`. A file over what a
    /// message delivers (image and voice 2 MB, video 10 MB, file 20 MB) arrives as a
    /// text hint instead, and nothing is kept.
    pub fn customer_sends_media(
        &mut self,
        open_kfid: &str,
        external_userid: &str,
        media: NewMedia<'_>,
    ) -> Result<CustomerMedia, Refusal> {
        self.account(open_kfid)?;
        let kind = media.kind;
        if kind == MediaKind::Voice && !media.bytes.starts_with(samples::AMR_MAGIC) {
            return Err(Refusal::new(
                40058,
                "customers' voice is AMR: the bytes must start with #!AMR\\n",
            ));
        }
        let limit = kind.receive_limit();
        if media.bytes.len() > limit {
            let hint = format!(
                "[{}超过{}MB，无法通过接口获取，请在手机上查看]",
                kind.label(),
                limit >> 20
            );
            let payload = json!({"content": hint});
            let (msgid, callback_token) =
                self.customer_item(open_kfid, external_userid, "text", payload)?;
            return Ok(CustomerMedia {
                msgid,
                callback_token,
                media_id: None,
                silk_media_id: None,
            });
        }
        let silk = (kind == MediaKind::Voice).then(|| samples::silk_from_amr(&media.bytes));
        let silk_name = media.file_name.map(|name| match name.rsplit_once('.') {
            Some((stem, _)) => format!("{stem}.silk"),
            None => format!("{name}.silk"),
        });
        let media_id = self.store_media(media)?;
        let silk_media_id = match silk {
            Some(bytes) => {
                let silk = NewMedia {
                    kind,
                    file_name: silk_name.as_deref(),
                    bytes,
                };
                let silk_id = self.store_media(silk)?;
                self.silk_of.insert(media_id.clone(), silk_id.clone());
                Some(silk_id)
            }
            None => None,
        };
        let payload = json!({"media_id": media_id});
        let (msgid, callback_token) =
            self.customer_item(open_kfid, external_userid, kind.as_str(), payload)?;
        Ok(CustomerMedia {
            msgid,
            callback_token,
            media_id: Some(media_id),
            silk_media_id,
        })
    }

    /// The page's voice items with their SILK ids, for `voice_format: 1`.
    pub(super) fn as_silk(&self, items: &mut [Value]) {
        for item in items {
            if item.get("msgtype").and_then(Value::as_str) != Some("voice") {
                continue;
            }
            let Some(media_id) = item.pointer_mut("/voice/media_id") else {
                continue;
            };
            if let Some(silk) = media_id.as_str().and_then(|id| self.silk_of.get(id)) {
                *media_id = json!(silk);
            }
        }
    }
}

/// A customer's media message, as the simulator logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerMedia {
    /// The message's `msgid` in `sync_msg`.
    pub msgid: String,
    /// The `Token` of the callback this message triggers.
    pub callback_token: String,
    /// Where `media/get` serves the file; `None` when it was over the size a message
    /// delivers and a text hint was logged instead.
    pub media_id: Option<String>,
    /// For voice: the SILK encoding's id, which `sync_msg` gives with `voice_format: 1`.
    pub silk_media_id: Option<String>,
}

/// A file the simulator accepted through `media/upload`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UploadedMedia {
    /// The id `media/upload` answered with.
    pub media_id: String,
    /// `image`, `voice`, `video` or `file`.
    pub kind: String,
    /// The file name of the multipart part.
    pub file_name: String,
    /// The file's size in bytes.
    pub len: u64,
}
