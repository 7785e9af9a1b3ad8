//! Signed tokens for links in mail: open pixels, tracked clicks,
//! unsubscribe links and VERP return paths.
//!
//! A token carries everything its endpoint needs (the message, which of its
//! recipients, and for a click the address to go to), so answering it takes
//! no database read, and an HMAC-SHA256 tag (truncated to 96 bits) so that
//! nobody can make one: a changed byte, another server's token or a
//! made-up URL fails [`TokenKey::open`], and the endpoint answers 404
//! instead of redirecting anywhere.
//!
//! Layout before base64url: `version | kind | flags | message ULID (16) |
//! recipient index (u16) | issued (u32 Unix seconds) | url… | tag (12)`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const VERSION: u8 = 1;
const TAG_LEN: usize = 12;
const HEAD_LEN: usize = 3 + 16 + 2 + 4;
/// Longest URL a click token carries; longer links are left as they are.
pub const MAX_URL_LEN: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Open,
    Click,
    Unsubscribe,
}

impl TokenKind {
    fn byte(self) -> u8 {
        match self {
            TokenKind::Open => b'o',
            TokenKind::Click => b'c',
            TokenKind::Unsubscribe => b'u',
        }
    }
}

/// Per-token choices made when the mail was sent.
pub mod flags {
    /// Keep the client's IP address with the event (the tenant allows it).
    pub const STORE_IP: u8 = 1;
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub flags: u8,
    /// `msg_…`
    pub message_id: String,
    /// The recipient's position in the message (its row is
    /// `rcp_<ulid>_<index:05>`).
    pub recipient: u16,
    /// When the mail was accepted (Unix seconds): lets a click that comes
    /// seconds later be recognised as a link scanner's.
    pub issued: u32,
    /// Where a click goes.
    pub url: Option<String>,
}

impl Token {
    /// The recipient row this token points at.
    pub fn recipient_id(&self) -> String {
        recipient_id(&self.message_id, self.recipient)
    }
}

/// The id of a message's `index`th recipient (as the store makes them).
pub fn recipient_id(message_id: &str, index: u16) -> String {
    format!("rcp_{}_{index:05}", message_id.trim_start_matches("msg_"))
}

fn ulid_bytes(message_id: &str) -> Option<[u8; 16]> {
    let u = ulid::Ulid::from_string(message_id.strip_prefix("msg_")?).ok()?;
    Some(u.0.to_be_bytes())
}

fn message_id(bytes: &[u8]) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(bytes);
    format!("msg_{}", ulid::Ulid(u128::from_be_bytes(b)).to_string().to_lowercase())
}

/// The key tokens are signed with (derived from the master key, so every
/// node of a cluster makes and accepts the same tokens).
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(…)")
    }
}

impl TokenKey {
    pub fn new(key: [u8; 32]) -> Self {
        Self(key)
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length")
    }

    /// Makes a token. `None` when the message id is not one of ours or the
    /// URL is too long to carry.
    pub fn seal(&self, t: &Token) -> Option<String> {
        let ulid = ulid_bytes(&t.message_id)?;
        let url = t.url.as_deref().unwrap_or("");
        if url.len() > MAX_URL_LEN {
            return None;
        }
        let mut buf = Vec::with_capacity(HEAD_LEN + url.len() + TAG_LEN);
        buf.extend_from_slice(&[VERSION, t.kind.byte(), t.flags]);
        buf.extend_from_slice(&ulid);
        buf.extend_from_slice(&t.recipient.to_be_bytes());
        buf.extend_from_slice(&t.issued.to_be_bytes());
        buf.extend_from_slice(url.as_bytes());
        let mut mac = self.mac();
        mac.update(&buf);
        let tag = mac.finalize().into_bytes();
        buf.extend_from_slice(&tag[..TAG_LEN]);
        Some(URL_SAFE_NO_PAD.encode(buf))
    }

