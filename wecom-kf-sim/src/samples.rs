//! Media files the simulator makes itself, so tests need no binary fixtures: a real 1×1
//! PNG, AMR voice, an MP4 header, a text file, and files of any size that start with the
//! right magic bytes. Voice also comes as a SILK stand-in, as WeCom serves it for
//! `sync_msg` with `voice_format: 1`.

use bytes::{BufMut, Bytes, BytesMut};

use super::MediaKind;

/// The first bytes of an AMR-NB file.
pub const AMR_MAGIC: &[u8] = b"#!AMR\n";
/// The first bytes of a SILK file as WeChat writes it: `0x02` then `#!SILK_V3`.
pub const WECHAT_SILK_MAGIC: &[u8] = b"\x02#!SILK_V3";
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
const TEXT_HEADER: &[u8] = b"wecom-kf simulator file\n";
/// An AMR-NB 12.2 kbit/s frame: its header byte and 31 bytes of speech, 20 ms.
const AMR_FRAME: usize = 32;
const AMR_MODE_7: u8 = 0x3c;

/// A sample file of each kind: a name and bytes with the kind's magic.
pub fn sample(kind: MediaKind) -> (&'static str, Bytes) {
    match kind {
        MediaKind::Image => ("sample.png", png_1x1([0x07, 0xc1, 0x60])),
        MediaKind::Voice => (
            "sample.amr",
            generated(MediaKind::Voice, 6 + 50 * AMR_FRAME),
        ),
        MediaKind::Video => ("sample.mp4", generated(MediaKind::Video, 64)),
        MediaKind::File => (
            "sample.txt",
            Bytes::from_static(b"wecom-kf simulator file\nhello from the customer\n"),
        ),
    }
}

/// `len` bytes that start like a file of `kind` (PNG signature, `#!AMR\n` and AMR frames,
/// an MP4 `ftyp` box and an `mdat` box, a text line) and go on with a fixed pattern that
/// differs from byte to byte, so a misplaced range shows. The same call gives the same
/// bytes. Shorter than the magic, it is the magic cut short.
pub fn generated(kind: MediaKind, len: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(len);
    match kind {
        MediaKind::Image => out.put_slice(PNG_SIGNATURE),
        MediaKind::Voice => {
            out.put_slice(AMR_MAGIC);
            while out.len() < len {
                out.put_u8(AMR_MODE_7);
                let start = out.len();
                for i in start..start + AMR_FRAME - 1 {
                    out.put_u8(pattern(i));
                }
            }
        }
        MediaKind::Video => {
            out.put_u32(24);
            out.put_slice(b"ftypisom");
            out.put_u32(0x200);
            out.put_slice(b"isommp41");
            // The rest is one `mdat` box; its size is 64-bit when 32 bits can't hold it.
            let rest = len.saturating_sub(out.len()) as u64;
            match u32::try_from(rest) {
                Ok(size) if size >= 8 => {
                    out.put_u32(size);
                    out.put_slice(b"mdat");
                }
                _ if rest >= 16 => {
                    out.put_u32(1);
                    out.put_slice(b"mdat");
                    out.put_u64(rest);
                }
                _ => {}
            }
        }
        MediaKind::File => out.put_slice(TEXT_HEADER),
    }
    out.truncate(len);
    while out.len() < len {
        out.put_u8(pattern(out.len()));
    }
    out.freeze()
}

