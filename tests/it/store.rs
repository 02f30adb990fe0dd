//! Secrets at rest: a dump of the database holds no plain secret, a store with encrypted rows
//! refuses to open without the right key, naming `database.encryption_key`, and the key can be
//! rotated with `database.decryption_keys`.

use base64::Engine;
use chrono::Utc;
use serde_json::json;
use sqlx::{Column, Row};
use uuid::Uuid;
use webhook_worker::{
    config::Config,
    oidc::AccountKeys,
    store::{Cipher, Store},
    webhook::{Draft, Rotation, UrlRules, Webhook, WebhookPatch},
};

use crate::support::{both_backends, spawn_app, with, Backend, TestDb};

both_backends!(
    a_database_dump_holds_no_plain_secret,
    opening_encrypted_rows_without_the_key_fails_naming_the_key,
    opening_encrypted_rows_with_another_key_fails_naming_the_key,
    a_database_without_secrets_opens_without_a_key,
    rotating_the_encryption_key_reencrypts_every_secret_and_signing_key,
    a_previous_secret_is_encrypted_for_its_own_column_and_reencrypted_with_the_rest,
);

const SECRET: &str = "whsec_plain_3a7bd3e2360a3d29eea4";
const CLIENT_SECRET: &str = "oidc_plain_c0535e4be2b79ffd9329";

/// Every column of every row, as text where the column is text.
async fn dump(url: &str) -> String {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url)
        .await
        .expect("the database opens");
    let mut text = String::new();
    for table in ["webhooks", "account_key_sets", "account_signing_keys"] {
        let rows = sqlx::query(&format!("SELECT * FROM {table}"))
            .fetch_all(&pool)
            .await
            .expect("rows");
        for row in &rows {
            for column in row.columns() {
                if let Ok(Some(value)) = row.try_get::<Option<String>, _>(column.ordinal()) {
                    text.push_str(column.name());
                    text.push('=');
                    text.push_str(&value);
                    text.push('\n');
                }
            }
        }
    }
    pool.close().await;
    text
}

async fn a_database_dump_holds_no_plain_secret(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = with(json!({
        "secret": SECRET,
        "oidc_auth_method": "client_secret",
        "oidc_client_id": "client-1",
        "oidc_client_secret": CLIENT_SECRET,
        "oidc_token_endpoint": "https://login.example.com/token",
        "oidc_access_token_ttl_seconds": 300,
    }));
    let id = app.create(&app.token_a, &body).await;
    // The account's signing key, made on first need, is in the dump too, encrypted.
    app.get("/v1/webhooks/oidc_keys", &app.token_a)
        .await
        .expect(200);
    let dump = dump(app.db.url()).await;
    assert!(dump.contains("private_key_enc=v2:"), "{dump}");
    assert!(
        !dump.contains("PRIVATE KEY"),
        "a plain private key in the dump: {dump}"
    );
    assert!(dump.contains(&id), "the dump holds the row: {dump}");
    assert!(dump.contains("secret_enc=v2:"), "{dump}");
    assert!(dump.contains("oidc_client_secret_enc=v2:"), "{dump}");
    for secret in [SECRET, CLIENT_SECRET] {
        assert!(!dump.contains(secret), "plain secret in the dump: {dump}");
        let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
        assert!(
            !dump.contains(&encoded),
            "base64 secret in the dump: {dump}"
        );
    }
    if backend == Backend::Sqlite {
        // The files themselves (database and write-ahead log), byte for byte.
        let path = app.db.url().trim_start_matches("sqlite://").to_string();
        let folder = std::path::Path::new(&path).parent().unwrap();
        for entry in std::fs::read_dir(folder).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            for secret in [SECRET, CLIENT_SECRET] {
                assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
            }
        }
    }
}

fn webhook_with_secret(secret: Option<&str>) -> Webhook {
    let mut body = with(json!({}));
    if let Some(secret) = secret {
        body["secret"] = json!(secret);
    }
    let patch: WebhookPatch = serde_json::from_value(body).unwrap();
    let now = Utc::now();
    Draft::default()
        .apply(patch)
        .validate(&UrlRules::default(), Uuid::new_v4(), "acct", now, now)
        .expect("a valid webhook")
}

/// A database holding one webhook, written with `key`.
async fn database_with(backend: Backend, key: [u8; 32], secret: Option<&str>) -> TestDb {
    let db = TestDb::new(backend).await;
    let store = Store::connect(db.url(), 2, Some(key)).await.unwrap();
    store.insert(&webhook_with_secret(secret)).await.unwrap();
    store.close().await;
    db
}

async fn opening_encrypted_rows_without_the_key_fails_naming_the_key(backend: Backend) {
    let db = database_with(backend, [1; 32], Some(SECRET)).await;
    let error = Store::connect(db.url(), 2, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("database.encryption_key"), "{error}");
    // With the key it opens and reads the secret back.
    let store = Store::connect(db.url(), 2, Some([1; 32])).await.unwrap();
    let all = store.all().await.unwrap();
    assert_eq!(all[0].secret.as_ref().unwrap().expose(), SECRET);
    store.close().await;
}

