//! The SQL of the store: typed rows and one function per query, each taking the connection
//! (or savepoint) it runs on, so the engine composes them inside one group-committed write.

use arbiter_proto::InstanceState;
use rusqlite::{Connection, OptionalExtension, Params, Row, params};

use super::StoreError;
use crate::keys::Wrapped;

/// Runs a statement from the connection's cache of prepared statements (each query's SQL
/// is parsed once per connection, not once per call).
fn exec<P: Params>(c: &Connection, sql: &str, params: P) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(params)
}

/// The one row of a query, with its statement from the connection's cache.
fn row<T, P: Params>(
    c: &Connection,
    sql: &str,
    params: P,
    f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    c.prepare_cached(sql)?.query_row(params, f)
}

/// A registered function.
#[derive(Debug, Clone)]
pub struct FunctionRow {
    /// Its id (32 hex).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its language (`rhai`).
    pub language: String,
    /// The source exactly as uploaded.
    pub source: String,
    /// `sha256(source)`, hex.
    pub sha256: String,
    /// Who registered it.
    pub registered_by: String,
    /// When (RFC 3339).
    pub registered_at: String,
    /// What it computes, when given.
    pub description: Option<String>,
    /// The JSON Schema of its inputs (JSON text), when given.
    pub input_schema: Option<String>,
    /// Whether it is a shipped library function (registered at start).
    pub library: bool,
}

fn function_row(r: &Row<'_>) -> rusqlite::Result<FunctionRow> {
    let source: Vec<u8> = r.get(3)?;
    Ok(FunctionRow {
        id: r.get(0)?,
        name: r.get(1)?,
        language: r.get(2)?,
        source: String::from_utf8_lossy(&source).into_owned(),
        sha256: r.get(4)?,
        registered_by: r.get(5)?,
        registered_at: r.get(6)?,
        description: r.get(7)?,
        input_schema: r.get(8)?,
        library: r.get(9)?,
    })
}

const FUNCTION_COLUMNS: &str = "id, name, language, source, sha256, registered_by, registered_at, \
                                description, input_schema, library";

/// Stores a function.
pub fn insert_function(c: &Connection, f: &FunctionRow) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO functions (id, name, language, source, sha256, registered_by, registered_at,
                                description, input_schema, library)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            f.id,
            f.name,
            f.language,
            f.source.as_bytes(),
            f.sha256,
            f.registered_by,
            f.registered_at,
            f.description,
            f.input_schema,
            f.library
        ],
    )?;
    Ok(())
}

