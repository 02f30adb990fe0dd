//! Where the bench's worker keeps its store and delivery log: an SQLite file in the bench's
//! temporary directory, or a database of its own on a PostgreSQL server (`--postgres-url`),
//! created before the run and dropped after it, so runs never see each other's rows.

use sqlx::Connection;

pub struct BenchDatabase {
    /// What the worker's `database.url` is set to.
    pub url: String,
    /// The server's URL and the database's name, when it is PostgreSQL.
    postgres: Option<(String, String)>,
}

impl BenchDatabase {
    pub async fn create(
        postgres_url: Option<&str>,
        prefix: &str,
        dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let Some(server) = postgres_url else {
            std::fs::create_dir_all(dir)?;
            return Ok(BenchDatabase {
                url: format!("sqlite://{}", dir.join("bench.db").display()),
                postgres: None,
            });
        };
        let name = prefix.replace('-', "_");
        let mut connection = sqlx::PgConnection::connect(server).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await?;
        let _ = connection.close().await;
        let mut url = url::Url::parse(server)?;
        url.set_path(&name);
        Ok(BenchDatabase {
            url: url.to_string(),
            postgres: Some((server.to_owned(), name)),
        })
    }

    /// Drops the PostgreSQL database (the SQLite file goes with the bench's directory).
    pub async fn drop(self) {
        let Some((server, name)) = self.postgres else {
            return;
        };
        let dropped = async {
            let mut connection = sqlx::PgConnection::connect(&server).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut connection)
                .await?;
            connection.close().await
        };
        if let Err(error) = dropped.await {
            eprintln!("the bench's database {name} is left on the server: {error}");
        }
    }
}
