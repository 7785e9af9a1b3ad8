//! Domain types shared by every Epistle crate. Nothing here does I/O.
//!
//! The types follow "parse, don't validate": an [`EmailAddress`] or a
//! [`Mailbox`] can only be obtained through `parse`, so holding one means it
//! is valid and safe to put into a header or an SMTP command.

pub mod address;
pub mod apikey;
pub mod clock;
pub mod ids;
pub mod secret;
pub mod status;
pub mod suppression;
pub mod timefmt;
pub mod token;

pub use address::{AddressError, EmailAddress, Mailbox, parse_domain};
pub use clock::{Clock, SystemClock};
pub use ids::{MessageId, new_id};
pub use status::{MessageStatus, RecipientStatus, Stream, summarize};