/// Every function, oldest first.
pub fn list_functions(c: &Connection) -> Result<Vec<FunctionRow>, StoreError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {FUNCTION_COLUMNS} FROM functions ORDER BY registered_at, id"
    ))?;
    let rows = stmt.query_map([], function_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One function by id.
pub fn get_function(c: &Connection, id: &str) -> Result<Option<FunctionRow>, StoreError> {
    Ok(row(
        c,
        &format!("SELECT {FUNCTION_COLUMNS} FROM functions WHERE id = ?1"),
        [id],
        function_row,
    )
    .optional()?)
}

/// Every function registered with this measurement, oldest first.
pub fn functions_by_sha256(c: &Connection, sha256: &str) -> Result<Vec<FunctionRow>, StoreError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {FUNCTION_COLUMNS} FROM functions WHERE sha256 = ?1 ORDER BY registered_at, id"
    ))?;
    let rows = stmt.query_map([sha256], function_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// An instance.
#[derive(Debug, Clone)]
pub struct InstanceRow {
    /// Its id (32 hex).
    pub id: String,
    /// The manifest exactly as submitted (JSON text).
    pub manifest_json: String,
    /// `sha256(JCS(manifest))`, hex.
    pub manifest_sha256: String,
    /// The function's id.
    pub function_id: String,
    /// The function's measurement, hex.
    pub function_sha256: String,
    /// The HPKE public key (SEC1 uncompressed).
    pub public_key: Vec<u8>,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: String,
    /// Where it is in its lifecycle (stored as the state's name).
    pub state: InstanceState,
    /// The current round (from 1).
    pub round: u64,
    /// How many evaluations ran.
    pub evaluations: u64,
    /// When a result was first read.
    pub first_read_at: Option<String>,
    /// When it was destroyed.
    pub destroyed_at: Option<String>,
}

const INSTANCE_COLUMNS: &str = "id, manifest_json, manifest_sha256, function_id, function_sha256, \
    public_key, created_by, created_at, state, round, evaluations, first_read_at, destroyed_at";

/// An instance row as read. A state name this build does not know is a
/// [`StoreError::Corrupt`] naming the instance, never a default state.
fn instance_row(r: &Row<'_>) -> rusqlite::Result<Result<InstanceRow, StoreError>> {
    let id: String = r.get(0)?;
    let state: String = r.get(8)?;
    let state = match state.parse::<InstanceState>() {
        Ok(state) => state,
        Err(e) => {
            return Ok(Err(StoreError::Corrupt(format!(
                "instance {id} has state {state:?}: {e}"
            ))));
        }
    };
    Ok(Ok(InstanceRow {
        id,
        manifest_json: r.get(1)?,
        manifest_sha256: r.get(2)?,
        function_id: r.get(3)?,
        function_sha256: r.get(4)?,
        public_key: r.get(5)?,
        created_by: r.get(6)?,
        created_at: r.get(7)?,
        state,
        round: r.get::<_, i64>(9)? as u64,
        evaluations: r.get::<_, i64>(10)? as u64,
        first_read_at: r.get(11)?,
        destroyed_at: r.get(12)?,
    }))
}

/// Stores a new instance.
pub fn insert_instance(c: &Connection, i: &InstanceRow) -> Result<(), StoreError> {
    exec(
        c,
        &format!(
            "INSERT INTO instances ({INSTANCE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
        params![
            i.id,
            i.manifest_json,
            i.manifest_sha256,
            i.function_id,
            i.function_sha256,
            i.public_key,
            i.created_by,
            i.created_at,
            i.state.as_str(),
            i.round as i64,
            i.evaluations as i64,
            i.first_read_at,
            i.destroyed_at
        ],
    )?;
    Ok(())
}

/// One instance by id.
pub fn get_instance(c: &Connection, id: &str) -> Result<Option<InstanceRow>, StoreError> {
    row(
        c,
        &format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = ?1"),
        [id],
        instance_row,
    )
    .optional()?
    .transpose()
}

/// An instance's state and round (what a write re-checks), without its manifest.
pub fn instance_state(
    c: &Connection,
    id: &str,
) -> Result<Option<(InstanceState, u64)>, StoreError> {
    let found: Option<(String, i64)> = row(
        c,
        "SELECT state, round FROM instances WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?;
    found
        .map(|(state, round)| {
            Ok((
                state
                    .parse()
                    .map_err(|e| StoreError::Corrupt(format!("instance {id} state: {e}")))?,
                u64::try_from(round).unwrap_or(0),
            ))
        })
        .transpose()
}

/// The id and state of every instance in one of `states`, and whether its result was
/// read: what the deadline check needs, without the manifest text.
pub fn instance_states(
    c: &Connection,
    states: &[InstanceState],
) -> Result<Vec<(String, InstanceState, bool)>, StoreError> {
    let mut out = Vec::new();
    let mut stmt = c.prepare_cached(
        "SELECT id, state, first_read_at IS NOT NULL FROM instances WHERE state = ?1 \
         ORDER BY created_at, id",
    )?;
    for state in states {
        let rows = stmt.query_map([state.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
        })?;
        for r in rows {
            let (id, name, read) = r?;
            let state = name.parse::<InstanceState>().map_err(|e| {
                StoreError::Corrupt(format!("instance {id} has state {name:?}: {e}"))
            })?;
            out.push((id, state, read));
        }
    }
    Ok(out)
}

/// Every instance in one of `states`.
pub fn instances_in_states(
    c: &Connection,
    states: &[InstanceState],
) -> Result<Vec<InstanceRow>, StoreError> {
    let mut out = Vec::new();
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE state = ?1 ORDER BY created_at, id"
    ))?;
    for state in states {
        let rows = stmt.query_map([state.as_str()], instance_row)?;
        for r in rows {
            out.push(r??);
        }
    }
    Ok(out)
}

/// Sets an instance's state, round and evaluation count.
pub fn update_instance(
    c: &Connection,
    id: &str,
    state: InstanceState,
    round: u64,
    evaluations: u64,
) -> Result<(), StoreError> {
    exec(
        c,
        "UPDATE instances SET state = ?2, round = ?3, evaluations = ?4 WHERE id = ?1",
        params![id, state.as_str(), round as i64, evaluations as i64],
    )?;
    Ok(())
}

/// Records the first read of a result (idempotent).
pub fn mark_first_read(c: &Connection, id: &str, at: &str) -> Result<bool, StoreError> {
    Ok(exec(
        c,
        "UPDATE instances SET first_read_at = ?2 WHERE id = ?1 AND first_read_at IS NULL",
        params![id, at],
    )? == 1)
}

/// Marks an instance destroyed.
pub fn mark_destroyed(c: &Connection, id: &str, at: &str) -> Result<(), StoreError> {
    exec(
        c,
        "UPDATE instances SET state = ?3, destroyed_at = ?2 WHERE id = ?1",
        params![id, at, InstanceState::Destroyed.as_str()],
    )?;
    Ok(())
}

/// How many not-destroyed instances `creator` created.
pub fn live_instances_of(c: &Connection, creator: &str) -> Result<u64, StoreError> {
    Ok(row(
        c,
        "SELECT COUNT(*) FROM instances WHERE created_by = ?1 AND state <> ?2",
        [creator, InstanceState::Destroyed.as_str()],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

/// Stores a wrapping (replacing one of the same owner and epoch).
pub fn put_wrapped(c: &Connection, owner: &str, w: &Wrapped) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT OR REPLACE INTO wrapped_secrets (owner, epoch, nonce, ciphertext) VALUES (?1, ?2, ?3, ?4)",
        params![owner, w.epoch as i64, w.nonce, w.ciphertext],
    )?;
    Ok(())
}

/// `owner`'s wrapping at `epoch`, if any.
pub fn get_wrapped(c: &Connection, owner: &str, epoch: u64) -> Result<Option<Wrapped>, StoreError> {
    Ok(row(
        c,
        "SELECT epoch, nonce, ciphertext FROM wrapped_secrets WHERE owner = ?1 AND epoch = ?2",
        params![owner, epoch as i64],
        |r| {
            Ok(Wrapped {
                epoch: r.get::<_, i64>(0)? as u64,
                nonce: r.get(1)?,
                ciphertext: r.get(2)?,
            })
        },
    )
    .optional()?)
}

/// Deletes every wrapping of `owner`.
pub fn delete_wrapped(c: &Connection, owner: &str) -> Result<(), StoreError> {
    exec(c, "DELETE FROM wrapped_secrets WHERE owner = ?1", [owner])?;
    Ok(())
}

/// An accepted input (ciphertext only).
#[derive(Debug, Clone)]
pub struct InputRow {
    /// The instance.
    pub instance_id: String,
    /// The slot.
    pub slot: String,
    /// Who submitted it.
    pub submitter: String,
    /// The round it was submitted in (part of its HPKE info).
    pub round: u64,
    /// HPKE encapsulated key.
    pub enc: Vec<u8>,
    /// HPKE ciphertext.
    pub ciphertext: Vec<u8>,
    /// `sha256(enc || ciphertext)`, hex.
    pub ciphertext_sha256: String,
    /// The submitter's condition on the function measurement.
    pub expect_function_sha256: Option<String>,
    /// When it was accepted.
    pub accepted_at: String,
}

fn input_row(r: &Row<'_>) -> rusqlite::Result<InputRow> {
    Ok(InputRow {
        instance_id: r.get(0)?,
        slot: r.get(1)?,
        submitter: r.get(2)?,
        round: r.get::<_, i64>(3)? as u64,
        enc: r.get(4)?,
        ciphertext: r.get(5)?,
        ciphertext_sha256: r.get(6)?,
        expect_function_sha256: r.get(7)?,
        accepted_at: r.get(8)?,
    })
}

const INPUT_COLUMNS: &str = "instance_id, slot, submitter, round, enc, ciphertext, \
    ciphertext_sha256, expect_function_sha256, accepted_at";

/// Stores an input, replacing the slot's previous one.
pub fn put_input(c: &Connection, i: &InputRow) -> Result<(), StoreError> {
    exec(
        c,
        &format!(
            "INSERT OR REPLACE INTO inputs ({INPUT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ),
        params![
            i.instance_id,
            i.slot,
            i.submitter,
            i.round as i64,
            i.enc,
            i.ciphertext,
            i.ciphertext_sha256,
            i.expect_function_sha256,
            i.accepted_at
        ],
    )?;
    Ok(())
}

/// The input in a slot.
pub fn get_input(
    c: &Connection,
    instance: &str,
    slot: &str,
) -> Result<Option<InputRow>, StoreError> {
    Ok(row(
        c,
        &format!("SELECT {INPUT_COLUMNS} FROM inputs WHERE instance_id = ?1 AND slot = ?2"),
        [instance, slot],
        input_row,
    )
    .optional()?)
}

/// Every input of an instance, by slot.
pub fn list_inputs(c: &Connection, instance: &str) -> Result<Vec<InputRow>, StoreError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {INPUT_COLUMNS} FROM inputs WHERE instance_id = ?1 ORDER BY slot"
    ))?;
    let rows = stmt.query_map([instance], input_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every input of an instance, by slot, without its data: `enc` and `ciphertext` are
/// empty (describing an instance must not copy megabytes of ciphertext per request).
pub fn list_inputs_without_data(
    c: &Connection,
    instance: &str,
) -> Result<Vec<InputRow>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT instance_id, slot, submitter, round, X'', X'', ciphertext_sha256, \
         expect_function_sha256, accepted_at FROM inputs WHERE instance_id = ?1 ORDER BY slot",
    )?;
    let rows = stmt.query_map([instance], input_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many slots of the instance hold an input (what an automatic trigger counts), without
/// reading the inputs.
pub fn count_inputs(c: &Connection, instance: &str) -> Result<u64, StoreError> {
    let n: i64 = row(
        c,
        "SELECT COUNT(*) FROM inputs WHERE instance_id = ?1",
        [instance],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Bytes of ciphertext (as stored, without `enc`) in the instance's slots other than
/// `slot`: what counts against the instance's input limit beside a new input of `slot`.
pub fn input_bytes_except(c: &Connection, instance: &str, slot: &str) -> Result<u64, StoreError> {
    let bytes: i64 = row(
        c,
        "SELECT COALESCE(SUM(LENGTH(ciphertext)), 0) FROM inputs
         WHERE instance_id = ?1 AND slot != ?2",
        [instance, slot],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(bytes).unwrap_or(0))
}

/// Deletes the input in a slot.
pub fn delete_input(c: &Connection, instance: &str, slot: &str) -> Result<(), StoreError> {
    exec(
        c,
        "DELETE FROM inputs WHERE instance_id = ?1 AND slot = ?2",
        [instance, slot],
    )?;
    Ok(())
}

/// Deletes every input of an instance.
pub fn delete_inputs(c: &Connection, instance: &str) -> Result<(), StoreError> {
    exec(c, "DELETE FROM inputs WHERE instance_id = ?1", [instance])?;
    Ok(())
}

/// Appends an accepted input to the instance's record of accepted inputs (acceptance
/// order; never deleted with the ciphertext).
pub fn record_accepted(c: &Connection, i: &InputRow) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO accepted_inputs (instance_id, seq, slot, submitter, round, ciphertext_sha256)
         VALUES (?1, (SELECT COALESCE(MAX(seq) + 1, 0) FROM accepted_inputs WHERE instance_id = ?1),
                 ?2, ?3, ?4, ?5)",
        params![
            i.instance_id,
            i.slot,
            i.submitter,
            i.round as i64,
            i.ciphertext_sha256
        ],
    )?;
    Ok(())
}

/// Every input the instance ever accepted, in acceptance order, as destruction-certificate
/// leaves.
pub fn accepted_inputs(
    c: &Connection,
    instance: &str,
) -> Result<Vec<arbiter_policy::jws::InputLeaf>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT slot, submitter, round, ciphertext_sha256 FROM accepted_inputs
         WHERE instance_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([instance], |r| {
        Ok(arbiter_policy::jws::InputLeaf {
            slot: r.get(0)?,
            submitter: r.get(1)?,
            round: r.get::<_, i64>(2)? as u64,
            ciphertext_sha256: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records an approval (idempotent).
pub fn approve(c: &Connection, instance: &str, identity: &str, at: &str) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT OR IGNORE INTO approvals (instance_id, identity, approved_at) VALUES (?1, ?2, ?3)",
        [instance, identity, at],
    )?;
    Ok(())
}

/// Who approved, with when.
pub fn approvals(c: &Connection, instance: &str) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT identity, approved_at FROM approvals WHERE instance_id = ?1 ORDER BY approved_at",
    )?;
    let rows = stmt.query_map([instance], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A stored (encrypted) evaluation result.
#[derive(Debug, Clone)]
pub struct ResultRow {
    /// The instance.
    pub instance_id: String,
    /// The round.
    pub round: u64,
    /// Whether evaluation succeeded.
    pub succeeded: bool,
    /// AES-GCM nonce.
    pub nonce: Vec<u8>,
    /// Output (or failure message) JSON, encrypted under the result-at-rest key.
    pub ciphertext: Vec<u8>,
    /// `[{"slot","submitter","ciphertext_sha256"}]` of the inputs used.
    pub inputs_json: String,
    /// When.
    pub evaluated_at: String,
}

fn result_row(r: &Row<'_>) -> rusqlite::Result<ResultRow> {
    Ok(ResultRow {
        instance_id: r.get(0)?,
        round: r.get::<_, i64>(1)? as u64,
        succeeded: r.get::<_, i64>(2)? != 0,
        nonce: r.get(3)?,
        ciphertext: r.get(4)?,
        inputs_json: r.get(5)?,
        evaluated_at: r.get(6)?,
    })
}

/// Stores a result.
pub fn put_result(c: &Connection, r: &ResultRow) -> Result<(), StoreError> {
    exec(c,
        "INSERT OR REPLACE INTO results (instance_id, round, succeeded, nonce, ciphertext, inputs_json, evaluated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![r.instance_id, r.round as i64, r.succeeded as i64, r.nonce, r.ciphertext, r.inputs_json, r.evaluated_at],
    )?;
    Ok(())
}

/// The result of `round`, or the latest one.
pub fn get_result(
    c: &Connection,
    instance: &str,
    round: Option<u64>,
) -> Result<Option<ResultRow>, StoreError> {
    let cols = "instance_id, round, succeeded, nonce, ciphertext, inputs_json, evaluated_at";
    Ok(match round {
        Some(round) => row(
            c,
            &format!("SELECT {cols} FROM results WHERE instance_id = ?1 AND round = ?2"),
            params![instance, round as i64],
            result_row,
        )
        .optional()?,
        None => row(
            c,
            &format!(
                "SELECT {cols} FROM results WHERE instance_id = ?1 ORDER BY round DESC LIMIT 1"
            ),
            [instance],
            result_row,
        )
        .optional()?,
    })
}

/// Deletes every result of an instance.
pub fn delete_results(c: &Connection, instance: &str) -> Result<(), StoreError> {
    exec(c, "DELETE FROM results WHERE instance_id = ?1", [instance])?;
    Ok(())
}

/// Adds to a usage counter.
pub fn add_usage(
    c: &Connection,
    instance: &str,
    identity: &str,
    metric: &str,
    amount: u64,
) -> Result<(), StoreError> {
    exec(c,
        "INSERT INTO usage (instance_id, identity, metric, amount) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (instance_id, identity, metric) DO UPDATE SET amount = amount + excluded.amount",
        params![instance, identity, metric, amount as i64],
    )?;
    Ok(())
}

/// Every usage counter of an instance: (identity, metric, amount).
pub fn usage(c: &Connection, instance: &str) -> Result<Vec<(String, String, u64)>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT identity, metric, amount FROM usage WHERE instance_id = ?1 ORDER BY identity, metric",
    )?;
    let rows = stmt.query_map([instance], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The stored TLS certificate, if any.
pub fn tls_cert(c: &Connection) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(row(
        c,
        "SELECT cert_der FROM tls_identity WHERE id = 1",
        [],
        |r| r.get(0),
    )
    .optional()?)
}

/// Stores the TLS certificate.
pub fn put_tls_cert(c: &Connection, der: &[u8], at: &str) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT OR REPLACE INTO tls_identity (id, cert_der, created_at) VALUES (1, ?1, ?2)",
        params![der, at],
    )?;
    Ok(())
}

/// Counts for metrics: instances by state.
pub fn instance_counts(c: &Connection) -> Result<Vec<(String, u64)>, StoreError> {
    let mut stmt =
        c.prepare_cached("SELECT state, COUNT(*) FROM instances GROUP BY state ORDER BY state")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The highest epoch any stored wrapping has (0 when none): the last sealing epoch this
/// state was written under, reported while the sealing index cannot be read.
pub fn latest_wrapped_epoch(c: &Connection) -> Result<u64, StoreError> {
    let epoch: i64 = row(
        c,
        "SELECT COALESCE(MAX(epoch), 0) FROM wrapped_secrets",
        [],
        |r| r.get(0),
    )?;
    Ok(epoch as u64)
}

/// Every wrapping at `epoch`: (owner, wrapping).
pub fn wrapped_at(c: &Connection, epoch: u64) -> Result<Vec<(String, Wrapped)>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT owner, epoch, nonce, ciphertext FROM wrapped_secrets WHERE epoch = ?1 ORDER BY owner",
    )?;
    let rows = stmt.query_map([epoch as i64], |r| {
        Ok((
            r.get(0)?,
            Wrapped {
                epoch: r.get::<_, i64>(1)? as u64,
                nonce: r.get(2)?,
                ciphertext: r.get(3)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes every wrapping not at `epoch` (unusable since the sealing key moved on).
pub fn delete_wrapped_except(c: &Connection, epoch: u64) -> Result<(), StoreError> {
    exec(
        c,
        "DELETE FROM wrapped_secrets WHERE epoch <> ?1",
        [epoch as i64],
    )?;
    Ok(())
}

/// Sets an instance's state only.
pub fn set_state(c: &Connection, id: &str, state: InstanceState) -> Result<(), StoreError> {
    exec(
        c,
        "UPDATE instances SET state = ?2 WHERE id = ?1",
        [id, state.as_str()],
    )?;
    Ok(())
}

/// Stores a destruction certificate.
pub fn put_certificate(c: &Connection, id: &str, jws: &str, at: &str) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT OR REPLACE INTO certificates (instance_id, jws, created_at) VALUES (?1, ?2, ?3)",
        [id, jws, at],
    )?;
    Ok(())
}

/// An instance's destruction certificate.
pub fn certificate(c: &Connection, id: &str) -> Result<Option<String>, StoreError> {
    Ok(row(
        c,
        "SELECT jws FROM certificates WHERE instance_id = ?1",
        [id],
        |r| r.get(0),
    )
    .optional()?)
}

/// Deletes an instance's approvals.
pub fn delete_approvals(c: &Connection, instance: &str) -> Result<(), StoreError> {
    exec(
        c,
        "DELETE FROM approvals WHERE instance_id = ?1",
        [instance],
    )?;
    Ok(())
}
