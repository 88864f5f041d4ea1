//! `TPMS_ATTEST`: the structure a TPM signs for `TPM2_Quote`, `TPM2_Certify` and
//! `TPM2_NV_Certify`, with its clock information.

use super::pcr::PcrSelection;
use super::wire::{Reader, put_tpm2b};
use super::{
    TPM_ALG_SHA256, TPM_GENERATED_VALUE, TPM_ST_ATTEST_CERTIFY, TPM_ST_ATTEST_NV,
    TPM_ST_ATTEST_NV_DIGEST, TPM_ST_ATTEST_QUOTE,
};
use crate::Error;

/// `TPMS_CLOCK_INFO`: the TPM's clock and the counts of TPM Reset and TPM Restart.
///
/// For keys of the owner hierarchy (and others outside the endorsement and platform
/// hierarchies) the TPM obfuscates `reset_count`, `restart_count` and `clock` per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered since it was made (`clock`).
    pub clock: u64,
    /// Number of TPM Resets (`resetCount`).
    pub reset_count: u32,
    /// Number of TPM Restarts / Resumes since the last Reset (`restartCount`).
    pub restart_count: u32,
    /// Whether `clock` is known not to have gone backwards (`safe`).
    pub safe: bool,
}

/// The type-specific part of a `TPMS_ATTEST` (`TPMU_ATTEST`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attested {
    /// `TPMS_QUOTE_INFO` (`TPM_ST_ATTEST_QUOTE`).
    Quote {
        /// `TPML_PCR_SELECTION`: one `(hash algorithm, pcrSelect bitmap)` per bank.
        selection: Vec<(u16, Vec<u8>)>,
        /// Digest of the selected PCR values, with the signing scheme's hash.
        pcr_digest: Vec<u8>,
    },
    /// `TPMS_CERTIFY_INFO` (`TPM_ST_ATTEST_CERTIFY`).
    Certify {
        /// The certified object's name.
        name: Vec<u8>,
        /// Its qualified name.
        qualified_name: Vec<u8>,
    },
    /// `TPMS_NV_CERTIFY_INFO` (`TPM_ST_ATTEST_NV`): a byte range of an NV index.
    Nv {
        /// The index's name.
        index_name: Vec<u8>,
        /// Offset of `contents` in the index.
        offset: u16,
        /// The certified bytes.
        contents: Vec<u8>,
    },
    /// `TPMS_NV_DIGEST_CERTIFY_INFO` (`TPM_ST_ATTEST_NV_DIGEST`): a digest of a whole
    /// NV index.
    NvDigest {
        /// The index's name.
        index_name: Vec<u8>,
        /// Digest of the index's data, with the signing scheme's hash.
        nv_digest: Vec<u8>,
    },
}

/// A parsed `TPMS_ATTEST`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attest {
    /// `TPM_ST_ATTEST_*` type; always consistent with `attested`.
    pub attest_type: u16,
    /// Qualified name of the signing key.
    pub qualified_signer: Vec<u8>,
    /// Caller-supplied data (`qualifyingData`, the nonce).
    pub extra_data: Vec<u8>,
    /// The TPM's clock and reset counts.
    pub clock_info: ClockInfo,
    /// Vendor-specific firmware version.
    pub firmware_version: u64,
    /// The type-specific content.
    pub attested: Attested,
}

