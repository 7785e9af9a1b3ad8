//! DKIM (RFC 6376, RFC 8463): key generation, the DNS record to publish,
//! and signing.
//!
//! Canonicalization and signing come from the `mail-auth` crate (the
//! implementation Stalwart runs), with `ring` doing the cryptography. Ring
//! cannot make RSA keys, so RSA key generation goes through the `rsa` crate
//! (via mail-auth's `generate` feature); the result is PKCS#1 DER, which
//! ring loads for signing.
//!
//! Every signature is relaxed/relaxed and covers the headers of
//! [`SIGNED_HEADERS`]; those the message lacks are signed as absent, so
//! nobody can add them on the way without breaking the signature.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};

/// Headers a signature covers (as absent when the message lacks them).
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Reply-To",
    "In-Reply-To",
    "References",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `rsa-sha256`, 2048-bit keys by default: what every verifier knows.
    Rsa,
    /// `ed25519-sha256` (RFC 8463): small and fast, not yet verified
    /// everywhere, so best used beside an RSA key.
    Ed25519,
}

impl Algorithm {
    /// The name in `a=` of a signature.
    pub fn signature_name(self) -> &'static str {
        match self {
            Algorithm::Rsa => "rsa-sha256",
            Algorithm::Ed25519 => "ed25519-sha256",
        }
    }

    /// The name used in the API, the database and `k=` of the DNS record.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rsa => "rsa",
            Algorithm::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "rsa" | "rsa-sha256" => Ok(Algorithm::Rsa),
            "ed25519" | "ed25519-sha256" => Ok(Algorithm::Ed25519),
            other => Err(format!("unknown DKIM algorithm `{other}`: use `rsa` or `ed25519`")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("cannot generate a DKIM key: {0}")]
    Generate(String),
    #[error("the stored DKIM private key cannot be loaded: {0}")]
    Key(String),
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// A new key pair: the private key as DER (PKCS#1 for RSA, PKCS#8 for
/// Ed25519) to store encrypted, and the public key as it goes into `p=`.
pub struct GeneratedKey {
    pub algorithm: Algorithm,
    pub private_der: Vec<u8>,
    pub public_b64: String,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("algorithm", &self.algorithm)
            .field("public_b64", &self.public_b64)
            .finish_non_exhaustive()
    }
}

/// Makes a key pair. RSA takes a noticeable moment (tens to hundreds of
/// milliseconds); call it off the async runtime's hot path.
pub fn generate(algorithm: Algorithm, rsa_bits: usize) -> Result<GeneratedKey, DkimError> {
    let pair = match algorithm {
        Algorithm::Rsa => mail_auth::dkim::generate::DkimKeyPair::generate_rsa(rsa_bits),
        Algorithm::Ed25519 => mail_auth::dkim::generate::DkimKeyPair::generate_ed25519(),
    }
    .map_err(|e| DkimError::Generate(e.to_string()))?;
    let public = match algorithm {
        // mail-auth gives RSAPublicKey (PKCS#1); DNS records carry the
        // SubjectPublicKeyInfo form, the one OpenSSL-based verifiers
        // (OpenDKIM among them) can read.
        Algorithm::Rsa => rsa_spki(pair.public_key()),
        Algorithm::Ed25519 => pair.public_key().to_vec(),
    };
    Ok(GeneratedKey {
        algorithm,
        private_der: pair.private_key().to_vec(),
        public_b64: base64::engine::general_purpose::STANDARD.encode(public),
    })
}

/// Wraps a DER RSAPublicKey in a SubjectPublicKeyInfo (RFC 5280 §4.1):
/// SEQUENCE { SEQUENCE { rsaEncryption, NULL }, BIT STRING { key } }.
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    const ALGORITHM: &[u8] =
        &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
    let mut bits = vec![0x00]; // no unused bits
    bits.extend_from_slice(pkcs1);
    let mut body = ALGORITHM.to_vec();
    der(&mut body, 0x03, &bits);
    let mut out = Vec::new();
    der(&mut out, 0x30, &body);
    out
}

