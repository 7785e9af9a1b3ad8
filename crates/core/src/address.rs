//! Email addresses and mailboxes (`Name <local@domain>`).
//!
//! Parsing is strict where it protects us (no CR, LF or other control
//! characters anywhere, so header and SMTP command injection is impossible)
//! and liberal where users need it (display names in any script,
//! internationalized domains, which are converted to their ASCII form).

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("an address must not contain line breaks or control characters")]
    ControlCharacter,
    #[error("`{0}` is not an email address: it has no `@`")]
    MissingAt(String),
    #[error("`{0}` has an empty or invalid local part (before `@`)")]
    InvalidLocalPart(String),
    #[error("`{0}` has an invalid domain (after `@`)")]
    InvalidDomain(String),
    #[error("`{0}` is too long (at most 64 characters before `@` and 254 in all)")]
    TooLong(String),
    #[error("`{0}` has a non-ASCII local part, which needs SMTPUTF8; not supported yet")]
    NonAsciiLocalPart(String),
    #[error("`{0}` is not of the form `Name <local@domain>` or `local@domain`")]
    Malformed(String),
}

/// A valid `local@domain` addr-spec. The domain is stored in its ASCII
/// (punycode) form and lower-cased; the local part keeps its case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress {
    full: String,
    at: usize,
}

impl EmailAddress {
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        if input.chars().any(|c| c.is_control()) {
            return Err(AddressError::ControlCharacter);
        }
        let s = input.trim();
        let at = s.rfind('@').ok_or_else(|| AddressError::MissingAt(s.to_string()))?;
        let (local, domain) = (&s[..at], &s[at + 1..]);
        if !local.is_ascii() {
            return Err(AddressError::NonAsciiLocalPart(s.to_string()));
        }
        if !valid_local_part(local) {
            return Err(AddressError::InvalidLocalPart(s.to_string()));
        }
        let domain = ascii_domain(domain).ok_or_else(|| AddressError::InvalidDomain(s.to_string()))?;
        if local.len() > 64 || local.len() + 1 + domain.len() > 254 {
            return Err(AddressError::TooLong(s.to_string()));
        }
        let full = format!("{local}@{domain}");
        Ok(Self { at: local.len(), full })
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }
    pub fn local_part(&self) -> &str {
        &self.full[..self.at]
    }
    /// The domain in ASCII form (IDNs are punycode, `xn--…`).
    pub fn domain(&self) -> &str {
        &self.full[self.at + 1..]
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = AddressError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<EmailAddress> for String {
    fn from(a: EmailAddress) -> String {
        a.full
    }
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

fn valid_local_part(local: &str) -> bool {
    if local.is_empty() {
        return false;
    }
    if local.len() >= 2 && local.starts_with('"') && local.ends_with('"') {
        // quoted-string: printable ASCII, with \ escapes; no bare quote or backslash.
        let inner = &local.as_bytes()[1..local.len() - 1];
        let mut i = 0;
        while i < inner.len() {
            match inner[i] {
                b'\\' if i + 1 < inner.len() => i += 2,
                b'\\' | b'"' => return false,
                b if (0x20..0x7f).contains(&b) => i += 1,
                _ => return false,
            }
        }
        return true;
    }
    local.split('.').all(|atom| !atom.is_empty() && atom.bytes().all(is_atext))
}

/// A domain name as a sending domain: lower-case ASCII (punycode for IDNs),
/// two labels or more, no address literal. `None` when it is not one.
pub fn parse_domain(input: &str) -> Option<String> {
    let input = input.trim();
    if input.starts_with('[') || input.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return None;
    }
    ascii_domain(input)
}

/// Converts a domain to lower-case ASCII (punycode for IDNs) and checks it
/// is a plausible host name: labels of letters, digits and hyphens, at
/// least two labels, or an address literal such as `[192.0.2.1]`.
fn ascii_domain(domain: &str) -> Option<String> {
    if domain.starts_with('[') && domain.ends_with(']') {
        let inner = &domain[1..domain.len() - 1];
        let ip = inner.strip_prefix("IPv6:").unwrap_or(inner);
        return ip.parse::<std::net::IpAddr>().ok().map(|_| domain.to_string());
    }
    let ascii = idna::domain_to_ascii(domain).ok()?;
    let ascii = ascii.trim_end_matches('.').to_string();
    if ascii.is_empty() || ascii.len() > 253 {
        return None;
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return None;
    }
    let ok = labels.iter().all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    ok.then_some(ascii)
}

/// An address with an optional display name, as in `From:` and `To:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    pub name: Option<String>,
    pub email: EmailAddress,
}

