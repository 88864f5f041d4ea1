//! Checking an attestation into a verdict: a fresh random nonce, the statement key's
//! certification from `GET /v1/tpm`, the quote from `GET /v1/attestation` bound to that
//! nonce and to the TLS key this very connection presented, and the policy crate's
//! appraisal under the party's own policy, with the AK pinned at enrolment when the
//! policy pins none. Nothing from an untrusted verdict is used.

use arbiter_measured_boot::cel::{EventContent, Record};
use arbiter_policy::Public;
use arbiter_policy::appraisal::{AppraisalPolicy, Check, Expectations, Reason, Verdict, appraise};
use arbiter_policy::evidence::Evidence;
use arbiter_proto::api::{self as wire, TpmInfo};
use serde_json::{Value, json};

use crate::ClientError;
use crate::session::Session;
use crate::trust::ServerTrust;

/// What a command prints when a trusted verdict rests on no reference value for the
/// platform (`allow_unpinned_platform`).
pub const UNPINNED_PLATFORM_WARNING: &str = "WARNING: trusted WITHOUT reference values for the platform: \
the policy pins no platform PCR value and no firmware-log rule and allows that \
(allow_unpinned_platform / --allow-unpinned-platform), so this says nothing about which \
firmware, boot loader or kernel the appliance booted. Acceptable only for development on \
a TPM with no firmware (swtpm); pin reference values (`arbiter policy capture`) otherwise.";

/// Whether a verdict is trusted only because the policy allows an unpinned platform.
pub fn trusted_unpinned(verdict: &Verdict) -> bool {
    verdict.trusted && verdict.appraised.unpinned_platform
}

/// A checked attestation.
#[derive(Debug, Clone)]
pub struct Attestation {
    /// The appraisal's verdict (with every reason when not trusted).
    pub verdict: Verdict,
    /// The evidence bundle as checked: the attestation response with `statement_key`
    /// added from `GET /v1/tpm`.
    pub evidence: Value,
    /// The nonce sent (hex).
    pub nonce: String,
    /// The TLS key (SPKI SHA-256, hex) the attestation's connection presented.
    pub tls_spki_sha256: String,
    /// The instance asked about.
    pub instance_id: Option<String>,
}

impl Attestation {
    /// The certified statement key, when trusted.
    pub fn statement_key(&self) -> Option<&Public> {
        self.verdict.statement_key()
    }

    /// Fails with every reason unless trusted.
    ///
    /// # Errors
    /// `NotTrusted` with the reasons.
    pub fn require_trusted(&self) -> Result<&Self, ClientError> {
        if self.verdict.trusted {
            Ok(self)
        } else {
            Err(ClientError::NotTrusted(
                self.verdict.reasons.iter().map(Reason::to_string).collect(),
            ))
        }
    }

