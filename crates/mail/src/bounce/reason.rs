//! Reasons, and the one place that turns a status code and diagnostic text into a reason.
//!
//! The phrase lists are written for this project from what common MTAs (Postfix, Exim,
//! Sendmail, qmail, Exchange / Office 365, Gmail, Yahoo, …) put in their replies; the
//! enhanced status codes follow RFC 3463 and the IANA registry of enhanced status codes.

use serde::Serialize;

use super::text::Phase;

/// Why a message was not delivered (or what a report says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// The mailbox does not exist (hard).
    UserUnknown,
    /// The domain does not exist or has no mail host (hard).
    HostUnknown,
    /// The address has moved; the reply names no forwarding (hard).
    HasMoved,
    /// The destination accepts no mail at all, e.g. a null MX (hard when permanent).
    NotAccept,
    MailboxFull,
    Expired,
    Filtered,
    Rejected,
    Blocked,
    Feedback,
    AuthFailure,
    NetworkError,
    Suspend,
    PolicyViolation,
    RequirePtr,
    SpamDetected,
    SystemError,
    SecurityError,
    MailerError,
    NoRelaying,
    OnHold,
    TooManyConn,
    NotCompliantRfc,
    Vacation,
    Delivered,
    ExceedLimit,
    MesgTooBig,
    BadReputation,
    ContentError,
    VirusDetected,
    SyntaxError,
    Speeding,
    Undefined,
    FailedStartTls,
    SystemFull,
}

impl Reason {
    /// Every reason, in the order of the documentation.
    pub const ALL: [Reason; 35] = [
        Reason::UserUnknown,
        Reason::HostUnknown,
        Reason::HasMoved,
        Reason::NotAccept,
        Reason::MailboxFull,
        Reason::Expired,
        Reason::Filtered,
        Reason::Rejected,
        Reason::Blocked,
        Reason::Feedback,
        Reason::AuthFailure,
        Reason::NetworkError,
        Reason::Suspend,
        Reason::PolicyViolation,
        Reason::RequirePtr,
        Reason::SpamDetected,
        Reason::SystemError,
        Reason::SecurityError,
        Reason::MailerError,
        Reason::NoRelaying,
        Reason::OnHold,
        Reason::TooManyConn,
        Reason::NotCompliantRfc,
        Reason::Vacation,
        Reason::Delivered,
        Reason::ExceedLimit,
        Reason::MesgTooBig,
        Reason::BadReputation,
        Reason::ContentError,
        Reason::VirusDetected,
        Reason::SyntaxError,
        Reason::Speeding,
        Reason::Undefined,
        Reason::FailedStartTls,
        Reason::SystemFull,
    ];

