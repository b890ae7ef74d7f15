//! What a file is, from its first bytes: WeCom's `Content-Type` is often generic
//! (`application/octet-stream`), voice comes as AMR or SILK depending on the request, and an
//! LLM pipeline must know an image from a PDF before it hands the bytes on.

/// A file format recognised by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MediaFormat {
    /// JPEG (`FF D8 FF`).
    Jpeg,
    /// PNG (`89 50 4E 47 0D 0A 1A 0A`).
    Png,
    /// GIF (`GIF87a`, `GIF89a`).
    Gif,
    /// WebP (`RIFF…WEBP`).
    Webp,
    /// BMP (`BM`).
    Bmp,
    /// AMR narrowband (`#!AMR\n`): customers' voice by default.
    Amr,
    /// AMR wideband (`#!AMR-WB\n`).
    AmrWb,
    /// SILK v3 (`#!SILK_V3`).
    Silk,
    /// WeChat's SILK variant: one `0x02` byte, then `#!SILK_V3`. Voice with `voice_format`
    /// SILK; decoders for plain SILK need the first byte dropped.
    WeChatSilk,
    /// MP3 (an `ID3` tag or an MPEG audio frame sync).
    Mp3,
    /// WAV (`RIFF…WAVE`).
    Wav,
    /// Ogg (`OggS`).
    Ogg,
    /// MP4 / QuickTime (`ftyp` at offset 4).
    Mp4,
    /// PDF (`%PDF-`).
    Pdf,
    /// ZIP, and the formats built on it (docx, xlsx, pptx).
    Zip,
}

impl MediaFormat {
    /// Recognises `bytes` (the first few dozen are enough); `None` for anything else.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        let starts = |magic: &[u8]| bytes.starts_with(magic);
        let at = |offset: usize, magic: &[u8]| {
            bytes
                .get(offset..offset.saturating_add(magic.len()))
                .is_some_and(|window| window == magic)
        };
        Some(if starts(&[0xFF, 0xD8, 0xFF]) {
            MediaFormat::Jpeg
        } else if starts(b"\x89PNG\r\n\x1a\n") {
            MediaFormat::Png
        } else if starts(b"GIF87a") || starts(b"GIF89a") {
            MediaFormat::Gif
        } else if starts(b"RIFF") && at(8, b"WEBP") {
            MediaFormat::Webp
        } else if starts(b"RIFF") && at(8, b"WAVE") {
            MediaFormat::Wav
        } else if starts(b"#!AMR-WB\n") {
            MediaFormat::AmrWb
        } else if starts(b"#!AMR\n") {
            MediaFormat::Amr
        } else if starts(b"#!SILK_V3") {
            MediaFormat::Silk
        } else if starts(b"\x02#!SILK_V3") {
            MediaFormat::WeChatSilk
        } else if starts(b"%PDF-") {
            MediaFormat::Pdf
        } else if starts(b"PK\x03\x04") {
            MediaFormat::Zip
        } else if starts(b"OggS") {
            MediaFormat::Ogg
        } else if at(4, b"ftyp") {
            MediaFormat::Mp4
        } else if starts(b"ID3") || is_mpeg_audio_frame(bytes) {
            MediaFormat::Mp3
        } else if starts(b"BM") && is_bmp_header(bytes) {
            MediaFormat::Bmp
        } else {
            return None;
        })
    }

    /// The MIME type of the format.
    pub fn mime(self) -> &'static str {
        match self {
            MediaFormat::Jpeg => "image/jpeg",
            MediaFormat::Png => "image/png",
            MediaFormat::Gif => "image/gif",
            MediaFormat::Webp => "image/webp",
            MediaFormat::Bmp => "image/bmp",
            MediaFormat::Amr => "audio/amr",
            MediaFormat::AmrWb => "audio/amr-wb",
            MediaFormat::Silk | MediaFormat::WeChatSilk => "audio/silk",
            MediaFormat::Mp3 => "audio/mpeg",
            MediaFormat::Wav => "audio/wav",
            MediaFormat::Ogg => "audio/ogg",
            MediaFormat::Mp4 => "video/mp4",
            MediaFormat::Pdf => "application/pdf",
            MediaFormat::Zip => "application/zip",
        }
    }

    /// The usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            MediaFormat::Jpeg => "jpg",
            MediaFormat::Png => "png",
            MediaFormat::Gif => "gif",
            MediaFormat::Webp => "webp",
            MediaFormat::Bmp => "bmp",
            MediaFormat::Amr => "amr",
            MediaFormat::AmrWb => "awb",
            MediaFormat::Silk | MediaFormat::WeChatSilk => "silk",
            MediaFormat::Mp3 => "mp3",
            MediaFormat::Wav => "wav",
            MediaFormat::Ogg => "ogg",
            MediaFormat::Mp4 => "mp4",
            MediaFormat::Pdf => "pdf",
            MediaFormat::Zip => "zip",
        }
    }

    /// Whether it is a picture.
    pub fn is_image(self) -> bool {
        matches!(
            self,
            MediaFormat::Jpeg
                | MediaFormat::Png
                | MediaFormat::Gif
                | MediaFormat::Webp
                | MediaFormat::Bmp
        )
    }

    /// Whether it is sound.
    pub fn is_audio(self) -> bool {
        matches!(
            self,
            MediaFormat::Amr
                | MediaFormat::AmrWb
                | MediaFormat::Silk
                | MediaFormat::WeChatSilk
                | MediaFormat::Mp3
                | MediaFormat::Wav
                | MediaFormat::Ogg
        )
    }
}