    /// The attestation answer as checked (the evidence without the statement key).
    ///
    /// # Errors
    /// `Protocol` if the evidence is not an attestation answer (it was built from one).
    pub fn answer(&self) -> Result<wire::Attestation, ClientError> {
        arbiter_proto::api::answer_from_value("GET /v1/attestation", self.evidence.clone())
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// The measurement log as checked.
    ///
    /// # Errors
    /// As [`Attestation::answer`].
    pub fn records(&self) -> Result<Vec<Record>, ClientError> {
        Ok(self.answer()?.log)
    }

    /// The verdict for machines: `{trusted, fresh, reasons, as_of, appraised}`.
    pub fn to_json(&self) -> Value {
        verdict_json(
            &self.verdict,
            Some(&self.nonce),
            Some(&self.tls_spki_sha256),
        )
    }
}

/// The verdict as JSON.
pub fn verdict_json(v: &Verdict, nonce: Option<&str>, tls: Option<&str>) -> Value {
    let a = &v.appraised;
    json!({
        "trusted": v.trusted,
        "fresh": v.fresh,
        "nonce": nonce,
        "tls_spki_sha256": tls,
        "reasons": v.reasons.iter().map(|r| json!({"check": r.check, "detail": r.detail})).collect::<Vec<_>>(),
        "as_of": v.as_of.map(|c| json!({"clock_ms": c.clock, "reset_count": c.reset_count, "restart_count": c.restart_count, "safe": c.safe})),
        "appraised": {
            "ak_name": a.ak_name.as_ref().map(hex::encode),
            "pcrs": a.pcrs.iter().map(|(k, v)| (k.to_string(), Value::String(hex::encode(v)))).collect::<serde_json::Map<_, _>>(),
            "platform_pcrs": a.platform_pcrs.as_ref().map(|s| s.pcrs()),
            "log_generation": a.log_generation,
            "daemon_version": a.daemon_version,
            "daemon_executable_sha256": a.daemon_executable_sha256.as_ref().map(hex::encode),
            "daemon_starts": a.daemon_starts,
            "statement_key_name": a.statement_key.as_ref().map(|k| hex::encode(k.name())),
            "sealing_epoch": a.sealing_epoch,
            "functions": a.functions.iter().map(hex::encode).collect::<Vec<_>>(),
            "secure_boot": a.secure_boot,
            "instance_public_key": a.instance_public_key.as_ref().map(hex::encode),
            "manifest_sha256": a.manifest_sha256.as_ref().map(hex::encode),
            "function_sha256": a.function_sha256.as_ref().map(hex::encode),
            "unpinned_platform": a.unpinned_platform,
        },
        "warnings": if trusted_unpinned(v) { vec![UNPINNED_PLATFORM_WARNING] } else { vec![] },
    })
}

/// Reads an appraisal policy file (TOML, `docs/appraisal.md`).
///
/// # Errors
/// `File` when unreadable, `Config` when malformed.
pub fn read_policy(path: &std::path::Path) -> Result<AppraisalPolicy, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|e| ClientError::file(path, e))?;
    AppraisalPolicy::from_toml(&text)
        .map_err(|e| ClientError::Config(format!("{}: {e}", path.display())))
}

/// Adds the AK pinned in the trust store to a policy that pins none.
///
/// # Errors
/// `Config` when the stored pin does not parse.
pub fn with_enrolled_ak(
    mut policy: AppraisalPolicy,
    pinned: &ServerTrust,
) -> Result<AppraisalPolicy, ClientError> {
    use p256::pkcs8::DecodePublicKey as _;
    if policy.ak.name.is_none() && policy.ak.public_key.is_none() {
        if let Some(name) = &pinned.ak_name {
            policy.ak.name = Some(
                hex::decode(name)
                    .map_err(|e| ClientError::Config(format!("trust store ak_name: {e}")))?,
            );
        }
        if let Some(pem) = &pinned.ak_public_pem {
            policy.ak.public_key = Some(
                p256::ecdsa::VerifyingKey::from_public_key_pem(pem.trim())
                    .map_err(|e| ClientError::Config(format!("trust store AK PEM: {e}")))?,
            );
        }
    }
    Ok(policy)
}

/// The policy a command appraises with: the `--policy` file (or the configured one), or
/// else the default policy (required platform PCRs, a sound statement key and sealing
/// index, no value pins — refused for want of reference values unless an unpinned
/// platform is allowed); with the enrolled AK when the policy pins none, and an unpinned
/// platform allowed when the settings say so (`--allow-unpinned-platform`).
///
/// # Errors
/// As [`read_policy`] and [`with_enrolled_ak`].
pub fn session_policy(
    session: &Session,
    explicit: Option<&std::path::Path>,
) -> Result<AppraisalPolicy, ClientError> {
    let mut policy = match explicit.or(session.settings.policy.as_deref()) {
        Some(p) => read_policy(p)?,
        None => AppraisalPolicy::default(),
    };
    policy.allow_unpinned_platform |= session.settings.allow_unpinned_platform;
    with_enrolled_ak(policy, &session.trust.server(&session.settings.server)?)
}

