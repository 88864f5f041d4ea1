//! PCR selections of the SHA-256 bank (`TPML_PCR_SELECTION` with one `TPMS_PCR_SELECTION`)
//! and the digest of selected PCR values that quotes and PolicyPCR use.

use std::collections::{BTreeMap, BTreeSet};

use super::TPM_ALG_SHA256;
use super::hash::sha256;
use crate::Error;

/// Number of PCRs in a bank (indices 0..=23).
const PCR_COUNT: u8 = 24;

/// Size of the PCR bitmap for 24 PCRs (`sizeofSelect`).
const SIZEOF_SELECT: u8 = 3;

/// PCR values of the SHA-256 bank, by index.
pub type PcrValues = BTreeMap<u8, [u8; 32]>;

/// A set of PCRs of the SHA-256 bank (indices 0..=23). Only valid indices can be held.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PcrSelection {
    pcrs: BTreeSet<u8>,
}

impl PcrSelection {
    /// A selection of the given PCRs (duplicates are merged; empty is allowed).
    ///
    /// # Errors
    /// `Error::InvalidPcr` for an index above 23.
    pub fn new(pcrs: impl IntoIterator<Item = u8>) -> Result<Self, Error> {
        let mut set = BTreeSet::new();
        for pcr in pcrs {
            if pcr >= PCR_COUNT {
                return Err(Error::InvalidPcr(u16::from(pcr)));
            }
            set.insert(pcr);
        }
        Ok(Self { pcrs: set })
    }

    /// The selection a `TPMS_PCR_SELECTION` bitmap (`pcrSelect`) describes: bit `n % 8` of
    /// byte `n / 8` selects PCR `n`. The bitmap may be longer than 3 bytes as long as the
    /// extra bytes are zero.
    ///
    /// # Errors
    /// `Error::InvalidPcr` for a set bit beyond PCR 23.
    pub fn from_bitmap(bitmap: &[u8]) -> Result<Self, Error> {
        let mut pcrs = BTreeSet::new();
        for (byte_index, byte) in bitmap.iter().enumerate() {
            for bit in 0..8u8 {
                if byte & (1 << bit) == 0 {
                    continue;
                }
                let index = byte_index * 8 + usize::from(bit);
                match u8::try_from(index) {
                    Ok(pcr) if pcr < PCR_COUNT => {
                        pcrs.insert(pcr);
                    }
                    _ => return Err(Error::InvalidPcr(u16::try_from(index).unwrap_or(u16::MAX))),
                }
            }
        }
        Ok(Self { pcrs })
    }

    /// The selected PCR indices, ascending.
    pub fn pcrs(&self) -> Vec<u8> {
        self.pcrs.iter().copied().collect()
    }

    /// Whether `pcr` is selected.
    pub fn contains(&self, pcr: u8) -> bool {
        self.pcrs.contains(&pcr)
    }

    /// Whether no PCR is selected.
    pub fn is_empty(&self) -> bool {
        self.pcrs.is_empty()
    }

    /// The number of PCRs selected.
    pub fn len(&self) -> usize {
        self.pcrs.len()
    }

    /// The `TPMS_PCR_SELECTION` bitmap: PCR `n` is bit `n % 8` of byte `n / 8`
    /// (PCR 23 gives `00 00 80`, PCR 16 gives `00 00 01`).
    pub fn bitmap(&self) -> [u8; 3] {
        let mut map = [0u8; 3];
        for &pcr in &self.pcrs {
            if let Some(byte) = map.get_mut(usize::from(pcr / 8)) {
                *byte |= 1 << (pcr % 8);
            }
        }
        map
    }

    /// The `TPML_PCR_SELECTION` for this set: `count = 1` (u32), `hash = TPM_ALG_SHA256`
    /// (u16), `sizeofSelect = 3` (u8), then the 3-byte bitmap — 10 bytes.
    pub fn marshal(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10);
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
        out.push(SIZEOF_SELECT);
        out.extend_from_slice(&self.bitmap());
        out
    }

    /// Whether `values` holds exactly the PCRs of this selection.
    pub fn matches(&self, values: &PcrValues) -> bool {
        self.pcrs.iter().eq(values.keys())
    }

    /// `Ok` when `values` holds exactly the PCRs of this selection.
    ///
    /// # Errors
    /// `Error::PcrSelectionMismatch` naming both sets otherwise.
    pub(crate) fn check_values(&self, values: &PcrValues) -> Result<(), Error> {
        if self.matches(values) {
            Ok(())
        } else {
            Err(Error::PcrSelectionMismatch {
                selected: self.pcrs(),
                values: values.keys().copied().collect(),
            })
        }
    }
}

