//! Suppression scopes: which mail an entry on the suppression list stops.
//!
//! A scope is stored as text: `""` (shown as `all`) stops every message;
//! `stream:broadcast` stops one stream; `category:marketing` stops mail of
//! one category (the preference centre's choices).

/// Does a suppression of `scope` stop a message of `stream` and `category`?
pub fn applies(scope: &str, stream: &str, category: Option<&str>) -> bool {
    match scope.split_once(':') {
        None => scope.is_empty() || scope == "all",
        Some(("stream", s)) => s == stream,
        Some(("category", c)) => category == Some(c),
        Some(_) => false,
    }
}

/// Reads a scope as the API writes it (`all`, `stream:NAME`,
/// `category:NAME`) into its stored form.
pub fn parse_scope(s: &str) -> Result<String, String> {
    let s = s.trim();
    let name_ok = |n: &str| {
        !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    match s.split_once(':') {
        _ if s.is_empty() || s == "all" => Ok(String::new()),
        Some(("stream", n)) if n == "transactional" || n == "broadcast" => Ok(s.to_string()),
        Some(("category", n)) if name_ok(n) => Ok(s.to_string()),
        _ => Err(format!(
            "`{s}` is not a scope; use `all`, `stream:transactional`, `stream:broadcast` or `category:NAME` \
             (letters, digits, - and _)"
        )),
    }
}

/// The stored form as the API shows it.
pub fn show_scope(s: &str) -> &str {
    if s.is_empty() { "all" } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert!(applies("", "transactional", None));
        assert!(applies("stream:broadcast", "broadcast", Some("x")));
        assert!(!applies("stream:broadcast", "transactional", None));
        assert!(applies("category:marketing", "broadcast", Some("marketing")));
        assert!(!applies("category:marketing", "broadcast", Some("reminders")));
        assert!(!applies("category:marketing", "broadcast", None));
        assert!(!applies("bogus:x", "broadcast", None));
        assert_eq!(parse_scope("all").unwrap(), "");
        assert_eq!(parse_scope("category:appointment-reminders").unwrap(), "category:appointment-reminders");
        assert!(parse_scope("stream:other").is_err());
        assert!(parse_scope("category:").is_err());
        assert!(parse_scope("category:a b").is_err());
        assert_eq!(show_scope(""), "all");
    }
}
