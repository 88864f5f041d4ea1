//! PCRs and attestation: `PCR_Read`, `PCR_Extend`, `Quote` (retried while the PCRs move),
//! the TPM's clock info (taken from a fresh quote: tss-esapi 7.7 has no `TPM2_ReadClock`)
//! and `GetRandom`.

use arbiter_policy::{Attest, PcrSelection, PcrValues};
use tss_esapi::{
    abstraction::pcr,
    handles::PcrHandle,
    interface_types::{algorithm::HashingAlgorithm, session_handles::AuthSession},
    structures::{Data, Digest, DigestValues, PcrSelectionListBuilder, PcrSlot, SignatureScheme},
    traits::Marshall,
};

use super::Device;
use crate::tpm::Quote;
use crate::tpm::error::{TpmError, command, retry_busy};

/// How often a quote is retried when the PCRs change between reading and quoting.
const QUOTE_ATTEMPTS: u32 = 5;
impl Device {
    /// Reads the PCRs of `selection` from the SHA-256 bank (any number of them).
    pub fn pcr_read(&mut self, selection: &PcrSelection) -> Result<PcrValues, TpmError> {
        let list = selection_list(selection)?;
        // Reads change nothing: the whole set is read again if a TPM stays busy.
        let data = retry_busy(|| {
            self.ctx
                .execute_without_session(|ctx| pcr::read_all(ctx, list.clone()))
        })
        .map_err(command("PCR_Read"))?;
        let bank = data
            .pcr_bank(HashingAlgorithm::Sha256)
            .ok_or(TpmError::Command {
                op: "PCR_Read",
                detail: "the TPM returned no SHA-256 bank (is it active?)".into(),
            })?;
        let mut values = PcrValues::new();
        for (slot, digest) in bank {
            let index = u32::from(*slot).trailing_zeros() as u8;
            let value: [u8; 32] = digest.value().try_into().map_err(|_| TpmError::Command {
                op: "PCR_Read",
                detail: format!("PCR {index} is not 32 bytes long"),
            })?;
            values.insert(index, value);
        }
        if values.keys().copied().ne(selection.pcrs()) {
            return Err(TpmError::Command {
                op: "PCR_Read",
                detail: format!(
                    "asked for PCRs {:?}, the TPM returned {:?}",
                    selection.pcrs(),
                    values.keys().collect::<Vec<_>>()
                ),
            });
        }
        Ok(values)
    }

    /// Extends SHA-256 PCR `index` with `digest`: the PCR becomes SHA-256(old || digest).
    pub fn pcr_extend(&mut self, index: u8, digest: &[u8; 32]) -> Result<(), TpmError> {
        let handle = PcrHandle::try_from(u32::from(index))
            .map_err(|_| TpmError::Config(format!("PCR {index} does not exist")))?;
        let mut values = DigestValues::new();
        values.set(
            HashingAlgorithm::Sha256,
            Digest::try_from(digest.to_vec()).map_err(command("PCR_Extend"))?,
        );
        retry_busy(|| {
            self.ctx
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.pcr_extend(handle, values.clone())
                })
        })
        .map_err(command("PCR_Extend"))
    }

    /// Resets PCR `index` (`TPM2_PCR_Reset`: all banks to zero). The TPM allows it from
    /// locality 0 for PCR 16 (debug) and PCR 23 (application) only.
    pub fn pcr_reset(&mut self, index: u8) -> Result<(), TpmError> {
        let handle = PcrHandle::try_from(u32::from(index))
            .map_err(|_| TpmError::Config(format!("PCR {index} does not exist")))?;
        self.ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| ctx.pcr_reset(handle))
            .map_err(command("PCR_Reset"))
    }

    /// Makes PCR `index` hold SHA-256(0^32 || `digest`) — a reset and one extend — unless
    /// it does already (left as is then: nothing changes between quotes). Returns whether
    /// it had to be set.
    pub fn bind_pcr(&mut self, index: u8, digest: &[u8; 32]) -> Result<bool, TpmError> {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update([0u8; 32]);
        h.update(digest);
        let expected: [u8; 32] = h.finalize().into();
        let selection = PcrSelection::new([index])?;
        if self.pcr_read(&selection)?.get(&index) == Some(&expected) {
            return Ok(false);
        }
        self.pcr_reset(index)?;
        self.pcr_extend(index, digest)?;
        Ok(true)
    }

    /// Quotes `selection` with the attestation key over `qualifying_data` (at most 64
    /// bytes), returning the TPM's exact structures and the PCR values they cover. The PCRs
    /// are read before the quote and compared with its digest; on a difference (another
    /// process extended a PCR in between) it tries again, up to a few times.
    pub fn quote(
        &mut self,
        selection: &PcrSelection,
        qualifying_data: &[u8],
    ) -> Result<Quote, TpmError> {
        let ak = self.ak;
        for _ in 0..QUOTE_ATTEMPTS {
            let pcrs = self.pcr_read(selection)?;
            let data = Data::try_from(qualifying_data.to_vec()).map_err(command("Quote"))?;
            let list = selection_list(selection)?;
            let (attest, signature) = retry_busy(|| {
                self.ctx
                    .execute_with_session(Some(AuthSession::Password), |ctx| {
                        ctx.quote(ak, data.clone(), SignatureScheme::Null, list.clone())
                    })
            })
            .map_err(command("Quote"))?;
            let attest = attest
                .marshall()
                .map_err(command("marshalling TPMS_ATTEST"))?;
            let signature = signature
                .marshall()
                .map_err(command("marshalling TPMT_SIGNATURE"))?;
            match arbiter_policy::verify_quote(
                &attest,
                &signature,
                &self.attestation_key()?.public,
                qualifying_data,
                &pcrs,
            ) {
                Ok(parsed) => {
                    return Ok(Quote {
                        attest,
                        signature,
                        pcrs,
                        clock: parsed.clock_info,
                    });
                }
                Err(arbiter_policy::Error::PcrDigestMismatch) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(TpmError::PcrsUnstable {
            attempts: QUOTE_ATTEMPTS,
        })
    }

    /// The TPM's clock info (reset and restart counts) from a fresh quote of the
    /// application PCR: tss-esapi 7.7 has no `TPM2_ReadClock`.
    pub fn clock(&mut self) -> Result<Attest, TpmError> {
        let selection = PcrSelection::new([self.config.application_pcr])?;
        let nonce = self.random(32)?;
        let quote = self.quote(&selection, &nonce)?;
        Ok(Attest::parse(&quote.attest)?)
    }

    /// `n` random bytes from the TPM's generator.
    pub fn random(&mut self, n: usize) -> Result<Vec<u8>, TpmError> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let want = (n - out.len()).min(32);
            let bytes = self
                .ctx
                .execute_without_session(|ctx| ctx.get_random(want))
                .map_err(command("GetRandom"))?;
            out.extend_from_slice(bytes.value());
        }
        Ok(out)
    }
}

/// A tss-esapi PCR selection list for the SHA-256 bank.
pub(super) fn selection_list(
    selection: &PcrSelection,
) -> Result<tss_esapi::structures::PcrSelectionList, TpmError> {
    let slots = selection
        .pcrs()
        .into_iter()
        .map(|i| PcrSlot::try_from(1u32 << i))
        .collect::<Result<Vec<_>, _>>()
        .map_err(command("building a PCR selection"))?;
    PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
        .map_err(command("building a PCR selection"))
}
