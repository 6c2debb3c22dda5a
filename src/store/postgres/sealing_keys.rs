//! The keys the shared store's data has been sealed with (`sealing_keys`), checked
//! against this process's keys at start (see [`seal::check_registry`]).

use deadpool_postgres::Client;

use crate::store::StoreError;
use crate::store::seal::{self, RegisteredKey, Registration, Sealer};

/// Checks the configured keys against the recorded ones and records the active key.
/// Processes starting together may record the same new key at once: the first row
/// stands, and a second look checks this process's key against it.
pub(super) async fn register(client: &Client, sealer: &Sealer) -> Result<(), StoreError> {
    for _ in 0..2 {
        let registered = recorded(client).await?;
        match seal::check_registry(sealer, &registered)? {
            Registration::Nothing => return Ok(()),
            Registration::Add { id, check_value } => {
                client
                    .execute(
                        "INSERT INTO sealing_keys (id, check_value, added_at) VALUES ($1, $2, $3)
                         ON CONFLICT (id) DO NOTHING",
                        &[&id, &check_value, &crate::clock::now_ms()],
                    )
                    .await?;
            }
            Registration::Unretire(id) => {
                client
                    .execute(
                        "UPDATE sealing_keys SET retired_at = NULL WHERE id = $1",
                        &[&id],
                    )
                    .await?;
            }
        }
    }
    Ok(())
}

async fn recorded(client: &Client) -> Result<Vec<RegisteredKey>, StoreError> {
    Ok(client
        .query(
            "SELECT id, check_value, retired_at IS NOT NULL FROM sealing_keys",
            &[],
        )
        .await?
        .iter()
        .map(|r| RegisteredKey {
            id: r.get(0),
            check_value: r.get(1),
            retired: r.get(2),
        })
        .collect())
}
