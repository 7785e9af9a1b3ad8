//! Custom header names and values supplied by API users.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header name `{0}` is invalid: use letters, digits and hyphens, e.g. `X-Order-Id`")]
    InvalidName(String),
    #[error("header `{0}` is set by Epistle and cannot be given in `headers`")]
    Reserved(String),
    #[error("header values must not contain line breaks or control characters")]
    ControlCharacter,
    #[error("header value is too long (at most 998 characters)")]
    TooLong,
}

/// Headers Epistle writes itself; letting callers set them would produce
/// duplicates or let them bypass checks (Bcc leaking, forged Message-ID).
const RESERVED: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "return-path",
    "received",
    "dkim-signature",
    "sender",
];

/// A header name that is safe to write: `field-name = 1*ftext` (RFC 5322),
/// restricted further to letters, digits, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderName(String);

impl HeaderName {
    pub fn parse(s: &str) -> Result<Self, HeaderError> {
        if s.is_empty() || s.len() > 76 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(HeaderError::InvalidName(s.escape_debug().to_string()));
        }
        if RESERVED.contains(&s.to_ascii_lowercase().as_str()) {
            return Err(HeaderError::Reserved(s.to_string()));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Refuses CR, LF and other control characters (tab is allowed), which
/// would let a value start a header of its own.
pub fn check_header_value(v: &str) -> Result<(), HeaderError> {
    if v.chars().any(|c| c.is_control() && c != '\t') {
        return Err(HeaderError::ControlCharacter);
    }
    if v.len() > 998 {
        return Err(HeaderError::TooLong);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(HeaderName::parse("X-Order").is_ok());
        assert!(HeaderName::parse("X-Order: 1\r\nBcc").is_err());
        assert!(HeaderName::parse("X Order").is_err());
        assert!(HeaderName::parse("").is_err());
        assert_eq!(HeaderName::parse("BCC"), Err(HeaderError::Reserved("BCC".into())));
    }

    #[test]
    fn values() {
        assert!(check_header_value("1042\twith tab").is_ok());
        assert_eq!(check_header_value("1\r\nBcc: x@y.z"), Err(HeaderError::ControlCharacter));
        assert_eq!(check_header_value("1\nx"), Err(HeaderError::ControlCharacter));
    }
}
