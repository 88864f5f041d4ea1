//! Signed statements (docs/protocol.md): results and destruction certificates as compact JWS
//! (ES256) signed by the TPM's statement key, which signs only in the attested platform
//! state. Each names the measurement-log generation and record a verifier checks it
//! against.

use arbiter_measured_boot::cel::EventContent;
use arbiter_policy::jws::{
    self, DestructionStatement, InputLeaf, InputRef, ResultStatement, Statement,
};
use arbiter_policy::manifest::Timestamp;
use serde_json::Value;

use super::{Engine, EngineError};

impl Engine {
    /// Signs a statement with the statement key.
    pub(crate) async fn sign_statement(
        &self,
        statement: &Statement,
    ) -> Result<String, EngineError> {
        let input = statement.signing_input(&self.statement_key_kid);
        let signature = self.tpm.sign(jws::signing_digest(&input)).await?;
        let rs = signature
            .to_raw_rs()
            .map_err(|e| EngineError::Internal(format!("statement signature: {e}")))?;
        Ok(jws::compact(&input, &rs))
    }

    /// The generation and `recnum` of `id`'s latest record of the given kind in the
    /// current measurement log generation.
    pub(crate) async fn log_position(&self, id: &str, destroyed: bool) -> Option<(u64, u64)> {
        let want = super::cel_id(id);
        let (generation, records) = self.measurer.snapshot().await;
        records.iter().rev().find_map(|r| match &r.content {
            EventContent::InstanceCreated(c) if !destroyed && c.instance_id == want => {
                Some((generation, r.recnum))
            }
            EventContent::InstanceDestroyed(d) if destroyed && d.instance_id == want => {
                Some((generation, r.recnum))
            }
            _ => None,
        })
    }

    /// The signed result statement of one evaluation; a failed evaluation is signed with
    /// `output` null (the failure's reason travels beside it, unsigned).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn sign_result(
        &self,
        id: &str,
        round: u64,
        function_sha256: &str,
        manifest_sha256: &str,
        inputs: Vec<InputRef>,
        output: Value,
        evaluated_at: &str,
    ) -> Result<String, EngineError> {
        let (log_generation, instance_created_recnum) =
            self.log_position(id, false).await.ok_or_else(|| {
                EngineError::Internal(format!("instance {id} is not in the measurement log"))
            })?;
        let statement = Statement::Result(ResultStatement {
            instance_id: id.to_owned(),
            round,
            function_sha256: function_sha256.to_owned(),
            manifest_sha256: manifest_sha256.to_owned(),
            inputs,
            output,
            evaluated_at: timestamp(evaluated_at)?,
            log_generation,
            instance_created_recnum,
        });
        self.sign_statement(&statement).await
    }

    /// The signed destruction certificate of an instance, committing to every input it
    /// ever `accepted` (acceptance order) by their Merkle root and count.
    pub(crate) async fn sign_destruction(
        &self,
        id: &str,
        destroyed_at: &str,
        accepted: &[InputLeaf],
        epoch_retired: u64,
    ) -> Result<String, EngineError> {
        let (log_generation, instance_destroyed_recnum) =
            self.log_position(id, true).await.ok_or_else(|| {
                EngineError::Internal(format!("instance {id}'s destruction is not in the log"))
            })?;
        let (inputs_root, inputs_count) = jws::inputs_root(accepted);
        let statement = Statement::Destruction(DestructionStatement {
            instance_id: id.to_owned(),
            destroyed_at: timestamp(destroyed_at)?,
            inputs_root,
            inputs_count,
            epoch_retired,
            log_generation,
            instance_destroyed_recnum,
        });
        self.sign_statement(&statement).await
    }
}

fn timestamp(text: &str) -> Result<Timestamp, EngineError> {
    Timestamp::parse(text).map_err(|e| EngineError::Internal(format!("timestamp {text}: {e}")))
}

/// How statements list inputs: slot, submitter and `ciphertext_sha256` of each.
pub(crate) fn input_refs(inputs: &[crate::store::queries::InputRow]) -> Vec<InputRef> {
    inputs
        .iter()
        .map(|i| InputRef {
            slot: i.slot.clone(),
            submitter: i.submitter.clone(),
            ciphertext_sha256: i.ciphertext_sha256.clone(),
        })
        .collect()
}

/// A statement's payload, decoded for convenience (null if it does not decode).
pub(crate) fn statement_payload(jws: &str) -> Value {
    jws.split('.')
        .nth(1)
        .and_then(|p| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .unwrap_or(Value::Null)
}
