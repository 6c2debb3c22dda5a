//! The keys the embedded store's data has been sealed with (`sealing_keys`), checked
//! against the configured ones at start (see [`seal::check_registry`]).

use rusqlite::{Connection, params};

use crate::store::StoreError;
use crate::store::seal::{self, RegisteredKey, Registration, Sealer};

/// Checks the configured keys against the recorded ones and records the active key.
pub(super) fn register(conn: &Connection, sealer: &Sealer) -> Result<(), StoreError> {
    let registered = conn
        .prepare("SELECT id, check_value, retired_at IS NOT NULL FROM sealing_keys")?
        .query_map([], |r| {
            Ok(RegisteredKey {
                id: r.get(0)?,
                check_value: r.get(1)?,
                retired: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    match seal::check_registry(sealer, &registered)? {
        Registration::Nothing => {}
        Registration::Add { id, check_value } => {
            conn.execute(
                "INSERT INTO sealing_keys (id, check_value, added_at) VALUES (?1, ?2, ?3)",
                params![id, check_value, crate::clock::now_ms()],
            )?;
        }
        Registration::Unretire(id) => {
            conn.execute(
                "UPDATE sealing_keys SET retired_at = NULL WHERE id = ?1",
                params![id],
            )?;
        }
    }
    Ok(())
}