impl Mailbox {
    /// Accepts `local@domain`, `<local@domain>`, `Name <local@domain>` and
    /// `"Name, with comma" <local@domain>`.
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        if input.chars().any(|c| c.is_control()) {
            return Err(AddressError::ControlCharacter);
        }
        let s = input.trim();
        let Some(open) = s.rfind('<') else {
            if s.contains('>') {
                return Err(AddressError::Malformed(s.to_string()));
            }
            return Ok(Self { name: None, email: EmailAddress::parse(s)? });
        };
        if !s.ends_with('>') {
            return Err(AddressError::Malformed(s.to_string()));
        }
        let email = EmailAddress::parse(&s[open + 1..s.len() - 1])?;
        let raw_name = s[..open].trim();
        let name = if raw_name.len() >= 2 && raw_name.starts_with('"') && raw_name.ends_with('"') {
            unquote(&raw_name[1..raw_name.len() - 1])
        } else {
            if raw_name.contains(['<', '>', '"']) {
                return Err(AddressError::Malformed(s.to_string()));
            }
            raw_name.to_string()
        };
        let name = (!name.is_empty()).then_some(name);
        Ok(Self { name, email })
    }
}

fn unquote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl fmt::Display for Mailbox {
    /// Human form, for the API and logs (not for headers: the MIME builder
    /// encodes names itself).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) if n.chars().all(|c| c.is_alphanumeric() || c == ' ' || "!#$%&'*+-/=?^_`{|}~".contains(c)) => {
                write!(f, "{n} <{}>", self.email)
            }
            Some(n) => write!(f, "\"{}\" <{}>", n.replace('\\', "\\\\").replace('"', "\\\""), self.email),
            None => write!(f, "{}", self.email),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_named() {
        let m = Mailbox::parse("Jane Doe <jane@Example.COM>").unwrap();
        assert_eq!(m.name.as_deref(), Some("Jane Doe"));
        assert_eq!(m.email.as_str(), "jane@example.com");
        let m = Mailbox::parse("\"Doe, Jane\" <jane@example.com>").unwrap();
        assert_eq!(m.name.as_deref(), Some("Doe, Jane"));
        let m = Mailbox::parse("  orders@shop.example ").unwrap();
        assert_eq!(m.name, None);
        assert_eq!(m.email.local_part(), "orders");
        assert_eq!(m.email.domain(), "shop.example");
    }

    #[test]
    fn idn_domains_become_punycode() {
        let a = EmailAddress::parse("info@bücher.example").unwrap();
        assert_eq!(a.domain(), "xn--bcher-kva.example");
    }

    #[test]
    fn injection_is_refused() {
        for bad in
            ["a@b.example\r\nBcc: x@y.example", "Jane\n <jane@example.com>", "jane@example.com\r", "ja\0ne@example.com"]
        {
            assert_eq!(Mailbox::parse(bad), Err(AddressError::ControlCharacter), "{bad:?}");
        }
    }

    #[test]
    fn invalid_forms() {
        for bad in [
            "",
            "jane",
            "@example.com",
            "jane@",
            "jane@localhost",
            "jane@-bad.example",
            "ja ne@example.com",
            "jane..doe@example.com",
            "Jane <jane@example.com",
            "jane@example.com>",
            "Ja\"ne <jane@example.com>",
            "jöne@example.com",
        ] {
            assert!(Mailbox::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert!(matches!(EmailAddress::parse(&long), Err(AddressError::TooLong(_))));
    }

    #[test]
    fn quoted_local_part_and_literals() {
        assert!(EmailAddress::parse("\"john smith\"@example.com").is_ok());
        assert!(EmailAddress::parse("postmaster@[192.0.2.1]").is_ok());
        assert!(EmailAddress::parse("x@[not-an-ip]").is_err());
    }
}

#[cfg(test)]
mod display_tests {
    use super::*;

    #[test]
    fn display_quotes_only_when_needed_and_round_trips() {
        for s in [
            "Jane Doe <jane@example.com>",
            "\"Doe, Jane\" <jane@example.com>",
            "jane@example.com",
            "\"Say \\\"hi\\\"\" <a@example.com>",
        ] {
            let m = Mailbox::parse(s).unwrap();
            assert_eq!(m.to_string(), s);
            assert_eq!(Mailbox::parse(&m.to_string()).unwrap(), m);
        }
    }
}
