//! Secrets at rest (DKIM private keys, later provider credentials):
//! AES-256-GCM under one master key.
//!
//! A sealed value is `0x01 || nonce (12 bytes) || ciphertext || tag`. The
//! caller passes an associated label (the row's id) that must match when
//! opening, so a sealed value copied onto another row does not open.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngCore;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error(
        "the master key must be 32 bytes, written as 64 hex digits or in base64 (make one with `openssl rand -base64 32`)"
    )]
    BadMasterKey,
    #[error(
        "a stored secret cannot be opened with this master key: it was sealed with another one (check EPISTLE_MASTER_KEY or the key file)"
    )]
    WrongKey,
    #[error("a stored secret is damaged or of an unknown format")]
    Corrupt,
}

/// The key every secret is sealed with. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct MasterKey(Aes256Gcm, [u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        let cipher = Aes256Gcm::new_from_slice(bytes).map_err(|_| SecretError::BadMasterKey)?;
        let raw: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadMasterKey)?;
        Ok(Self(cipher, raw))
    }

    /// Reads 64 hex digits or base64 of 32 bytes (surrounding whitespace is
    /// ignored, so a key file may end in a newline).
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| SecretError::BadMasterKey)?
        } else {
            base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| SecretError::BadMasterKey)?
        };
        if bytes.len() != 32 {
            return Err(SecretError::BadMasterKey);
        }
        Self::from_bytes(&bytes)
    }

    /// A fresh random key, in the base64 form `parse` reads.
    pub fn generate_text() -> String {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// A key for one purpose (`"tracking"`, `"verp"`), derived so that the
    /// master key itself never signs anything that leaves the machine.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.1).expect("HMAC takes any key length");
        mac.update(b"epistle key derivation v1\0");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    pub fn seal(&self, label: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .0
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: label.as_bytes() })
            .expect("AES-GCM encryption of an in-memory buffer does not fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, label: &str, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != VERSION {
            return Err(SecretError::Corrupt);
        }
        let (nonce, body) = sealed[1..].split_at(NONCE_LEN);
        self.0
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: label.as_bytes() })
            .map_err(|_| SecretError::WrongKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let key = MasterKey::parse(&MasterKey::generate_text()).unwrap();
        let sealed = key.seal("dk_1", b"private");
        assert_ne!(&sealed[13..20], b"private");
        assert_eq!(key.open("dk_1", &sealed).unwrap(), b"private");
        // Another row's label, another key, a flipped bit, a truncated value.
        assert_eq!(key.open("dk_2", &sealed), Err(SecretError::WrongKey));
        let other = MasterKey::parse(&"ab".repeat(32)).unwrap();
        assert_eq!(other.open("dk_1", &sealed), Err(SecretError::WrongKey));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(key.open("dk_1", &flipped), Err(SecretError::WrongKey));
        assert_eq!(key.open("dk_1", &sealed[..10]), Err(SecretError::Corrupt));
    }

    #[test]
    fn master_key_forms() {
        assert!(MasterKey::parse(&format!("{}\n", "0f".repeat(32))).is_ok());
        assert_eq!(MasterKey::parse("short").unwrap_err(), SecretError::BadMasterKey);
        assert_eq!(MasterKey::parse(&"0f".repeat(16)).unwrap_err(), SecretError::BadMasterKey);
        assert!(format!("{:?}", MasterKey::parse(&"0f".repeat(32)).unwrap()).contains('…'));
    }
}
