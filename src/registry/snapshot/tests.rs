//! The snapshot's patching: by id and by account, placeholders, and tickets that keep an older
//! read from overwriting a newer one.

use chrono::Utc;

use super::*;

fn webhook(id: Uuid, account: &str, url: &str) -> Row {
    let now = Utc::now();
    Row::Readable(Arc::new(Webhook {
        id,
        account_id: account.into(),
        url: crate::webhook::EndpointUrl::parse(url).unwrap(),
        secret: None,
        enabled_events: crate::filter::EventFilter::all(),
        include: Default::default(),
        disabled_at: None,
        created_at: now,
        updated_at: now,
        oidc: None,
        signature_format: Default::default(),
        previous_secret: None,
        standard_keys: Default::default(),
    }))
}

fn unreadable(id: Uuid, account: &str, events: &[&str]) -> Row {
    Row::Unreadable(Arc::new(UnreadableWebhook {
        id,
        account_id: account.into(),
        enabled_events: events.iter().map(|e| e.to_string()).collect(),
        disabled_at: None,
    }))
}

fn url_of(snapshot: &Snapshot, id: Uuid) -> Option<String> {
    snapshot.readable(&id).map(|w| w.url.to_string())
}

fn ids_of(snapshot: &Snapshot, account: &str) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = snapshot
        .by_account
        .get(account)
        .map(|list| list.iter().map(|w| w.id).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

#[test]
fn a_load_indexes_rows_by_id_and_account_and_keeps_placeholders_apart() {
    let (a, b, broken) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let snapshot = Snapshot::load(
        1,
        [
            (a, webhook(a, "one", "https://a.example/"), None),
            (b, webhook(b, "two", "https://b.example/"), None),
            (
                broken,
                unreadable(broken, "one", &["business.updated"]),
                None,
            ),
        ],
    );
    assert_eq!(snapshot.readable_count(), 2);
    assert_eq!(snapshot.unreadable_count(), 1);
    assert_eq!(ids_of(&snapshot, "one"), [a]);
    assert_eq!(snapshot.unreadable_by_account["one"].len(), 1);
    assert!(snapshot.unreadable(&broken).is_some() && snapshot.readable(&broken).is_none());
}

#[test]
fn a_patch_replaces_a_row_in_place_and_moves_it_between_accounts() {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut snapshot = Snapshot::load(
        1,
        [
            (a, webhook(a, "one", "https://a.example/"), None),
            (b, webhook(b, "one", "https://b.example/"), None),
        ],
    );
    assert!(snapshot.patch(
        2,
        a,
        Change::Put(webhook(a, "two", "https://new.example/"), None)
    ));
    assert_eq!(
        url_of(&snapshot, a).as_deref(),
        Some("https://new.example/")
    );
    assert_eq!(ids_of(&snapshot, "one"), [b]);
    assert_eq!(ids_of(&snapshot, "two"), [a]);
    assert!(snapshot.patch(3, b, Change::Gone));
    assert!(
        !snapshot.by_account.contains_key("one"),
        "an emptied account is dropped"
    );
    assert_eq!(snapshot.readable_count(), 1);
}

#[test]
fn a_readable_copy_replaces_a_placeholder_and_the_other_way_round() {
    let id = Uuid::new_v4();
    let mut snapshot = Snapshot::load(1, [(id, unreadable(id, "one", &["*"]), None)]);
    assert!(snapshot.patch(
        2,
        id,
        Change::Put(webhook(id, "one", "https://a.example/"), None)
    ));
    assert_eq!(snapshot.unreadable_count(), 0);
    assert!(!snapshot.unreadable_by_account.contains_key("one"));
    assert!(snapshot.patch(3, id, Change::Put(unreadable(id, "one", &["*"]), None)));
    assert_eq!(
        (snapshot.readable_count(), snapshot.unreadable_count()),
        (0, 1)
    );
    assert!(!snapshot.by_account.contains_key("one"));
}

#[test]
fn an_older_read_never_overwrites_a_newer_one() {
    let id = Uuid::new_v4();
    let mut snapshot = Snapshot::load(1, []);
    assert!(snapshot.patch(
        5,
        id,
        Change::Put(webhook(id, "one", "https://new.example/"), None)
    ));
    assert!(!snapshot.patch(
        4,
        id,
        Change::Put(webhook(id, "one", "https://old.example/"), None)
    ));
    assert_eq!(
        url_of(&snapshot, id).as_deref(),
        Some("https://new.example/")
    );
    assert!(
        !snapshot.patch(3, id, Change::Gone),
        "an older read of its absence"
    );
    assert!(snapshot.readable(&id).is_some());
}

#[test]
fn a_deletion_is_not_undone_by_a_read_older_than_it() {
    let id = Uuid::new_v4();
    let mut snapshot = Snapshot::load(1, [(id, webhook(id, "one", "https://a.example/"), None)]);
    assert!(snapshot.patch(4, id, Change::Gone));
    assert!(!snapshot.patch(
        3,
        id,
        Change::Put(webhook(id, "one", "https://a.example/"), None)
    ));
    assert!(snapshot.readable(&id).is_none());
}

#[test]
fn a_read_older_than_the_full_load_does_not_bring_back_a_row_the_load_did_not_see() {
    let id = Uuid::new_v4();
    let mut snapshot = Snapshot::load(10, []);
    assert!(!snapshot.patch(
        9,
        id,
        Change::Put(webhook(id, "one", "https://a.example/"), None)
    ));
    assert!(snapshot.patch(
        11,
        id,
        Change::Put(webhook(id, "one", "https://a.example/"), None)
    ));
}

#[test]
fn a_full_load_keeps_what_was_patched_after_its_ticket_and_drops_what_was_before() {
    let (early, late, deleted) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut older = Snapshot::load(
        1,
        [(deleted, webhook(deleted, "one", "https://d.example/"), None)],
    );
    // Patched before the new load's ticket (5): the new load's read has it already.
    older.patch(
        3,
        early,
        Change::Put(webhook(early, "one", "https://early.example/"), None),
    );
    // After it: the new load may have read the rows before these changes.
    older.patch(
        6,
        late,
        Change::Put(webhook(late, "one", "https://late.example/"), None),
    );
    older.patch(7, deleted, Change::Gone);
    let mut fresh = Snapshot::load(
        5,
        [
            (early, webhook(early, "one", "https://read.example/"), None),
            (deleted, webhook(deleted, "one", "https://d.example/"), None),
        ],
    );
    fresh.lay_over(&older);
    assert_eq!(
        url_of(&fresh, early).as_deref(),
        Some("https://read.example/")
    );
    assert_eq!(
        url_of(&fresh, late).as_deref(),
        Some("https://late.example/")
    );
    assert!(fresh.readable(&deleted).is_none());
    assert_eq!(ids_of(&fresh, "one").len(), 2);
    // A read older than the deletion still cannot bring it back.
    assert!(!fresh.patch(
        6,
        deleted,
        Change::Put(webhook(deleted, "one", "https://d.example/"), None)
    ));
}

#[test]
fn an_unreadable_row_matches_by_its_enabled_events_and_disabled_at() {
    let row = UnreadableWebhook {
        id: Uuid::new_v4(),
        account_id: "a".into(),
        enabled_events: vec!["business.updated".into()],
        disabled_at: None,
    };
    let now = Utc::now();
    assert!(row.subscribes("business.updated") && row.is_enabled_at(now));
    assert!(!row.subscribes("business.created"));
    let disabled = UnreadableWebhook {
        disabled_at: Some(now - chrono::TimeDelta::seconds(1)),
        ..row
    };
    assert!(!disabled.is_enabled_at(now));
}