/// A fresh random nonce, 32 bytes, hex.
pub fn fresh_nonce() -> String {
    let mut n = [0u8; 32];
    rand::fill(&mut n);
    hex::encode(n)
}

/// Builds the evidence bundle from the `/v1/tpm` and `/v1/attestation` answers: the
/// attestation with the statement key and its certification added.
///
/// # Errors
/// `Protocol` if the answer does not serialize (it always does).
pub fn evidence_of(tpm: &TpmInfo, attestation: &wire::Attestation) -> Result<Value, ClientError> {
    let mut evidence = serde_json::to_value(attestation)
        .map_err(|e| ClientError::Protocol(format!("attestation evidence: {e}")))?;
    let sk = &tpm.statement_key;
    evidence["statement_key"] = json!({
        "tpm2b_public": sk.tpm2b_public,
        "attest": sk.attest,
        "signature": sk.signature,
        "name": sk.name,
    });
    Ok(evidence)
}

/// One answer of the daemon and the TLS key its connection presented.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// The JSON body.
    pub json: &'a Value,
    /// The SPKI SHA-256 (hex) of the certificate the server presented.
    pub tls_spki_sha256: &'a str,
}

/// Appraises the answers to `GET /v1/tpm` and `GET /v1/attestation?nonce=…` under
/// `policy`, expecting our `nonce`, the TLS key the attestation's connection presented
/// and `instance`; both answers must come from the same TLS key. Returns the verdict and
/// the evidence bundle checked.
///
/// # Errors
/// `Protocol` when an answer or the evidence does not parse.
pub fn appraise_answers(
    tpm: &Answer<'_>,
    att: &Answer<'_>,
    nonce: &str,
    instance: Option<&str>,
    policy: &AppraisalPolicy,
) -> Result<(Verdict, Value), ClientError> {
    let protocol = |e: arbiter_proto::ProtoError| ClientError::Protocol(e.to_string());
    let tpm_info: TpmInfo =
        arbiter_proto::api::answer_from_value("GET /v1/tpm", tpm.json.clone()).map_err(protocol)?;
    let answer: wire::Attestation =
        arbiter_proto::api::answer_from_value("GET /v1/attestation", att.json.clone())
            .map_err(protocol)?;
    appraise_decoded(
        (&tpm_info, tpm.tls_spki_sha256),
        (&answer, att.tls_spki_sha256),
        nonce,
        instance,
        policy,
    )
}

/// As [`appraise_answers`], of answers already decoded, each with the TLS key its
/// connection presented.
fn appraise_decoded(
    (tpm_info, tpm_tls): (&TpmInfo, &str),
    (answer, att_tls): (&wire::Attestation, &str),
    nonce: &str,
    instance: Option<&str>,
    policy: &AppraisalPolicy,
) -> Result<(Verdict, Value), ClientError> {
    let evidence = evidence_of(tpm_info, answer)?;
    let parsed = Evidence::from_value(evidence.clone())
        .map_err(|e| ClientError::Protocol(format!("attestation evidence: {e}")))?;
    // A firmware log, when the daemon serves one, must replay to the quoted platform
    // PCRs even if the policy has no firmware rules of its own.
    let with_firmware;
    let policy = if policy.firmware.is_none() && parsed.firmware_log.is_some() {
        let mut p = policy.clone();
        p.firmware = Some(arbiter_policy::appraisal::FirmwareRules::default());
        with_firmware = p;
        &with_firmware
    } else {
        policy
    };
    let expect = Expectations {
        nonce: Some(nonce.to_owned()),
        tls_spki_sha256: Some(att_tls.to_owned()),
        instance_id: instance.map(str::to_owned),
        same_startup_as: None,
    };
    let mut verdict = appraise(&parsed, policy, &expect);
    if tpm_tls != att_tls {
        verdict.reasons.push(Reason {
            check: Check::Binding,
            detail: format!(
                "the daemon presented TLS key {tpm_tls} for the statement key and {att_tls} for the quote"
            ),
        });
        verdict.trusted = false;
    }
    Ok((verdict, evidence))
}