fn der(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
}

/// The TXT record value to publish at `<selector>._domainkey.<domain>`.
pub fn record_value(algorithm: Algorithm, public_b64: &str) -> String {
    format!("v=DKIM1; k={}; p={public_b64}", algorithm.as_str())
}

enum Inner {
    Rsa(DkimSigner<RsaKey<Sha256>, Done>),
    Ed25519(DkimSigner<Ed25519Key, Done>),
}

/// Signs messages for one domain with one key (one selector).
pub struct Signer {
    pub domain: String,
    pub selector: String,
    pub algorithm: Algorithm,
    inner: Inner,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Signer {
    pub fn new(algorithm: Algorithm, domain: &str, selector: &str, private_der: &[u8]) -> Result<Self, DkimError> {
        let inner = match algorithm {
            Algorithm::Rsa => {
                let key = RsaKey::<Sha256>::from_der(private_der)
                    .or_else(|_| RsaKey::<Sha256>::from_pkcs8_der(private_der))
                    .map_err(|e| DkimError::Key(e.to_string()))?;
                Inner::Rsa(configure(DkimSigner::from_key(key), domain, selector))
            }
            Algorithm::Ed25519 => {
                let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(private_der)
                    .map_err(|e| DkimError::Key(e.to_string()))?;
                Inner::Ed25519(configure(DkimSigner::from_key(key), domain, selector))
            }
        };
        Ok(Self { domain: domain.to_string(), selector: selector.to_string(), algorithm, inner })
    }

    /// The `DKIM-Signature` header (folded, ending in CRLF) for `message`.
    pub fn header(&self, message: &[u8]) -> Result<String, DkimError> {
        let sig = match &self.inner {
            Inner::Rsa(s) => s.sign(message),
            Inner::Ed25519(s) => s.sign(message),
        }
        .map_err(|e| DkimError::Sign(e.to_string()))?;
        Ok(sig.to_header())
    }
}

fn configure<T: mail_auth::common::crypto::SigningKey>(
    s: DkimSigner<T, mail_auth::dkim::NeedDomain>,
    domain: &str,
    selector: &str,
) -> DkimSigner<T, Done> {
    s.domain(domain)
        .selector(selector)
        .headers(SIGNED_HEADERS.iter().copied())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
}

/// Returns `message` with a signature from each signer prepended. Every
/// signature is made over the original message, so they are independent
/// of each other (RFC 6376 §5.4 lets a verifier check them in any order).
pub fn sign<'a>(signers: impl IntoIterator<Item = &'a Signer>, message: &[u8]) -> Result<Vec<u8>, DkimError> {
    let mut headers = String::new();
    for s in signers {
        headers.push_str(&s.header(message)?);
    }
    let mut out = Vec::with_capacity(headers.len() + message.len());
    out.extend_from_slice(headers.as_bytes());
    out.extend_from_slice(message);
    Ok(out)
}

