//! Offline verification bundles: everything needed to check an instance's story without
//! the network — the TPM's public parts (EK certificates, AK, the statement key's
//! certification), an attestation (quote, PCRs, measurement log, sealing index, firmware
//! log), the instance's manifest and function source, and its signed result and
//! certificate of destruction where they exist.
//!
//! Verifying a bundle appraises the attestation under the party's policy without a nonce,
//! so the verdict holds "as of" the quote's TPM clock (reset and restart counts and
//! milliseconds powered), not "now"; then checks the function source against the
//! manifest and the log, the manifest against its digest and its `instance_created`
//! record, and the statements against the certified statement key and the log.

use arbiter_measured_boot::cel;
use arbiter_policy::appraisal::{AppraisalPolicy, Expectations, Verdict, appraise};
use arbiter_policy::evidence::Evidence;
use arbiter_policy::jws::{Statement, verify_statement};
use arbiter_policy::manifest::{Manifest, manifest_sha256};
use arbiter_proto::api::{DestructionCertificate, ResultView, TpmInfo};
use serde_json::{Value, json};

use crate::ClientError;
use crate::session::Session;
use crate::verify::{attest, check_destroyed_record};

/// The bundle format tag.
pub const FORMAT: &str = "arbiter-bundle/v1";

/// Collects a bundle for `instance`: a fresh attestation (its verdict under `policy` must
/// be trusted), the instance, its function, and its result and certificate when readable.
/// Returns the bundle and the attestation it holds.
///
/// # Errors
/// Server errors; `NotTrusted` when the attestation is not trusted.
pub async fn collect(
    s: &Session,
    policy: &AppraisalPolicy,
    instance: &str,
) -> Result<(Value, crate::verify::Attestation), ClientError> {
    let description = crate::party::show_instance(s, instance).await?;
    let function = crate::party::show_function(s, description.function.id.as_str()).await?;
    let tpm: TpmInfo = s.get("/v1/tpm").await?.answer("GET /v1/tpm")?;
    let attestation = attest(s, policy, None).await?;
    attestation.require_trusted()?;
    // Not readable (a status reader, a destroyed instance): none. Readable but malformed:
    // an error.
    let result = s
        .get(&format!("/v1/instances/{instance}/result"))
        .await
        .ok()
        .map(|r| r.answer::<ResultView>("GET /v1/instances/{id}/result"))
        .transpose()?
        .and_then(|v| v.jws)
        .or(
            // After destruction the daemon serves no result; the one verified earlier
            // (`arbiter result`) was saved.
            s.trust
                .load(&s.settings.server, instance, "result.json")?
                .and_then(|v| v["jws"].as_str().map(str::to_owned)),
        );
    let destruction = s
        .get(&format!("/v1/instances/{instance}/destruction-certificate"))
        .await
        .ok()
        .map(|r| {
            r.answer::<DestructionCertificate>("GET /v1/instances/{id}/destruction-certificate")
        })
        .transpose()?
        .map(|c| c.jws);
    // When the certificate's log generation is gone, the attestation saved with it holds
    // the instance_destroyed record.
    let saved = s
        .trust
        .load(&s.settings.server, instance, "destruction.json")?
        .map(|v| v["evidence"].clone());
    let bundle = json!({
        "format": FORMAT,
        "server": s.settings.server,
        "instance_id": instance,
        "tpm": {"eks": tpm.eks, "ak": tpm.ak, "statement_key": tpm.statement_key},
        "evidence": attestation.evidence,
        "instance": {
            "manifest": description.manifest,
            "manifest_sha256": description.manifest_sha256,
            "public_key": description.public_key,
        },
        "function": {"id": function.id, "name": function.name, "sha256": function.sha256, "source": function.source},
        "result": result,
        "destruction": destruction,
        "destruction_evidence": saved,
    });
    Ok((bundle, attestation))
}

/// What a bundle showed.
#[derive(Debug, Clone)]
pub struct BundleReport {
    /// The appraisal of the bundle's attestation (offline: not fresh).
    pub verdict: Verdict,
    /// Every check made, for people.
    pub checks: Vec<String>,
    /// The signed output, when the bundle has a result.
    pub output: Option<Value>,
}

fn fail(what: impl Into<String>) -> ClientError {
    ClientError::Verification(what.into())
}

