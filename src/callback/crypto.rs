//! The WXBizMsgCrypt scheme (doc 90930), strict where the reference libraries
//! are lenient: every length is checked before slicing, PKCS#7 padding (32-byte blocks) is
//! checked byte by byte, signatures are compared in constant time, and the receive id must
//! match.

use std::fmt;

use aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use super::CallbackError;
use crate::Secret;

/// WeCom pads to 32-byte blocks, not AES's 16.
const PAD_BLOCK: usize = 32;
/// 16 random bytes, then the message length as 4 big-endian bytes.
const HEADER: usize = 20;

/// EncodingAESKeys are base64 without the final `=`. WeCom's own documentation key has
/// non-zero trailing bits, so those are allowed (for the key only).
const KEY_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// The key material of one callback configuration. `Debug` shows neither key nor token.
#[derive(Clone)]
pub struct Keys {
    token: Secret,
    key: [u8; 32],
    receive_id: String,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("token", &self.token)
            .field("key", &"<redacted>")
            .field("receive_id", &self.receive_id)
            .finish()
    }
}

impl Keys {
    pub fn new(
        token: &str,
        encoding_aes_key: &str,
        receive_id: &str,
    ) -> Result<Self, CallbackError> {
        if token.is_empty() {
            return Err(CallbackError::InvalidKey("the token is empty"));
        }
        if encoding_aes_key.len() != 43 {
            return Err(CallbackError::InvalidKey(
                "an EncodingAESKey has 43 characters",
            ));
        }
        let decoded = KEY_ENGINE
            .decode(format!("{encoding_aes_key}="))
            .map_err(|_| CallbackError::InvalidKey("the EncodingAESKey is not base64"))?;
        let key: [u8; 32] = decoded.try_into().map_err(|_| {
            CallbackError::InvalidKey("the EncodingAESKey does not decode to 32 bytes")
        })?;
        Ok(Keys {
            token: Secret::new(token),
            key,
            receive_id: receive_id.to_owned(),
        })
    }

    pub fn receive_id(&self) -> &str {
        &self.receive_id
    }

    /// `msg_signature`: SHA-1 over the sorted token, timestamp, nonce and payload, in hex.
    pub fn sign(&self, timestamp: &str, nonce: &str, encrypted: &str) -> String {
        let mut parts = [self.token.expose(), timestamp, nonce, encrypted];
        parts.sort_unstable();
        let mut hasher = Sha1::new();
        for part in parts {
            hasher.update(part.as_bytes());
        }
        crate::encode::hex(&hasher.finalize())
    }

    /// Checks a signature in constant time (hex case-insensitively, as WeCom sends lowercase).
    pub fn verify(
        &self,
        signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypted: &str,
    ) -> Result<(), CallbackError> {
        let expected = self.sign(timestamp, nonce, encrypted);
        let given = signature.to_ascii_lowercase();
        if expected.as_bytes().ct_eq(given.as_bytes()).into() {
            Ok(())
        } else {
            Err(CallbackError::SignatureMismatch)
        }
    }

    /// Decrypts a base64 payload and checks its frame, padding and receive id.
    pub fn decrypt(&self, encrypted: &str) -> Result<String, CallbackError> {
        let mut data = STANDARD
            .decode(encrypted)
            .map_err(|_| CallbackError::Base64)?;
        if data.is_empty() || data.len() % PAD_BLOCK != 0 {
            return Err(CallbackError::Length(
                "the ciphertext is not a whole number of 32-byte blocks",
            ));
        }
        let iv: [u8; 16] = self.iv();
        let plain = cbc::Decryptor::<Aes256>::new(&self.key.into(), &iv.into())
            .decrypt_padded_mut::<NoPadding>(&mut data)
            .map_err(|_| {
                CallbackError::Length("the ciphertext is not a whole number of AES blocks")
            })?;
        let unpadded = strip_padding(plain)?;
        if unpadded.len() < HEADER {
            return Err(CallbackError::Length(
                "the plaintext is shorter than its header",
            ));
        }
        let (header, rest) = unpadded.split_at(HEADER);
        let declared = u32::from_be_bytes([header[16], header[17], header[18], header[19]]);
        let length =
            usize::try_from(declared).map_err(|_| CallbackError::Length("bad message length"))?;
        if length > rest.len() {
            return Err(CallbackError::Length(
                "the message length runs past the plaintext",
            ));
        }
        let (message, receive_id) = rest.split_at(length);
        if receive_id != self.receive_id.as_bytes() {
            return Err(CallbackError::ReceiveIdMismatch {
                found: String::from_utf8_lossy(receive_id).into_owned(),
            });
        }
        String::from_utf8(message.to_vec()).map_err(|_| CallbackError::NotUtf8)
    }