    /// Reads a token of the expected kind; `None` for anything forged,
    /// damaged or of another kind.
    pub fn open(&self, text: &str, kind: TokenKind) -> Option<Token> {
        if text.len() > (HEAD_LEN + MAX_URL_LEN + TAG_LEN) * 4 / 3 + 4 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        if bytes.len() < HEAD_LEN + TAG_LEN {
            return None;
        }
        let (body, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_truncated_left(tag).ok()?;
        if body[0] != VERSION || body[1] != kind.byte() {
            return None;
        }
        let url = std::str::from_utf8(&body[HEAD_LEN..]).ok()?;
        Some(Token {
            kind,
            flags: body[2],
            message_id: message_id(&body[3..19]),
            recipient: u16::from_be_bytes([body[19], body[20]]),
            issued: u32::from_be_bytes([body[21], body[22], body[23], body[24]]),
            url: (kind == TokenKind::Click).then(|| url.to_string()),
        })
    }

    /// The local part of a VERP return path, `bounce+<hex>`: message,
    /// recipient index and a 64-bit tag, in lower-case hex (mail systems
    /// may fold the case of a local part) within the 64-character limit.
    pub fn verp_local(&self, message_id: &str, recipient: u16) -> Option<String> {
        self.address_local("bounce", message_id, recipient)
    }

    /// A signed local part `<prefix>+<hex>` (the prefix is signed too, so a
    /// bounce address cannot be turned into an unsubscribe address).
    pub fn address_local(&self, prefix: &str, message_id: &str, recipient: u16) -> Option<String> {
        let ulid = ulid_bytes(message_id)?;
        let mut buf = Vec::with_capacity(26);
        buf.extend_from_slice(&ulid);
        buf.extend_from_slice(&recipient.to_be_bytes());
        let mut mac = self.mac();
        mac.update(prefix.as_bytes());
        mac.update(&buf);
        buf.extend_from_slice(&mac.finalize().into_bytes()[..8]);
        Some(format!("{prefix}+{}", hex::encode(buf)))
    }

    /// Reads a VERP local part (`bounce+…`, any case) back into the message
    /// and recipient index.
    pub fn open_verp(&self, local: &str) -> Option<(String, u16)> {
        self.open_address_local("bounce", local)
    }

    /// Reads `<prefix>+<hex>` made by [`TokenKey::address_local`].
    pub fn open_address_local(&self, prefix: &str, local: &str) -> Option<(String, u16)> {
        let (p, hexpart) = local.split_once('+')?;
        if !p.eq_ignore_ascii_case(prefix) || hexpart.len() != 52 {
            return None;
        }
        let buf = hex::decode(hexpart.to_ascii_lowercase()).ok()?;
        let (body, tag) = buf.split_at(18);
        let mut mac = self.mac();
        mac.update(prefix.as_bytes());
        mac.update(body);
        mac.verify_truncated_left(tag).ok()?;
        Some((message_id(&body[..16]), u16::from_be_bytes([body[16], body[17]])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::new([7; 32])
    }

    fn click() -> Token {
        Token {
            kind: TokenKind::Click,
            flags: flags::STORE_IP,
            message_id: "msg_01jbz5x4m3e2k9v8a7s6d5f4g3".into(),
            recipient: 3,
            issued: 1_790_000_000,
            url: Some("https://shop.example/orders/1042?utm=mail".into()),
        }
    }

    #[test]
    fn round_trip() {
        let t = click();
        let s = key().seal(&t).unwrap();
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{s}");
        assert_eq!(key().open(&s, TokenKind::Click), Some(t.clone()));
        assert_eq!(t.recipient_id(), "rcp_01jbz5x4m3e2k9v8a7s6d5f4g3_00003");
        let open = Token { kind: TokenKind::Open, url: None, ..t };
        let s = key().seal(&open).unwrap();
        assert_eq!(key().open(&s, TokenKind::Open), Some(open));
    }

    #[test]
    fn forged_damaged_and_foreign_tokens_do_not_open() {
        let s = key().seal(&click()).unwrap();
        // Another server's key.
        assert_eq!(TokenKey::new([8; 32]).open(&s, TokenKind::Click), None);
        // Another kind.
        assert_eq!(key().open(&s, TokenKind::Open), None);
        // Every single-byte change of the decoded token.
        let bytes = URL_SAFE_NO_PAD.decode(&s).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x20;
            assert_eq!(key().open(&URL_SAFE_NO_PAD.encode(&b), TokenKind::Click), None, "byte {i}");
        }
        // Truncated, empty, not base64, huge.
        assert_eq!(key().open(&s[..s.len() - 3], TokenKind::Click), None);
        assert_eq!(key().open("", TokenKind::Click), None);
        assert_eq!(key().open("!!not base64!!", TokenKind::Click), None);
        assert_eq!(key().open(&"A".repeat(100_000), TokenKind::Click), None);
    }

    #[test]
    fn too_long_urls_and_foreign_ids_make_no_token() {
        let mut t = click();
        t.url = Some(format!("https://x.example/{}", "a".repeat(MAX_URL_LEN)));
        assert_eq!(key().seal(&t), None);
        let mut t = click();
        t.message_id = "not-an-id".into();
        assert_eq!(key().seal(&t), None);
    }

    #[test]
    fn verp_round_trip_fits_a_local_part_and_ignores_case() {
        let local = key().verp_local("msg_01jbz5x4m3e2k9v8a7s6d5f4g3", 12).unwrap();
        assert!(local.len() <= 64, "{local}");
        let want = Some(("msg_01jbz5x4m3e2k9v8a7s6d5f4g3".to_string(), 12));
        assert_eq!(key().open_verp(&local), want);
        assert_eq!(key().open_verp(&local.to_ascii_uppercase()), want);
        let mut forged = local.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(key().open_verp(std::str::from_utf8(&forged).unwrap()), None);
        assert_eq!(TokenKey::new([9; 32]).open_verp(&local), None);
        assert_eq!(key().open_verp("bounce+zz"), None);
        assert_eq!(key().open_verp("postmaster"), None);
        // A bounce address does not work as an unsubscribe address.
        let swapped = local.replacen("bounce", "unsubscribe", 1);
        assert_eq!(key().open_address_local("unsubscribe", &swapped), None);
        let unsub = key().address_local("unsubscribe", "msg_01jbz5x4m3e2k9v8a7s6d5f4g3", 12).unwrap();
        assert_eq!(key().open_address_local("unsubscribe", &unsub), want);
    }
}
