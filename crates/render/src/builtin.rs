//! The built-in library: templates present in every tenant (a tenant's own
//! template of the same name takes its place). All are MJML on one shared
//! `layout` (header with the brand's logo or name, a card, a footer with
//! the postal address and support address), responsive, with a dark-mode
//! rule, and sample data for previews.

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::Source;

/// A built-in template: its parts, category and sample data.
#[derive(Debug, Clone)]
pub struct Builtin {
    pub name: &'static str,
    pub category: String,
    pub source: Source,
    pub sample_data: serde_json::Value,
}

const MJML: &[(&str, &str)] = &[
    ("layout", include_str!("../library/layout.mjml")),
    ("order-confirmation", include_str!("../library/order-confirmation.mjml")),
    ("shipping-notification", include_str!("../library/shipping-notification.mjml")),
    ("user-invitation", include_str!("../library/user-invitation.mjml")),
    ("welcome", include_str!("../library/welcome.mjml")),
    ("password-reset", include_str!("../library/password-reset.mjml")),
    ("appointment-confirmation", include_str!("../library/appointment-confirmation.mjml")),
    ("appointment-reminder", include_str!("../library/appointment-reminder.mjml")),
    ("appointment-rescheduled", include_str!("../library/appointment-rescheduled.mjml")),
    ("appointment-cancelled", include_str!("../library/appointment-cancelled.mjml")),
    ("lead-alert", include_str!("../library/lead-alert.mjml")),
    ("conversation-summary", include_str!("../library/conversation-summary.mjml")),
    ("daily-digest", include_str!("../library/daily-digest.mjml")),
];

const META: &str = include_str!("../library/library.json");

static BUILTINS: LazyLock<Vec<Builtin>> = LazyLock::new(|| {
    let meta: serde_json::Value = serde_json::from_str(META).expect("library.json is valid JSON (checked by a test)");
    MJML.iter()
        .map(|(name, mjml)| {
            let m = &meta[*name];
            Builtin {
                name,
                category: m["category"].as_str().unwrap_or("layout").to_string(),
                source: Source {
                    subject: m["subject"].as_str().unwrap_or("").to_string(),
                    mjml: Some((*mjml).to_string()),
                    text: m["text"].as_str().map(str::to_string),
                    ..Default::default()
                },
                sample_data: m["sample_data"].clone(),
            }
        })
        .collect()
});

/// Every built-in template, `layout` first.
pub fn builtins() -> &'static [Builtin] {
    &BUILTINS
}

pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// The built-ins under a tenant's own templates: same name, the tenant's wins.
pub fn with_builtins(mut own: HashMap<String, Source>) -> HashMap<String, Source> {
    for b in builtins() {
        own.entry(b.name.to_string()).or_insert_with(|| b.source.clone());
    }
    own
}
