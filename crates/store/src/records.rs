//! Rows as the rest of Epistle sees them.

use epistle_core::RecipientStatus;

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub id: String,
    pub tenant_id: String,
    pub tenant_name: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct MessageRecord {
    pub id: String,
    pub tenant_id: String,
    pub from: String,
    pub subject: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub tags: Vec<String>,
    pub metadata: serde_json::Value,
    pub stream: String,
    pub header_message_id: String,
    pub size: i64,
    pub send_at: Option<i64>,
    pub created_at: i64,
    pub category: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RecipientRecord {
    pub id: String,
    pub message_id: String,
    pub email: String,
    pub kind: String,
    pub status: RecipientStatus,
    pub attempts: i64,
    pub last_response: Option<String>,
    pub updated_at: i64,
    /// Sum of this recipient's attempt costs, micro-USD.
    pub cost_micros: i64,
}

#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub recipient: String,
    pub transport: String,
    pub node: String,
    pub outcome: String,
    pub response: String,
    pub started_at: i64,
    pub duration_ms: i64,
}

/// A message in a list, with the statuses of its recipients.
#[derive(Debug, Clone)]
pub struct MessageSummary {
    pub message: MessageRecord,
    pub statuses: Vec<RecipientStatus>,
}