async fn opening_encrypted_rows_with_another_key_fails_naming_the_key(backend: Backend) {
    let db = database_with(backend, [1; 32], Some(SECRET)).await;
    let error = Store::connect(db.url(), 2, Some([2; 32]))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("database.encryption_key"), "{error}");
    assert!(!error.contains(SECRET));
}

async fn a_database_without_secrets_opens_without_a_key(backend: Backend) {
    let db = database_with(backend, [1; 32], None).await;
    let store = Store::connect(db.url(), 2, None).await.unwrap();
    assert_eq!(store.all().await.unwrap().len(), 1);
    assert!(!store.can_store_secrets());
    store.close().await;
}

/// Every stored webhook's secret, decrypted.
async fn secrets(store: &Store) -> Vec<String> {
    let all = store.all().await.unwrap();
    all.iter()
        .map(|w| w.secret.as_ref().expect("a secret").expose().to_string())
        .collect()
}

/// The kid that signs for `account` now, read through a store.
async fn signing_kid(store: &Store, account: &str) -> String {
    let config = Config::from_toml("").unwrap();
    let keys = AccountKeys::new(Some(store.clone()), &config.oidc).unwrap();
    let set = keys.current(account).await.expect("the account's keys");
    set.signing_at(Utc::now())
        .expect("a signing key")
        .kid()
        .to_string()
}

async fn rotating_the_encryption_key_reencrypts_every_secret_and_signing_key(backend: Backend) {
    const WEBHOOKS: usize = 1_000;
    let (old, new) = ([1; 32], [2; 32]);
    let db = database_with(backend, old, Some(SECRET)).await;
    let store = Store::connect(db.url(), 2, Some(old)).await.unwrap();
    // A deployment's worth of webhooks: 1,000 secrets to encrypt again.
    for _ in 1..WEBHOOKS {
        store
            .insert(&webhook_with_secret(Some(SECRET)))
            .await
            .unwrap();
    }
    let kid = signing_kid(&store, "acct").await; // made now, encrypted with the old key
    store.close().await;
    let error = Store::connect(db.url(), 2, Some(new))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("database.encryption_key"), "{error}");

    // The new key, with the old one to read: it opens, and encrypts everything again.
    let rotating = Cipher::with_decryption_keys(new, &[[9; 32], old]);
    let store = Store::connect_with(db.url(), 2, Some(rotating))
        .await
        .unwrap();
    assert_eq!(secrets(&store).await, vec![SECRET; WEBHOOKS]);
    store.close().await;

    // Now the new key alone reads every secret and the signing key; the old one none.
    let store = Store::connect(db.url(), 2, Some(new)).await.unwrap();
    assert_eq!(secrets(&store).await, vec![SECRET; WEBHOOKS]);
    assert_eq!(
        signing_kid(&store, "acct").await,
        kid,
        "the same key, still signing"
    );
    store.close().await;
    let error = Store::connect(db.url(), 2, Some(old))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("database.encryption_key"), "{error}");
}

/// A webhook whose `SECRET` replaced `PREVIOUS` a moment ago (the overlap runs a day).
fn rotated_webhook() -> Webhook {
    let original = webhook_with_secret(Some(PREVIOUS));
    let patch: WebhookPatch = serde_json::from_value(json!({"secret": SECRET})).unwrap();
    let mut draft = Draft::of(&original).apply(patch);
    let now = Utc::now();
    let overlap = std::time::Duration::from_secs(86_400);
    draft.rotate_from(&original, Rotation { now, overlap });
    draft
        .validate(&UrlRules::default(), original.id, "acct", now, now)
        .expect("a valid webhook")
}

const PREVIOUS: &str = "whsec_previous_9b2f71e04c5d8a36";

async fn a_previous_secret_is_encrypted_for_its_own_column_and_reencrypted_with_the_rest(
    backend: Backend,
) {
    let (old, new) = ([1; 32], [2; 32]);
    let db = TestDb::new(backend).await;
    let store = Store::connect(db.url(), 2, Some(old)).await.unwrap();
    store.insert(&rotated_webhook()).await.unwrap();
    store.close().await;
    let dump = dump(db.url()).await;
    assert!(dump.contains("previous_secret_enc=v2:"), "{dump}");
    assert!(
        !dump.contains(PREVIOUS),
        "plain previous secret in the dump: {dump}"
    );

    let rotating = Cipher::with_decryption_keys(new, &[old]);
    let store = Store::connect_with(db.url(), 2, Some(rotating))
        .await
        .unwrap();
    store.close().await;
    let store = Store::connect(db.url(), 2, Some(new)).await.unwrap();
    let all = store.all().await.unwrap();
    let previous = all[0]
        .previous_secret
        .as_ref()
        .expect("the previous secret");
    assert_eq!(
        previous.secret.expose(),
        PREVIOUS,
        "re-encrypted with the new key"
    );
    store.close().await;

    // Bound to its column: moved into secret_enc, it does not open (nor the store with it).
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(db.url()).await.unwrap();
    sqlx::query("UPDATE webhooks SET secret_enc = previous_secret_enc")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let error = Store::connect(db.url(), 2, Some(new))
        .await
        .unwrap_err()
        .to_string();
    assert!(!error.contains(PREVIOUS), "{error}");
}
