//! A database per test: a temp SQLite file, or a fresh PostgreSQL database made on the
//! machine's server and dropped afterwards; and `both_backends!`, which runs one test body
//! against both.

use sqlx::Connection;

/// The server's `test` database, where the per-test databases are created from, over TLS: every
/// PostgreSQL test runs encrypted (the server has `ssl = on`). `WEBHOOK_WORKER_TEST_POSTGRES`
/// overrides it.
pub fn postgres_admin_url() -> String {
    std::env::var("WEBHOOK_WORKER_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=require".to_string())
}

/// Defines, for each `async fn name(backend: Backend)` listed, a module `name` with the tests
/// `name::sqlite` and `name::postgres`.
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name($crate::support::Backend::Sqlite).await
                }

                #[tokio::test]
                async fn postgres() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            }
        )+
    };
}
pub(crate) use both_backends;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test.
pub struct TestDb {
    url: String,
    /// Holds the SQLite file; removed on drop.
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database to drop on drop.
    postgres_name: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temp dir");
                let url = format!("sqlite://{}/webhooks.db", dir.path().display());
                TestDb {
                    url,
                    _dir: Some(dir),
                    postgres_name: None,
                }
            }
            Backend::Postgres => {
                let name = format!("whw_it_{}", uuid::Uuid::new_v4().simple());
                let admin = postgres_admin_url();
                let mut connection = sqlx::PgConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin}: {e}"));
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut connection)
                    .await
                    .expect("CREATE DATABASE");
                let _ = connection.close().await;
                let mut url = url::Url::parse(&admin).expect("a PostgreSQL URL");
                url.set_path(&name);
                TestDb {
                    url: url.to_string(),
                    _dir: None,
                    postgres_name: Some(name),
                }
            }
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread with its own
        // runtime can. FORCE ends connections the app's pool still holds.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let mut connection = sqlx::PgConnection::connect(&postgres_admin_url()).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut connection)
                    .await?;
                connection.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
            panic!("could not drop the test database: {dropped:?}");
        }
    }
}
