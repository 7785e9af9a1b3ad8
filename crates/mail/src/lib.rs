//! The mail crate turns a validated composition into RFC 5322 / MIME bytes.
//!
//! MIME structure, RFC 2047 encoded words, quoted-printable / base64 choice
//! and line folding come from `mail-builder`; this crate decides what goes
//! into the message (Message-ID on the sender's domain, Date, no Bcc
//! header) and guards the inputs it does not get from `epistle-core`'s
//! typed addresses (header names and values).

pub mod bounce;
pub mod calendar;
pub mod compose;
pub mod dkim;
pub mod header;

pub use compose::{Attachment, Composition, build_message};
pub use header::{HeaderError, HeaderName, check_header_value};
