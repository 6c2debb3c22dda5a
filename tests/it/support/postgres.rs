//! A fresh PostgreSQL schema per test in the local test database
//! (`FOREBAY_TEST_POSTGRES_URL`, default `postgres://root@127.0.0.1:5432/test`),
//! dropped when the guard goes, and configs that point the binary at it.

use std::path::{Path, PathBuf};

pub fn url() -> String {
    std::env::var("FOREBAY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

/// A schema of this test's own; dropped (with everything in it) on drop.
pub struct Schema(pub String);

impl Schema {
    pub fn fresh() -> Self {
        let id = uuid::Uuid::now_v7().simple().to_string();
        Schema(format!("forebay_it{id}"))
    }

    /// Writes a config with both listeners on port 0 and the store on this schema.
    pub fn write_config(&self, dir: &Path, extra: &str) -> PathBuf {
        let path = dir.join("forebay.toml");
        let text = format!(
            "[server]\ningest_listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n\
             [storage]\nurl = \"{}\"\nschema = \"{}\"\n\n{extra}",
            url(),
            self.0
        );
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// Runs `sql` on a connection of its own (e.g. to cut the store's connections).
    pub async fn execute(&self, sql: &str) -> u64 {
        let (client, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(conn);
        client.execute(sql, &[]).await.expect("sql")
    }

    /// Makes every insert into `table` fail as on a full disk, until
    /// [`Self::allow_inserts`].
    pub async fn refuse_inserts(&self, table: &str) {
        self.execute(&format!(
            "CREATE OR REPLACE FUNCTION {0}.refuse() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END $$",
            self.0
        ))
        .await;
        self.execute(&format!(
            "CREATE TRIGGER refuse BEFORE INSERT ON {0}.{table}
             FOR EACH ROW EXECUTE FUNCTION {0}.refuse()",
            self.0
        ))
        .await;
    }

    /// Ends [`Self::refuse_inserts`] on `table`.
    pub async fn allow_inserts(&self, table: &str) {
        self.execute(&format!("DROP TRIGGER refuse ON {}.{table}", self.0))
            .await;
    }

    /// Ends every connection forebay processes hold on this schema.
    pub async fn cut_connections(&self) -> u64 {
        self.execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'forebay/{}' AND pid <> pg_backend_pid()",
            self.0
        ))
        .await
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let schema = self.0.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&url(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}