    /// The lower-case name used in JSON and the documentation.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UserUnknown => "userunknown",
            Reason::HostUnknown => "hostunknown",
            Reason::HasMoved => "hasmoved",
            Reason::NotAccept => "notaccept",
            Reason::MailboxFull => "mailboxfull",
            Reason::Expired => "expired",
            Reason::Filtered => "filtered",
            Reason::Rejected => "rejected",
            Reason::Blocked => "blocked",
            Reason::Feedback => "feedback",
            Reason::AuthFailure => "authfailure",
            Reason::NetworkError => "networkerror",
            Reason::Suspend => "suspend",
            Reason::PolicyViolation => "policyviolation",
            Reason::RequirePtr => "requireptr",
            Reason::SpamDetected => "spamdetected",
            Reason::SystemError => "systemerror",
            Reason::SecurityError => "securityerror",
            Reason::MailerError => "mailererror",
            Reason::NoRelaying => "norelaying",
            Reason::OnHold => "onhold",
            Reason::TooManyConn => "toomanyconn",
            Reason::NotCompliantRfc => "notcompliantrfc",
            Reason::Vacation => "vacation",
            Reason::Delivered => "delivered",
            Reason::ExceedLimit => "exceedlimit",
            Reason::MesgTooBig => "mesgtoobig",
            Reason::BadReputation => "badreputation",
            Reason::ContentError => "contenterror",
            Reason::VirusDetected => "virusdetected",
            Reason::SyntaxError => "syntaxerror",
            Reason::Speeding => "speeding",
            Reason::Undefined => "undefined",
            Reason::FailedStartTls => "failedstarttls",
            Reason::SystemFull => "systemfull",
        }
    }

    /// Parses the lower-case name.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the reason means the address itself is bad, given whether the failure was
    /// permanent (5xx / 5.x.x). `notaccept` is hard only when permanent.
    pub fn is_hard(self, permanent: bool) -> bool {
        match self {
            Reason::UserUnknown | Reason::HostUnknown | Reason::HasMoved => true,
            Reason::NotAccept => permanent,
            _ => false,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Phrase lists, most specific first. Matched against lower-cased text with runs of
/// white space collapsed to one space.
const PHRASES: &[(Reason, &[&str])] = &[
    // Whole sentences particular servers and filters write (qmail and its patches, vpopmail,
    // Exchange, Domino, Postfix, anti-spam gateways, large mailbox providers), first because a
    // broad phrase further down would misread them ("mailbox size limit exceeded" is a full
    // mailbox, not a large message; "blocked by spamassassin" is spam, not a block list).
    (
        Reason::MailboxFull,
        &[
            "mailbox size limit exceeded",
            "mailbox exceeds allowed size",
            "user has too many messages on the server",
            "user's space has been used up",
            "boite du destinataire pleine",
            // Wordings of a full mailbox that broader phrases below would read as a large
            // message, a disabled account or a full disk. These three disk wordings are what
            // delivery agents write when the recipient's own store is out of room, and the
            // labels read them so whatever the code; "insufficient disk space" alone stays a
            // full system (with 4.4.5 or 4.3.1 the labels say so).
            "not enough disk space",
            "not sufficient disk space",
            "no space left on device",
            "does not have enough space",
            "mail file size exceeds the maximum size allowed for mail delivery",
            "account disabled temporarly for exceeding receiving limits",
        ],
    ),
    (
        Reason::SpamDetected,
        &[
            "blocked by spamassassin",
            "blocked by policy: no spam please",
            "content filter rejection",
            "message considered as spam or virus",
            "message contains spam or virus",
            "rejected for possible spam/virus content",
            "message was rejected by recurrent pattern detection system",
            "your message failed several antispam checks",
            "reject bulk.advertising",
            "rejected - bulk email",
            "rejecting mail content",
            "mail content denied",
            "blacklisted url in message",
            "rejecting banned content",
            "message rejected because of unacceptable content",
        ],
    ),
    (
        Reason::PolicyViolation,
        &[
            "message rejected due to local policy",
            "email rejected due to security policies",
            "message bounced due to organizational settings",
            "by non-member to a members-only list",
            "closed mailing list",
            "we do not accept messages containing images or other attachments",
            "you're using a mass mailer",
            "an illegal attachment on your message",
        ],
    ),
    (
        Reason::Rejected,
        &[
            "sender email address rejected",
            "batv failed to verify",
            "batv validation failure",
            "rejected by batv defense",
            "(batv: no tag",
            "error: no third-party dsns",
            "unsigned dsn for",
            "returned mail not accepted here",
            "can't determine purported responsible address",
            "fully qualified email address required",
            "sender not pre-approved",
            "sender was rejected",
            "denied [bouncedeny]",
            "emetteur invalide",
            // Refusals of the sender (after sisimai's list): before "does not accept
            // mail", "blacklisted", "expired" and "invalid domain", which they contain.
            "this server does not accept mail from",
            "backscatter protection detected an invalid or expired email address",
            "access denied (sender blacklisted)",
            "sender is in my black list",
            "empty envelope senders not allowed",
            "syntax error: empty email address",
            "email address is not verified",
            "valid-address-filter",
            "recursive cname records for",
            "your access to submit messages to this e-mail system has been rejected",
            "email address is on senderfilterconfig list",
            "from: domain is invalid",
            "invalid domain, see <",
            "delivery not authorized, message refused",
            "envelope blocked -",
            "rule imposed mailbox access for",
            "sending this from a different address or alias using the",
        ],
    ),
    (
        Reason::NoRelaying,
        &[
            "not allowed to relay through this machine",
            "this system is not configured to relay mail",
            "relay prohibition",
            "we don't handle mail for",
            "send to a non-local e-mail address",
            // Before "insecure" (a security error) and qmail's rcpthosts refusal, which has no
            // word of relaying.
            "insecure mail relay",
            "that domain isn't in my list of allowed rcpthosts",
            "not local host",
            "specified domain is not allowed",
        ],
    ),
    (
        Reason::RequirePtr,
        &[
            "we do not accept mail from hosts with dynamic ip or generic dns ptr-records",
            "bad dns ptr resource record",
            "forward dns entry does not point to the sending ip",
            "mismatches client ip",
            "unverifyable sending ips",
        ],
    ),
    (
        Reason::AuthFailure,
        &[
            "from address doesn't meet the authentication requirements",
            "doesn't meet the required authentication level",
            "please inspect your spf settings",
            "bad spf records for",
            "spf.pobox.com",
        ],
    ),
    (
        Reason::Speeding,
        &["has been temporarily rate limited", "please try again slower", "has exceeded the max emails per hour"],
    ),
    (Reason::TooManyConn, &["trop de connexions"]),
    // Greylisting (Postgrey, rspamd, …) defers a client it has not seen before: about the
    // sending host, whatever "recipient address rejected" in front of it says.
    (Reason::Blocked, &["greylisted", "greylisting", "graylisted", "graylisting"]),
    // Refusals of the sending host (after sisimai's list), before the sender and policy
    // wordings they contain ("mail from", "not allowed").
    (
        Reason::Blocked,
        &[
            "we do not accept mail from dynamic ips",
            "you are not allowed to connect",
            "rejected because the sending mta or the sender has not passed validation",
            "esmtp not accepting connections",
            "extreme bad ip profile",
            "no access from mail server",
            "rejecting open proxy",
            "confirm this mail server",
            "blocked - see http",
            "refused - see http",
            "said: blocked",
            "connection was dropped by remote host",
        ],
    ),
    // A domain that takes no mail, before "disabled" (a suspended account).
    (Reason::NotAccept, &["mail receiving disabled", "no route for current request"]),
    (
        Reason::MesgTooBig,
        &[
            "exceeded maximum inbound message size",
            "exceeded the maximum incoming message size",
            "max message size exceeded",
            "taille limite du message atteinte",
        ],
    ),
    (
        Reason::ContentError,
        &[
            "message contain invalid mime headers",
            "message contain improperly-formatted binary content",
            "message contain text that uses unnecessary base64 encoding",
            "mime complexity exceeds the policy maximum",
        ],
    ),
    (Reason::VirusDetected, &["potentially executable attachment"]),
    (Reason::FailedStartTls, &["tls required but not supported"]),
    (
        Reason::Suspend,
        &[
            "address no longer accepts mail",
            "archived recipient",
            "user is terminated",
            "recipient suspend the service",
            "boite du destinataire archivee",
            // MDaemon's and others' refusal of a disabled account, before "mailbox unavailable".
            "mailbox unavailable or access denied",
            "temporary locked",
        ],
    ),
    (
        Reason::Filtered,
        &[
            "account is protected by",
            "has restricted sms e-mail",
            "is not accepting any mail",
            "refuse to receive mail",
            "refuses to receive this mail",
            "refused due to recipient preferences",
            "not found recipient account",
        ],
    ),
    (
        Reason::HostUnknown,
        &[
            "domain mentioned in email address is unknown",
            "recipient domain must exist",
            "dns server returned answer with no data",
            "illegal host/domain name found",
            "couldn't find any host",
        ],
    ),
    (
        Reason::UserUnknown,
        &[
            "badrcptto",
            "badrecipientto",
            "invalid or unknown virtual user",
            "address not present in directory",
            "not a valid recipient",
            "not a valid user here",
            "is not an active address at this host",
            "no mail box available for this user",
            "mailbox not present",
            "there is no one at this address",
            "user missing home directory",
            "destination addresses were unknown",
            "user not known",
            "recipient not ok",
            "unknown e-mail address",
            "unknown email address",
            "utilisateur inconnu",
            "no existe ese usuario",
            "no existe dicha persona",
            "nessun utente simile",
            "#5.1.1 bad address",
            "can't accept user",
            "mailbox unavaiable",
            "no thank you rejected: account unavailable",
            "envelope recipient has been denied",
            "recipnotfound",
            "weil die adresse nicht gefunden wurde",
            // Local delivery agents: maildrop, vmailmgr.
            "cannot find system user",
            "invalid or unknown base user or domain",
            "user name does not refer to a virtual user",
        ],
    ),
    (
        Reason::NetworkError,
        &[
            "mail forwarding loop for",
            "maximum forwarding loop count exceeded",
            "message looping",
            "all routes to destination blocked",
            "network error on destination mxs",
            "address family mismatch on destination mxs",
            "could not contact dns servers",
            "temporary failure in mx lookup",
            "listed as a best-preference mx",
        ],
    ),
    (
        Reason::Expired,
        &[
            "unable to deliver message after multiple retries",
            "was not reachable within the allowed queue period",
            "could not deliver for the last",
            "server did not accept our requests to connect",
            "it has not been collected after",
        ],
    ),
    (
        Reason::SystemError,
        &[
            "aliasing/forwarding loop broken",
            "can't create user output file",
            "interrupted system call",
            "input/output error",
            "mail transport unavailable",
            "system config error",
            "temporary local problem",
            "error while executing qmail-forward",
            "several matches found in domino directory",
            "too many results returned but needs to be unique",
            "automatic homedir creator crashed",
            "recipient deferred because there is no mdb",
            "loop was found in the mail exchanger",
            "ldap lookup",
        ],
    ),
    (Reason::MailerError, &["command failed:", "bin/maildrop"]),
    // Unambiguous statements that the mailbox does not exist, before anything looser.
    (
        Reason::UserUnknown,
        &[
            "user unknown",
            "unknown user",
            "no such user",
            "no such mailbox",
            "not listed in",
            "mailbox not found",
            // qmail's rcpthosts refusal as some servers word it, and Exchange's resolver.
            "that domain or user isn't in my list of allowed rcpthosts",
            "resolver.adr.recipient notfound",
            "destination server rejected recipients",
            "the following recipients was undeliverable",
            "not a local address",
            "not email addresses",
            "recipient refuses to accept your mail",
        ],
    ),
    // The sender's address is refused (not the sending host's IP): before the block lists.
    (
        Reason::Rejected,
        &[
            "address that has been blacklisted",
            "sender address has been blacklisted",
            "your email address has been blacklisted",
            "not a registered gateway user",
            "recipient addresses rejected : access denied",
            // Yahoo's TSS04 / TSS09: the sender's mail is deferred for complaints or volume.
            "temporarily deferred due to unexpected volume or user complaints",
            "will be permanently deferred",
        ],
    ),
    // A message going round in circles: the network, whatever else the reply says.
    (
        Reason::NetworkError,
        &["mail loop", "routing loop", "too many hops", "hop count exceeded", "loop detected", "loops back to myself"],
    ),
    // The message breaks RFC 5322 (header counts and required fields).
    (
        Reason::NotCompliantRfc,
        &[
            "not rfc 5322 compliant",
            "not rfc5322 compliant",
            "not rfc 2822 compliant",
            "not rfc2822 compliant",
            "rfc 5322 compliant",
            "rfc5322 compliant",
            "multiple addresses in from",
            "multiple from headers",
            "multiple from:",
            "more than one from",
            "duplicate message-id",
            "multiple message-id",
            "multiple date",
            "duplicate header",
            "missing message-id",
            "no message-id",
            "missing date header",
            "header field line too long",
            "header line too long",
            "bare lf",
            "bare linefeed",
            "bare line feed",
        ],
    ),
    (
        Reason::VirusDetected,
        &["virus", "malware", "infected", "trojan", "worm found", "malicious attachment", "phishing"],
    ),
    (
        Reason::AuthFailure,
        &[
            "dmarc",
            "spf check",
            "spf fail",
            "spf validation",
            "failed spf",
            "fails spf",
            "spf record",
            "sender policy framework",
            "spf=fail",
            "spf: fail",
            "dkim",
            "domainkeys",
            "unauthenticated email",
            "not authenticated by the sending domain",
            "sender authentication",
            "sender is not authorized to send",
            "not designated as permitted sender",
            "does not designate",
            "is not allowed to send mail for",
            "authentication checks",
        ],
    ),
    (
        Reason::RequirePtr,
        &[
            "reverse dns",
            "reverse-dns",
            "reverse lookup",
            "reverse mapping",
            "no ptr",
            "ptr record",
            "rdns",
            "cannot find your hostname",
            "cannot resolve your",
            "can't resolve your",
            "unresolvable address",
            "could not resolve your",
            "does not have a valid ptr",
            "no reverse",
            "missing ptr",
            "ip name lookup failed",
            "client host rejected: cannot find",
            "hostname does not match",
            "does not resolve to",
            "your ip has no hostname",
            "without a valid hostname",
        ],
    ),
    (
        Reason::TooManyConn,
        &[
            "connection frequency",
            "too many recipients",
            "too many connections",
            "too many concurrent",
            "too many simultaneous",
            "connection limit",
            "maximum number of connections",
            "too many sessions",
            "too many smtp sessions",
            "connections from your",
            "too many open connections",
            "concurrent connections",
            "connection rate limit",
            "too many errors",
        ],
    ),
    (
        Reason::Speeding,
        &[
            "rate limit",
            "rate limited",
            "rate-limit",
            "ratelimit",
            "sending rate",
            "too fast",
            "slow down",
            "too many messages",
            "too many recipients for",
            "unusual rate",
            "receiving mail at a rate",
            "rate of",
            "throttl",
            "exceeded the rate",
            "too frequently",
        ],
    ),
    (Reason::BadReputation, &["reputation", "sender score", "senderscore"]),
    (
        Reason::NoRelaying,
        &[
            "relay access denied",
            "relaying denied",
            "relay denied",
            "relaying not",
            "relay not",
            "not permitted to relay",
            "unable to relay",
            "cannot relay",
            "can't relay",
            "we do not relay",
            "relaying mail to",
            "relay prohibited",
            "not a gateway",
            "no relaying",
            "open relay",
            "isn't allowed to relay",
            "relay from this",
            "as a relay",
        ],
    ),
    (
        Reason::Blocked,
        &[
            "invalid ip",
            "of your isp",
            "your isp's",
            "blacklisted",
            "blacklist",
            "black list",
            "blocklist",
            "block list",
            "blocked using",
            "dnsbl",
            "rbl",
            "spamhaus",
            "spamcop",
            "sorbs",
            "is listed",
            "listed at",
            "listed on",
            "listed in",
            "on our block",
            "your ip",
            "ip address",
            "your host",
            "client host",
            "connecting host",
            "sending host",
            "sender ip",
            "dynamic ip",
            "dynamic address",
            "residential",
            "dial-up",
            "dialup",
            "banned",
            "connections not accepted from",
            "connection refused by",
            "not accepting connections from",
            "refused to talk to me",
            "your network",
            "bad host",
            "blocked by",
            "has been blocked",
            "have been blocked",
            "is blocked",
            "been temporarily blocked",
            "you have been",
            "your server",
        ],
    ),
    (
        Reason::SpamDetected,
        &[
            "spam",
            "junk mail",
            "unsolicited",
            "bulk mail",
            "bulk e-mail",
            "looks like a spam",
            "classified as junk",
            "content rejected",
            "message content rejected",
            "suspicious",
            "score too high",
            "high probability",
        ],
    ),
    (
        Reason::FailedStartTls,
        &[
            "starttls failed",
            "failed to starttls",
            "starttls negotiation",
            "tls negotiation failed",
            "tls negotiation",
            "tls handshake",
            "tls connection failed",
            "starttls is required",
            "must issue a starttls",
            "must issue starttls",
            "starttls required",
            "starttls command first",
            "does not support tls",
            "does not support starttls",
            "starttls not supported",
            "starttls is not supported",
            "tls not available",
            "tls is not available",
        ],
    ),
    (
        Reason::SecurityError,
        &[
            "unauthenticated senders",
            "unauthenticated sender",
            "tls required",
            "encryption required",
            "must use tls",
            "authentication required",
            "authentication is required",
            "auth required",
            "authentication failed",
            "must authenticate",
            "certificate",
            "security policy",
            "verification failure",
            "insecure",
            "please authenticate",
            "smtp auth",
            "account is not authorized",
            "authorization failed",
            "not authorized to send",
            "message not authorized",
            "authentication credentials invalid",
            "authentication failure",
            "authentication turned on in your email client",
            "account not subscribed to ses",
            "is not authorized to perform ses:",
            "you don't authenticate",
            "authentification invalide",
            "authentification requise",
        ],
    ),
    (
        Reason::MesgTooBig,
        &[
            "message too large",
            "message too big",
            "message is too large",
            "message is too big",
            "mail too large",
            "message size exceeds",
            "message length exceeds",
            "size of the message",
            "message exceeds the maximum size",
            "exceeds size limit",
            "exceeded the maximum message size",
            "larger than the maximum",
            "message size limit",
            "too large for",
            "size limit exceeded",
            "message file too big",
            "size exceeds",
        ],
    ),
    (
        Reason::MailboxFull,
        &[
            "mailbox full",
            "mailbox is full",
            "mailbox was full",
            "mailbox has exceeded",
            "mailbox exceeded",
            "full mailbox",
            "over quota",
            "overquota",
            "over the quota",
            "quota exceeded",
            "exceeded quota",
            "exceeds quota",
            "exceeded its quota",
            "exceeded storage",
            "storage allocation",
            "user is over",
            "mailbox size limit",
            "mailbox is over",
            "mail quota",
            "disk quota",
            "quota full",
            "inbox is full",
            "account is full",
            "mailfolder is full",
            "not enough storage",
            "out of storage",
            "too much mail",
            "would exceed",
            "exceeds the storage",
            "no space in mailbox",
            "insufficient space",
            "mailbox is almost full",
            "quota",
        ],
    ),
    (Reason::ExceedLimit, &["exceeds the limit", "exceeded the limit", "limit exceeded", "exceeded a limit"]),
    (
        Reason::SystemFull,
        &[
            "disk space",
            "insufficient storage",
            "insufficient system storage",
            "insufficient system resources",
            "system storage",
            "disk full",
            "disk is full",
            "out of disk",
            "no space left",
            "file system full",
            "filesystem full",
            "mail system full",
            "queue is full",
            "system is full",
        ],
    ),
    (Reason::HasMoved, &["has been replaced by"]),
    (
        Reason::Suspend,
        &[
            "suspended",
            "disabled",
            "deactivated",
            "inactive",
            "not active",
            "is locked",
            "account locked",
            "account is blocked",
            "mailbox is blocked",
            "expired account",
            "account expired",
            "account has expired",
            "temporarily unavailable",
            "mailbox unavailable temporarily",
            "on hold",
            "frozen",
            "account has been closed",
            "unused",
            "dormant",
        ],
    ),
    (
        Reason::NotAccept,
        &[
            "not accepting network messages",
            "no smtp service",
            "system not accepting",
            "does not accept mail",
            "doesn't accept mail",
            "no mx found",
            "no mx record",
            "does not accept e-mail",
            "not accept any mail",
            "accepts no mail",
            "no mail service",
            "null mx",
            "nullmx",
            "does not receive mail",
            "not accepting mail",
            "mail is not accepted",
            "does not handle mail",
            "receives no mail",
            "smtp protocol returned a permanent error",
        ],
    ),
    (
        Reason::HostUnknown,
        &[
            "host unknown",
            "unknown host",
            "host not found",
            "no such host",
            "hostname not found",
            "host or domain name not found",
            "domain not found",
            "domain name not found",
            "no such domain",
            "unknown domain",
            "domain does not exist",
            "domain doesn't exist",
            "domain is not valid",
            "invalid domain",
            "unrouteable mail domain",
            "unroutable mail domain",
            // Exim's word when no router takes the address: its domain leads nowhere.
            "unrouteable address",
            "unroutable address",
            "responded with code nxdomain",
            "non-existent host",
            "non-existent hosts",
            "nonexistent host",
            "nonexistent hosts",
            "non-existent domain",
            "nonexistent domain",
            "name or service not known",
            "nxdomain",
            "no mx",
            "mx record",
            "no valid mx",
            "couldn't be found because the domain",
            "domain couldn't be found",
            "domain could not be found",
            "host name lookup failure",
            "name server",
            "nameserver",
            "unknown mail domain",
            "mail domain not found",
            "domain name not allowed",
            "dns error",
            "dns lookup",
            "unresolvable",
            "could not be resolved",
            "cannot be resolved",
            "unable to resolve",
            "not a valid domain",
            "unknown subdomain",
        ],
    ),
    (
        Reason::Rejected,
        &[
            "sender address rejected",
            "sender rejected",
            "sender denied",
            "sender refused",
            "sender blocked",
            "sender unknown",
            "unknown sender",
            "invalid sender",
            "bad sender",
            "sender verify",
            "sender verification",
            "sender is not allowed",
            "sender not allowed",
            "sender domain",
            "sender's domain",
            "domain of sender",
            "sender address",
            "envelope sender",
            "envelope from",
            "mail from",
            "from address",
            "return path",
            "return-path",
            "reverse path",
            "not have permission to post",
            "permission to post",
            "your address",
            "address is not allowed",
            "not allowed to send",
        ],
    ),
    (
        Reason::UserUnknown,
        &[
            "user unknown",
            "unknown user",
            "no such user",
            "no such mailbox",
            "no such recipient",
            "no such address",
            "no such account",
            "no such person",
            "no such local user",
            "mailbox not found",
            "mailbox unavailable",
            "mailbox does not exist",
            "mailbox doesn't exist",
            "mailbox not available",
            "mailbox is unavailable",
            "no mailbox",
            "invalid mailbox",
            "not a valid mailbox",
            "bad destination mailbox",
            "unknown mailbox",
            "recipient not found",
            "recipient unknown",
            "unknown recipient",
            "invalid recipient",
            // Postfix's and Exchange Online's refusal of an address the directory lacks
            // (bare "address rejected" is also said of senders).
            "recipient address rejected: access denied",
            "recipient rejected",
            "recipient does not exist",
            "recipient is not",
            "address unknown",
            "unknown address",
            "address not found",
            "address does not exist",
            "addressee unknown",
            "user not found",
            "user does not exist",
            "user doesn't exist",
            "user doesn't have",
            "user does not have",
            "not a known user",
            "unknown local part",
            "unknown local-part",
            "account does not exist",
            "account that you tried to reach does not exist",
            "does not exist",
            "doesn't exist",
            "couldn't be found",
            "could not be found",
            "is not a valid",
            "invalid address",
            "no longer available",
            "no longer valid",
            "no longer exists",
            "not our customer",
            "not listed in",
            "illegal alias",
            "unknown alias",
            "no account",
            "nonexistent",
            "non-existent",
            "not exist",
            "undeliverable address",
            "no valid recipients",
            "address error",
            "user invalid",
            "invalid user",
            "unknown or illegal",
            "address invalid",
            "mailbox invalid",
            "bad recipient",
            "not found",
        ],
    ),
    (
        Reason::NotCompliantRfc,
        &[
            "rfc 5322",
            "rfc5322",
            "rfc 2822",
            "rfc2822",
            "rfc 822",
            "rfc822 specification",
            "rfc-5322",
            "not rfc",
            "non-compliant",
            "not compliant",
            "multiple from",
            "duplicate header",
            "more than one",
            "malformed",
            "header is missing",
            "missing required header",
        ],
    ),
    (
        Reason::SyntaxError,
        &[
            "syntax error",
            "command unrecognized",
            "unrecognized command",
            "command not recognized",
            "bad sequence of commands",
            "command not implemented",
            "parameter not implemented",
            "invalid command",
            "line too long",
            "syntax",
        ],
    ),
    (
        Reason::ContentError,
        &[
            "headers too large",
            "header too large",
            "too many headers",
            "header size",
            "illegal character",
            "invalid character",
            "8-bit",
            "8bit",
            "not allowed file",
            "file type",
        ],
    ),
    (
        Reason::Filtered,
        &[
            "filtered",
            "filter",
            "rejected by recipient",
            "blocked by recipient",
            "refused by recipient",
            "recipient has blocked",
            "does not wish to receive",
            "not accept mail from you",
            "does not accept mail from",
            "not authorized to receive",
            "not allowed to receive",
            "recipient refuses",
            "message rejected",
            "rejected by the recipient",
        ],
    ),
    (
        Reason::PolicyViolation,
        &[
            "denied by policy",
            "potential security issue",
            "multiple addresses",
            "policy",
            "prohibited",
            "violat",
            "not allowed",
            "not permitted",
            "is forbidden",
            "administrative",
            "not in whitelist",
            "not whitelisted",
        ],
    ),
    (
        Reason::Expired,
        &[
            "will be retried",
            "more day",
            "attempts",
            "retry timeout",
            "retry time",
            "retry period",
            "has been retried",
            "could not be delivered within",
            "delivery time expired",
            "delivery expired",
            "message expired",
            "expired",
            "too long in the queue",
            "been in the queue",
            "in queue too long",
            "queued too long",
            "maximum time",
            "giving up",
            "gave up",
            "couldn't be delivered for",
            "could not be delivered for",
            "for more than",
            "days",
            "hours",
            "message timed out",
            "failing for a long time",
            "long failure period",
            "aborted after",
            "hour(s)",
            "day(s)",
            "more hours",
            "in the queue for too long",
            "lifetime exceeded",
            "queue lifetime",
        ],
    ),
    (
        Reason::NetworkError,
        &[
            "connection timed out",
            "timed out",
            "timeout",
            "connection refused",
            "connection reset",
            "lost connection",
            "network is unreachable",
            "no route to host",
            "unable to connect",
            "could not connect",
            "couldn't connect",
            "cannot connect",
            "can't connect",
            "failed to connect",
            "connect to",
            "too many hops",
            "mail loop",
            "routing loop",
            "loops back",
            "loop detected",
            "hop count",
            "remote host did not",
            "no answer",
            "unreachable",
            "temporary dns",
            "dns failure",
            "temporary lookup failure",
        ],
    ),
    (
        Reason::MailerError,
        &[
            "mailer error",
            "command died",
            "exited with",
            "exit status",
            "pipe to",
            "procmail",
            "unknown mailer",
            "program failed",
            "permission denied",
            "no such file or directory",
            "broken pipe",
            "local delivery failed",
            "command output",
            "returned error",
            "signal",
        ],
    ),
    (
        Reason::SystemError,
        &[
            "service currently unavailable",
            "system error",
            "internal error",
            "server error",
            "system failure",
            "malfunction",
            "local error in processing",
            "configuration error",
            "misconfigur",
            "transaction failed",
            "timeout waiting for input",
            "internal error reading data",
            "queue file write error",
            "i/o error",
        ],
    ),
];

/// Collapses white space and lower-cases.
pub(crate) fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Postfix-style prefixes that say which address was refused and then give the cause after
/// a colon ("Recipient address rejected: Internal system error"): the cause is read first.
const REJECTED_PREFIXES: &[&str] =
    &["recipient address rejected:", "sender address rejected:", "client host rejected:", "helo command rejected:"];

/// Drops the reply and status codes that multi-line replies repeat on every line
/// (`… a potential 552-5.7.0 security issue`), so that phrases broken across lines match.
fn without_codes(t: &str) -> String {
    let is_reply = |w: &str| {
        let w = w.trim_end_matches('-');
        w.len() == 3 && w.starts_with(['2', '4', '5']) && w.chars().all(|c| c.is_ascii_digit())
    };
    let is_status = |w: &str| {
        let parts: Vec<&str> = w.split('.').collect();
        parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..].iter().all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()))
    };
    t.split(' ')
        .filter(|w| {
            let (a, b) = w.split_once('-').unwrap_or((w, ""));
            !(is_reply(w) || is_status(w) || is_reply(a) && is_status(b) || *w == "<<<")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first reason whose phrase occurs in the text (phrases in priority order).
pub(crate) fn reason_from_text(text: &str) -> Option<Reason> {
    let t = without_codes(&normalize(text));
    if t.is_empty() {
        return None;
    }
    for prefix in REJECTED_PREFIXES {
        if let Some(i) = t.find(prefix) {
            let cause = &t[i + prefix.len()..];
            if let Some(r) = phrase_reason(cause) {
                return Some(r);
            }
        }
    }
    phrase_reason(&t)
}

/// Whether any phrase of reason `r` occurs in the text, whatever other reason a phrase listed
/// earlier names.
/// `t` as [`reason_from_text`] prepares it.
fn mentions(t: &str, r: Reason) -> bool {
    PHRASES.iter().filter(|(reason, _)| *reason == r).any(|(_, phrases)| phrases.iter().any(|p| contains_phrase(t, p)))
        || PAIRS.iter().any(|(reason, a, b)| *reason == r && pair_in(t, a, b))
}

/// `t` without the phrases of reason `r` (each replaced by a space).
fn without_reason(t: &str, r: Reason) -> String {
    let mut out = t.to_string();
    for (_, phrases) in PHRASES.iter().filter(|(reason, _)| *reason == r) {
        for p in *phrases {
            if out.contains(p) {
                out = out.replace(p, " ");
            }
        }
    }
    out
}

/// Wordings with the address or domain between their two halves ("domain example.org does
/// not exist", "mailbox of ann is full", "relay access for ann@x denied"), as (reason,
/// first half, second half). The halves must come in this order, at most [`PAIR_GAP`]
/// characters apart; they are read before the phrases, whose shorter halves they contain.
const PAIRS: &[(Reason, &str, &str)] = &[
    (Reason::HostUnknown, "domain ", " does not exist"),
    (Reason::SecurityError, "domain ", " is a dead domain"),
    (Reason::Blocked, "server ip ", " listed as abusive"),
    (Reason::Blocked, "your access ip", " has been rejected"),
    (Reason::MailboxFull, "mailbox ", " is full"),
    (Reason::MailboxFull, "mailbox ", " full"),
    (Reason::UserUnknown, "user (", ") unknown"),
    (Reason::UserUnknown, "no ", " in name directory"),
    (Reason::NoRelaying, "relay access ", " denied"),
    (Reason::NoRelaying, "relaying ", " denied"),
    (Reason::Speeding, "temporarily ", " rate limited"),
];

const PAIR_GAP: usize = 64;

fn pair_reason(t: &str) -> Option<Reason> {
    PAIRS.iter().find(|(_, a, b)| pair_in(t, a, b)).map(|(r, ..)| *r)
}

/// `a`, then `b` within [`PAIR_GAP`] characters, with no sentence end between them; `a`
/// starts a word.
fn pair_in(t: &str, a: &str, b: &str) -> bool {
    let mut from = 0;
    while let Some(i) = t[from..].find(a) {
        let start = from + i;
        let after = start + a.len();
        let word_start = t[..start].chars().next_back().is_none_or(|c| !c.is_alphanumeric());
        if word_start {
            let end = t.len().min(after + PAIR_GAP + b.len());
            let end = (end..=t.len()).find(|&e| t.is_char_boundary(e)).unwrap_or(t.len());
            let window = &t[after.saturating_sub(1)..end];
            if let Some(j) = window.find(b)
                && !window[..j].contains(". ")
                && window[j + b.len()..].chars().next().is_none_or(|c| !c.is_alphanumeric())
            {
                return true;
            }
        }
        from = start + t[start..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

fn phrase_reason(t: &str) -> Option<Reason> {
    if let Some(r) = pair_reason(t) {
        return Some(r);
    }
    for (reason, phrases) in PHRASES {
        if phrases.iter().any(|p| contains_phrase(t, p)) {
            return Some(*reason);
        }
    }
    None
}

/// Whether `p` occurs in `t` not glued to letters on either side (so `rbl` does not match
/// inside `herbla`, `days` does not match inside `holidays`).
fn contains_phrase(t: &str, p: &str) -> bool {
    let mut from = 0;
    while let Some(i) = t[from..].find(p) {
        let start = from + i;
        let end = start + p.len();
        let before = t[..start].chars().next_back();
        let after = t[end..].chars().next();
        let left_ok = before.is_none_or(|c| !c.is_alphanumeric()) || !p.starts_with(|c: char| c.is_alphanumeric());
        // Phrases may end in a stem ("violat", "throttl"), so only the left edge is strict
        // for them; whole words are strict on both sides. A phrase ending in punctuation
        // ("see <", "ses:") ends where it says.
        let right_ok = after.is_none_or(|c| !c.is_alphanumeric())
            || STEMS.contains(&p)
            || !p.ends_with(|c: char| c.is_alphanumeric());
        if left_ok && right_ok {
            return true;
        }
        from = start + t[start..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

const STEMS: &[&str] =
    &["violat", "throttl", "misconfigur", "filter", "spam", "infected", "suspend", "blacklist", "blocklist"];

/// Whether the failure is permanent: a 5.x.x status, else a 5xx reply (or no code at all).
pub(crate) fn permanent(status: &str, reply_code: u16) -> bool {
    match status.as_bytes().first() {
        Some(b'5') => true,
        Some(b'4') => false,
        _ => reply_code >= 500 || reply_code == 0,
    }
}

/// The reason an enhanced status code names on its own, in the reading the classifier's
/// labels use (RFC 3463 and the IANA registry; a code that names no single cause gives
/// `None`: x.0.0, 4.3.0, 4.4.0, 4.5.0, 4.7.0, 5.5.0, 5.5.1, …).
pub(crate) fn status_name(status: &str) -> Option<Reason> {
    let mut it = status.split('.');
    let class = it.next()?;
    let subject: u32 = it.next()?.parse().ok()?;
    let detail: u32 = it.next()?.parse().ok()?;
    use Reason::*;
    let r = match (class, subject, detail) {
        ("2", ..) => Delivered,
        (_, 1, 6) => HasMoved,
        (_, 1, 7 | 8) => Rejected,
        (_, 1, 9) => SystemError,
        (_, 2, 2) => MailboxFull,
        (_, 2, 3) => ExceedLimit,
        (_, 3, 1) => SystemFull,
        (_, 3, 2) => NotAccept,
        (_, 3, 3 | 5) => SystemError,
        (_, 4, 3) => SystemError,
        ("5", 4, 4) => HostUnknown,
        (_, 4, 2 | 4 | 6 | 8) => NetworkError,
        ("4", 5, 3) => SystemError,
        (_, 5, 5) => SystemError,
        (_, 6, _) if detail != 4 => ContentError,
        (_, 7, 16) => MesgTooBig,
        (_, 7, 24 | 26) => AuthFailure,
        (_, 7, 25) => RequirePtr,
        ("4", 2, 1) => Blocked,
        ("4", 2, 4) => Filtered,
        ("4", 4, 1 | 7) => Expired,
        ("4", 4, 5) => SystemFull,
        ("4", 7, 1 | 2) => Blocked,
        ("4", 7, 5..=7 | 12 | 15) => SecurityError,
        ("5", 1, 0 | 1 | 3) => UserUnknown,
        ("5", 1, 2) => HostUnknown,
        ("5", 1, 4) => Filtered,
        ("5", 1, 10) => NotAccept,
        ("5", 2, 0 | 1 | 4) => Filtered,
        ("5", 3, 0) => SystemError,
        ("5", 3, 4) => MesgTooBig,
        ("5", 4, 0) => NetworkError,
        ("5", 5, 2 | 6) => SyntaxError,
        ("5", 5, 3) => TooManyConn,
        ("5", 5, 4) => SystemError,
        ("5", 7, 13) => Suspend,
        ("5", 7, 17 | 18) => HasMoved,
        ("5", 7, 20..=23 | 29) => AuthFailure,
        ("5", 7, 27) => NotAccept,
        ("5", 7, 28) => SpamDetected,
        ("5", 7, 30) => FailedStartTls,
        // Microsoft's own 5.7.5xx / 5.7.6xx codes (Exchange Online, Outlook.com): the sender
        // domain fails its authentication requirements; the sending IP or sender is banned.
        ("5", 7, 515) => AuthFailure,
        ("5", 7, 510..=512 | 606..=649) => Blocked,
        ("5", 7, 0..=11 | 14 | 15 | 19) => SecurityError,
        _ => return None,
    };
    Some(r)
}

/// Wordings that only a directory lookup of the recipient produces, whatever the SMTP
/// command: Lotus Domino's directory, Exchange's resolver and recipient table, the
/// account lookups of Gmail and Outlook.com. (Yahoo's "doesn't have a … account" is not one:
/// gateways repeat it after the message was sent, and the labels read it as a filter's.)
const LOOKUP_WORDINGS: &[&str] = &[
    "not listed in",
    "recipient name is not recognized",
    "recipientnotfound",
    "recipient not found by smtp address lookup",
    "address couldn't be found",
    "account that you tried to reach does not exist",
];

fn lookup_wording(text: &str) -> bool {
    let t = normalize(text);
    LOOKUP_WORDINGS.iter().any(|w| t.contains(w))
}

/// Wordings of a name lookup that failed (the resolver, not the answer, is at fault): a
/// network error even where a missing domain is named too.
const LOOKUP_FAILURES: &[&str] =
    &["host name lookup failure", "host not found, try again", "name server reply", "unable to resolve route"];

/// Wordings that say outright that the domain does not exist: a missing domain even on a
/// temporary failure.
const NO_SUCH_DOMAIN: &[&str] = &[
    "no such domain",
    "domain does not exist",
    "host or domain name not found",
    "unknown domain",
    "name or service not known",
    "host unknown",
    "domain must exist",
    "domain mentioned in email address is unknown",
];

/// Whether a failure read as a missing host is a failed lookup instead: the wording says the
/// lookup failed, or the failure is temporary and its words do not say the domain does not
/// exist.
fn network_lookup(t: &str, permanent: bool) -> bool {
    LOOKUP_FAILURES.iter().any(|w| t.contains(w)) || !permanent && !NO_SUCH_DOMAIN.iter().any(|w| t.contains(w))
}

/// What the words may say besides a missing mailbox that makes an x.1.1 code mean something
/// else, in the order they are believed.
const OVER_MISSING_MAILBOX: [Reason; 6] =
    [Reason::MailboxFull, Reason::HasMoved, Reason::NoRelaying, Reason::Rejected, Reason::Blocked, Reason::NotAccept];

/// The decision in two passes, the order in which a reason is believed:
///
/// 1. reasons a specific status code or a specific wording states, most specific first
///    (a full mailbox before a missing one, a missing one before a refused sender, …); a
///    missing mailbox only where the recipient itself was refused (RCPT, or a x.1.1 code),
///    a refusal after the recipient was accepted is a filter's;
/// 2. the looser wordings (policy, system, network, expiry), then the reason the code names,
///    then the code's class and the reply code.
pub fn decide(status: &str, reply_code: u16, text: &str, phase: Option<Phase>) -> (Reason, bool) {
    decide_with(status, reply_code, text, phase, None)
}

/// Words that name no cause the classifier knows are still a diagnosis: such a failure is
/// held for a person to read (`onhold`), and `undefined` is left for one with no words at all.
pub(crate) fn held_if_worded(reason: Reason, worded: bool) -> Reason {
    if reason == Reason::Undefined && worded { Reason::OnHold } else { reason }
}

/// Reasons a reporting MTA's own wording may give that the remote reply's code or wording can
/// still make more precise (a lookup that failed, a queue that gave up, …); any other hint is
/// final.
pub(crate) fn weighed(r: Reason) -> bool {
    use Reason::*;
    matches!(r, Undefined | OnHold | SystemError | SecurityError | Expired | NetworkError | HostUnknown | UserUnknown)
}

/// [`decide`] with what the reporting MTA's own wording says (`hint`, from
/// [`super::mta::hint`]): a specific reason is final; a reason the remote reply may refine
/// (see [`weighed`]) holds its own place in the first pass (a missing mailbox or domain) or
/// comes after it (the others); "on hold" replaces the reply-code fallback.
pub(crate) fn decide_with(
    status: &str,
    reply_code: u16,
    text: &str,
    phase: Option<Phase>,
    hint: Option<Reason>,
) -> (Reason, bool) {
    use Reason::*;
    let permanent = permanent(status, reply_code);
    let name = status_name(status);
    if name == Some(Delivered) {
        return (Delivered, false);
    }
    if let Some(h) = hint
        && !weighed(h)
    {
        return (h, h.is_hard(permanent));
    }
    let said = reason_from_text(text);
    let has = |r: Reason| said == Some(r);
    let before_data = matches!(phase, Some(Phase::Connect | Phase::MailFrom | Phase::RcptTo));
    let t = without_codes(&normalize(text));
    // With an x.1.1 code: another cause the words name anywhere, which the code gives way to.
    // The words of the missing mailbox itself are not read for it ("user not listed in the
    // directory" names no block list).
    let over_missing = (name == Some(UserUnknown))
        .then(|| {
            let rest = without_reason(&t, UserUnknown);
            OVER_MISSING_MAILBOX.into_iter().find(|o| mentions(&rest, *o))
        })
        .flatten();
    // A missing mailbox (by code or words) gives way to a full or disabled one the words name
    // anywhere: "user unknown or over quota" is a mailbox that exists.
    let missing = name == Some(UserUnknown) || has(UserUnknown) || has(Filtered) || hint == Some(UserUnknown);
    let first = [
        MailboxFull,
        MesgTooBig,
        ExceedLimit,
        Suspend,
        HasMoved,
        NoRelaying,
        AuthFailure,
        UserUnknown,
        Filtered,
        RequirePtr,
        NotCompliantRfc,
        BadReputation,
        ContentError,
        Rejected,
        HostUnknown,
        SpamDetected,
        Speeding,
        TooManyConn,
        Blocked,
    ];
    let probe = |r: Reason| -> bool {
        // What the reporting MTA's own wording says counts at its place in the order: a
        // missing mailbox its bounce category names is believed unless a more specific
        // reason comes first.
        if hint == Some(r) {
            return true;
        }
        match r {
            UserUnknown => {
                if name == Some(UserUnknown) {
                    // x.1.1 is a missing mailbox unless the words say the refusal was for
                    // something else as well (a full mailbox, a block, a moved user, …).
                    over_missing.is_none()
                } else {
                    has(UserUnknown) && (phase == Some(Phase::RcptTo) || phase.is_none() && lookup_wording(text))
                }
            }
            Filtered => {
                if name == Some(Filtered) {
                    has(UserUnknown) || has(Filtered)
                } else {
                    !before_data && (has(Filtered) || has(UserUnknown))
                }
            }
            Rejected => {
                name == Some(Rejected)
                    || has(Rejected)
                        && (phase == Some(Phase::MailFrom)
                            || phase == Some(Phase::Data) && name != Some(UserUnknown)
                            || matches!(name, None | Some(SecurityError | SystemError)))
            }
            MailboxFull | Suspend => name == Some(r) || has(r) || missing && mentions(&t, r),
            // x.6.x is the whole class of content problems: a wording that names the
            // problem (spam, a virus) says more.
            ContentError => has(ContentError) || name == Some(ContentError) && said.is_none(),
            // x.1.6 is believed after the wordings of both passes: a moved mailbox is what
            // the code says when nothing else is said.
            HasMoved => has(r),
            _ => name == Some(r) || has(r),
        }
    };
    let mut reason = first.into_iter().find(|r| probe(*r));
    if reason.is_none() {
        reason = over_missing;
    }
    if reason.is_none() {
        reason = hint.filter(|h| !matches!(h, OnHold | Undefined));
    }
    if reason.is_none() {
        // The looser wordings come before whatever the code names: a code is only the
        // class of a failure, the words say which one it was.
        let second = [
            MailboxFull,
            AuthFailure,
            BadReputation,
            Speeding,
            SpamDetected,
            VirusDetected,
            PolicyViolation,
            NoRelaying,
            SystemError,
            NetworkError,
            Suspend,
            ContentError,
            SystemFull,
            NotAccept,
            Expired,
            FailedStartTls,
            SecurityError,
            MailerError,
        ];
        reason = second.into_iter().find(|r| has(*r)).or(name).or_else(|| match status.get(..3) {
            Some("5.6" | "4.6") => Some(ContentError),
            Some("5.7" | "4.7") => Some(SecurityError),
            _ if has(SyntaxError) => Some(SyntaxError),
            _ if phase == Some(Phase::Connect) => Some(Blocked),
            _ => None,
        });
    }
    let mut reason = reason.or(hint).unwrap_or(match reply_code {
        // Reply codes that name a cause on their own (RFC 5321: 552 exceeded storage
        // allocation, 421 service not available, 521/556 accepts no mail). 550, 553 and 554
        // name none: without words or a status code saying more, they are undefined.
        521 | 556 => NotAccept,
        552 => MailboxFull,
        // 525 (RFC 4954's "5.7.13 user account disabled"): the account is disabled.
        525 => Suspend,
        421 => SystemError,
        _ => Undefined,
    });
    if reason == MesgTooBig && status.get(1..) == Some(".2.3") {
        reason = ExceedLimit;
    }
    if reason == HostUnknown && network_lookup(&t, permanent) {
        reason = NetworkError;
    }
    (reason, reason.is_hard(permanent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_name_reasons_as_the_registry_reads() {
        use Reason::*;
        for (code, want) in [
            ("5.1.1", Some(UserUnknown)),
            ("5.1.2", Some(HostUnknown)),
            ("5.1.10", Some(NotAccept)),
            ("5.2.1", Some(Filtered)),
            ("4.2.1", Some(Blocked)),
            ("4.2.2", Some(MailboxFull)),
            ("5.3.4", Some(MesgTooBig)),
            ("4.4.7", Some(Expired)),
            ("5.4.4", Some(HostUnknown)),
            ("5.5.3", Some(TooManyConn)),
            ("5.6.1", Some(ContentError)),
            ("5.7.1", Some(SecurityError)),
            ("4.7.1", Some(Blocked)),
            ("5.7.26", Some(AuthFailure)),
            ("5.7.515", Some(AuthFailure)),
            ("5.7.606", Some(Blocked)),
            ("2.1.5", Some(Delivered)),
            ("5.0.0", None),
            ("4.7.0", None),
            ("5.5.1", None),
            ("x.y.z", None),
            ("", None),
        ] {
            assert_eq!(status_name(code), want, "{code}");
        }
    }

    #[test]
    fn a_specific_wording_beats_a_broad_code() {
        use Reason::*;
        // x.6.x is the class of content problems: "spam" says which.
        assert_eq!(decide("5.6.1", 500, "Message content rejected", None).0, SpamDetected);
        assert_eq!(decide("5.6.1", 554, "", None).0, ContentError);
        // A full mailbox is believed before a missing one, even where the words say both.
        assert_eq!(decide("5.1.1", 550, "mailbox full", Some(Phase::RcptTo)).0, MailboxFull);
        assert_eq!(decide("5.1.1", 550, "user unknown or mailbox full", Some(Phase::RcptTo)).0, MailboxFull);
        // Whole sentences of particular servers beat the broad phrase inside them.
        assert_eq!(decide("", 552, "Mailbox size limit exceeded", None).0, MailboxFull);
        assert_eq!(decide("", 550, "Message blocked by SpamAssassin", None).0, SpamDetected);
        assert_eq!(decide("", 554, "Message rejected due to local policy", None).0, PolicyViolation);
        // Two halves with the address or domain between them.
        assert_eq!(decide("", 550, "Domain shop.example does not exist", None).0, HostUnknown);
        assert_eq!(decide("", 452, "Mailbox of ann@shop.example is full", None).0, MailboxFull);
        assert_eq!(decide("", 554, "Relay access for ann@shop.example denied", None).0, NoRelaying);
        // … but not across a sentence, nor inside a longer word.
        assert_ne!(decide("", 550, "Mailbox unknown. Disk full", None).0, MailboxFull);
        assert_ne!(decide("", 550, "Mailbox name must be fully qualified", None).0, MailboxFull);
        assert!(!pair_in("mailbox é€ ü full", "mailbox ", " fullé"));
        assert_eq!(
            decide("", 553, "sorry, your envelope recipient is in my badrcptto list", Some(Phase::RcptTo)).0,
            UserUnknown
        );
        // A code naming no single cause leaves it to the wording, then to the class.
        assert_eq!(decide("5.7.1", 550, "", None).0, SecurityError);
        // "Try again later" names no cause: the code's class decides, then the reply code.
        assert_eq!(decide("4.7.0", 421, "try again later", None).0, SecurityError);
        assert_eq!(decide("", 421, "try again later", None).0, SystemError);
        assert_eq!(decide("4.3.0", 451, "Internal server error", None).0, SystemError);
        // A refusal at MAIL FROM is about the sender.
        assert_eq!(decide("", 550, "sender verify failed", Some(Phase::MailFrom)).0, Rejected);
        // A name that could not be looked up just now is the network.
        assert_eq!(decide("4.4.4", 450, "host not found", None).0, NetworkError);
        // Greylisting is about the sending host, not the recipient it names.
        let greylisted = "<ann@shop.example>: Recipient address rejected: Greylisted, see https://postgrey.example/";
        assert_eq!(decide("4.7.1", 450, greylisted, Some(Phase::RcptTo)), (Blocked, false));
        assert_eq!(decide("", 451, greylisted, None), (Blocked, false));
    }

    #[test]
    fn a_missing_mailbox_gives_way_to_one_that_is_full_or_disabled() {
        use Reason::*;
        let rcpt = Some(Phase::RcptTo);
        // The words of a full mailbox anywhere, whatever came first.
        assert_eq!(decide("", 550, "user unknown; over quota", rcpt), (MailboxFull, false));
        assert_eq!(decide("5.1.1", 550, "<ann@x>: user unknown; mailbox over quota", None), (MailboxFull, false));
        assert_eq!(decide("5.1.1", 550, "user unknown or account disabled", rcpt), (Suspend, false));
        // Only against a missing mailbox: a sending quota is not a full mailbox.
        assert_eq!(decide("4.7.0", 450, "temporarily rate limited; sending quota", None).0, Speeding);
        // The missing mailbox's own words name no other cause ("listed in" a block list).
        let domino = "User not listed in public Name & Address Book";
        assert_eq!(decide("5.1.1", 550, domino, rcpt), (UserUnknown, true));
        // A missing mailbox the reporting MTA's own words name gives way as well: the remote
        // reply says the account exists, disabled.
        let reply = "sender was rejected; account suspended";
        assert_eq!(decide_with("", 550, reply, None, None), (Rejected, false));
        assert_eq!(decide_with("", 550, reply, None, Some(UserUnknown)), (Suspend, false));
    }

    #[test]
    fn phrases_ending_in_punctuation_match_whatever_follows() {
        use Reason::*;
        assert_eq!(reason_from_text("550 Invalid domain, see <URL:http://x.example/why>"), Some(Rejected));
        let ses = "User arn:aws:iam::1:user/x is not authorized to perform ses:SendRawEmail on resource";
        assert_eq!(reason_from_text(ses), Some(SecurityError));
    }

    #[test]
    fn wordings_sisimai_reads_that_broader_phrases_misread() {
        use Reason::*;
        for (text, want) in [
            ("452 4.2.2 Mailbox does not have enough space", MailboxFull),
            ("552 Mail file size exceeds the maximum size allowed for mail delivery", MailboxFull),
            ("550 5.7.1 Insecure mail relay", NoRelaying),
            ("553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)", NoRelaying),
            ("550 Mail receiving disabled", NotAccept),
            ("550 5.1.1 RESOLVER.ADR.Recipient NotFound; not found", UserUnknown),
            ("554 we do not accept mail from dynamic IPs", Blocked),
            ("550 Server IP 192.0.2.1 listed as abusive", Blocked),
            ("550 envelope blocked - user entry", Rejected),
            ("550 the address has been replaced by ann@new.example", HasMoved),
            ("550 domain old.example is a dead domain", SecurityError),
        ] {
            assert_eq!(reason_from_text(text), Some(want), "{text}");
        }
        // A full disk stays a full system where the code says so.
        assert_eq!(decide("4.4.5", 452, "Insufficient disk space; try again later", None).0, SystemFull);
    }

    #[test]
    fn refusals_of_the_sender_and_of_authentication_are_not_about_the_recipient() {
        use Reason::*;
        // "does not accept mail" alone would say the host takes no mail at all (hard).
        assert_eq!(
            decide("5.7.1", 550, "This server does not accept mail from spammer.example", None),
            (Rejected, false)
        );
        assert_eq!(decide("", 535, "5.7.8 Authentication credentials invalid", None), (SecurityError, false));
        assert_eq!(decide("", 525, "", None), (Suspend, false));
        assert_eq!(decide("", 550, "Mailbox temporary locked", Some(Phase::RcptTo)), (Suspend, false));
        assert_eq!(decide("", 550, "#5.1.1 bad address ann@x", Some(Phase::RcptTo)), (UserUnknown, true));
    }
}
