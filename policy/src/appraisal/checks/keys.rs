//! The TPM objects bound to the platform state: the statement key (certified by the AK,
//! named in `daemon_started`, docs/protocol.md's attributes and policy) and the sealing index (its
//! public area, name, attributes and policy, and its NV certification where present).

use arbiter_measured_boot::cel::DaemonStarted;

use super::Appraisal;
use crate::appraisal::Check;
use crate::evidence::{require_sealing_index, require_statement_key};
use crate::tpm::{Attest, Attested, NvPublic, PcrSelection, PcrValues, Public};
use crate::{verify_certify, verify_nv_certify};

impl<'a> Appraisal<'a> {
    /// The statement key: certified by the AK, named in `daemon_started`, with docs/protocol.md's
    /// attributes and policy over the appraised platform values.
    pub(super) fn statement_key(
        &mut self,
        ak: Option<&Public>,
        ds: Option<&DaemonStarted>,
        platform: Option<&(PcrSelection, PcrValues)>,
    ) {
        let Some(e) = &self.evidence.statement_key else {
            self.fail(
                Check::StatementKey,
                "the evidence carries no statement key certification (GET /v1/tpm)",
            );
            return;
        };
        let key = match Public::from_tpm2b(&e.tpm2b_public.0) {
            Ok(k) => k,
            Err(err) => {
                self.fail(Check::StatementKey, format!("TPM2B_PUBLIC: {err}"));
                return;
            }
        };
        let name = key.name();
        if let Some(reported) = &e.name
            && reported.0 != name
        {
            self.fail(
                Check::StatementKey,
                format!(
                    "its name is {}, not the {} reported",
                    hex::encode(&name),
                    hex::encode(&reported.0)
                ),
            );
        }
        if let Some(ds) = ds
            && ds.statement_key_name.0 != name
        {
            self.fail(
                Check::StatementKey,
                format!(
                    "its name {} is not the statement_key_name {} measured in daemon_started",
                    hex::encode(&name),
                    hex::encode(&ds.statement_key_name.0)
                ),
            );
        }
        match ak {
            Some(ak) => {
                let extra = Attest::parse(&e.attest.0).map(|a| a.extra_data);
                let result = extra.and_then(|extra| {
                    verify_certify(&e.attest.0, &e.signature.0, ak, &key, &extra)
                });
                if let Err(err) = result {
                    self.fail(
                        Check::StatementKey,
                        format!("its certification by the AK does not hold: {err}"),
                    );
                }
            }
            None => self.fail(
                Check::StatementKey,
                "its certification cannot be checked without a usable AK",
            ),
        }
        match platform {
            Some((selection, values)) => {
                if let Err(err) = require_statement_key(&key, selection, values) {
                    self.fail(Check::StatementKey, err.to_string());
                }
            }
            None => self.fail(
                Check::StatementKey,
                "its policy cannot be checked without the quoted platform PCRs",
            ),
        }
        self.appraised.statement_key = Some(key);
    }

    /// The sealing index: its public area as recorded in `daemon_started` and returned,
    /// its name, docs/protocol.md's exact attributes and policy, and its NV certification where
    /// present.
    pub(super) fn sealing(
        &mut self,
        ak: Option<&Public>,
        ds: Option<&DaemonStarted>,
        platform: Option<&(PcrSelection, PcrValues)>,
    ) {
        let e = &self.evidence.sealing;
        self.appraised.sealing_epoch = e.epoch;
        let nv = match NvPublic::from_tpm2b(&e.nv_public.0) {
            Ok(nv) => nv,
            Err(err) => {
                self.fail(Check::Sealing, format!("TPM2B_NV_PUBLIC: {err}"));
                return;
            }
        };
        let name = nv.name();
        if name != e.name.0 {
            self.fail(
                Check::Sealing,
                format!(
                    "the index's name is {}, not the {} reported",
                    hex::encode(&name),
                    hex::encode(&e.name.0)
                ),
            );
        }
        if let Some(ds) = ds {
            if ds.sealing_nv_public.0 != e.nv_public.0 {
                self.fail(
                    Check::Sealing,
                    "the public area differs from the one measured in daemon_started",
                );
            }
            if ds.sealing_nv_name.0 != name {
                self.fail(
                    Check::Sealing,
                    "the name differs from the one measured in daemon_started",
                );
            }
        }
        match platform {
            Some((selection, values)) => {
                if let Err(err) = require_sealing_index(&nv, selection, values) {
                    self.fail(Check::Sealing, err.to_string());
                }
            }
            None => self.fail(
                Check::Sealing,
                "its policy cannot be checked without the quoted platform PCRs",
            ),
        }
        if let Some(cert) = &e.certify {
            let Some(ak) = ak else {
                self.fail(
                    Check::Sealing,
                    "its certification cannot be checked without a usable AK",
                );
                return;
            };
            let result = Attest::parse(&cert.attest.0).and_then(|a| {
                verify_nv_certify(&cert.attest.0, &cert.signature.0, ak, &nv, &a.extra_data)
            });
            match result {
                Ok(attest) => {
                    if let Attested::Nv { contents, .. } = &attest.attested
                        && !contents.is_empty()
                    {
                        self.fail(
                            Check::Sealing,
                            "the NV certification reveals the index's contents",
                        );
                    }
                }
                Err(err) => self.fail(
                    Check::Sealing,
                    format!("its NV certification does not hold: {err}"),
                ),
            }
        }
    }
}
