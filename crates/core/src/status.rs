//! Recipient and message statuses, and the stream a message belongs to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where one envelope recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientStatus {
    Queued,
    Scheduled,
    Sending,
    Sent,
    Delivered,
    Deferred,
    Bounced,
    Complained,
    Suppressed,
    Failed,
    Cancelled,
}

impl RecipientStatus {
    pub const ALL: [RecipientStatus; 11] = [
        Self::Queued,
        Self::Scheduled,
        Self::Sending,
        Self::Sent,
        Self::Delivered,
        Self::Deferred,
        Self::Bounced,
        Self::Complained,
        Self::Suppressed,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Scheduled => "scheduled",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Deferred => "deferred",
            Self::Bounced => "bounced",
            Self::Complained => "complained",
            Self::Suppressed => "suppressed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for RecipientStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecipientStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown status `{s}`; use one of {}", names.join(", "))
        })
    }
}

/// A message's status, summed up from its recipients.
pub type MessageStatus = RecipientStatus;

/// Sums up recipient statuses into one message status.
///
/// While any recipient is still pending, the message is pending too and
/// shows the most telling pending state: `deferred` (trouble) before
/// `sending`, `queued`, then `scheduled`. Once all are final, the worst
/// outcome wins: `failed`, `bounced`, `complained`, `suppressed`,
/// `cancelled`, then `sent`, and `delivered` only if every recipient was
/// delivered.
pub fn summarize(statuses: impl IntoIterator<Item = RecipientStatus>) -> MessageStatus {
    use RecipientStatus::*;
    const ORDER: [RecipientStatus; 11] =
        [Deferred, Sending, Queued, Scheduled, Failed, Bounced, Complained, Suppressed, Cancelled, Sent, Delivered];
    let mut best = ORDER.len() - 1;
    let mut any = false;
    for s in statuses {
        any = true;
        let rank = ORDER.iter().position(|o| *o == s).unwrap_or(0);
        best = best.min(rank);
    }
    if any { ORDER[best] } else { Queued }
}

/// A message's stream decides routing, tracking and unsubscribe rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    #[default]
    Transactional,
    Broadcast,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transactional => "transactional",
            Self::Broadcast => "broadcast",
        }
    }
}

impl FromStr for Stream {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "transactional" => Ok(Self::Transactional),
            "broadcast" => Ok(Self::Broadcast),
            _ => Err(format!("unknown stream `{s}`; use `transactional` or `broadcast`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RecipientStatus::*;
    use super::*;

    #[test]
    fn summary_rules() {
        assert_eq!(summarize([Sent, Sent]), Sent);
        assert_eq!(summarize([Delivered, Delivered]), Delivered);
        assert_eq!(summarize([Delivered, Sent]), Sent);
        assert_eq!(summarize([Sent, Bounced, Delivered]), Bounced);
        assert_eq!(summarize([Failed, Bounced]), Failed);
        assert_eq!(summarize([Sent, Queued]), Queued);
        assert_eq!(summarize([Sending, Deferred, Bounced]), Deferred);
        assert_eq!(summarize([Scheduled]), Scheduled);
        assert_eq!(summarize([Cancelled, Sent]), Cancelled);
    }

    #[test]
    fn status_names_round_trip() {
        for s in RecipientStatus::ALL {
            assert_eq!(s.as_str().parse::<RecipientStatus>().unwrap(), s);
        }
        assert!("lost".parse::<RecipientStatus>().is_err());
    }
}
