//! Unit tests of [`super`]: which key signs, how a set is listed, and the public ids.

use super::*;

fn key() -> SigningKey {
    let pem = generate_key(2048).unwrap();
    SigningKey::from_pem(std::path::Path::new("k"), &pem).unwrap()
}

#[test]
fn the_newest_key_whose_time_has_come_signs_and_is_listed_first() {
    let now = Utc::now();
    let (old, new) = (key(), key());
    let set = KeySet {
        jwks_id: "x".into(),
        keys: vec![
            AccountKey {
                key: old.clone(),
                signs_from: now - chrono::TimeDelta::hours(1),
                retire_at: Some(now + chrono::TimeDelta::hours(2)),
            },
            AccountKey {
                key: new.clone(),
                signs_from: now + chrono::TimeDelta::hours(1),
                retire_at: None,
            },
        ],
    };
    assert_eq!(set.signing_at(now).unwrap().kid(), old.kid());
    let later = now + chrono::TimeDelta::minutes(61);
    assert_eq!(set.signing_at(later).unwrap().kid(), new.kid());
    let jwks = set.jwks(now);
    assert_eq!(jwks["keys"][0]["kid"], old.kid(), "the signer first");
    assert_eq!(
        jwks["keys"][1]["kid"],
        new.kid(),
        "the next key is published already"
    );
    assert_eq!(set.jwks(later)["keys"][0]["kid"], new.kid());
}

#[test]
fn jwks_ids_are_long_random_and_url_safe() {
    let (a, b) = (new_jwks_id(), new_jwks_id());
    assert_ne!(a, b);
    assert_eq!(a.len(), 22);
    assert!(a
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
}

#[tokio::test]
async fn an_account_not_served_by_the_files_gets_no_file_key() {
    let keys = AccountKeys::from_files("acct-a", Arc::new(SigningKeys::new(vec![key()])));
    assert!(keys.signing_key("acct-a").await.is_ok());
    assert!(matches!(
        keys.signing_key("acct-b").await,
        Err(KeysError::NoStore)
    ));
}