/// Verifies a bundle offline under `policy` (with `cas`, also each EK certificate's
/// chain, key and template).
///
/// # Errors
/// `NotTrusted` with every reason; `Verification` naming the first failed check;
/// `Usage` for a file that is not a bundle.
pub fn verify(
    bundle: &Value,
    policy: &AppraisalPolicy,
    cas: Option<&[x509_cert::Certificate]>,
) -> Result<BundleReport, ClientError> {
    if bundle["format"] != FORMAT {
        return Err(ClientError::Usage(format!(
            "not an {FORMAT} bundle (format {})",
            bundle["format"]
        )));
    }
    let instance = bundle["instance_id"]
        .as_str()
        .ok_or_else(|| ClientError::Usage("the bundle names no instance".into()))?;
    let mut checks = Vec::new();
    if let Some(cas) = cas {
        for ek in bundle["tpm"]["eks"].as_array().into_iter().flatten() {
            let alg = ek["alg"].as_str().unwrap_or("?");
            let b64 = |v: &Value| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(v.as_str().unwrap_or(""))
                    .map_err(|e| fail(format!("EK {alg}: {e}")))
            };
            let cert = b64(&ek["cert_der"])?;
            let public = arbiter_policy::Public::from_tpm2b(&b64(&ek["tpm2b_public"])?)
                .map_err(|e| fail(format!("EK {alg}: {e}")))?;
            match crate::enroll::verify_ek_chain(&cert, cas).and_then(|path| {
                crate::enroll::check_cert_matches_ek(&cert, &public).map(|()| path)
            }) {
                Ok(path) => checks.push(format!(
                    "EK {alg}: certificate chain {} verified, key matches",
                    path.join(" <- ")
                )),
                Err(e) => checks.push(format!("EK {alg}: not verified: {e}")),
            }
        }
    }
    let evidence = Evidence::from_value(bundle["evidence"].clone())
        .map_err(|e| fail(format!("the bundle's evidence: {e}")))?;
    let verdict = appraise(&evidence, policy, &Expectations::default());
    if !verdict.trusted {
        return Err(ClientError::NotTrusted(
            verdict.reasons.iter().map(ToString::to_string).collect(),
        ));
    }
    checks
        .push("attestation: quote, log, statement key and sealing index appraised: trusted".into());
    if let (Some(version), Some(exe)) = (
        &verdict.appraised.daemon_version,
        &verdict.appraised.daemon_executable_sha256,
    ) {
        checks.push(format!(
            "daemon: version {}, executable {} (as the daemon reports it), started {} time(s) in this log generation",
            version.escape_debug(),
            hex::encode(exe),
            verdict.appraised.daemon_starts
        ));
    }
    let key = verdict
        .statement_key()
        .ok_or_else(|| fail("no certified statement key"))?
        .clone();
    let records = &evidence.log;

    // The manifest and the function.
    let manifest_raw = &bundle["instance"]["manifest"];
    let manifest = Manifest::from_json_value(manifest_raw.clone())
        .map_err(|_| fail("the bundle's manifest does not validate"))?;
    let digest = hex::encode(manifest_sha256(manifest_raw));
    if bundle["instance"]["manifest_sha256"] != digest.as_str() {
        return Err(fail("the manifest does not hash to its manifest_sha256"));
    }
    checks.push(format!("manifest: valid, sha256 {digest}"));
    let function_sha = hex::encode(manifest.manifest().function.sha256.to_bytes());
    let source = bundle["function"]["source"].as_str().unwrap_or_default();
    if crate::sha256_hex(source.as_bytes()) != function_sha {
        return Err(fail(format!(
            "sha256 of the function source is not the manifest's function {function_sha}"
        )));
    }
    if !verdict
        .appraised
        .functions
        .iter()
        .any(|f| hex::encode(f) == function_sha)
    {
        return Err(fail(format!(
            "function {function_sha} is not loaded in the attested log"
        )));
    }
    checks.push(format!(
        "function: source hashes to the manifest's {function_sha}, loaded in the log"
    ));
    match cel::find_instance_created(records, instance)
        .map(|(recnum, c)| (recnum, c.manifest_sha256.0, c.public_key_sha256.0))
    {
        Some((recnum, m, pk)) => {
            let public_key = hex::decode(bundle["instance"]["public_key"].as_str().unwrap_or(""))
                .map_err(|e| fail(format!("instance public key: {e}")))?;
            let key_digest: [u8; 32] = {
                use sha2::Digest as _;
                sha2::Sha256::digest(&public_key).into()
            };
            if hex::encode(m) != digest || pk != key_digest {
                return Err(fail(format!(
                    "record {recnum} (instance_created) names another manifest or key"
                )));
            }
            checks.push(format!(
                "instance_created: record {recnum} binds the manifest and the key"
            ));
        }
        None => checks.push(
            "instance_created: not in this log generation (created before the last TPM startup)"
                .into(),
        ),
    }

    let mut output = None;
    if let Some(jws) = bundle["result"].as_str() {
        let Statement::Result(r) = verify_statement(jws, &key)
            .map_err(|e| fail(format!("the result's signature: {e}")))?
        else {
            return Err(fail("the result is not a result statement"));
        };
        if r.instance_id != instance
            || r.manifest_sha256 != digest
            || r.function_sha256 != function_sha
        {
            return Err(fail(
                "the signed result names another instance, manifest or function",
            ));
        }
        checks.push(format!(
            "result: signature verified; round {}, {} inputs, output {}",
            r.round,
            r.inputs.len(),
            r.output
        ));
        output = Some(r.output);
    }
    if let Some(jws) = bundle["destruction"].as_str() {
        let Statement::Destruction(d) = verify_statement(jws, &key)
            .map_err(|e| fail(format!("the certificate's signature: {e}")))?
        else {
            return Err(fail("the certificate is not a destruction statement"));
        };
        if d.instance_id != instance {
            return Err(fail("the certificate names another instance"));
        }
        if verdict.appraised.log_generation == Some(d.log_generation) {
            check_destroyed_record(
                records,
                d.instance_destroyed_recnum,
                instance,
                d.epoch_retired,
            )?;
        } else {
            let saved = Evidence::from_value(bundle["destruction_evidence"].clone())
                .map_err(|_| fail("the certificate's log generation is gone and the bundle has no attestation of it"))?;
            let old = appraise(&saved, policy, &Expectations::default());
            if !old.trusted || old.appraised.log_generation != Some(d.log_generation) {
                return Err(fail(
                    "the attestation saved with the certificate is not trusted or of another generation",
                ));
            }
            check_destroyed_record(
                &saved.log,
                d.instance_destroyed_recnum,
                instance,
                d.epoch_retired,
            )?;
        }
        checks.push(format!(
            "destruction: signature verified; instance_destroyed is record {} of generation {}",
            d.instance_destroyed_recnum, d.log_generation
        ));
    }
    Ok(BundleReport {
        verdict,
        checks,
        output,
    })
}
