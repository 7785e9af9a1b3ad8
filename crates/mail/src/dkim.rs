//! DKIM (RFC 6376, RFC 8463): key generation, the DNS record to publish,
//! and signing.
//!
//! Canonicalization and the signature header come from the `mail-auth`
//! crate (the implementation Stalwart runs). The cryptography under it:
//!
//! - **RSA through OpenSSL** (the `openssl` crate, built from source with
//!   the `vendored` feature, so the binary needs no system library). RSA
//!   signing is most of the CPU a signed message costs, and OpenSSL 3 is
//!   about 2.5 times faster at it than ring (BoringSSL's code) on the
//!   benchmark machine, whose CPU has AVX-512 IFMA, for which OpenSSL 3 has
//!   RSA code: a whole signature of a 10 KB message went from 728 to 282 µs
//!   (`examples/dkim_cost.rs`, `bench/RESULTS.md`). OpenSSL also makes the
//!   keys, in milliseconds.
//! - **Ed25519 through ring**, which is as fast as anything for it.
//! - **The body hash is ours** ([`relaxed_body_hash`]): mail-auth's walks
//!   the body a byte at a time, calling the hasher for each (6 % of the
//!   CPU of a signed message on the SMTP path), and keeps lines of only
//!   spaces and tabs at the end of the body, which RFC 6376 drops, so
//!   verifiers rejected signatures of such bodies. Ours copies unchanged
//!   lines whole and hashes once. Bodies it does not take (a bare CR or
//!   LF, an odd header block) are hashed as before, through
//!   [`BlockSha256`], which collects mail-auth's byte-sized writes into
//!   blocks.
//!
//! Every signature is relaxed/relaxed and covers the headers of
//! [`SIGNED_HEADERS`]; those the message lacks are signed as absent, so
//! nobody can add them on the way without breaking the signature.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use mail_auth::common::crypto::{HashOutput, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable, Writer};
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use ring::signature::KeyPair as _;

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

/// Makes a key pair. RSA takes a noticeable moment (tens of milliseconds);
/// call it off the async runtime's hot path.
pub fn generate(algorithm: Algorithm, rsa_bits: usize) -> Result<GeneratedKey, DkimError> {
    let failed = |e: &dyn fmt::Display| DkimError::Generate(e.to_string());
    let (private_der, public) = match algorithm {
        Algorithm::Rsa => {
            let bits = u32::try_from(rsa_bits).map_err(|e| failed(&e))?;
            let rsa = Rsa::generate(bits).map_err(|e| failed(&e))?;
            // PKCS#1 for the private key; the public key as the
            // SubjectPublicKeyInfo that DNS records carry (RFC 6376 §3.6.1),
            // the form OpenSSL-based verifiers such as OpenDKIM read.
            (rsa.private_key_to_der().map_err(|e| failed(&e))?, rsa.public_key_to_der().map_err(|e| failed(&e))?)
        }
        Algorithm::Ed25519 => {
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| failed(&e))?;
            let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| failed(&e))?;
            (pkcs8.as_ref().to_vec(), pair.public_key().as_ref().to_vec())
        }
    };
    Ok(GeneratedKey { algorithm, private_der, public_b64: base64::engine::general_purpose::STANDARD.encode(public) })
}

/// The TXT record value to publish at `<selector>._domainkey.<domain>`.
pub fn record_value(algorithm: Algorithm, public_b64: &str) -> String {
    format!("v=DKIM1; k={}; p={public_b64}", algorithm.as_str())
}

/// SHA-256 that collects small writes and hashes them in blocks.
struct BlockSha256 {
    ctx: ring::digest::Context,
    buf: Vec<u8>,
}

impl BlockSha256 {
    const BLOCK: usize = 16 * 1024;

    fn new() -> Self {
        Self { ctx: ring::digest::Context::new(&ring::digest::SHA256), buf: Vec::with_capacity(Self::BLOCK + 64) }
    }

    fn digest(data: impl Writable) -> ring::digest::Digest {
        let mut h = Self::new();
        data.write(&mut h);
        h.ctx.update(&h.buf);
        h.ctx.finish()
    }
}