/// Attests the daemon (optionally about an instance) and appraises the answer under
/// `policy`. A trusted verdict records the TLS key it attested in the trust store.
///
/// # Errors
/// Transport and server errors; `Protocol` when the evidence does not parse. An
/// untrusted verdict is *not* an error: check [`Attestation::require_trusted`].
pub async fn attest(
    session: &Session,
    policy: &AppraisalPolicy,
    instance: Option<&str>,
) -> Result<Attestation, ClientError> {
    if let Some(id) = instance
        && id.parse::<arbiter_proto::InstanceId>().is_err()
    {
        return Err(ClientError::Usage(format!(
            "`{id}` is not an instance id (32 lowercase hex characters)"
        )));
    }
    let tpm = session.get("/v1/tpm").await?;
    let nonce = fresh_nonce();
    let mut path = format!("/v1/attestation?nonce={nonce}");
    if let Some(id) = instance {
        path.push_str(&format!("&instance={id}"));
    }
    let att = session.get(&path).await?;
    let tpm_info: TpmInfo = tpm.answer("GET /v1/tpm")?;
    let answer: wire::Attestation = att.answer("GET /v1/attestation")?;
    let (verdict, evidence) = appraise_decoded(
        (&tpm_info, &tpm.server_spki_sha256),
        (&answer, &att.server_spki_sha256),
        &nonce,
        instance,
        policy,
    )?;
    if verdict.trusted {
        let spki = att.server_spki_sha256.clone();
        session.trust.update_server(&session.settings.server, |s| {
            s.attested_tls_spki = Some(spki)
        })?;
    }
    Ok(Attestation {
        verdict,
        evidence,
        nonce,
        tls_spki_sha256: att.server_spki_sha256,
        instance_id: instance.map(str::to_owned),
    })
}

/// Finds the record `recnum` of a log and checks it is `instance_destroyed` for
/// `instance` with `epoch_retired`.
///
/// # Errors
/// `Verification` naming what differs.
pub fn check_destroyed_record(
    records: &[Record],
    recnum: u64,
    instance: &str,
    epoch_retired: u64,
) -> Result<(), ClientError> {
    let rec = records.iter().find(|r| r.recnum == recnum).ok_or_else(|| {
        ClientError::Verification(format!(
            "the attested log has no record {recnum} (instance_destroyed)"
        ))
    })?;
    match &rec.content {
        EventContent::InstanceDestroyed(d)
            if d.instance_id.to_string() == instance && d.epoch_retired == epoch_retired =>
        {
            Ok(())
        }
        other => Err(ClientError::Verification(format!(
            "record {recnum} of the attested log is {}, not instance_destroyed of {instance} retiring epoch {epoch_retired}",
            other.event_name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use arbiter_policy::appraisal::Appraised;

    use super::*;

    #[test]
    fn the_json_verdict_names_the_running_daemon() {
        let verdict = Verdict {
            trusted: true,
            reasons: vec![],
            as_of: None,
            fresh: true,
            appraised: Appraised {
                log_generation: Some(2),
                daemon_version: Some("0.2.0".into()),
                daemon_executable_sha256: Some([0x62; 32]),
                daemon_starts: 3,
                ..Appraised::default()
            },
        };
        let v = verdict_json(&verdict, Some("00"), None);
        assert_eq!(v["appraised"]["daemon_version"], "0.2.0");
        assert_eq!(v["appraised"]["daemon_executable_sha256"], "62".repeat(32));
        assert_eq!(v["appraised"]["daemon_starts"], 3);
        // Nothing appraised: null, not a made-up value.
        let v = verdict_json(
            &Verdict {
                appraised: Appraised::default(),
                ..verdict
            },
            None,
            None,
        );
        assert!(v["appraised"]["daemon_version"].is_null());
        assert!(v["appraised"]["daemon_executable_sha256"].is_null());
        assert_eq!(v["appraised"]["daemon_starts"], 0);
    }
}