/// The byte at `offset` of the filler: a multiplicative hash, so neighbours differ.
fn pattern(offset: usize) -> u8 {
    ((offset as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
}

/// WeChat's SILK encoding of an AMR voice message, as a stand-in: the real magic
/// (`0x02#!SILK_V3`), the AMR frames re-packed as length-prefixed SILK blocks (not real
/// SILK audio), and the `0xFFFF` end mark. Different bytes from the AMR, the same length
/// order, so a client can tell which one it downloaded.
pub fn silk_from_amr(amr: &[u8]) -> Bytes {
    let speech = amr.strip_prefix(AMR_MAGIC).unwrap_or(amr);
    let blocks = speech.len().div_ceil(AMR_FRAME);
    let mut out = BytesMut::with_capacity(WECHAT_SILK_MAGIC.len() + speech.len() + 2 * blocks + 2);
    out.put_slice(WECHAT_SILK_MAGIC);
    for block in speech.chunks(AMR_FRAME) {
        // At most AMR_FRAME (32) bytes: fits.
        out.put_u16_le(block.len() as u16);
        out.extend(block.iter().map(|b| b ^ 0x5a));
    }
    out.put_u16_le(0xffff);
    out.freeze()
}

/// What the bytes look like: a MIME type and a file extension, from their magic.
pub fn sniff(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    if bytes.starts_with(PNG_SIGNATURE) {
        Some(("image/png", "png"))
    } else if bytes.starts_with(b"\xff\xd8\xff") {
        Some(("image/jpeg", "jpg"))
    } else if bytes.starts_with(b"GIF8") {
        Some(("image/gif", "gif"))
    } else if bytes.starts_with(AMR_MAGIC) {
        Some(("audio/amr", "amr"))
    } else if bytes.starts_with(WECHAT_SILK_MAGIC) || bytes.starts_with(b"#!SILK_V3") {
        Some(("audio/silk", "silk"))
    } else if bytes.get(4..8) == Some(b"ftyp") {
        Some(("video/mp4", "mp4"))
    } else if bytes.starts_with(b"%PDF") {
        Some(("application/pdf", "pdf"))
    } else {
        None
    }
}

/// A 1×1 RGB PNG of one colour: signature, IHDR, an IDAT holding one stored (uncompressed)
/// zlib block, IEND, each chunk with its CRC.
fn png_1x1(rgb: [u8; 3]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_slice(PNG_SIGNATURE);
    // Width 1, height 1, 8 bits per channel, colour type 2 (RGB), deflate, no filter
    // choices, no interlace.
    let ihdr = [0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0];
    png_chunk(&mut out, b"IHDR", &ihdr);
    // One scanline: filter type 0, then the pixel.
    let raw = [0, rgb[0], rgb[1], rgb[2]];
    let mut zlib = vec![0x78, 0x01, 0x01];
    let len = raw.len() as u16;
    zlib.extend(len.to_le_bytes());
    zlib.extend((!len).to_le_bytes());
    zlib.extend(raw);
    zlib.extend(adler32(&raw).to_be_bytes());
    png_chunk(&mut out, b"IDAT", &zlib);
    png_chunk(&mut out, b"IEND", &[]);
    out.freeze()
}

fn png_chunk(out: &mut BytesMut, kind: &[u8; 4], data: &[u8]) {
    // Chunks here are a few bytes long.
    out.put_u32(data.len() as u32);
    out.put_slice(kind);
    out.put_slice(data);
    let mut crc = Crc32::new();
    crc.update(kind);
    crc.update(data);
    out.put_u32(crc.finish());
}

/// CRC-32 (IEEE 802.3, reflected), bit by bit: PNG chunks are tiny.
struct Crc32(u32);

impl Crc32 {
    fn new() -> Self {
        Crc32(0xffff_ffff)
    }

    fn update(&mut self, data: &[u8]) {
        for &byte in data {
            self.0 ^= u32::from(byte);
            for _ in 0..8 {
                let mask = (self.0 & 1).wrapping_neg();
                self.0 = (self.0 >> 1) ^ (0xedb8_8320 & mask);
            }
        }
    }

    fn finish(&self) -> u32 {
        !self.0
    }
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        let mut crc = Crc32::new();
        crc.update(b"123456789");
        assert_eq!(crc.finish(), 0xcbf4_3926);
    }

    #[test]
    fn the_png_is_the_known_good_1x1_png_layout() {
        let (_, png) = sample(MediaKind::Image);
        assert!(png.starts_with(PNG_SIGNATURE));
        // IEND's CRC is a constant every PNG ends with.
        assert!(png.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xae, 0x42, 0x60, 0x82]));
        assert_eq!(sniff(&png), Some(("image/png", "png")));
    }

    #[test]
    fn generated_files_start_with_their_magic_and_have_the_asked_length() {
        for (kind, magic) in [
            (MediaKind::Image, PNG_SIGNATURE),
            (MediaKind::Voice, AMR_MAGIC),
            (MediaKind::Video, b"\0\0\0\x18ftypisom".as_slice()),
            (MediaKind::File, TEXT_HEADER),
        ] {
            for len in [0, 3, 40, 1000, 70_001] {
                let bytes = generated(kind, len);
                assert_eq!(bytes.len(), len, "{kind:?}");
                let common = len.min(magic.len());
                assert_eq!(bytes[..common], magic[..common], "{kind:?} {len}");
            }
        }
        assert_eq!(
            generated(MediaKind::File, 500),
            generated(MediaKind::File, 500)
        );
        // An mdat box covers the rest of the video.
        let video = generated(MediaKind::Video, 1024);
        assert_eq!(&video[24..32], b"\0\0\x03\xe8mdat");
    }

    #[test]
    fn silk_keeps_wechats_magic_and_an_end_mark() {
        let (_, amr) = sample(MediaKind::Voice);
        let silk = silk_from_amr(&amr);
        assert!(silk.starts_with(WECHAT_SILK_MAGIC));
        assert!(silk.ends_with(&[0xff, 0xff]));
        assert_ne!(silk, amr);
        assert_eq!(sniff(&silk), Some(("audio/silk", "silk")));
        assert_eq!(sniff(&amr), Some(("audio/amr", "amr")));
    }
}