/// The domain of the first address in the `From` header, lowercased; `None`
/// when the message has no parsable `From`. Only the header block is read.
pub fn from_domain(message: &[u8]) -> Option<String> {
    let value = header_value(message, "from")?;
    // The address is inside <…> when there is a display name; otherwise the
    // value is the address. Take the last '@' before the closing bracket.
    let addr = match (value.rfind('<'), value.rfind('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(',').next().unwrap_or_default(),
    };
    let (_, domain) = addr.trim().rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches(['>', ')']).trim().to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

/// The unfolded value of the first header called `name` (lowercase).
fn header_value(message: &[u8], name: &str) -> Option<String> {
    let end = find_header_end(message);
    let head = String::from_utf8_lossy(&message[..end]);
    let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r')).peekable();
    while let Some(line) = lines.next() {
        let Some((n, v)) = line.split_once(':') else { continue };
        if n.trim().eq_ignore_ascii_case(name) && !line.starts_with([' ', '\t']) {
            let mut value = v.trim().to_string();
            while let Some(next) = lines.peek() {
                if next.starts_with([' ', '\t']) {
                    value.push(' ');
                    value.push_str(next.trim());
                    lines.next();
                } else {
                    break;
                }
            }
            return Some(value);
        }
    }
    None
}

fn find_header_end(message: &[u8]) -> usize {
    let mut i = 0;
    while i < message.len() {
        if message[i] == b'\n' && (message.get(i + 1) == Some(&b'\n') || message.get(i + 1..i + 3) == Some(b"\r\n")) {
            return i + 1;
        }
        i += 1;
    }
    message.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: Shop <orders@Shop.Example>\r\nTo: a@b.example\r\nSubject: Hi\r\n\r\nBody\r\n";

    #[test]
    fn finds_the_from_domain() {
        assert_eq!(from_domain(MSG).as_deref(), Some("shop.example"));
        assert_eq!(from_domain(b"from: plain@x.example\r\n\r\n").as_deref(), Some("x.example"));
        assert_eq!(
            from_domain(b"Subject: x\r\nFrom: \"A, B\"\r\n <ab@folded.example>\r\n\r\nFrom: no@body.example")
                .as_deref(),
            Some("folded.example")
        );
        assert_eq!(from_domain(b"Subject: x\r\n\r\nFrom: no@body.example\r\n"), None);
        assert_eq!(from_domain(b"From: nobody\r\n\r\n"), None);
    }

    #[test]
    fn ed25519_signature_names_domain_selector_and_headers() {
        let key = generate(Algorithm::Ed25519, 0).unwrap();
        let signer = Signer::new(Algorithm::Ed25519, "shop.example", "s1", &key.private_der).unwrap();
        let signed = sign([&signer], MSG).unwrap();
        let text = String::from_utf8(signed).unwrap();
        assert!(text.starts_with("DKIM-Signature: v=1; a=ed25519-sha256; s=s1; d=shop.example; c=relaxed/relaxed;"));
        let header: String = text.split("\r\nFrom:").next().unwrap().replace("\r\n\t", "");
        let h = header.split("h=").nth(1).unwrap().split(';').next().unwrap();
        let names: Vec<&str> = h.split(':').map(str::trim).collect();
        // Present headers are signed; absent ones are listed too, so that
        // adding one later (a second Reply-To, say) breaks the signature.
        for name in ["From", "To", "Subject", "Reply-To", "List-Unsubscribe"] {
            assert!(names.contains(&name), "{name} not in h={h}");
        }
        assert!(text.ends_with("\r\n\r\nBody\r\n"));
        assert!(record_value(Algorithm::Ed25519, &key.public_b64).starts_with("v=DKIM1; k=ed25519; p="));
    }

    #[test]
    fn rsa_public_keys_are_published_as_subject_public_key_info() {
        let key = generate(Algorithm::Rsa, 2048).unwrap();
        let der = base64::engine::general_purpose::STANDARD.decode(&key.public_b64).unwrap();
        // SEQUENCE of 290 bytes, then the rsaEncryption algorithm identifier.
        assert_eq!(&der[..4], &[0x30, 0x82, 0x01, 0x22]);
        assert_eq!(&der[4..8], &[0x30, 0x0d, 0x06, 0x09]);
        assert_eq!(der.len(), 294);
        assert!(key.public_b64.starts_with("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"));
    }

    #[test]
    fn a_key_of_the_wrong_kind_is_an_error_not_a_panic() {
        assert!(Signer::new(Algorithm::Rsa, "x.example", "s", b"not a key").is_err());
        assert!(Signer::new(Algorithm::Ed25519, "x.example", "s", b"").is_err());
        assert!("dsa".parse::<Algorithm>().is_err());
        assert_eq!("RSA-SHA256".parse::<Algorithm>(), Ok(Algorithm::Rsa));
    }
}