impl Writer for BlockSha256 {
    fn write(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= Self::BLOCK {
            self.ctx.update(&self.buf);
            self.buf.clear();
        }
    }
}

/// An RSA private key that signs through OpenSSL (`rsa-sha256`, PKCS#1 v1.5).
struct OpensslRsa(PKey<Private>);

impl OpensslRsa {
    /// Reads PKCS#1 DER (what [`generate`] stores) or PKCS#8 DER.
    fn from_der(der: &[u8]) -> Result<Self, DkimError> {
        let key = Rsa::private_key_from_der(der)
            .and_then(PKey::from_rsa)
            .or_else(|_| PKey::private_key_from_pkcs8(der))
            .map_err(|e| DkimError::Key(format!("not an RSA private key in PKCS#1 or PKCS#8 DER ({e})")))?;
        if key.rsa().is_err() {
            return Err(DkimError::Key("the key is not an RSA key".into()));
        }
        Ok(Self(key))
    }
}

impl SigningKey for OpensslRsa {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        // `input` is the canonicalized header block with the signature
        // header itself (a few hundred bytes); the body went in as its hash.
        let mut data = Vec::with_capacity(512);
        input.write(&mut data);
        let crypto = |e: openssl::error::ErrorStack| mail_auth::Error::CryptoError(e.to_string());
        let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), &self.0).map_err(crypto)?;
        signer.update(&data).map_err(crypto)?;
        signer.sign_to_vec().map_err(crypto)
    }

    fn hash(&self, data: impl Writable) -> HashOutput {
        HashOutput::Ring(BlockSha256::digest(data))
    }

    fn algorithm(&self) -> mail_auth::common::crypto::Algorithm {
        mail_auth::common::crypto::Algorithm::RsaSha256
    }
}

/// An Ed25519 private key (ring): `ed25519-sha256` signs the SHA-256 of the
/// canonical header block (RFC 8463 §3).
struct RingEd25519(ring::signature::Ed25519KeyPair);

impl SigningKey for RingEd25519 {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        Ok(self.0.sign(BlockSha256::digest(input).as_ref()).as_ref().to_vec())
    }

    fn hash(&self, data: impl Writable) -> HashOutput {
        HashOutput::Ring(BlockSha256::digest(data))
    }

    fn algorithm(&self) -> mail_auth::common::crypto::Algorithm {
        mail_auth::common::crypto::Algorithm::Ed25519Sha256
    }
}

enum Inner {
    Rsa(OpensslRsa),
    Ed25519(RingEd25519),
}

/// A key with the body hash made beforehand ([`relaxed_body_hash`]):
/// mail-auth asks for it and gets it without walking the body again. With
/// no hash made, the body is hashed as mail-auth canonicalizes it.
struct Prehashed<'k, K> {
    key: &'k K,
    body: Option<ring::digest::Digest>,
}

impl<K: SigningKey<Hasher = Sha256>> SigningKey for Prehashed<'_, K> {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.key.sign(input)
    }

    fn hash(&self, data: impl Writable) -> HashOutput {
        match self.body {
            Some(digest) => HashOutput::Ring(digest),
            None => HashOutput::Ring(BlockSha256::digest(data)),
        }
    }

    fn algorithm(&self) -> mail_auth::common::crypto::Algorithm {
        self.key.algorithm()
    }
}

/// Where the body of `message` starts, when its header block is one that
/// every reader splits the same way: lines ending in CRLF, each a
/// `name: value` or the continuation of one, up to the first empty line.
/// `None` otherwise (no empty line, a bare CR or LF, a line without a
/// colon), and mail-auth's own reading is used.
fn clean_body_start(message: &[u8]) -> Option<usize> {
    let end = memchr::memmem::find(message, b"\r\n\r\n")? + 2;
    let head = &message[..end];
    let mut first = true;
    for line in head.split(|b| *b == b'\n') {
        let Some(line) = line.strip_suffix(b"\r") else {
            // Only the empty piece after the last LF has no CR.
            if line.is_empty() {
                continue;
            }
            return None;
        };
        if line.contains(&b'\r') {
            return None;
        }
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if (first && continuation) || (!continuation && !line.contains(&b':')) {
            return None;
        }
        first = false;
    }
    Some(end + 2)
}

