//! A fan-out batch: one message on `<prefix>.deliveries` that carries an event once (the body,
//! the event's bytes as they came) and, in the header `x-webhook-ids`, the webhooks of one
//! account that are owed its first attempt. It replaces one job per webhook, each carrying the
//! whole body, for an event that matches many webhooks (see `pipeline::fan_out`).
//!
//! Only first attempts travel in batches: what fails after one is a retry job of its own
//! ([`super::job::Job`]), so retries, parks, dead letters and redrive never see a batch.
//!
//! A message's properties (its headers among them) travel in one frame, which RabbitMQ refuses,
//! closing the connection, when it is larger than the connection's `frame_max`. So a batch is
//! never made larger than a byte budget, half the frame the worker asks for
//! ([`header_budget`]): [`Batch::split`] makes smaller batches rather than a larger message, and
//! a webhook that fits no batch at all goes as a job of its own.

use lapin::types::{AMQPValue, FieldTable, LongString};
use uuid::Uuid;

use super::{header_text, job::ACCOUNT_ID};

/// The webhooks owed the event's first attempt, comma-separated, hyphenated as in
/// `x-webhook-id`.
pub const WEBHOOK_IDS: &str = "x-webhook-ids";

/// Most webhooks in one batch: the largest `delivery.fan_out_batch`. Their ids take 7,400
/// bytes of header, half of the 16 KiB frame the worker asks for.
pub const MAX_BATCH: usize = 200;

/// The bytes one id takes in [`WEBHOOK_IDS`]: 36 characters and a comma.
const ID_BYTES: usize = 37;

/// One batch: the event's first attempt to each of `webhook_ids`, all of account `account_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub account_id: String,
    pub webhook_ids: Vec<Uuid>,
}

/// What the batch headers of an account take besides the ids: the account's id and what is
/// needed to name both headers.
fn fixed_bytes(account_id: &str) -> usize {
    // Each header: its name (a length byte and the name), a type byte, a 4-byte length.
    2 * (1 + 1 + 4) + ACCOUNT_ID.len() + WEBHOOK_IDS.len() + account_id.len()
}

/// The bytes of header a batch may take, for connections with frames of at most `frame_max`:
/// half of it, leaving the other half to the other properties and what the broker adds.
pub fn header_budget(frame_max: u32) -> usize {
    usize::try_from(frame_max / 2).unwrap_or(usize::MAX)
}

impl Batch {
    /// Splits `webhook_ids` (of `account_id`) into as few batches of at most `size` as there can
    /// be, of sizes that differ by at most one, none of whose headers takes more than `budget`
    /// bytes. The second part are the webhooks that fit no batch (an account id about as long
    /// as the budget): each is owed a job of its own.
    pub fn split(
        account_id: &str,
        webhook_ids: &[Uuid],
        size: usize,
        budget: usize,
    ) -> (Vec<Batch>, Vec<Uuid>) {
        let room = budget.saturating_sub(fixed_bytes(account_id)) / ID_BYTES;
        let size = size.min(room).min(MAX_BATCH);
        if size < 2 || webhook_ids.len() < 2 {
            return (Vec::new(), webhook_ids.to_vec());
        }
        let count = webhook_ids.len().div_ceil(size);
        let (small, bigger) = (webhook_ids.len() / count, webhook_ids.len() % count);
        let mut rest = webhook_ids;
        let batches = (0..count)
            .map(|n| {
                let (these, others) = rest.split_at(small + usize::from(n < bigger));
                rest = others;
                Batch {
                    account_id: account_id.to_string(),
                    webhook_ids: these.to_vec(),
                }
            })
            .collect();
        (batches, Vec::new())
    }

    /// The bytes its headers take ([`fixed_bytes`] and the ids).
    pub fn header_bytes(&self) -> usize {
        fixed_bytes(&self.account_id) + self.webhook_ids.len() * ID_BYTES
    }