    /// Encrypts `message` with the given 16-byte prefix (random in production).
    pub fn encrypt_with_prefix(
        &self,
        message: &str,
        prefix: [u8; 16],
    ) -> Result<String, CallbackError> {
        let length = u32::try_from(message.len())
            .map_err(|_| CallbackError::Length("the message is over 4 GiB"))?;
        let mut data =
            Vec::with_capacity(HEADER + message.len() + self.receive_id.len() + PAD_BLOCK);
        data.extend_from_slice(&prefix);
        data.extend_from_slice(&length.to_be_bytes());
        data.extend_from_slice(message.as_bytes());
        data.extend_from_slice(self.receive_id.as_bytes());
        let pad = PAD_BLOCK - data.len() % PAD_BLOCK;
        // `pad` is 1..=32, so it fits a byte.
        data.extend(std::iter::repeat_n(pad as u8, pad));
        let len = data.len();
        let iv: [u8; 16] = self.iv();
        let cipher = cbc::Encryptor::<Aes256>::new(&self.key.into(), &iv.into())
            .encrypt_padded_mut::<NoPadding>(&mut data, len)
            .map_err(|_| CallbackError::Length("padding failed"))?;
        Ok(STANDARD.encode(cipher))
    }

    /// Encrypts `message` with a fresh random prefix from the operating system.
    pub fn encrypt(&self, message: &str) -> Result<String, CallbackError> {
        let mut prefix = [0u8; 16];
        getrandom::fill(&mut prefix).map_err(|_| CallbackError::Random)?;
        self.encrypt_with_prefix(message, prefix)
    }

    fn iv(&self) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&self.key[..16]);
        iv
    }
}

/// Strict PKCS#7 with 32-byte blocks: the pad byte is 1..=32 and every pad byte equals it.
fn strip_padding(plain: &[u8]) -> Result<&[u8], CallbackError> {
    let Some(&last) = plain.last() else {
        return Err(CallbackError::Padding);
    };
    let pad = usize::from(last);
    if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
        return Err(CallbackError::Padding);
    }
    let (body, padding) = plain.split_at(plain.len() - pad);
    if padding.iter().any(|&b| b != last) {
        return Err(CallbackError::Padding);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

    fn keys() -> Keys {
        Keys::new("QDG6eK", KEY, "wx5823bf96d3bd56c7").expect("keys")
    }

    #[test]
    fn round_trips_every_padding_length() {
        let keys = keys();
        for len in 0..100 {
            let message = "字".repeat(len % 7) + &"x".repeat(len);
            let sealed = keys.encrypt(&message).expect("encrypt");
            assert_eq!(keys.decrypt(&sealed).expect("decrypt"), message);
        }
    }

    #[test]
    fn refuses_bad_keys_without_panicking() {
        for key in ["", "short", &"A".repeat(44), &"!".repeat(43)] {
            assert!(
                matches!(Keys::new("t", key, "id"), Err(CallbackError::InvalidKey(_))),
                "{key}"
            );
        }
    }

    #[test]
    fn padding_is_checked_byte_by_byte() {
        let mut block = vec![7u8; 32];
        block[31] = 3;
        block[30] = 3;
        block[29] = 2;
        assert!(matches!(strip_padding(&block), Err(CallbackError::Padding)));
        block[29] = 3;
        assert_eq!(strip_padding(&block).map(<[u8]>::len).ok(), Some(29));
        assert!(strip_padding(&[0u8; 32]).is_err());
        assert!(strip_padding(&[33u8; 64]).is_err());
    }

    #[test]
    fn another_receive_id_is_refused() {
        let sealed = keys().encrypt("hello").expect("encrypt");
        let other = Keys::new("QDG6eK", KEY, "wwOTHER").expect("keys");
        assert!(matches!(
            other.decrypt(&sealed),
            Err(CallbackError::ReceiveIdMismatch { .. })
        ));
    }

    #[test]
    fn debug_hides_key_and_token() {
        let text = format!("{:?}", keys());
        assert!(!text.contains("QDG6eK") && !text.contains(KEY), "{text}");
    }
}
