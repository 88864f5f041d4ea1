//! What a party does with a daemon, each answer checked: functions (the source's sha256
//! recomputed), instances (the manifest validated and its digest recomputed before
//! creation), inputs (attested first, HPKE-sealed to the attested key per docs/protocol.md, sent
//! only to the attested TLS key, the receipt's `ciphertext_sha256` recomputed), results
//! and destruction certificates (JWS verified against the freshly certified statement
//! key, this party's own inputs listed, the destruction in the attested log).

use std::path::Path;

use arbiter_policy::appraisal::AppraisalPolicy;
use arbiter_policy::hpke::{self, InputContext};
use arbiter_policy::jws::{
    DestructionStatement, InputInclusion, InputLeaf, InputRef, ResultStatement, Statement,
    VerifyInclusion, verify_statement,
};
use arbiter_policy::manifest::Manifest;
use arbiter_proto::api::{
    Approval, CreatedInstance, DestructionCertificate, EvaluationStarted, FunctionDetail,
    FunctionSummary, InputReceipt, InstanceDescription, ResultView, UpgradeStatus,
};
use base64::Engine as _;
use hyper::Method;
use serde_json::{Value, json};

use crate::ClientError;
use crate::session::Session;
use crate::trust::Receipt;
use crate::verify::{Attestation, attest, check_destroyed_record};

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn check_id(id: &str) -> Result<(), ClientError> {
    if id.parse::<arbiter_proto::InstanceId>().is_ok() {
        Ok(())
    } else {
        Err(ClientError::Usage(format!(
            "`{id}` is not an id (32 lowercase hex characters)"
        )))
    }
}

fn check_sha256_hex(what: &str, s: &str) -> Result<(), ClientError> {
    if s.parse::<arbiter_proto::Sha256Digest>().is_ok() {
        Ok(())
    } else {
        Err(ClientError::Usage(format!(
            "{what} `{s}` is not a SHA-256 (64 lowercase hex characters)"
        )))
    }
}

/// Registers a Rhai function from `file` under `name` and checks that the measurement the
/// daemon reports is `sha256` of the bytes sent.
///
/// # Errors
/// File, server and `Verification` errors.
pub async fn register_function(
    s: &Session,
    file: &Path,
    name: &str,
) -> Result<FunctionSummary, ClientError> {
    let source = std::fs::read_to_string(file).map_err(|e| ClientError::file(file, e))?;
    let r = s
        .post(
            "/v1/functions",
            &json!({"name": name, "language": "rhai", "source": source}),
        )
        .await?;
    let f: FunctionSummary = r.answer("POST /v1/functions")?;
    let expected = crate::sha256_hex(source.as_bytes());
    if f.sha256.to_hex() != expected {
        return Err(ClientError::Verification(format!(
            "the daemon measured the function as {}, but sha256 of the source sent is {expected}",
            f.sha256
        )));
    }
    Ok(f)
}

/// Every function the daemon offers: its shipped library (`library: true`) and the
/// registered ones, oldest first.
///
/// # Errors
/// Server errors.
pub async fn list_functions(s: &Session) -> Result<Vec<FunctionSummary>, ClientError> {
    s.get("/v1/functions").await?.answer("GET /v1/functions")
}

/// Fetches a function and recomputes its measurement from the source returned.
///
/// # Errors
/// Server errors; `Verification` when `sha256(source)` is not the reported measurement.
pub async fn show_function(s: &Session, id: &str) -> Result<FunctionDetail, ClientError> {
    check_id(id)?;
    let f: FunctionDetail = s
        .get(&format!("/v1/functions/{id}"))
        .await?
        .answer("GET /v1/functions/{id}")?;
    let actual = crate::sha256_hex(f.source.as_bytes());
    if f.sha256.to_hex() != actual {
        return Err(ClientError::Verification(format!(
            "function {id}: the daemon reports measurement {}, but sha256 of its source is {actual}",
            f.sha256
        )));
    }
    Ok(f)
}

