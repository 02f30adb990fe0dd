//! Which dead letters a replay may send again, and why it leaves the others.

use lapin::types::AMQPValue;

use super::*;

fn headers(name: &str, value: &str) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(name.into(), AMQPValue::LongString(value.into()));
    headers
}

#[test]
fn every_reason_owed_to_a_webhook_is_replayable_and_poison_is_not() {
    for reason in [
        "retries_exhausted",
        "endpoint_gone",
        "webhook_disabled",
        "webhook_unreadable",
    ] {
        assert!(
            replayable_reason(Some(&headers(job::DEAD_REASON, reason))),
            "{reason}"
        );
    }
    for reason in ["invalid_json", "too_large", "invalid_job", "unheard_of"] {
        assert!(
            !replayable_reason(Some(&headers(job::DEAD_REASON, reason))),
            "{reason}"
        );
    }
    let broker = headers("x-first-death-reason", "delivery_limit");
    assert!(replayable_reason(Some(&broker)));
    assert!(!replayable_reason(None));
}

#[test]
fn a_replay_says_why_it_leaves_each_letter() {
    let webhook = Uuid::new_v4();
    let mut owed = headers(job::DEAD_REASON, "retries_exhausted");
    let poison = headers(job::DEAD_REASON, "invalid_json");
    assert_eq!(
        replay_target(Some(&poison), None),
        Err(SkipReason::NotReplayable)
    );
    assert_eq!(replay_target(Some(&owed), None), Err(SkipReason::NoWebhook));
    owed.insert(
        job::WEBHOOK_ID.into(),
        AMQPValue::LongString(webhook.to_string().into()),
    );
    assert_eq!(
        replay_target(Some(&owed), Some(Uuid::new_v4())),
        Err(SkipReason::OtherWebhook)
    );
    assert_eq!(
        replay_target(Some(&owed), Some(webhook)),
        Err(SkipReason::NoAccount)
    );
    owed.insert(job::ACCOUNT_ID.into(), AMQPValue::LongString("acct".into()));
    assert_eq!(
        replay_target(Some(&owed), Some(webhook)),
        Ok((webhook, "acct".to_string()))
    );
}