    pub fn headers(&self) -> FieldTable {
        let ids = self
            .webhook_ids
            .iter()
            .map(Uuid::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut headers = FieldTable::default();
        headers.insert(
            ACCOUNT_ID.into(),
            AMQPValue::LongString(LongString::from(self.account_id.as_str())),
        );
        headers.insert(
            WEBHOOK_IDS.into(),
            AMQPValue::LongString(LongString::from(ids)),
        );
        headers
    }

    /// The batch the headers describe; `Ok(None)` when they name no batch (a retry job, or a
    /// first-attempt job of an older version). A batch header that does not read (an id that
    /// is not one, none, more than [`MAX_BATCH`], no account) is an invalid job.
    pub fn from_headers(headers: Option<&FieldTable>) -> Result<Option<Self>, &'static str> {
        let Some(ids) = header_text(headers, WEBHOOK_IDS) else {
            return Ok(None);
        };
        let account_id = header_text(headers, ACCOUNT_ID)
            .filter(|account| !account.is_empty())
            .ok_or("a batch without account_id")?;
        let webhook_ids = ids
            .split(',')
            .map(|id| id.trim().parse::<Uuid>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| "an x-webhook-ids entry that is not a webhook id")?;
        if webhook_ids.len() > MAX_BATCH {
            return Err("more x-webhook-ids than a batch holds");
        }
        Ok(Some(Batch {
            account_id,
            webhook_ids,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::new_v4()).collect()
    }

    fn sizes(batches: &[Batch]) -> Vec<usize> {
        batches.iter().map(|b| b.webhook_ids.len()).collect()
    }

    #[test]
    fn a_batch_round_trips_through_headers() {
        let batch = Batch {
            account_id: "acct".into(),
            webhook_ids: ids(3),
        };
        let headers = batch.headers();
        assert_eq!(Batch::from_headers(Some(&headers)), Ok(Some(batch.clone())));
        let text = header_text(Some(&headers), WEBHOOK_IDS).unwrap();
        assert_eq!(text.len() + 1, 3 * ID_BYTES, "{text}");
    }

    #[test]
    fn headers_without_ids_are_no_batch_and_bad_ids_are_an_invalid_job() {
        assert_eq!(Batch::from_headers(None), Ok(None));
        let job = crate::queue::job::Job {
            webhook_id: Uuid::new_v4(),
            account_id: "acct".into(),
            attempt: 1,
            last_error: None,
            parks: 0,
            parked_since: None,
        };
        assert_eq!(Batch::from_headers(Some(&job.headers())), Ok(None));
        let with = |account: Option<&str>, ids: &str| {
            let mut headers = FieldTable::default();
            if let Some(account) = account {
                headers.insert(ACCOUNT_ID.into(), AMQPValue::LongString(account.into()));
            }
            headers.insert(WEBHOOK_IDS.into(), AMQPValue::LongString(ids.into()));
            Batch::from_headers(Some(&headers))
        };
        let one = Uuid::new_v4().to_string();
        assert!(with(Some("acct"), &one).is_ok_and(|b| b.is_some()));
        assert!(with(None, &one).is_err(), "no account");
        assert!(with(Some(""), &one).is_err(), "an empty account");
        assert!(with(Some("acct"), "").is_err(), "no id");
        assert!(with(Some("acct"), &format!("{one},nope")).is_err());
        let too_many = ids(MAX_BATCH + 1)
            .iter()
            .map(Uuid::to_string)
            .collect::<Vec<_>>();
        assert!(with(Some("acct"), &too_many.join(",")).is_err());
    }

    #[test]
    fn webhooks_are_split_into_even_batches_of_at_most_the_size() {
        let webhooks = ids(250);
        let (batches, alone) = Batch::split("acct", &webhooks, 100, 8192);
        assert_eq!(sizes(&batches), [84, 83, 83]);
        assert!(alone.is_empty());
        let again: Vec<Uuid> = batches.iter().flat_map(|b| b.webhook_ids.clone()).collect();
        assert_eq!(again, webhooks, "each once, in order");
        assert_eq!(
            sizes(&Batch::split("acct", &webhooks, 200, 100_000).0),
            [125, 125]
        );
        assert_eq!(sizes(&Batch::split("acct", &ids(33), 100, 8192).0), [33]);
        assert_eq!(
            sizes(&Batch::split("acct", &ids(200), 100, 8192).0),
            [100, 100]
        );
    }

    #[test]
    fn no_batch_is_made_larger_than_the_header_budget() {
        let webhooks = ids(250);
        let budget = header_budget(16 * 1024);
        for account in ["acct".to_string(), "a".repeat(5000), "a".repeat(8000)] {
            let (batches, alone) = Batch::split(&account, &webhooks, MAX_BATCH, budget);
            assert!(batches.iter().all(|b| b.header_bytes() <= budget));
            let owed: usize = sizes(&batches).iter().sum::<usize>() + alone.len();
            assert_eq!(owed, 250, "none lost");
            // Measured on the headers themselves: the ids take what header_bytes counts.
            for batch in &batches {
                let ids = header_text(Some(&batch.headers()), WEBHOOK_IDS).unwrap();
                assert!(ids.len() + fixed_bytes(&account) <= budget);
            }
        }
        assert_eq!(
            Batch::split("acct", &webhooks, MAX_BATCH, budget).0.len(),
            2
        );
        let (batches, _) = Batch::split(&"a".repeat(5000), &webhooks, MAX_BATCH, budget);
        assert_eq!(
            sizes(&batches),
            [84, 83, 83],
            "a long account id: smaller batches"
        );
        let (batches, alone) = Batch::split(&"a".repeat(8200), &webhooks, MAX_BATCH, budget);
        assert!(
            batches.is_empty() && alone.len() == 250,
            "none fits: a job each"
        );
        // A 4 KiB frame (a broker's frame_max at RabbitMQ's least): batches of at most 54 ids.
        let (batches, _) = Batch::split("acct", &webhooks, 100, header_budget(4096));
        assert!(
            sizes(&batches).iter().all(|n| (50..=54).contains(n)),
            "{:?}",
            sizes(&batches)
        );
    }
}
