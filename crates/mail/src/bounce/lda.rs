//! Local delivery agents: the programs that put mail into a mailbox after the last SMTP
//! server took it (Dovecot's LDA and LMTP, mail.local, procmail, maildrop, vpopmail,
//! vmailmgr). When one of them refuses a message, the bounce quotes its own words, and
//! those say more than the status code the MTA wrapped them in: a pipe to `procmail` that
//! exits with EX_NOUSER reads as 5.1.1, yet the mailbox may simply be over quota.
//!
//! So, as sisimai does, a diagnostic that names such a program is read by that program's
//! messages before anything else; a program that failed in words it does not use for a
//! mailbox's state failed as a mailer (`mailererror`), not the address.

use super::reason::{Reason, normalize};
use super::text::Phase;

/// A local delivery agent: how its messages are recognised, and what they name.
struct Agent {
    /// Any of these (lower case) in the diagnostic names the agent.
    marks: &'static [&'static str],
    /// Its messages (lower case) and the reason each gives, first match wins.
    says: &'static [(&'static str, Reason)],
    /// The reason when it names itself in words of none of these: the program failed
    /// (`mailererror`); `None` where those words may be anyone's (a Sieve script's
    /// rejection reads like Dovecot's own), to be read as any other diagnostic.
    otherwise: Option<Reason>,
}

const AGENTS: &[Agent] = &[
    // Dovecot's LDA and LMTP reject with "Your message to <rcpt> was automatically
    // rejected:" followed by the cause (deliver.c, mail-send.c, the quota plugin).
    Agent {
        marks: &["> was automatically rejected:"],
        says: &[
            ("quota exceeded", Reason::MailboxFull),
            ("not enough disk space", Reason::MailboxFull),
            ("mailbox doesn't exist", Reason::UserUnknown),
        ],
        otherwise: None,
    },
    // BSD mail.local.
    Agent {
        marks: &["mail.local: "],
        says: &[
            ("disc quota exceeded", Reason::MailboxFull),
            ("disk quota exceeded", Reason::MailboxFull),
            ("mailbox full or quota exceeded", Reason::MailboxFull),
            ("temporary file write error", Reason::SystemError),
            ("unknown user:", Reason::UserUnknown),
            ("user unknown", Reason::UserUnknown),
            ("invalid mailbox path", Reason::UserUnknown),
            ("user missing home directory", Reason::UserUnknown),
        ],
        otherwise: Some(Reason::MailerError),
    },
    Agent {
        marks: &["procmail: ", "/procmail "],
        says: &[
            ("quota exceeded while writing", Reason::MailboxFull),
            ("user over quota", Reason::MailboxFull),
            ("no space left to finish writing", Reason::SystemFull),
            ("service unavailable", Reason::SystemError),
        ],
        otherwise: Some(Reason::MailerError),
    },
    Agent {
        marks: &["maildrop: "],
        says: &[
            ("maildir over quota", Reason::MailboxFull),
            ("invalid user specified", Reason::UserUnknown),
            ("cannot find system user", Reason::UserUnknown),
        ],
        otherwise: Some(Reason::MailerError),
    },
    // vpopmail's delivery program.
    Agent {
        marks: &["vdelivermail: "],
        says: &[
            ("user is over quota", Reason::MailboxFull),
            ("domain is over quota", Reason::MailboxFull),
            ("account is locked", Reason::Suspend),
            ("no mailbox here by that name", Reason::UserUnknown),
            // A catch-all delivered it elsewhere: the address itself is not known.
            ("user does not exist, but will deliver to", Reason::Filtered),
        ],
        otherwise: Some(Reason::MailerError),
    },
    Agent {
        marks: &["vdeliver: "],
        says: &[
            ("system quota violation", Reason::MailboxFull),
            ("invalid or unknown base user or domain", Reason::UserUnknown),
            ("invalid or unknown virtual user", Reason::UserUnknown),
            ("does not refer to a virtual user", Reason::UserUnknown),
        ],
        otherwise: Some(Reason::MailerError),
    },
];

/// The reason a local delivery agent's own words give, if a diagnostic in `texts` names
/// one; `None` when none does, or when the failure answered a command before DATA (a
/// remote server's reply, not a local program's).
pub(crate) fn reason(texts: &[&str], phase: Option<Phase>) -> Option<Reason> {
    if !matches!(phase, None | Some(Phase::Data)) {
        return None;
    }
    texts.iter().find_map(|t| {
        // Folded and spaced as the rest of the classifier reads text.
        let t = normalize(t);
        let agent = AGENTS.iter().find(|a| a.marks.iter().any(|m| t.contains(m)))?;
        agent.says.iter().find(|(words, _)| t.contains(words)).map(|(_, r)| *r).or(agent.otherwise)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_own_words_decide() {
        let cases = [
            (
                "Your message to <kijitora@example.jp> was automatically rejected:\nQuota exceeded (mailbox for user is full)",
                Reason::MailboxFull,
            ),
            ("Your message to <a@example.jp> was automatically rejected:\nNot enough disk space", Reason::MailboxFull),
            ("mail.local: Disc quota exceeded", Reason::MailboxFull),
            ("mail.local: unknown user: neko", Reason::UserUnknown),
            ("procmail: Quota exceeded while writing \"/var/mail/neko\"", Reason::MailboxFull),
            ("maildrop: maildir over quota.", Reason::MailboxFull),
            ("vdelivermail: account is locked email bounced", Reason::Suspend),
            ("vdelivermail: Sorry, no mailbox here by that name.", Reason::UserUnknown),
            ("vdeliver: Invalid or unknown virtual user 'neko'", Reason::UserUnknown),
        ];
        for (text, want) in cases {
            assert_eq!(reason(&[text], None), Some(want), "{text}");
            assert_eq!(reason(&["", text], Some(Phase::Data)), Some(want), "{text}");
        }
    }

    #[test]
    fn an_agent_that_failed_otherwise_is_a_mailer_error() {
        assert_eq!(reason(&["procmail: Couldn't create \"/var/mail/tmp.neko.22\""], None), Some(Reason::MailerError));
        // Wrapped over lines as MTAs fold them.
        assert_eq!(
            reason(&["procmail: Quota exceeded\n   while writing \"/var/mail/neko\""], None),
            Some(Reason::MailboxFull)
        );
    }

    #[test]
    fn a_sieve_rejection_through_dovecot_is_left_to_the_general_reading() {
        // Dovecot's words for a Sieve rejection are the script author's.
        assert_eq!(
            reason(
                &["Your message to <a@example.jp> was automatically rejected:\nI do not take mail on Sundays"],
                None
            ),
            None
        );
    }

    #[test]
    fn remote_replies_and_other_words_are_not_read_as_an_agents() {
        // A refusal at RCPT TO comes from a server, whatever it quotes.
        assert_eq!(reason(&["550 5.2.2 maildrop: maildir over quota."], Some(Phase::RcptTo)), None);
        assert_eq!(reason(&["550 5.1.1 <a@example.jp>: Recipient address rejected: User unknown"], None), None);
        assert_eq!(reason(&[""], None), None);
    }
}
