//! Reading the store without a daemon: what the package's maintainer scripts and an
//! operator ask of a state directory while `arbiterd` is stopped (`arbiterd
//! live-instances`). The database is opened read-only and never migrated or created; a
//! store this build cannot read is an error, never "nothing live", so that a caller that
//! deletes the state only when nothing is live (`dpkg --purge`) keeps it instead.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::{SCHEMA_VERSION, StoreError};

/// An instance that is not destroyed: its inputs, results and keys are still in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveInstance {
    /// Its id (32 hex).
    pub id: String,
    /// `open`, `evaluating`, `evaluated` or `destroying`.
    pub state: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

/// The instances of the store in `state_dir` that are not destroyed, oldest first; `None`
/// when the directory holds no store (`arbiter.db`) at all.
///
/// Run it as the state directory's owner (the package runs it as `arbiter`): SQLite may
/// create the `-shm` file beside a database in WAL mode even for a reader, and one created
/// by root would keep the daemon from opening its own store.
pub fn live_instances(state_dir: &Path) -> Result<Option<Vec<LiveInstance>>, StoreError> {
    let path = state_dir.join("arbiter.db");
    match std::fs::symlink_metadata(&path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::Io {
                what: format!("reading {}", path.display()),
                source,
            });
        }
    }
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path,
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    if version == 0 {
        // Created but never migrated: no table, so no instance either.
        return Ok(Some(Vec::new()));
    }
    let mut stmt = conn.prepare(
        "SELECT id, state, created_at FROM instances WHERE state <> 'destroyed' \
         ORDER BY created_at, id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(LiveInstance {
            id: r.get(0)?,
            state: r.get(1)?,
            created_at: r.get(2)?,
        })
    })?;
    Ok(Some(rows.collect::<Result<_, _>>()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn no_store_is_none_and_an_empty_store_has_nothing_live() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(live_instances(dir.path()).unwrap(), None);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = Store::open(dir.path()).unwrap();
            store.close().await;
        });
        assert_eq!(live_instances(dir.path()).unwrap(), Some(Vec::new()));
    }

    #[test]
    fn instances_not_destroyed_are_live_and_a_newer_store_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = Store::open(dir.path()).unwrap();
            store.close().await;
        });
        let conn = Connection::open(dir.path().join("arbiter.db")).unwrap();
        conn.execute_batch("PRAGMA foreign_keys = OFF;").unwrap();
        for (id, state, at) in [
            ("b", "open", "2026-01-02T00:00:00Z"),
            ("a", "destroyed", "2026-01-01T00:00:00Z"),
            ("c", "destroying", "2026-01-01T00:00:00Z"),
        ] {
            conn.execute(
                "INSERT INTO instances (id, manifest_json, manifest_sha256, function_id, \
                 function_sha256, public_key, created_by, created_at, state, round, evaluations) \
                 VALUES (?1, '{}', 'm', 'f', 'fs', x'00', 'me', ?3, ?2, 0, 0)",
                rusqlite::params![id, state, at],
            )
            .unwrap();
        }
        let live = live_instances(dir.path()).unwrap().unwrap();
        let ids: Vec<_> = live
            .iter()
            .map(|i| (i.id.as_str(), i.state.as_str()))
            .collect();
        assert_eq!(ids, [("c", "destroying"), ("b", "open")]);

        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        assert!(matches!(
            live_instances(dir.path()),
            Err(StoreError::TooNew { .. })
        ));
    }
}
