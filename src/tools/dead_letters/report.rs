//! What the dead-letter tools tell a person: what a listing found ([`Listing`]) and why a
//! replay left a letter where it is ([`SkipReason`], [`SkippedLetter`]).

use std::{collections::BTreeMap, fmt};

use super::DeadLetterInfo;

/// What a listing found: the letters shown and how many the queue held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Up to the limit, oldest first.
    pub letters: Vec<DeadLetterInfo>,
    /// The messages ready in the queue when the listing started.
    pub in_queue: u32,
}

impl Listing {
    /// One line for a person: how many letters `queue` holds, how many are shown, and their
    /// reasons. An empty queue says so, so that it is not taken for a tool that failed silently.
    pub fn summary_line(&self, queue: &str) -> String {
        let shown = self.letters.len();
        // Letters that arrived after the count was taken are still counted.
        let total = (self.in_queue as usize).max(shown);
        if total == 0 {
            return format!("dead-letters: {queue} is empty");
        }
        let mut reasons = BTreeMap::<&str, usize>::new();
        for letter in &self.letters {
            *reasons
                .entry(letter.reason.as_deref().unwrap_or("no reason"))
                .or_default() += 1;
        }
        let reasons: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
        format!(
            "dead-letters: {total} in {queue}, {shown} shown (by reason: {})",
            reasons.join(", ")
        )
    }
}

/// Why a replay left a dead letter where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// Not a delivery owed to a webhook: poison (an event that could not be read), or a reason
    /// sending again would not fix.
    NotReplayable,
    /// It names no webhook (or not one by a readable id).
    NoWebhook,
    /// It names no account.
    NoAccount,
    /// The replay was asked for another webhook's letters (`--webhook-id`).
    OtherWebhook,
    /// Its webhook's owner redrove it already (through the API).
    AlreadyRedriven,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotReplayable => "not_replayable",
            Self::NoWebhook => "no_webhook",
            Self::NoAccount => "no_account",
            Self::OtherWebhook => "other_webhook",
            Self::AlreadyRedriven => "already_redriven",
        }
    }

    /// What a person reads next to the letter.
    pub fn explanation(self) -> &'static str {
        match self {
            Self::NotReplayable => "not a delivery owed to a webhook (poison stays where it is)",
            Self::NoWebhook => "it names no webhook to deliver to",
            Self::NoAccount => "it names no account",
            Self::OtherWebhook => "it belongs to another webhook than --webhook-id",
            Self::AlreadyRedriven => "its webhook's owner redrove it already",
        }
    }
}

/// A dead letter a replay skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLetter {
    /// The event's id; `None` for poison, which has none.
    pub event_id: Option<String>,
    /// The reason it was dead-lettered.
    pub dead_reason: Option<String>,
    pub why: SkipReason,
}

impl fmt::Display for SkippedLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.event_id {
            Some(id) => write!(f, "event {id}")?,
            None => write!(f, "a message with no event id")?,
        }
        let dead = self.dead_reason.as_deref().unwrap_or("no reason");
        write!(f, " (dead: {dead}): {}", self.why.explanation())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skipped_letter_names_its_event_its_death_and_why_it_stays() {
        let skipped = SkippedLetter {
            event_id: None,
            dead_reason: Some("invalid_json".into()),
            why: SkipReason::NotReplayable,
        };
        assert_eq!(
            skipped.to_string(),
            "a message with no event id (dead: invalid_json): not a delivery owed to a webhook \
             (poison stays where it is)"
        );
        let owed = SkippedLetter {
            event_id: Some("evt_1".into()),
            dead_reason: Some("retries_exhausted".into()),
            why: SkipReason::OtherWebhook,
        };
        assert_eq!(
            owed.to_string(),
            "event evt_1 (dead: retries_exhausted): it belongs to another webhook than --webhook-id"
        );
    }

    fn letter(reason: &str) -> DeadLetterInfo {
        DeadLetterInfo {
            reason: Some(reason.into()),
            detail: None,
            event_id: None,
            event_type: None,
            webhook_id: None,
            account_id: None,
            attempts: None,
            last_status: None,
            dead_at: None,
        }
    }

    #[test]
    fn a_listing_says_what_the_queue_holds_even_when_it_is_empty() {
        let empty = Listing {
            letters: vec![],
            in_queue: 0,
        };
        assert_eq!(
            empty.summary_line("w.dead"),
            "dead-letters: w.dead is empty"
        );
        let some = Listing {
            letters: vec![
                letter("invalid_json"),
                letter("retries_exhausted"),
                letter("invalid_json"),
            ],
            in_queue: 5,
        };
        assert_eq!(
            some.summary_line("w.dead"),
            "dead-letters: 5 in w.dead, 3 shown (by reason: invalid_json 2, retries_exhausted 1)"
        );
    }
}