/// SHA-256 of `body` in the relaxed canonical form of RFC 6376 §3.4.4:
/// runs of spaces and tabs become one space, those ending a line go, and
/// so do empty lines at the end (a line of only spaces and tabs is empty
/// once they go); a body with content ends in CRLF. `None` when the body
/// has a CR or LF outside a CRLF pair, which is left to mail-auth.
///
/// mail-auth's own version feeds the hasher a byte at a time, and keeps
/// lines of only spaces and tabs at the end, whose signatures verifiers
/// (dkimpy, OpenDKIM) then reject.
fn relaxed_body_hash(body: &[u8]) -> Option<ring::digest::Digest> {
    let mut out = Vec::with_capacity(body.len() + 2);
    let mut blank = 0usize;
    let mut rest = body;
    while !rest.is_empty() {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (rest[..i].strip_suffix(b"\r")?, &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        if memchr::memchr(b'\r', line).is_some() {
            return None;
        }
        if line.iter().all(|b| *b == b' ' || *b == b'\t') {
            blank += 1;
            continue;
        }
        for _ in 0..blank {
            out.extend_from_slice(b"\r\n");
        }
        blank = 0;
        // (A pair of spaces is looked for without `memmem::find`, which
        // builds a searcher per call: a line is short, most have no pair.)
        let unchanged =
            memchr::memchr(b'\t', line).is_none() && !line.ends_with(b" ") && !line.windows(2).any(|w| w == b"  ");
        if unchanged {
            out.extend_from_slice(line);
        } else {
            let mut space = false;
            for &b in line {
                if b == b' ' || b == b'\t' {
                    space = true;
                } else {
                    if space {
                        out.push(b' ');
                        space = false;
                    }
                    out.push(b);
                }
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    Some(ring::digest::digest(&ring::digest::SHA256, &out))
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
            Algorithm::Rsa => Inner::Rsa(OpensslRsa::from_der(private_der)?),
            Algorithm::Ed25519 => Inner::Ed25519(
                ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(private_der)
                    .map(RingEd25519)
                    .map_err(|e| DkimError::Key(format!("not an Ed25519 private key in PKCS#8 DER ({e})")))?,
            ),
        };
        Ok(Self { domain: domain.to_string(), selector: selector.to_string(), algorithm, inner })
    }

    /// The `DKIM-Signature` header (folded, ending in CRLF) for `message`.
    pub fn header(&self, message: &[u8]) -> Result<String, DkimError> {
        let body = clean_body_start(message).and_then(|start| relaxed_body_hash(&message[start..]));
        let (domain, selector) = (self.domain.as_str(), self.selector.as_str());
        let sig = match &self.inner {
            Inner::Rsa(key) => configure(DkimSigner::from_key(Prehashed { key, body }), domain, selector).sign(message),
            Inner::Ed25519(key) => {
                configure(DkimSigner::from_key(Prehashed { key, body }), domain, selector).sign(message)
            }
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

    /// `bh=` of a header, unfolded.
    fn body_hash(header: &str) -> String {
        let flat: String = header.split_whitespace().collect();
        flat.split("bh=").nth(1).unwrap().split(';').next().unwrap().to_string()
    }

    #[test]
    fn block_fed_body_hash_equals_mail_auths_own() {
        // Whitespace runs, tabs, bare LF, trailing blank lines and a last line
        // without CRLF: every branch of relaxed body canonicalization.
        let mut msg = b"From: a@shop.example\r\nTo: b@x.example\r\n\r\n".to_vec();
        for i in 0..3000 {
            msg.extend_from_slice(format!("line {i}  with \t runs \r\n\n").as_bytes());
        }
        msg.extend_from_slice(b"last \t \r\n\r\n\r\nend");
        let key = generate(Algorithm::Rsa, 2048).unwrap();
        let ours = Signer::new(Algorithm::Rsa, "shop.example", "s1", &key.private_der).unwrap().header(&msg).unwrap();
        let stock = mail_auth::common::crypto::RsaKey::<Sha256>::from_der(&key.private_der).unwrap();
        let theirs = configure(DkimSigner::from_key(stock), "shop.example", "s1").sign(&msg).unwrap().to_header();
        assert_eq!(body_hash(&ours), body_hash(&theirs));
        // PKCS#1 v1.5 signatures are deterministic: the same key and the same
        // signed data give the same b= (when t=, in seconds, came out the same).
        let b = |h: &str| {
            let flat: String = h.split_whitespace().collect();
            (
                flat.split(";t=").nth(1).unwrap().split(';').next().unwrap().to_string(),
                flat.split("b=").last().unwrap().to_string(),
            )
        };
        let (t1, b1) = b(&ours);
        let (t2, b2) = b(&theirs);
        if t1 == t2 {
            assert_eq!(b1, b2, "OpenSSL and ring sign the same data differently");
        }
        let ed = generate(Algorithm::Ed25519, 0).unwrap();
        let ours =
            Signer::new(Algorithm::Ed25519, "shop.example", "s2", &ed.private_der).unwrap().header(&msg).unwrap();
        let stock = mail_auth::common::crypto::Ed25519Key::from_pkcs8_der(&ed.private_der).unwrap();
        let theirs = configure(DkimSigner::from_key(stock), "shop.example", "s2").sign(&msg).unwrap().to_header();
        assert_eq!(body_hash(&ours), body_hash(&theirs));
        let (t1, b1) = b(&ours);
        let (t2, b2) = b(&theirs);
        if t1 == t2 {
            assert_eq!(b1, b2, "Ed25519 signatures are deterministic too");
        }
    }

    /// Relaxed body canonicalization as RFC 6376 §3.4.4 words it, step by
    /// step, for CRLF text.
    fn rfc_relaxed(body: &[u8]) -> Vec<u8> {
        let text = String::from_utf8(body.to_vec()).unwrap();
        let mut lines: Vec<String> = text
            .split("\r\n")
            .map(|l| {
                let mut out = String::new();
                let mut space = false;
                for c in l.chars() {
                    if c == ' ' || c == '\t' {
                        space = true;
                    } else {
                        if space {
                            out.push(' ');
                        }
                        space = false;
                        out.push(c);
                    }
                }
                out
            })
            .collect();
        while lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        lines.iter().map(|l| format!("{l}\r\n")).collect::<String>().into_bytes()
    }

    /// Bodies of CRLF lines made of pieces that relaxed canonicalization
    /// treats differently, from a fixed seed.
    fn bodies(n: usize) -> Vec<Vec<u8>> {
        const PIECES: [&str; 10] = ["", " ", "  ", "\t", "word", "two  words", "tab\there", "end ", " lead", "é ü"];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |m: usize| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize % m
        };
        (0..n)
            .map(|_| {
                let mut body = String::new();
                for _ in 0..next(8) {
                    for _ in 0..next(4) {
                        body.push_str(PIECES[next(PIECES.len())]);
                    }
                    body.push_str("\r\n");
                }
                if next(3) == 0 {
                    body.push_str(PIECES[next(PIECES.len())]);
                }
                body.into_bytes()
            })
            .collect()
    }

    #[test]
    fn the_body_hash_is_rfc_6376_relaxed_canonicalization() {
        for body in bodies(3000) {
            let want = ring::digest::digest(&ring::digest::SHA256, &rfc_relaxed(&body));
            let got = relaxed_body_hash(&body).expect("CRLF text is ours to hash");
            assert_eq!(got.as_ref(), want.as_ref(), "{:?}", String::from_utf8_lossy(&body));
        }
        let empty = ring::digest::digest(&ring::digest::SHA256, b"");
        assert_eq!(relaxed_body_hash(b"").unwrap().as_ref(), empty.as_ref());
        assert_eq!(relaxed_body_hash(b"\r\n \t\r\n\r\n").unwrap().as_ref(), empty.as_ref());
    }

    #[test]
    fn signatures_carry_the_same_body_hash_as_mail_auths_where_it_follows_the_rfc() {
        let ed = generate(Algorithm::Ed25519, 0).unwrap();
        let ours = Signer::new(Algorithm::Ed25519, "shop.example", "s2", &ed.private_der).unwrap();
        let stock = mail_auth::common::crypto::Ed25519Key::from_pkcs8_der(&ed.private_der).unwrap();
        let theirs = configure(DkimSigner::from_key(stock), "shop.example", "s2");
        let mut compared = 0;
        for body in bodies(500) {
            // mail-auth keeps lines of only spaces and tabs at the end.
            let text = String::from_utf8(body.clone()).unwrap();
            let trimmed = text.trim_end_matches(['\r', '\n']);
            if trimmed.rsplit("\r\n").next().is_some_and(|l| !l.is_empty() && l.trim_matches([' ', '\t']).is_empty()) {
                continue;
            }
            let mut msg = b"From: a@shop.example\r\nSubject: x\r\n\tfolded\r\n\r\n".to_vec();
            msg.extend_from_slice(&body);
            assert!(clean_body_start(&msg).is_some());
            let (a, b) = (ours.header(&msg).unwrap(), theirs.sign(&msg).unwrap().to_header());
            assert_eq!(body_hash(&a), body_hash(&b), "{text:?}");
            compared += 1;
        }
        assert!(compared > 300, "only {compared} bodies compared");
    }

    #[test]
    fn odd_header_blocks_and_bare_line_ends_are_left_to_mail_auth() {
        let msg = b"From: a@x\r\nTo: b@y\r\n\r\nbody\r\n\r\nmore";
        assert_eq!(&msg[clean_body_start(msg).unwrap()..], b"body\r\n\r\nmore");
        let msg = b"From: a@x\r\n folded\r\n\r\n";
        assert_eq!(clean_body_start(msg), Some(msg.len()));
        assert_eq!(clean_body_start(b"From: a@x\r\nno colon here\r\n\r\nbody"), None);
        assert_eq!(clean_body_start(b"From: a@x\nTo: b@y\r\n\r\nbody"), None);
        assert_eq!(clean_body_start(b" From: a@x\r\n\r\nbody"), None);
        assert_eq!(clean_body_start(b"From: a@x\r\nTo: b@y\r\n"), None);
        assert!(relaxed_body_hash(b"bare\nline feed\r\n").is_none());
        assert!(relaxed_body_hash(b"bare\rcarriage return\r\n").is_none());
        // Those are signed all the same, the body hashed as mail-auth reads it.
        let key = generate(Algorithm::Ed25519, 0).unwrap();
        let signer = Signer::new(Algorithm::Ed25519, "shop.example", "s1", &key.private_der).unwrap();
        assert!(signer.header(b"From: a@shop.example\r\n\r\nbare\nline feed\r\n").is_ok());
    }

    #[test]
    fn rsa_keys_load_from_pkcs1_and_pkcs8() {
        let key = generate(Algorithm::Rsa, 2048).unwrap();
        let pkcs8 = PKey::from_rsa(Rsa::private_key_from_der(&key.private_der).unwrap())
            .unwrap()
            .private_key_to_pkcs8()
            .unwrap();
        for der in [&key.private_der, &pkcs8] {
            let signer = Signer::new(Algorithm::Rsa, "shop.example", "s1", der).unwrap();
            assert!(signer.header(MSG).unwrap().starts_with("DKIM-Signature: v=1; a=rsa-sha256;"));
        }
        let ed = generate(Algorithm::Ed25519, 0).unwrap();
        assert!(Signer::new(Algorithm::Rsa, "shop.example", "s1", &ed.private_der).is_err());
    }

    #[test]
    fn a_key_of_the_wrong_kind_is_an_error_not_a_panic() {
        assert!(Signer::new(Algorithm::Rsa, "x.example", "s", b"not a key").is_err());
        assert!(Signer::new(Algorithm::Ed25519, "x.example", "s", b"").is_err());
        assert!("dsa".parse::<Algorithm>().is_err());
        assert_eq!("RSA-SHA256".parse::<Algorithm>(), Ok(Algorithm::Rsa));
    }
}