impl Attest {
    /// Parses a `TPMS_ATTEST` that fills `bytes` exactly.
    ///
    /// # Errors
    /// `BadMagic` unless it starts with `TPM_GENERATED_VALUE`; `UnsupportedAttestType`
    /// for types other than quote, certify and NV certify; `InvalidValue` for a
    /// `safe` flag other than 0 or 1; `Truncated`; `TrailingBytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let magic = r.u32("TPMS_ATTEST.magic")?;
        if magic != TPM_GENERATED_VALUE {
            return Err(Error::BadMagic { found: magic });
        }
        let attest_type = r.u16("TPMS_ATTEST.type")?;
        if !matches!(
            attest_type,
            TPM_ST_ATTEST_QUOTE
                | TPM_ST_ATTEST_CERTIFY
                | TPM_ST_ATTEST_NV
                | TPM_ST_ATTEST_NV_DIGEST
        ) {
            return Err(Error::UnsupportedAttestType(attest_type));
        }
        let qualified_signer = r.tpm2b("TPMS_ATTEST.qualifiedSigner")?.to_vec();
        let extra_data = r.tpm2b("TPMS_ATTEST.extraData")?.to_vec();
        let clock = r.u64("TPMS_CLOCK_INFO.clock")?;
        let reset_count = r.u32("TPMS_CLOCK_INFO.resetCount")?;
        let restart_count = r.u32("TPMS_CLOCK_INFO.restartCount")?;
        let safe = match r.u8("TPMS_CLOCK_INFO.safe")? {
            0 => false,
            1 => true,
            other => {
                return Err(Error::InvalidValue {
                    what: "TPMS_CLOCK_INFO.safe",
                    value: u64::from(other),
                });
            }
        };
        let firmware_version = r.u64("TPMS_ATTEST.firmwareVersion")?;
        let attested = match attest_type {
            TPM_ST_ATTEST_QUOTE => {
                let count = r.u32("TPML_PCR_SELECTION.count")?;
                // Each entry takes at least 3 bytes, so the input bounds the loop.
                let mut selection = Vec::new();
                for _ in 0..count {
                    let hash = r.u16("TPMS_PCR_SELECTION.hash")?;
                    let size = r.u8("TPMS_PCR_SELECTION.sizeofSelect")?;
                    let bitmap = r.take(usize::from(size), "TPMS_PCR_SELECTION.pcrSelect")?;
                    selection.push((hash, bitmap.to_vec()));
                }
                let pcr_digest = r.tpm2b("TPMS_QUOTE_INFO.pcrDigest")?.to_vec();
                Attested::Quote {
                    selection,
                    pcr_digest,
                }
            }
            TPM_ST_ATTEST_CERTIFY => Attested::Certify {
                name: r.tpm2b("TPMS_CERTIFY_INFO.name")?.to_vec(),
                qualified_name: r.tpm2b("TPMS_CERTIFY_INFO.qualifiedName")?.to_vec(),
            },
            TPM_ST_ATTEST_NV => Attested::Nv {
                index_name: r.tpm2b("TPMS_NV_CERTIFY_INFO.indexName")?.to_vec(),
                offset: r.u16("TPMS_NV_CERTIFY_INFO.offset")?,
                contents: r.tpm2b("TPMS_NV_CERTIFY_INFO.nvContents")?.to_vec(),
            },
            _ => Attested::NvDigest {
                index_name: r.tpm2b("TPMS_NV_DIGEST_CERTIFY_INFO.indexName")?.to_vec(),
                nv_digest: r.tpm2b("TPMS_NV_DIGEST_CERTIFY_INFO.nvDigest")?.to_vec(),
            },
        };
        r.finish("TPMS_ATTEST")?;
        Ok(Self {
            attest_type,
            qualified_signer,
            extra_data,
            clock_info: ClockInfo {
                clock,
                reset_count,
                restart_count,
                safe,
            },
            firmware_version,
            attested,
        })
    }

    /// Marshals the structure as a TPM does (what [`Attest::parse`] reads back).
    ///
    /// # Errors
    /// `InvalidValue` when `attest_type` disagrees with `attested`; `TooLong` for a
    /// sized field over 65,535 bytes, a PCR bitmap over 255 bytes, or more than
    /// 2³²−1 banks.
    pub fn marshal(&self) -> Result<Vec<u8>, Error> {
        let expected_type = match self.attested {
            Attested::Quote { .. } => TPM_ST_ATTEST_QUOTE,
            Attested::Certify { .. } => TPM_ST_ATTEST_CERTIFY,
            Attested::Nv { .. } => TPM_ST_ATTEST_NV,
            Attested::NvDigest { .. } => TPM_ST_ATTEST_NV_DIGEST,
        };
        if self.attest_type != expected_type {
            return Err(Error::InvalidValue {
                what: "TPMS_ATTEST.type (disagrees with attested)",
                value: u64::from(self.attest_type),
            });
        }
        let mut out = Vec::new();
        out.extend_from_slice(&TPM_GENERATED_VALUE.to_be_bytes());
        out.extend_from_slice(&self.attest_type.to_be_bytes());
        put_tpm2b(
            &mut out,
            &self.qualified_signer,
            "TPMS_ATTEST.qualifiedSigner",
        )?;
        put_tpm2b(&mut out, &self.extra_data, "TPMS_ATTEST.extraData")?;
        out.extend_from_slice(&self.clock_info.clock.to_be_bytes());
        out.extend_from_slice(&self.clock_info.reset_count.to_be_bytes());
        out.extend_from_slice(&self.clock_info.restart_count.to_be_bytes());
        out.push(u8::from(self.clock_info.safe));
        out.extend_from_slice(&self.firmware_version.to_be_bytes());
        match &self.attested {
            Attested::Quote {
                selection,
                pcr_digest,
            } => {
                let count = u32::try_from(selection.len()).map_err(|_| Error::TooLong {
                    what: "TPML_PCR_SELECTION",
                    len: selection.len(),
                    max: u32::MAX as usize,
                })?;
                out.extend_from_slice(&count.to_be_bytes());
                for (hash, bitmap) in selection {
                    let size = u8::try_from(bitmap.len()).map_err(|_| Error::TooLong {
                        what: "TPMS_PCR_SELECTION.pcrSelect",
                        len: bitmap.len(),
                        max: usize::from(u8::MAX),
                    })?;
                    out.extend_from_slice(&hash.to_be_bytes());
                    out.push(size);
                    out.extend_from_slice(bitmap);
                }
                put_tpm2b(&mut out, pcr_digest, "TPMS_QUOTE_INFO.pcrDigest")?;
            }
            Attested::Certify {
                name,
                qualified_name,
            } => {
                put_tpm2b(&mut out, name, "TPMS_CERTIFY_INFO.name")?;
                put_tpm2b(&mut out, qualified_name, "TPMS_CERTIFY_INFO.qualifiedName")?;
            }
            Attested::Nv {
                index_name,
                offset,
                contents,
            } => {
                put_tpm2b(&mut out, index_name, "TPMS_NV_CERTIFY_INFO.indexName")?;
                out.extend_from_slice(&offset.to_be_bytes());
                put_tpm2b(&mut out, contents, "TPMS_NV_CERTIFY_INFO.nvContents")?;
            }
            Attested::NvDigest {
                index_name,
                nv_digest,
            } => {
                put_tpm2b(
                    &mut out,
                    index_name,
                    "TPMS_NV_DIGEST_CERTIFY_INFO.indexName",
                )?;
                put_tpm2b(&mut out, nv_digest, "TPMS_NV_DIGEST_CERTIFY_INFO.nvDigest")?;
            }
        }
        Ok(out)
    }

    /// The PCRs a quote covers, provided it selects exactly one bank and that bank is
    /// SHA-256.
    ///
    /// # Errors
    /// `WrongAttestType` if this is not a quote; `PcrBankCount` unless exactly one bank
    /// is selected; `UnsupportedAlgorithm` for a bank other than SHA-256; `InvalidPcr`
    /// for a bit beyond PCR 23.
    pub fn quoted_pcrs(&self) -> Result<PcrSelection, Error> {
        let Attested::Quote { selection, .. } = &self.attested else {
            return Err(Error::WrongAttestType {
                expected: TPM_ST_ATTEST_QUOTE,
                found: self.attest_type,
            });
        };
        let [(bank, bitmap)] = selection.as_slice() else {
            return Err(Error::PcrBankCount {
                found: u32::try_from(selection.len()).unwrap_or(u32::MAX),
            });
        };
        if *bank != TPM_ALG_SHA256 {
            return Err(Error::UnsupportedAlgorithm {
                what: "quoted PCR bank",
                alg: *bank,
            });
        }
        PcrSelection::from_bitmap(bitmap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::TPM_ST_ATTEST_TIME;

    /// A quote of PCR 23 written out field by field.
    fn hand_built_quote() -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&[0xff, 0x54, 0x43, 0x47]); // magic
        a.extend_from_slice(&[0x80, 0x18]); // type: quote
        a.extend_from_slice(&[0x00, 0x03, 0x00, 0x0b, 0xaa]); // qualifiedSigner (3 bytes)
        a.extend_from_slice(&[0x00, 0x04, 0xde, 0xad, 0xbe, 0xef]); // extraData
        a.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x03, 0x09]); // clock = 777
        a.extend_from_slice(&[0x00, 0x00, 0x00, 0x02]); // resetCount = 2
        a.extend_from_slice(&[0x00, 0x00, 0x00, 0x01]); // restartCount = 1
        a.push(0x01); // safe
        a.extend_from_slice(&[0x20, 0x19, 0x10, 0x23, 0x00, 0x16, 0x36, 0x36]); // firmware
        a.extend_from_slice(&[0x00, 0x00, 0x00, 0x01]); // one bank
        a.extend_from_slice(&[0x00, 0x0b, 0x03, 0x00, 0x00, 0x80]); // SHA-256, PCR 23
        a.extend_from_slice(&[0x00, 0x20]);
        a.extend_from_slice(&[0x5c; 32]); // pcrDigest
        a
    }

    #[test]
    fn parses_and_remarshals_a_quote() {
        let bytes = hand_built_quote();
        let attest = Attest::parse(&bytes).unwrap();
        assert_eq!(attest.attest_type, TPM_ST_ATTEST_QUOTE);
        assert_eq!(attest.qualified_signer, vec![0x00, 0x0b, 0xaa]);
        assert_eq!(attest.extra_data, vec![0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(
            attest.clock_info,
            ClockInfo {
                clock: 777,
                reset_count: 2,
                restart_count: 1,
                safe: true
            }
        );
        assert_eq!(attest.firmware_version, 0x2019_1023_0016_3636);
        assert_eq!(
            attest.attested,
            Attested::Quote {
                selection: vec![(TPM_ALG_SHA256, vec![0, 0, 0x80])],
                pcr_digest: vec![0x5c; 32],
            }
        );
        assert_eq!(
            attest.quoted_pcrs().unwrap(),
            PcrSelection::new([23]).unwrap()
        );
        assert_eq!(attest.marshal().unwrap(), bytes);
    }

    fn with_attested(attested: Attested) -> Attest {
        let attest_type = match attested {
            Attested::Quote { .. } => TPM_ST_ATTEST_QUOTE,
            Attested::Certify { .. } => TPM_ST_ATTEST_CERTIFY,
            Attested::Nv { .. } => TPM_ST_ATTEST_NV,
            Attested::NvDigest { .. } => TPM_ST_ATTEST_NV_DIGEST,
        };
        Attest {
            attest_type,
            qualified_signer: vec![1, 2],
            extra_data: vec![],
            clock_info: ClockInfo {
                clock: 1,
                reset_count: 0,
                restart_count: 0,
                safe: false,
            },
            firmware_version: 0,
            attested,
        }
    }

    #[test]
    fn certify_and_nv_round_trip() {
        let certify = with_attested(Attested::Certify {
            name: vec![0x00, 0x0b, 1, 2, 3],
            qualified_name: vec![0x00, 0x0b, 4],
        });
        let bytes = certify.marshal().unwrap();
        // name and qualifiedName follow firmwareVersion as two TPM2Bs.
        assert_eq!(
            &bytes[bytes.len() - 12..],
            &[0, 5, 0, 0x0b, 1, 2, 3, 0, 3, 0, 0x0b, 4]
        );
        assert_eq!(Attest::parse(&bytes).unwrap(), certify);

        let nv = with_attested(Attested::Nv {
            index_name: vec![0x00, 0x0b, 9],
            offset: 0x0102,
            contents: b"abc".to_vec(),
        });
        let bytes = nv.marshal().unwrap();
        assert_eq!(
            &bytes[bytes.len() - 12..],
            &[0, 3, 0, 0x0b, 9, 1, 2, 0, 3, b'a', b'b', b'c']
        );
        assert_eq!(Attest::parse(&bytes).unwrap(), nv);

        let digest = with_attested(Attested::NvDigest {
            index_name: vec![7],
            nv_digest: vec![8; 32],
        });
        assert_eq!(Attest::parse(&digest.marshal().unwrap()).unwrap(), digest);
        assert_eq!(
            digest.quoted_pcrs(),
            Err(Error::WrongAttestType {
                expected: TPM_ST_ATTEST_QUOTE,
                found: 0x801c
            })
        );
    }

    #[test]
    fn refuses_bad_magic_unknown_types_and_bad_flags() {
        let mut bad_magic = hand_built_quote();
        bad_magic[3] = 0x48;
        assert_eq!(
            Attest::parse(&bad_magic),
            Err(Error::BadMagic { found: 0xff54_4348 })
        );
        let mut time = hand_built_quote();
        time[5] = 0x19;
        assert_eq!(
            Attest::parse(&time),
            Err(Error::UnsupportedAttestType(TPM_ST_ATTEST_TIME))
        );
        let mut unsafe_flag = hand_built_quote();
        unsafe_flag[33] = 2; // 4 + 2 + 5 + 6 + 8 + 4 + 4
        assert_eq!(
            Attest::parse(&unsafe_flag),
            Err(Error::InvalidValue {
                what: "TPMS_CLOCK_INFO.safe",
                value: 2
            })
        );
        let mut trailing = hand_built_quote();
        trailing.push(0);
        assert_eq!(
            Attest::parse(&trailing),
            Err(Error::TrailingBytes {
                what: "TPMS_ATTEST"
            })
        );
        let bytes = hand_built_quote();
        for len in 0..bytes.len() {
            assert!(matches!(
                Attest::parse(&bytes[..len]),
                Err(Error::Truncated { .. })
            ));
        }
        let mut inconsistent = Attest::parse(&bytes).unwrap();
        inconsistent.attest_type = TPM_ST_ATTEST_CERTIFY;
        assert!(matches!(
            inconsistent.marshal(),
            Err(Error::InvalidValue { .. })
        ));
    }

    #[test]
    fn quoted_pcrs_requires_one_sha256_bank() {
        let quote = |selection: Vec<(u16, Vec<u8>)>| {
            with_attested(Attested::Quote {
                selection,
                pcr_digest: vec![0; 32],
            })
        };
        assert_eq!(
            quote(vec![]).quoted_pcrs(),
            Err(Error::PcrBankCount { found: 0 })
        );
        assert_eq!(
            quote(vec![
                (TPM_ALG_SHA256, vec![1, 0, 0]),
                (0x0004, vec![0, 0, 0])
            ])
            .quoted_pcrs(),
            Err(Error::PcrBankCount { found: 2 })
        );
        assert_eq!(
            quote(vec![(0x0004, vec![1, 0, 0])]).quoted_pcrs(),
            Err(Error::UnsupportedAlgorithm {
                what: "quoted PCR bank",
                alg: 0x0004
            })
        );
        assert_eq!(
            quote(vec![(TPM_ALG_SHA256, vec![0, 0, 0, 2])]).quoted_pcrs(),
            Err(Error::InvalidPcr(25))
        );
        assert_eq!(
            quote(vec![(TPM_ALG_SHA256, vec![0x95, 0x02, 0x00])])
                .quoted_pcrs()
                .unwrap()
                .pcrs(),
            vec![0, 2, 4, 7, 9]
        );
    }
}
