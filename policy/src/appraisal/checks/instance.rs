//! Functions and the instance: the functions loaded in this generation against the policy,
//! and the attested instance (created in this generation and not destroyed, its public key
//! and manifest digest as measured, its manifest valid and its function loaded).

use arbiter_measured_boot::cel::{self, EventContent};

use super::Appraisal;
use crate::appraisal::Check;
use crate::manifest::{Manifest, manifest_sha256};
use crate::tpm::hash::sha256;

impl<'a> Appraisal<'a> {
    /// Functions loaded in this generation against the policy.
    pub(super) fn functions(&mut self) {
        let loaded: Vec<[u8; 32]> = self
            .evidence
            .log
            .iter()
            .filter_map(|r| match &r.content {
                EventContent::FunctionLoaded(f) => Some(f.sha256.0),
                _ => None,
            })
            .collect();
        for f in &self.policy.functions {
            if !loaded.contains(f) {
                self.fail(
                    Check::Function,
                    format!("function {} is not loaded", hex::encode(f)),
                );
            }
        }
        if self.policy.only_listed_functions {
            for f in &loaded {
                if !self.policy.functions.contains(f) {
                    self.fail(
                        Check::Function,
                        format!(
                            "function {} is loaded but not in the policy",
                            hex::encode(f)
                        ),
                    );
                }
            }
        }
        self.appraised.functions = loaded;
    }

    /// The attested instance: created in this generation and not destroyed, its public key
    /// and manifest digest as measured, its manifest valid and its function loaded.
    pub(super) fn instance(&mut self) {
        let Some(inst) = &self.evidence.instance else {
            if let Some(id) = &self.expect.instance_id {
                self.fail(
                    Check::Instance,
                    format!("instance {id} was asked about but the evidence describes none"),
                );
            }
            if self.policy.manifest_sha256.is_some() {
                self.fail(
                    Check::Instance,
                    "the policy pins a manifest but no instance was attested",
                );
            }
            return;
        };
        if let Some(id) = &self.expect.instance_id
            && *id != inst.instance_id
        {
            self.fail(
                Check::Instance,
                format!(
                    "the evidence describes instance {}, not {id}",
                    inst.instance_id
                ),
            );
        }
        let created = cel::find_instance_created(&self.evidence.log, &inst.instance_id)
            .map(|(_, c)| c.clone());
        let destroyed = cel::instance_destroyed(&self.evidence.log, &inst.instance_id);
        let Some(created) = created else {
            self.fail(
                Check::Instance,
                format!(
                    "instance {} has no instance_created record in this log generation",
                    inst.instance_id
                ),
            );
            return;
        };
        if destroyed {
            self.fail(
                Check::Instance,
                format!("instance {} has been destroyed", inst.instance_id),
            );
        }
        match <[u8; 65]>::try_from(inst.public_key.0.as_slice()) {
            Ok(pk) if sha256(&[&pk]) == created.public_key_sha256.0 && pk[0] == 0x04 => {
                self.appraised.instance_public_key = Some(pk);
            }
            Ok(_) => self.fail(
                Check::Instance,
                "the instance's public key is not the one measured in instance_created",
            ),
            Err(_) => self.fail(
                Check::Instance,
                format!(
                    "the instance's public key has {} bytes, not 65",
                    inst.public_key.0.len()
                ),
            ),
        }
        let measured = created.manifest_sha256.0;
        self.appraised.manifest_sha256 = Some(measured);
        if inst.manifest_sha256.0 != measured {
            self.fail(
                Check::Manifest,
                "the manifest digest returned differs from the one measured in instance_created",
            );
        }
        if let Some(pinned) = &self.policy.manifest_sha256
            && *pinned != measured
        {
            self.fail(
                Check::Manifest,
                format!(
                    "the instance's manifest is {}, the policy requires {}",
                    hex::encode(measured),
                    hex::encode(pinned)
                ),
            );
        }
        if let Some(raw) = &inst.manifest {
            if manifest_sha256(raw) != measured {
                self.fail(
                    Check::Manifest,
                    "the manifest returned does not hash to the measured manifest_sha256",
                );
            }
            match Manifest::from_json_value(raw.clone()) {
                Ok(valid) => {
                    let function = valid.manifest().function.sha256.to_bytes();
                    self.appraised.function_sha256 = Some(function);
                    if !self.appraised.functions.contains(&function) {
                        self.fail(
                            Check::Function,
                            format!(
                                "the instance's function {} is not loaded",
                                hex::encode(function)
                            ),
                        );
                    }
                    if !self.policy.functions.is_empty()
                        && !self.policy.functions.contains(&function)
                    {
                        self.fail(
                            Check::Function,
                            format!(
                                "the instance's function {} is not one the policy allows",
                                hex::encode(function)
                            ),
                        );
                    }
                }
                Err(problems) => {
                    for p in problems {
                        self.fail(Check::Manifest, format!("invalid manifest: {p}"));
                    }
                }
            }
        }
    }
}