/// SHA-256 of the PCR values concatenated in ascending PCR order: the `pcrDigest` of a
/// quote by a SHA-256 signing scheme, and the digest PolicyPCR hashes in. No values give
/// SHA-256 of the empty string.
pub fn pcr_digest(values: &PcrValues) -> [u8; 32] {
    let parts: Vec<&[u8]> = values.values().map(|v| v.as_slice()).collect();
    sha256(&parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_layout_matches_part_2() {
        assert_eq!(
            PcrSelection::new([23]).unwrap().bitmap(),
            [0x00, 0x00, 0x80]
        );
        assert_eq!(
            PcrSelection::new([16]).unwrap().bitmap(),
            [0x00, 0x00, 0x01]
        );
        assert_eq!(PcrSelection::new([0]).unwrap().bitmap(), [0x01, 0x00, 0x00]);
        assert_eq!(
            PcrSelection::new([7, 8]).unwrap().bitmap(),
            [0x80, 0x01, 0x00]
        );
        // The platform set of docs/protocol.md: 0, 2, 4, 7, 9.
        let platform = PcrSelection::new([9, 0, 2, 4, 7, 2]).unwrap();
        assert_eq!(platform.bitmap(), [0b1001_0101, 0b0000_0010, 0x00]);
        assert_eq!(platform.pcrs(), vec![0, 2, 4, 7, 9]);
        assert!(platform.contains(9) && !platform.contains(1));
        assert_eq!(platform.len(), 5);
    }

    #[test]
    fn marshal_is_tpml_pcr_selection() {
        let sel = PcrSelection::new([23]).unwrap();
        assert_eq!(hex::encode(sel.marshal()), "00000001000b03000080");
        let empty = PcrSelection::new([]).unwrap();
        assert!(empty.is_empty());
        assert_eq!(hex::encode(empty.marshal()), "00000001000b03000000");
    }

    #[test]
    fn invalid_indices_are_refused() {
        assert_eq!(PcrSelection::new([1, 24]), Err(Error::InvalidPcr(24)));
        assert_eq!(PcrSelection::new([255]), Err(Error::InvalidPcr(255)));
        assert_eq!(
            PcrSelection::from_bitmap(&[0, 0, 0, 1]),
            Err(Error::InvalidPcr(24))
        );
        let mut long = vec![0u8; 255];
        long[254] = 0x80;
        assert_eq!(
            PcrSelection::from_bitmap(&long),
            Err(Error::InvalidPcr(2039))
        );
    }

    #[test]
    fn bitmap_round_trip() {
        for pcrs in [
            vec![],
            vec![0],
            vec![23],
            vec![0, 2, 4, 7, 9],
            (0..24).collect(),
        ] {
            let sel = PcrSelection::new(pcrs.clone()).unwrap();
            assert_eq!(PcrSelection::from_bitmap(&sel.bitmap()).unwrap(), sel);
            assert_eq!(sel.pcrs(), pcrs);
        }
        // Longer bitmaps with zero padding and shorter ones are fine.
        assert_eq!(
            PcrSelection::from_bitmap(&[0, 0, 0x80, 0, 0]).unwrap(),
            PcrSelection::new([23]).unwrap()
        );
        assert_eq!(
            PcrSelection::from_bitmap(&[0x01]).unwrap(),
            PcrSelection::new([0]).unwrap()
        );
    }

    #[test]
    fn pcr_digest_concatenates_in_ascending_order() {
        let mut values = PcrValues::new();
        values.insert(9, [0x09; 32]);
        values.insert(0, [0x00; 32]);
        values.insert(7, [0x07; 32]);
        let mut concatenated = Vec::new();
        concatenated.extend_from_slice(&[0x00; 32]);
        concatenated.extend_from_slice(&[0x07; 32]);
        concatenated.extend_from_slice(&[0x09; 32]);
        let want = super::super::hash(TPM_ALG_SHA256, &[&concatenated]).unwrap();
        assert_eq!(pcr_digest(&values).to_vec(), want);
        // SHA-256 of nothing.
        assert_eq!(
            hex::encode(pcr_digest(&PcrValues::new())),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // One all-zero PCR (PCR 23 after reset).
        let zero: PcrValues = [(23, [0u8; 32])].into_iter().collect();
        assert_eq!(
            hex::encode(pcr_digest(&zero)),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }

    #[test]
    fn matches_compares_index_sets() {
        let sel = PcrSelection::new([0, 7]).unwrap();
        let values: PcrValues = [(0, [0u8; 32]), (7, [1u8; 32])].into_iter().collect();
        assert!(sel.matches(&values));
        sel.check_values(&values).unwrap();
        let fewer: PcrValues = [(0, [0u8; 32])].into_iter().collect();
        assert_eq!(
            sel.check_values(&fewer),
            Err(Error::PcrSelectionMismatch {
                selected: vec![0, 7],
                values: vec![0]
            })
        );
    }
}
