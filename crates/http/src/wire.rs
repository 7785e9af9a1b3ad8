//! Request and response bodies of API v1, as they travel on the wire.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentIn {
    pub filename: String,
    pub content_type: Option<String>,
    /// Base64 (standard alphabet, padding optional, line breaks allowed).
    pub content: String,
}

/// `POST /v1/messages`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    pub from: String,
    /// An address or a list of addresses (checked in `validate`, which
    /// gives better errors than serde's untagged enums).
    pub to: Option<serde_json::Value>,
    pub cc: Option<serde_json::Value>,
    pub bcc: Option<serde_json::Value>,
    pub reply_to: Option<String>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub attachments: Vec<AttachmentIn>,
    pub send_at: Option<String>,
    pub stream: Option<String>,
    /// Render subject and bodies from this template (instead of giving
    /// `subject`, `text`, `html`) with `data`.
    pub template: Option<String>,
    /// A version other than the active one.
    pub template_version: Option<i64>,
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
    /// A calendar invitation to carry (text/calendar part and invite.ics).
    pub calendar: Option<CalendarIn>,
    /// Override the tenant's tracking settings for this message.
    pub track_opens: Option<bool>,
    pub track_clicks: Option<bool>,
    /// Add List-Unsubscribe headers (default: broadcast mail yes,
    /// transactional mail as the tenant's settings say).
    pub unsubscribe: Option<bool>,
    /// What kind of mail this is, for preferences and suppressions
    /// (`marketing`, `appointment-reminders`, …).
    pub category: Option<String>,
}

/// `calendar` of `POST /v1/messages`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarIn {
    /// `request` (default: invite or update) or `cancel`.
    pub method: Option<String>,
    /// The same for every message about one event.
    pub uid: String,
    /// Higher with each change of the event.
    #[serde(default)]
    pub sequence: u32,
    pub start: String,
    pub end: String,
    /// IANA zone for `start`/`end` written without an offset.
    pub timezone: Option<String>,
    pub summary: String,
    pub description: Option<String>,
    pub location: Option<String>,
    pub url: Option<String>,
    /// Default: the message's `from`.
    pub organizer: Option<String>,
    /// Default: the message's `to` and `cc`.
    pub attendees: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecipientState {
    pub email: String,
    pub status: String,
}

/// The 202 reply to an accepted message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accepted {
    pub id: String,
    pub status: String,
    pub recipients: Vec<RecipientState>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecipientView {
    pub email: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub attempts: i64,
    pub last_response: Option<String>,
    pub updated_at: String,
    /// What handing it over cost, in US dollars.
    pub cost: f64,
    pub engagement: Engagement,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    #[serde(rename = "type")]
    pub kind: String,
    pub recipient: Option<String>,
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What else is known: the URL of a click, the user agent, whether a
    /// machine did it (`machine`, `machine_reason`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// Opens and clicks of one recipient, summed up.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Engagement {
    pub opens: i64,
    pub clicks: i64,
    /// Opens and clicks not flagged as made by a machine.
    pub human_opens: i64,
    pub human_clicks: i64,
    pub first_opened_at: Option<String>,
    pub last_opened_at: Option<String>,
    pub first_clicked_at: Option<String>,
    pub last_clicked_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    pub recipient: String,
    pub transport: String,
    pub node: String,
    pub outcome: String,
    pub response: String,
    pub at: String,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    pub id: String,
    pub status: String,
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub stream: String,
    pub tags: Vec<String>,
    pub metadata: serde_json::Value,
    pub message_id_header: String,
    pub size: i64,
    pub send_at: Option<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipients: Option<Vec<RecipientView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<EventView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<AttemptView>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct List<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}