/// Reads a manifest file (JSON, or TOML when the name ends in `.toml` or the text is not
/// JSON) and validates it locally, listing every problem with its JSON pointer.
///
/// # Errors
/// `File`; `Usage` with every problem.
pub fn read_manifest(file: &Path) -> Result<Value, ClientError> {
    let text = std::fs::read_to_string(file).map_err(|e| ClientError::file(file, e))?;
    let is_toml = file.extension().is_some_and(|e| e == "toml")
        || serde_json::from_str::<Value>(&text).is_err();
    let problems = |ps: Vec<arbiter_policy::manifest::ManifestProblem>| {
        ClientError::Usage(format!(
            "{}: invalid manifest:\n  - {}",
            file.display(),
            ps.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n  - ")
        ))
    };
    let value = if is_toml {
        Manifest::toml_to_json(&text).map_err(problems)?
    } else {
        arbiter_policy::jcs::parse_strict(text.as_bytes())
            .map_err(|e| ClientError::Usage(format!("{}: malformed JSON: {e}", file.display())))?
    };
    Manifest::from_json_value(value.clone()).map_err(problems)?;
    Ok(value)
}

/// Creates an instance from a manifest file; checks that the daemon's `manifest_sha256`
/// is the one computed here.
///
/// # Errors
/// As [`read_manifest`]; server errors; `Verification`.
pub async fn create_instance(s: &Session, file: &Path) -> Result<CreatedInstance, ClientError> {
    let manifest = read_manifest(file)?;
    let digest = hex::encode(arbiter_policy::manifest::manifest_sha256(&manifest));
    let r = s
        .post("/v1/instances", &json!({"manifest": manifest}))
        .await?;
    let created: CreatedInstance = r.answer("POST /v1/instances")?;
    if created.manifest_sha256.to_hex() != digest {
        return Err(ClientError::Verification(format!(
            "the daemon reports manifest_sha256 {}, the manifest sent has {digest}",
            created.manifest_sha256
        )));
    }
    Ok(created)
}

/// Describes an instance (parties and operators); checks the manifest digest locally.
///
/// # Errors
/// Server errors; `Verification` when the manifest does not hash to its digest.
pub async fn show_instance(s: &Session, id: &str) -> Result<InstanceDescription, ClientError> {
    check_id(id)?;
    let i: InstanceDescription = s
        .get(&format!("/v1/instances/{id}"))
        .await?
        .answer("GET /v1/instances/{id}")?;
    let digest = hex::encode(arbiter_policy::manifest::manifest_sha256(&i.manifest));
    if i.manifest_sha256.to_hex() != digest {
        return Err(ClientError::Verification(format!(
            "instance {id}: the manifest returned hashes to {digest}, not the reported {}",
            i.manifest_sha256
        )));
    }
    Ok(i)
}

/// The fleet revocation in force on the daemon (operators; docs/fleet.md).
///
/// # Errors
/// Server errors.
pub async fn fleet_revocation(
    s: &Session,
) -> Result<arbiter_proto::api::FleetRevocation, ClientError> {
    s.get("/v1/fleet/revocation")
        .await?
        .answer("GET /v1/fleet/revocation")
}

/// Clears the fleet revocation (operators, once the appliance was checked); returns the
/// revocation cleared, if there was one.
///
/// # Errors
/// Server errors.
pub async fn clear_fleet_revocation(
    s: &Session,
) -> Result<arbiter_proto::api::FleetRevocation, ClientError> {
    s.call(Method::DELETE, "/v1/fleet/revocation", None)
        .await?
        .answer("DELETE /v1/fleet/revocation")
}

/// Approves an instance's manifest (explicit approval).
///
/// # Errors
/// Server errors.
pub async fn approve_instance(s: &Session, id: &str) -> Result<Approval, ClientError> {
    check_id(id)?;
    s.post(&format!("/v1/instances/{id}/approve"), &json!({}))
        .await?
        .answer("POST /v1/instances/{id}/approve")
}

