//! Access tokens sealed before they go to a store that other processes, and whoever runs
//! it, can read (Redis): only holders of the app's secret can use what is stored there.
//!
//! AES-256-CBC under a key derived from the corp id and secret, with the IV derived from the
//! token itself (SHA-256, as in SIV): the same token always seals the same way, so a store
//! can still compare tokens (compare-and-delete), and opening checks the IV against the
//! plaintext, so a tampered value is refused rather than used.

use aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use sha2::{Digest, Sha256};

use crate::Secret;

pub(crate) struct TokenSeal {
    key: [u8; 32],
}

impl TokenSeal {
    pub(crate) fn new(corp_id: &str, secret: &Secret) -> Self {
        let key = Sha256::new()
            .chain_update(b"wecom-kf access token\0")
            .chain_update(corp_id.as_bytes())
            .chain_update([0])
            .chain_update(secret.expose().as_bytes())
            .finalize();
        TokenSeal { key: key.into() }
    }

    fn iv(&self, token: &[u8]) -> [u8; 16] {
        let digest = Sha256::new()
            .chain_update(b"iv\0")
            .chain_update(self.key)
            .chain_update(token)
            .finalize();
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&digest[..16]);
        iv
    }

    /// `base64(iv ‖ ciphertext)`.
    pub(crate) fn seal(&self, token: &Secret) -> Secret {
        let plain = token.expose().as_bytes();
        let iv = self.iv(plain);
        let mut buffer = vec![0u8; plain.len() + 16];
        buffer[..plain.len()].copy_from_slice(plain);
        let sealed = cbc::Encryptor::<Aes256>::new(&self.key.into(), &iv.into())
            .encrypt_padded_mut::<Pkcs7>(&mut buffer, plain.len())
            .map(|cipher| [iv.as_slice(), cipher].concat())
            // The buffer has a whole block of room for the padding, so this can't fail;
            // an empty seal would only fail to open, and the token would be fetched again.
            .unwrap_or_default();
        Secret::new(STANDARD.encode(sealed))
    }

    /// The token, or `None` for anything this seal didn't make.
    pub(crate) fn open(&self, sealed: &Secret) -> Option<Secret> {
        let mut data = STANDARD.decode(sealed.expose()).ok()?;
        if data.len() < 32 || data.len() % 16 != 0 {
            return None;
        }
        let (iv, cipher) = data.split_at_mut(16);
        let iv: [u8; 16] = iv.try_into().ok()?;
        let plain = cbc::Decryptor::<Aes256>::new(&self.key.into(), &iv.into())
            .decrypt_padded_mut::<Pkcs7>(cipher)
            .ok()?;
        if self.iv(plain) != iv {
            return None;
        }
        String::from_utf8(plain.to_vec()).ok().map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_deterministically_and_opens_only_its_own() {
        let seal = TokenSeal::new("ww1", &Secret::new("secret"));
        let token = Secret::new("ACCESS_TOKEN_abc");
        let sealed = seal.seal(&token);
        assert_eq!(
            seal.seal(&token),
            sealed,
            "the same token seals the same way"
        );
        assert!(!sealed.expose().contains("ACCESS_TOKEN"));
        assert_eq!(seal.open(&sealed), Some(token));

        let other_app = TokenSeal::new("ww1", &Secret::new("another secret"));
        assert_eq!(
            other_app.open(&sealed),
            None,
            "another secret can't open it"
        );
        let mut bytes = STANDARD.decode(sealed.expose()).expect("base64");
        bytes[20] ^= 1;
        assert_eq!(
            seal.open(&Secret::new(STANDARD.encode(bytes))),
            None,
            "tampering is refused"
        );
        assert_eq!(seal.open(&Secret::new("not sealed")), None);
    }
}
