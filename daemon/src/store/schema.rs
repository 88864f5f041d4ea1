//! The database schema and its migrations, applied in order at open and recorded in
//! `PRAGMA user_version`.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// Each migration, in order; the schema version is the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: functions, instances, wrapped secrets, inputs, approvals, results, TLS, usage.
    "
    CREATE TABLE functions (
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        language      TEXT NOT NULL,
        source        BLOB NOT NULL,
        sha256        TEXT NOT NULL,
        registered_by TEXT NOT NULL,
        registered_at TEXT NOT NULL
    );
    CREATE INDEX functions_sha256 ON functions(sha256);

    CREATE TABLE instances (
        id               TEXT PRIMARY KEY,
        manifest_json    TEXT NOT NULL,
        manifest_sha256  TEXT NOT NULL,
        function_id      TEXT NOT NULL REFERENCES functions(id),
        function_sha256  TEXT NOT NULL,
        public_key       BLOB NOT NULL,
        created_by       TEXT NOT NULL,
        created_at       TEXT NOT NULL,
        state            TEXT NOT NULL,
        round            INTEGER NOT NULL,
        evaluations      INTEGER NOT NULL DEFAULT 0,
        first_read_at    TEXT,
        destroyed_at     TEXT
    );

    -- Secrets wrapped (AES-256-GCM) under the sealing index's key of `epoch`.
    CREATE TABLE wrapped_secrets (
        owner      TEXT NOT NULL,
        epoch      INTEGER NOT NULL,
        nonce      BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        PRIMARY KEY (owner, epoch)
    );

    CREATE TABLE inputs (
        instance_id            TEXT NOT NULL REFERENCES instances(id),
        slot                   TEXT NOT NULL,
        submitter              TEXT NOT NULL,
        round                  INTEGER NOT NULL,
        enc                    BLOB NOT NULL,
        ciphertext             BLOB NOT NULL,
        ciphertext_sha256      TEXT NOT NULL,
        expect_function_sha256 TEXT,
        accepted_at            TEXT NOT NULL,
        PRIMARY KEY (instance_id, slot)
    );

    CREATE TABLE approvals (
        instance_id TEXT NOT NULL REFERENCES instances(id),
        identity    TEXT NOT NULL,
        approved_at TEXT NOT NULL,
        PRIMARY KEY (instance_id, identity)
    );

    -- Outputs and failure messages encrypted under the instance's result-at-rest key.
    CREATE TABLE results (
        instance_id  TEXT NOT NULL REFERENCES instances(id),
        round        INTEGER NOT NULL,
        succeeded    INTEGER NOT NULL,
        nonce        BLOB NOT NULL,
        ciphertext   BLOB NOT NULL,
        inputs_json  TEXT NOT NULL,
        evaluated_at TEXT NOT NULL,
        PRIMARY KEY (instance_id, round)
    );

    -- The daemon's TLS certificate; its key is in wrapped_secrets under owner 'tls'.
    CREATE TABLE tls_identity (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        cert_der   BLOB NOT NULL,
        created_at TEXT NOT NULL
    );

    -- Signed destruction certificates (compact JWS).
    CREATE TABLE certificates (
        instance_id TEXT PRIMARY KEY REFERENCES instances(id),
        jws         TEXT NOT NULL,
        created_at  TEXT NOT NULL
    );

    CREATE TABLE usage (
        instance_id TEXT NOT NULL REFERENCES instances(id),
        identity    TEXT NOT NULL,
        metric      TEXT NOT NULL,
        amount      INTEGER NOT NULL,
        PRIMARY KEY (instance_id, identity, metric)
    );
    ",
    // 2: every input an instance ever accepted, in acceptance order (`seq` from 0), kept
    // when the ciphertext is deleted: the leaves of the destruction certificate's inputs
    // tree (docs/protocol.md). Inputs stored before this table existed are its first entries.
    "
    CREATE TABLE accepted_inputs (
        instance_id       TEXT NOT NULL REFERENCES instances(id),
        seq               INTEGER NOT NULL,
        slot              TEXT NOT NULL,
        submitter         TEXT NOT NULL,
        round             INTEGER NOT NULL,
        ciphertext_sha256 TEXT NOT NULL,
        PRIMARY KEY (instance_id, seq)
    );
    INSERT INTO accepted_inputs (instance_id, seq, slot, submitter, round, ciphertext_sha256)
        SELECT instance_id,
               ROW_NUMBER() OVER (PARTITION BY instance_id ORDER BY accepted_at, slot) - 1,
               slot, submitter, round, ciphertext_sha256
        FROM inputs;
    ",
    // 3: what a function computes and the schema of its inputs (both optional), and whether
    // it is one of the shipped library's (registered at start, docs/functions.md).
    "
    ALTER TABLE functions ADD COLUMN description TEXT;
    ALTER TABLE functions ADD COLUMN input_schema TEXT;
    ALTER TABLE functions ADD COLUMN library INTEGER NOT NULL DEFAULT 0;
    ",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`SCHEMA_VERSION`], refusing a newer one.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database written before the record of accepted inputs existed: its stored inputs
    /// become the record's first entries, per instance, in acceptance order.
    #[test]
    fn migration_2_records_the_inputs_already_stored() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO functions VALUES ('f', 'n', 'rhai', x'00', 'ff', 'me', 't');
             INSERT INTO instances (id, manifest_json, manifest_sha256, function_id,
                 function_sha256, public_key, created_by, created_at, state, round)
             VALUES ('i1', '{}', 'm', 'f', 'ff', x'04', 'me', 't', 'open', 2),
                    ('i2', '{}', 'm', 'f', 'ff', x'04', 'me', 't', 'open', 1);
             INSERT INTO inputs VALUES
                 ('i1', 'b', 'bob', 2, x'01', x'02', 'c2', NULL, '2026-01-01T00:00:02Z'),
                 ('i1', 'a', 'alice', 1, x'01', x'02', 'c1', NULL, '2026-01-01T00:00:01Z'),
                 ('i2', 'a', 'alice', 1, x'01', x'02', 'c3', NULL, '2026-01-01T00:00:00Z');",
        )
        .unwrap();
        migrate(&mut conn, Path::new(":memory:")).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let i1 = super::super::queries::accepted_inputs(&conn, "i1").unwrap();
        let got: Vec<(&str, &str, u64, &str)> = i1
            .iter()
            .map(|l| {
                (
                    l.slot.as_str(),
                    l.submitter.as_str(),
                    l.round,
                    l.ciphertext_sha256.as_str(),
                )
            })
            .collect();
        assert_eq!(got, [("a", "alice", 1, "c1"), ("b", "bob", 2, "c2")]);
        let i2 = super::super::queries::accepted_inputs(&conn, "i2").unwrap();
        assert_eq!(i2.len(), 1);
        assert_eq!(i2[0].ciphertext_sha256, "c3");
    }

    /// A function stored before migration 3 reads back without description or schema and
    /// as not a library function.
    #[test]
    fn migration_3_keeps_functions_registered_before_it() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute_batch(
            "INSERT INTO functions VALUES ('f', 'n', 'rhai', x'00', 'ff', 'me', 't');",
        )
        .unwrap();
        migrate(&mut conn, Path::new(":memory:")).unwrap();
        let f = super::super::queries::get_function(&conn, "f")
            .unwrap()
            .unwrap();
        assert_eq!(
            (f.description, f.input_schema, f.library),
            (None, None, false)
        );
        assert_eq!(f.registered_by, "me");
    }

    /// Instance states are stored by name and read back as the enum; a name this build
    /// does not know is a corrupt store, reported with the instance, not a default state.
    #[test]
    fn instance_states_round_trip_and_an_unknown_one_is_corrupt() {
        use arbiter_proto::InstanceState;

        use super::super::queries;
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, Path::new(":memory:")).unwrap();
        conn.execute_batch(
            "INSERT INTO functions (id, name, language, source, sha256, registered_by,
                 registered_at) VALUES ('f', 'n', 'rhai', x'00', 'ff', 'me', 't');
             INSERT INTO instances (id, manifest_json, manifest_sha256, function_id,
                 function_sha256, public_key, created_by, created_at, state, round)
             VALUES ('i1', '{}', 'm', 'f', 'ff', x'04', 'me', 't', 'open', 1);",
        )
        .unwrap();
        for state in InstanceState::ALL {
            queries::set_state(&conn, "i1", state).unwrap();
            let row = queries::get_instance(&conn, "i1").unwrap().unwrap();
            assert_eq!(row.state, state);
            let stored: String = conn
                .query_row("SELECT state FROM instances WHERE id = 'i1'", [], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(stored, state.as_str());
            assert_eq!(
                queries::instances_in_states(&conn, &[state]).unwrap().len(),
                1
            );
        }
        conn.execute("UPDATE instances SET state = 'paused' WHERE id = 'i1'", [])
            .unwrap();
        let e = queries::get_instance(&conn, "i1").unwrap_err();
        assert!(
            matches!(&e, StoreError::Corrupt(m) if m.contains("i1") && m.contains("paused")),
            "{e}"
        );
        assert!(queries::instances_in_states(&conn, &InstanceState::ALL).is_ok());
        assert!(
            queries::instances_in_states(&conn, &InstanceState::ALL)
                .unwrap()
                .is_empty()
        );
        let e = queries::live_instances_of(&conn, "me").unwrap();
        assert_eq!(e, 1, "an unknown state is not `destroyed`");
    }
}
