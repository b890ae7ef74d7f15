//! Upload and send in one call: `client.upload_and_send_image(touser, open_kfid, upload)`.

use std::future::IntoFuture;

use super::MediaType;
use crate::rt::endpoint::BoxFuture;
use crate::validate::Validate as _;
use crate::{
    Client, Error, File, Image, MediaUploadResponse, OutgoingMsg, SendMsgRequest, SendMsgResponse,
    Upload, Video, Voice,
};

/// What [`SendMedia`] did: the upload (its `media_id` can be sent again for 3 days) and the
/// message WeCom accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaSent {
    /// The upload: its `media_id` and when it was made.
    pub upload: MediaUploadResponse,
    /// The message: its `msgid`, which `msg_send_fail` events name if delivery fails.
    pub sent: SendMsgResponse,
}

/// An upload and the message that sends it, being built: set a `msgid` if you like, then
/// `.await` it. Returned by [`Client::send_media`] and its shortcuts.
///
/// Everything is checked before the upload: the file against its media type's size limit
/// ([`Error::UploadTooLarge`]), the message's fields against theirs, so a bad `msgid` never
/// costs an upload. If the upload succeeds and the send fails, the error is the send's;
/// the file is uploaded again by the next call (or upload it once with `upload_image`, …,
/// and send its `media_id` as often as needed).
#[must_use = "nothing is uploaded until it is awaited or sent"]
pub struct SendMedia<'a> {
    client: &'a Client,
    touser: String,
    open_kfid: String,
    kind: MediaType,
    upload: Upload,
    msgid: Option<String>,
}

impl<'a> SendMedia<'a> {
    /// Your id for the message (see `send_msg`'s `msgid`).
    pub fn msgid(mut self, msgid: impl Into<String>) -> Self {
        self.msgid = Some(msgid.into());
        self
    }

    /// Uploads the file, then sends it.
    pub async fn send(self) -> Result<MediaSent, Error> {
        let message = |media_id: String| -> OutgoingMsg {
            match self.kind {
                MediaType::Image => Image::new(media_id).into(),
                MediaType::Voice => Voice::new(media_id).into(),
                MediaType::Video => Video::new(media_id).into(),
                MediaType::File => File::new(media_id).into(),
            }
        };
        let request = |media_id: String| {
            let request = SendMsgRequest::new(&*self.touser, &*self.open_kfid, message(media_id));
            match &self.msgid {
                Some(msgid) => request.msgid(&**msgid),
                None => request,
            }
        };
        // The message with a stand-in id: its other fields are checked before the upload.
        request("media_id".to_owned()).validate()?;
        let upload = self.upload.clone();
        let uploaded = match self.kind {
            MediaType::Image => self.client.upload_image(upload).await?,
            MediaType::Voice => self.client.upload_voice(upload).await?,
            MediaType::Video => self.client.upload_video(upload).await?,
            MediaType::File => self.client.upload_file(upload).await?,
        };
        let sent = self
            .client
            .execute(&request(uploaded.media_id.clone()))
            .await?;
        Ok(MediaSent {
            upload: uploaded,
            sent,
        })
    }
}

impl<'a> IntoFuture for SendMedia<'a> {
    type Output = Result<MediaSent, Error>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

impl Client {
    /// Uploads `upload` as `kind` and sends it to the customer: `media/upload`, then
    /// `send_msg` with its `media_id`. The size limit of `kind` is checked before anything is
    /// sent ([`Error::UploadTooLarge`]: voice 2 MB, images and videos 10 MB, files 20 MB).
    ///
    /// ```no_run
    /// # async fn run(client: wecom_kf::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use wecom_kf::Upload;
    ///
    /// let chart = Upload::from_path("chart.png").await?;
    /// let done = client.upload_and_send_image("wmUSER", "wkKFID", chart).await?;
    /// println!("sent as {}, reusable media_id {}", done.sent.msgid, done.upload.media_id);
    /// # Ok(()) }
    /// ```
    pub fn send_media(
        &self,
        touser: impl Into<String>,
        open_kfid: impl Into<String>,
        kind: MediaType,
        upload: impl Into<Upload>,
    ) -> SendMedia<'_> {
        SendMedia {
            client: self,
            touser: touser.into(),
            open_kfid: open_kfid.into(),
            kind,
            upload: upload.into(),
            msgid: None,
        }
    }

    /// [`send_media`](Self::send_media) of a JPG or PNG image (at most 10 MB).
    pub fn upload_and_send_image(
        &self,
        touser: impl Into<String>,
        open_kfid: impl Into<String>,
        upload: impl Into<Upload>,
    ) -> SendMedia<'_> {
        self.send_media(touser, open_kfid, MediaType::Image, upload)
    }

    /// [`send_media`](Self::send_media) of an AMR voice clip (at most 2 MB and 60 s).
    pub fn upload_and_send_voice(
        &self,
        touser: impl Into<String>,
        open_kfid: impl Into<String>,
        upload: impl Into<Upload>,
    ) -> SendMedia<'_> {
        self.send_media(touser, open_kfid, MediaType::Voice, upload)
    }

    /// [`send_media`](Self::send_media) of an MP4 video (at most 10 MB).
    pub fn upload_and_send_video(
        &self,
        touser: impl Into<String>,
        open_kfid: impl Into<String>,
        upload: impl Into<Upload>,
    ) -> SendMedia<'_> {
        self.send_media(touser, open_kfid, MediaType::Video, upload)
    }

    /// [`send_media`](Self::send_media) of any file (at most 20 MB); its name is what the
    /// customer sees.
    pub fn upload_and_send_file(
        &self,
        touser: impl Into<String>,
        open_kfid: impl Into<String>,
        upload: impl Into<Upload>,
    ) -> SendMedia<'_> {
        self.send_media(touser, open_kfid, MediaType::File, upload)
    }
}