/// Asks for an evaluation now (explicit trigger; evaluators only).
///
/// # Errors
/// Server errors.
pub async fn evaluate_instance(s: &Session, id: &str) -> Result<EvaluationStarted, ClientError> {
    check_id(id)?;
    s.post(&format!("/v1/instances/{id}/evaluate"), &json!({}))
        .await?
        .answer("POST /v1/instances/{id}/evaluate")
}

/// `GET /v1/admin/upgrade` (operators): the live instances and the upgrade authorization.
///
/// # Errors
/// Server errors (403 for a caller who is not an operator).
pub async fn upgrade_status(s: &Session) -> Result<UpgradeStatus, ClientError> {
    s.get("/v1/admin/upgrade")
        .await?
        .answer("GET /v1/admin/upgrade")
}

/// `POST /v1/admin/upgrade` (operators): authorizes the upgraded image's first start to seal
/// afresh; refused by the daemon (409 `instances_live`) while an instance is live, unless
/// `force`.
///
/// # Errors
/// Server errors.
pub async fn authorize_upgrade(s: &Session, force: bool) -> Result<UpgradeStatus, ClientError> {
    s.post("/v1/admin/upgrade", &json!({ "force": force }))
        .await?
        .answer("POST /v1/admin/upgrade")
}

/// `DELETE /v1/admin/upgrade` (operators): withdraws the upgrade authorization.
///
/// # Errors
/// Server errors.
pub async fn withdraw_upgrade(s: &Session) -> Result<UpgradeStatus, ClientError> {
    s.call(Method::DELETE, "/v1/admin/upgrade", None)
        .await?
        .answer("DELETE /v1/admin/upgrade")
}

/// The outcome of [`submit`].
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The attestation that allowed the submission.
    pub attestation: Attestation,
    /// The receipt, checked.
    pub receipt: Receipt,
}

/// Submits `value` (JSON text) to `slot` of `instance`: attests about the instance under
/// `policy` and refuses unless trusted and the instance's function is `expect_function`;
/// pads and seals with HPKE to the attested key (docs/protocol.md); sends it only to the TLS key
/// that was attested, with the condition "use only with function `expect_function`"; and
/// checks the receipt's `ciphertext_sha256`.
///
/// # Errors
/// `NotTrusted`, `Verification`, `Usage`, server errors.
pub async fn submit(
    s: &Session,
    policy: &AppraisalPolicy,
    instance: &str,
    slot: &str,
    value_json: &[u8],
    expect_function: &str,
) -> Result<Submitted, ClientError> {
    submit_with_progress(s, policy, instance, slot, value_json, expect_function, None).await
}