/// An MPEG-1/2 audio frame header: 11 sync bits, a layer that isn't "reserved", a bitrate
/// index that isn't "bad", and a sample rate that isn't "reserved".
fn is_mpeg_audio_frame(bytes: &[u8]) -> bool {
    let [first, second, third, ..] = bytes else {
        return false;
    };
    let sync = *first == 0xFF && second & 0xE0 == 0xE0;
    let layer = (second >> 1) & 0b11;
    let bitrate = third >> 4;
    let rate = (third >> 2) & 0b11;
    sync && layer != 0 && bitrate != 0b1111 && rate != 0b11
}

/// `BM` alone is common text; a real bitmap names one of the known DIB header sizes at
/// offset 14.
fn is_bmp_header(bytes: &[u8]) -> bool {
    let size = bytes.get(14..18).and_then(|s| <[u8; 4]>::try_from(s).ok());
    size.is_some_and(|s| matches!(u32::from_le_bytes(s), 12 | 40 | 52 | 56 | 64 | 108 | 124))
}

/// What a downloaded file is: the format its bytes show, beside what the server declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    /// The format the first bytes show, when known.
    pub format: Option<MediaFormat>,
    /// The server's `Content-Type`.
    pub declared_mime: Option<String>,
    /// The file name from `Content-Disposition`.
    pub filename: Option<String>,
    /// The size in bytes, when known.
    pub len: Option<u64>,
}

impl MediaInfo {
    /// The best MIME type: the sniffed format's, else the declared one, else
    /// `application/octet-stream`.
    pub fn mime(&self) -> &str {
        match (self.format, &self.declared_mime) {
            (Some(format), _) => format.mime(),
            (None, Some(declared)) => declared,
            (None, None) => "application/octet-stream",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_magic_bytes_are_recognised() {
        let cases: &[(&[u8], MediaFormat)] = &[
            (&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0], MediaFormat::Jpeg),
            (&[0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x18, b'E', b'x', b'i', b'f'], MediaFormat::Jpeg),
            (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", MediaFormat::Png),
            (b"GIF89a\x01\x00\x01\x00", MediaFormat::Gif),
            (b"GIF87a\x01\x00\x01\x00", MediaFormat::Gif),
            (b"RIFF\x24\x00\x00\x00WEBPVP8 ", MediaFormat::Webp),
            (b"RIFF\x24\x00\x00\x00WAVEfmt ", MediaFormat::Wav),
            (b"#!AMR\n\x3c\x48\xf5", MediaFormat::Amr),
            (b"#!AMR-WB\n\x04", MediaFormat::AmrWb),
            (b"#!SILK_V3\x0c\x00", MediaFormat::Silk),
            (b"\x02#!SILK_V3\x0c\x00", MediaFormat::WeChatSilk),
            (b"ID3\x04\x00\x00\x00\x00\x00\x23", MediaFormat::Mp3),
            (&[0xFF, 0xFB, 0x90, 0x64, 0x00], MediaFormat::Mp3),
            (b"OggS\x00\x02\x00\x00", MediaFormat::Ogg),
            (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00", MediaFormat::Mp4),
            (b"\x00\x00\x00\x14ftypqt  ", MediaFormat::Mp4),
            (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3", MediaFormat::Pdf),
            (b"PK\x03\x04\x14\x00\x06\x00", MediaFormat::Zip),
            (b"BM\x36\x00\x0c\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00\x40\x00\x00\x00\xf0\x00", MediaFormat::Bmp),
        ];
        for (bytes, format) in cases {
            assert_eq!(MediaFormat::sniff(bytes), Some(*format), "{bytes:?}");
        }
    }

    #[test]
    fn text_short_input_and_near_misses_are_not_guessed() {
        for bytes in [
            &b""[..],
            b"\xFF",
            b"\xFF\xD8",
            b"{\"errcode\":40007}",
            b"hello, world",
            b"RIFF\x24\x00\x00\x00AVI ",
            b"#!AMR",
            b"BM",
            b"BMW is a car brand",
            &[0xFF, 0xFF, 0xFF, 0xFF],
        ] {
            assert_eq!(MediaFormat::sniff(bytes), None, "{bytes:?}");
        }
    }

    #[test]
    fn the_sniffed_type_wins_over_a_generic_declared_one() {
        let info = MediaInfo {
            format: MediaFormat::sniff(b"#!AMR\n"),
            declared_mime: Some("application/octet-stream".into()),
            filename: Some("voice.amr".into()),
            len: Some(6),
        };
        assert_eq!(info.mime(), "audio/amr");
        let unknown = MediaInfo {
            format: None,
            ..info
        };
        assert_eq!(unknown.mime(), "application/octet-stream");
        assert!(MediaFormat::Png.is_image() && MediaFormat::WeChatSilk.is_audio());
        assert_eq!(MediaFormat::WeChatSilk.extension(), "silk");
    }
}
