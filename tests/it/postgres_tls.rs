//! PostgreSQL over TLS: the store's own connections are encrypted with `sslmode=require` (as
//! every PostgreSQL test's are: see `support::postgres_admin_url`), and `sslmode=verify-full`
//! checks the server's certificate against `sslrootcert`. The machine's server uses Debian's
//! self-signed "snakeoil" certificate, issued for `localhost`.

use sqlx::{Connection, Row};
use webhook_worker::store::{Store, StoreError};

use crate::support::{postgres_admin_url, Backend, TestDb};

const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

/// The test database's URL with `query` in place of its query string.
fn with_query(db: &TestDb, host: &str, query: &str) -> String {
    let mut url = url::Url::parse(db.url()).expect("a PostgreSQL URL");
    url.set_host(Some(host)).expect("a host");
    url.set_query(Some(query));
    url.to_string()
}

/// (connections to `database`, how many of them are encrypted), as the server sees them.
async fn server_view(database: &str) -> (i64, i64) {
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .expect("the admin connection");
    let row = sqlx::query(
        "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s ON s.pid = a.pid WHERE a.datname = $1",
    )
    .bind(database)
    .fetch_one(&mut admin)
    .await
    .expect("pg_stat_ssl");
    let _ = admin.close().await;
    (row.get(0), row.get(1))
}

fn database_name(db: &TestDb) -> String {
    url::Url::parse(db.url()).expect("a URL").path()[1..].to_string()
}

#[tokio::test]
async fn the_store_connects_over_tls_with_sslmode_require() {
    let db = TestDb::new(Backend::Postgres).await;
    assert!(db.url().contains("sslmode=require"), "{}", db.url());
    let store = Store::connect(db.url(), 2, None)
        .await
        .expect("the store opens over TLS");
    let (connections, encrypted) = server_view(&database_name(&db)).await;
    assert!(connections >= 1, "the store holds a connection");
    assert_eq!(
        encrypted, connections,
        "every store connection is encrypted"
    );
    store.close().await;

    // The same check sees a plain connection: it can fail.
    let plain = Store::connect(&with_query(&db, "127.0.0.1", "sslmode=disable"), 1, None)
        .await
        .expect("the store opens without TLS");
    let (connections, encrypted) = server_view(&database_name(&db)).await;
    assert!(
        connections >= 1 && encrypted < connections,
        "{connections} {encrypted}"
    );
    plain.close().await;
}

#[tokio::test]
async fn verify_full_accepts_the_server_certificate_from_sslrootcert() {
    let db = TestDb::new(Backend::Postgres).await;
    let url = with_query(
        &db,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={SNAKEOIL}"),
    );
    let store = Store::connect(&url, 1, None)
        .await
        .expect("verify-full against the snakeoil certificate");
    let (connections, encrypted) = server_view(&database_name(&db)).await;
    assert!(connections >= 1 && encrypted == connections);
    store.close().await;
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_it_cannot_verify() {
    let db = TestDb::new(Backend::Postgres).await;
    // The name does not match: the certificate is for localhost, not 127.0.0.1.
    let wrong_name = with_query(
        &db,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={SNAKEOIL}"),
    );
    // No sslrootcert: the public roots do not vouch for a self-signed certificate.
    let untrusted = with_query(&db, "localhost", "sslmode=verify-full");
    for url in [wrong_name, untrusted] {
        let result = Store::connect(&url, 1, None).await;
        assert!(
            matches!(result, Err(StoreError::Database(_))),
            "{url} should be refused: {:?}",
            result.err()
        );
    }
}