/// [`submit`], calling `progress` with `(bytes sent, total)` as the request body (the
/// ciphertext, base64 in JSON) is uploaded in chunks.
///
/// The input is checked to be JSON without building a value from it and sealed as given
/// (its own whitespace kept), so a large input exists in memory as the text read, its
/// padded copy and its ciphertext only.
pub async fn submit_with_progress(
    s: &Session,
    policy: &AppraisalPolicy,
    instance: &str,
    slot: &str,
    value_json: &[u8],
    expect_function: &str,
    progress: Option<std::sync::Arc<crate::http::Progress>>,
) -> Result<Submitted, ClientError> {
    check_id(instance)?;
    check_sha256_hex("--expect-function", expect_function)?;
    if !arbiter_policy::manifest::is_slot_name(slot) {
        return Err(ClientError::Usage(format!("`{slot}` is not a slot name")));
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(value_json)
        .map_err(|e| ClientError::Usage(format!("the input is not JSON: {e}")))?;
    let value_json = value_json.trim_ascii();
    let attestation = attest(s, policy, Some(instance)).await?;
    attestation.require_trusted()?;
    let appraised = &attestation.verdict.appraised;
    let function = appraised.function_sha256.map(hex::encode).ok_or_else(|| {
        ClientError::Verification("the attested instance names no function".into())
    })?;
    if function != expect_function {
        return Err(ClientError::Verification(format!(
            "instance {instance} runs function {function}, not the expected {expect_function}: nothing was sent"
        )));
    }
    let public_key = attestation
        .verdict
        .instance_public_key()
        .ok_or_else(|| ClientError::Verification("no attested instance key".into()))?;
    let answer = attestation.answer()?;
    let inst = answer.instance.as_ref().ok_or_else(|| {
        ClientError::Protocol("the attestation about the instance describes no instance".into())
    })?;
    let manifest = Manifest::from_json_value(inst.manifest.clone())
        .map_err(|_| ClientError::Verification("the attested manifest does not validate".into()))?;
    let me = s.id()?;
    if !manifest.manifest().can_provide(&me, slot) {
        return Err(ClientError::Usage(format!(
            "the manifest does not let identity {me} provide slot `{slot}`"
        )));
    }
    let round = inst.round;
    let ctx = InputContext {
        instance_id: instance,
        slot,
        round,
        function_sha256: &function,
        submitter: &me,
    };
    let plaintext = zeroize::Zeroizing::new(hpke::pad_json(value_json, hpke::DEFAULT_PAD_BLOCK));
    let (enc, ct) = hpke::seal(public_key, &ctx, &plaintext)
        .map_err(|e| ClientError::Verification(format!("HPKE: {e}")))?;
    let expected = hex::encode(hpke::ciphertext_sha256(&enc, &ct));
    // Only to the TLS key that was attested: a different key fails the handshake before
    // the ciphertext leaves.
    let conn = s.pinned_to(&attestation.tls_spki_sha256)?;
    let body = input_body(&enc, &ct, &function);
    drop(ct);
    let r = crate::session::success_or_error(
        conn.request_with_progress(
            Method::PUT,
            &format!("/v1/instances/{instance}/inputs/{slot}"),
            Some(body.into()),
            progress,
        )
        .await?,
    )?;
    let got: InputReceipt = r.answer("PUT /v1/instances/{id}/inputs/{slot}")?;
    if got.ciphertext_sha256.to_hex() != expected {
        return Err(ClientError::Verification(format!(
            "the receipt names ciphertext {}, but sha256(enc || ciphertext) sent is {expected}",
            got.ciphertext_sha256
        )));
    }
    if got.slot != slot || got.round != round {
        return Err(ClientError::Verification(format!(
            "the receipt is for slot {:?} round {}, not {slot} round {round}",
            got.slot, got.round
        )));
    }
    let receipt = Receipt {
        slot: slot.to_owned(),
        round,
        ciphertext_sha256: expected,
        submitter: me,
        accepted_at: got.accepted_at,
    };
    s.trust
        .add_receipt(&s.settings.server, instance, receipt.clone())?;
    Ok(Submitted {
        attestation,
        receipt,
    })
}

/// The JSON body of an input, written directly (the ciphertext base64-encoded once into
/// it): `{"enc": ..., "ciphertext": ..., "expect_function_sha256": ...}`.
fn input_body(enc: &[u8], ciphertext: &[u8], function: &str) -> Vec<u8> {
    let mut body = String::with_capacity(ciphertext.len().div_ceil(3) * 4 + 256);
    body.push_str("{\"enc\":\"");
    b64().encode_string(enc, &mut body);
    body.push_str("\",\"ciphertext\":\"");
    b64().encode_string(ciphertext, &mut body);
    body.push_str("\",\"expect_function_sha256\":\"");
    body.push_str(function);
    body.push_str("\"}");
    body.into_bytes()
}

/// Checks that every input this party submitted (per its saved receipts) is listed.
/// Returns how many receipts were checked.
fn own_inputs_listed(
    s: &Session,
    instance: &str,
    inputs: &[InputRef],
    round: Option<u64>,
) -> Result<usize, ClientError> {
    let receipts = s.trust.receipts(&s.settings.server, instance)?;
    // provide_each_time inputs of earlier rounds are not in a later round's statement;
    // the latest receipt per slot is the one that must be listed.
    let mut latest: std::collections::BTreeMap<&str, &Receipt> = Default::default();
    for r in receipts
        .iter()
        .filter(|r| round.is_none_or(|n| r.round <= n))
    {
        latest.insert(&r.slot, r);
    }
    for r in latest.values() {
        let listed = inputs.iter().any(|i| {
            i.slot == r.slot
                && i.submitter == r.submitter
                && i.ciphertext_sha256 == r.ciphertext_sha256
        });
        if !listed {
            return Err(ClientError::Verification(format!(
                "our input to slot `{}` (ciphertext {}) is not listed in the signed statement",
                r.slot, r.ciphertext_sha256
            )));
        }
    }
    Ok(latest.len())
}

/// A verified result.
#[derive(Debug, Clone)]
pub struct VerifiedResult {
    /// The signed statement's payload.
    pub statement: ResultStatement,
    /// The compact JWS.
    pub jws: String,
    /// How many of this party's receipts were found listed.
    pub own_inputs_checked: usize,
    /// The attestation that certified the statement key.
    pub attestation: Attestation,
}

/// Reads an instance's result (`wait` seconds of long polling) and verifies it: a fresh
/// attestation under `policy` certifies the statement key; the JWS verifies with it;
/// the statement is about this instance and matches the answer; this party's inputs are
/// listed; the `instance_created` record it names is in the attested log when it is of
/// the same generation.
///
/// # Errors
/// `Usage` when there is no result yet; `NotTrusted`; `Verification`; server errors.
pub async fn result(
    s: &Session,
    policy: &AppraisalPolicy,
    instance: &str,
    wait: u64,
) -> Result<VerifiedResult, ClientError> {
    check_id(instance)?;
    let path = if wait > 0 {
        format!("/v1/instances/{instance}/result?wait={wait}")
    } else {
        format!("/v1/instances/{instance}/result")
    };
    let view: ResultView = s
        .get(&path)
        .await?
        .answer("GET /v1/instances/{id}/result")?;
    if !view.evaluated {
        return Err(ClientError::Usage(format!(
            "instance {instance} has no result yet (state {})",
            json!(view.state)
        )));
    }
    let Some(jws) = view.jws.as_deref() else {
        return Err(ClientError::Usage(format!(
            "instance {instance} was evaluated (succeeded: {}, error: {}), but there is no signed result for this identity",
            json!(view.succeeded),
            json!(view.error)
        )));
    };
    let (attestation, statement) = attested_statement(s, policy, jws, "the result").await?;
    let statement = match statement {
        Statement::Result(st) => st,
        Statement::Destruction(_) => {
            return Err(ClientError::Verification(
                "the statement is a destruction certificate, not a result".into(),
            ));
        }
    };
    if statement.instance_id != instance {
        return Err(ClientError::Verification(format!(
            "the signed result is about instance {}, not {instance}",
            statement.instance_id
        )));
    }
    if view.output.as_ref().is_some_and(|o| *o != statement.output) {
        return Err(ClientError::Verification(
            "the output shown differs from the signed output".into(),
        ));
    }
    let own = own_inputs_listed(s, instance, &statement.inputs, Some(statement.round))?;
    if attestation.verdict.appraised.log_generation == Some(statement.log_generation) {
        let records = attestation.records()?;
        let ok = arbiter_measured_boot::cel::find_instance_created(&records, instance).is_some_and(
            |(recnum, c)| {
                recnum == statement.instance_created_recnum
                    && hex::encode(c.manifest_sha256.0) == statement.manifest_sha256
            },
        );
        if !ok {
            return Err(ClientError::Verification(format!(
                "record {} of the attested log is not the instance_created of {instance} with manifest {}",
                statement.instance_created_recnum, statement.manifest_sha256
            )));
        }
    }
    s.trust.save(
        &s.settings.server,
        instance,
        &format!("result-round-{}.json", statement.round),
        &json!({"jws": jws}),
    )?;
    s.trust.save(
        &s.settings.server,
        instance,
        "result.json",
        &json!({"jws": jws}),
    )?;
    Ok(VerifiedResult {
        statement,
        jws: jws.to_owned(),
        own_inputs_checked: own,
        attestation,
    })
}

/// A verified destruction certificate.
#[derive(Debug, Clone)]
pub struct VerifiedDestruction {
    /// The signed statement's payload.
    pub statement: DestructionStatement,
    /// The compact JWS.
    pub jws: String,
    /// How many of this party's receipts were found under the signed inputs root.
    pub own_inputs_checked: usize,
    /// Where the `instance_destroyed` record was found: `"fresh"` (a quote just taken) or
    /// `"saved"` (the attestation saved with the certificate, from an earlier generation).
    pub log_source: &'static str,
    /// Whether the fresh attestation was trusted only because the policy allows a
    /// platform it pins no reference value for.
    pub unpinned_platform: bool,
}

/// Asks the daemon to destroy an instance (destroyers only) and verifies the certificate
/// it returns as [`verify_destruction`] does.
///
/// # Errors
/// As [`verify_destruction`].
pub async fn destroy(
    s: &Session,
    policy: &AppraisalPolicy,
    instance: &str,
) -> Result<VerifiedDestruction, ClientError> {
    check_id(instance)?;
    let cert: DestructionCertificate = s
        .post(&format!("/v1/instances/{instance}/destroy"), &json!({}))
        .await?
        .answer("POST /v1/instances/{id}/destroy")?;
    check_destruction(s, policy, instance, &cert.jws, &cert.inputs).await
}

/// Fetches and verifies an instance's certificate of destruction: the JWS against the
/// freshly certified statement key, each of this party's receipts included under the
/// signed inputs root (by the leaves and proofs the daemon returns), and the
/// `instance_destroyed` record in a freshly quoted log — or, when a TPM startup has begun
/// a new log generation since, in the attested log saved with the certificate.
///
/// # Errors
/// `NotTrusted`, `Verification`, server errors.
pub async fn verify_destruction(
    s: &Session,
    policy: &AppraisalPolicy,
    instance: &str,
) -> Result<VerifiedDestruction, ClientError> {
    check_id(instance)?;
    let cert: DestructionCertificate = s
        .get(&format!("/v1/instances/{instance}/destruction-certificate"))
        .await?
        .answer("GET /v1/instances/{id}/destruction-certificate")?;
    check_destruction(s, policy, instance, &cert.jws, &cert.inputs).await
}

/// Attests the daemon afresh (trusted verdict required) and verifies `jws` under the
/// statement key that attestation certified; `what` names the statement in errors.
async fn attested_statement(
    s: &Session,
    policy: &AppraisalPolicy,
    jws: &str,
    what: &str,
) -> Result<(Attestation, Statement), ClientError> {
    let attestation = attest(s, policy, None).await?;
    attestation.require_trusted()?;
    let key = attestation
        .statement_key()
        .ok_or_else(|| ClientError::Verification("no certified statement key".into()))?;
    let statement = verify_statement(jws, key)
        .map_err(|e| ClientError::Verification(format!("{what}'s signature: {e}")))?;
    Ok((attestation, statement))
}

/// Checks each of this party's saved receipts for `instance` against the certificate's
/// signed inputs root: the daemon's `inputs` (this party's leaves with their inclusion
/// proofs) must hold, for every receipt, a leaf whose bytes are `JCS` of the receipt's
/// slot, submitter, round and `ciphertext_sha256`, included under `inputs_root`. Every
/// receipt not covered is named in the error. Returns how many receipts were checked.
fn own_inputs_covered(
    s: &Session,
    instance: &str,
    certificate: &DestructionStatement,
    inclusions: &[InputInclusion],
) -> Result<usize, ClientError> {
    let receipts = s.trust.receipts(&s.settings.server, instance)?;
    let mut uncovered = Vec::new();
    for r in &receipts {
        let leaf = InputLeaf {
            slot: r.slot.clone(),
            submitter: r.submitter.clone(),
            round: r.round,
            ciphertext_sha256: r.ciphertext_sha256.clone(),
        };
        let bytes = leaf.to_bytes();
        let covered = inclusions
            .iter()
            .filter(|i| i.leaf.to_bytes() == bytes)
            .any(|i| i.verify(certificate).is_ok());
        if !covered {
            uncovered.push(format!(
                "slot `{}` round {} (ciphertext {})",
                r.slot, r.round, r.ciphertext_sha256
            ));
        }
    }
    if !uncovered.is_empty() {
        return Err(ClientError::Verification(format!(
            "{} of our {} input(s) are not covered by the certificate's signed inputs root \
             ({} inputs): {}",
            uncovered.len(),
            receipts.len(),
            certificate.inputs_count,
            uncovered.join("; ")
        )));
    }
    Ok(receipts.len())
}

async fn check_destruction(
    s: &Session,
    policy: &AppraisalPolicy,
    instance: &str,
    jws: &str,
    inputs: &[InputInclusion],
) -> Result<VerifiedDestruction, ClientError> {
    let (attestation, statement) = attested_statement(s, policy, jws, "the certificate").await?;
    let statement = match statement {
        Statement::Destruction(d) => d,
        Statement::Result(_) => {
            return Err(ClientError::Verification(
                "the statement is a result, not a destruction certificate".into(),
            ));
        }
    };
    if statement.instance_id != instance {
        return Err(ClientError::Verification(format!(
            "the certificate is about instance {}, not {instance}",
            statement.instance_id
        )));
    }
    let own = own_inputs_covered(s, instance, &statement, inputs)?;
    let log_source = if attestation.verdict.appraised.log_generation
        == Some(statement.log_generation)
    {
        check_destroyed_record(
            &attestation.records()?,
            statement.instance_destroyed_recnum,
            instance,
            statement.epoch_retired,
        )?;
        s.trust.save(
            &s.settings.server,
            instance,
            "destruction.json",
            &json!({"jws": jws, "evidence": attestation.evidence, "nonce": attestation.nonce,
                    "tls_spki_sha256": attestation.tls_spki_sha256}),
        )?;
        "fresh"
    } else {
        let saved = s
            .trust
            .load(&s.settings.server, instance, "destruction.json")?
            .ok_or_else(|| {
                ClientError::Verification(format!(
                    "the certificate names log generation {}, the daemon is at {:?} and no attested log was saved with the certificate",
                    statement.log_generation, attestation.verdict.appraised.log_generation
                ))
            })?;
        let evidence = arbiter_policy::evidence::Evidence::from_value(saved["evidence"].clone())
            .map_err(|e| ClientError::Verification(format!("saved evidence: {e}")))?;
        let expect = arbiter_policy::appraisal::Expectations {
            nonce: saved["nonce"].as_str().map(str::to_owned),
            tls_spki_sha256: saved["tls_spki_sha256"].as_str().map(str::to_owned),
            instance_id: None,
            same_startup_as: None,
        };
        let old = arbiter_policy::appraisal::appraise(&evidence, policy, &expect);
        if !old.trusted {
            return Err(ClientError::NotTrusted(
                old.reasons.iter().map(|r| r.to_string()).collect(),
            ));
        }
        if old.appraised.log_generation != Some(statement.log_generation) {
            return Err(ClientError::Verification(
                "the saved attestation is of another log generation than the certificate".into(),
            ));
        }
        check_destroyed_record(
            &evidence.log,
            statement.instance_destroyed_recnum,
            instance,
            statement.epoch_retired,
        )?;
        "saved"
    };
    Ok(VerifiedDestruction {
        statement,
        jws: jws.to_owned(),
        own_inputs_checked: own,
        log_source,
        unpinned_platform: crate::verify::trusted_unpinned(&attestation.verdict),
    })
}
