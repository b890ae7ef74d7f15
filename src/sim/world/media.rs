//! Temporary media (kf-api.md §9.8): `media/upload` checks the type and the size the way
//! WeCom does and hands out a `media_id` valid for 3 days.

use serde_json::json;

use super::{Answer, World, ok, refused};
use crate::sim::body::Refusal;

/// A media type's size limit in bytes; every file must be larger than 5 bytes.
fn max_bytes(kind: &str) -> Option<u64> {
    match kind {
        "image" | "video" => Some(10 << 20),
        "voice" => Some(2 << 20),
        "file" => Some(20 << 20),
        _ => None,
    }
}

impl World {
    /// Stores an uploaded file of `len` bytes as media of type `kind`.
    pub fn upload_media(&mut self, kind: Option<&str>, file: Option<(&str, u64)>) -> Answer {
        let Some(kind) = kind else {
            return refused(Refusal::new(40005, "invalid file type: `type` is missing"));
        };
        let Some(max) = max_bytes(kind) else {
            return refused(Refusal::new(40005, format!("invalid file type `{kind}`")));
        };
        let Some((file_name, len)) = file else {
            return refused(Refusal::new(41006, "media data missing: no `media` part"));
        };
        if len == 0 {
            return refused(Refusal::new(44001, "empty media data"));
        }
        if len <= 5 {
            return refused(Refusal::new(40006, "invalid file size: at least 6 bytes"));
        }
        if len > max {
            let code = match kind {
                "image" => 40009,
                "video" => 40011,
                _ => 45001,
            };
            return refused(Refusal::new(
                code,
                format!("{kind} of {len} bytes is over {max}"),
            ));
        }
        let media_id = self.next_id("SIMMEDIA");
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
}

/// A file the simulator accepted through `media/upload`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UploadedMedia {
    pub media_id: String,
    /// `image`, `voice`, `video` or `file`.
    pub kind: String,
    pub file_name: String,
    pub len: u64,
}
