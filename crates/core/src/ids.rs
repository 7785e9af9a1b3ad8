//! Identifiers. Ids are ULIDs with a type prefix: sortable by creation time,
//! unguessable enough to be handed out, and self-describing in logs.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A fresh id with the given prefix, e.g. `new_id("msg")` -> `msg_01j…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new().to_string().to_lowercase())
}

macro_rules! id_type {
    ($name:ident, $prefix:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                Self(new_id($prefix))
            }

            /// Accepts only well-formed ids of this type (`prefix_` + 26 base32 chars).
            pub fn parse(s: &str) -> Option<Self> {
                let rest = s.strip_prefix(concat!($prefix, "_"))?;
                if rest.len() == 26 && rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    Some(Self(s.to_string()))
                } else {
                    None
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(MessageId, "msg");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_only_own_prefix() {
        let id = MessageId::generate();
        assert_eq!(MessageId::parse(id.as_str()), Some(id.clone()));
        assert!(MessageId::parse(&id.as_str().replace("msg_", "att_")).is_none());
        assert!(MessageId::parse("msg_short").is_none());
        assert!(MessageId::parse("msg_../../etc/passwd0000000000").is_none());
    }
}
