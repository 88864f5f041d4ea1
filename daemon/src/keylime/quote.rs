//! Keylime's quote formats, bytes in and out: the PCR mask the verifier sends, the PCR
//! values file as tpm2-tools writes it (`tpm2_quote -o`, a `tpm2_pcrs` structure copied
//! from memory, little-endian), the compound quote string `r<attest>:<signature>:<pcrs>`,
//! and the PCR 16 data binding Keylime checks (`SHA-256(0^32 || SHA-256(pubkey))`).

use arbiter_policy::{PcrSelection, PcrValues};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The PCR Keylime binds data to (`config.TPM_DATA_PCR`).
pub const DATA_PCR: u8 = 16;
/// TPM_ALG_SHA256.
const TPM_ALG_SHA256: u16 = 0x000b;
/// Banks in a `TPML_PCR_SELECTION` (`TPM2_NUM_PCR_BANKS`).
const NUM_PCR_BANKS: usize = 16;
/// Digests in a `TPML_DIGEST` (at most 8 per `TPM2_PCR_Read`).
const DIGESTS_PER_LIST: usize = 8;
/// The size of `TPMU_HA` (a SHA-512 digest).
const TPMU_HA_SIZE: usize = 64;

/// Parses Keylime's `mask` (`hex(bitmask)`, e.g. `0x408000`; decimal is accepted too, as
/// Python's `int(mask, 0)` would) into a selection, refusing PCRs beyond 23.
pub fn parse_mask(mask: &str) -> Result<PcrSelection, String> {
    let value = if let Some(hex) = mask.strip_prefix("0x").or_else(|| mask.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16)
    } else {
        mask.parse::<u32>()
    }
    .map_err(|_| format!("mask `{mask}` is not a number"))?;
    if value >> 24 != 0 {
        return Err(format!("mask `{mask}` selects PCRs beyond 23"));
    }
    PcrSelection::new((0..24u8).filter(|i| value & (1 << i) != 0)).map_err(|e| e.to_string())
}

/// The selection quoted for a mask: the mask's PCRs plus [`DATA_PCR`], which Keylime's
/// verifier requires in every quote (`missing_pcr_16` otherwise).
pub fn with_data_pcr(mask: &PcrSelection) -> Result<PcrSelection, String> {
    PcrSelection::new(mask.pcrs().into_iter().chain([DATA_PCR])).map_err(|e| e.to_string())
}

/// The digest extended into [`DATA_PCR`] for `pubkey` (the PEM text as served): SHA-256
/// of its UTF-8 bytes.
pub fn data_digest(pubkey: &str) -> [u8; 32] {
    Sha256::digest(pubkey.as_bytes()).into()
}

/// The value [`DATA_PCR`] holds after a reset and one extend with [`data_digest`].
pub fn bound_value(pubkey: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8; 32]);
    h.update(data_digest(pubkey));
    h.finalize().into()
}

/// The PCR values file of `tpm2_quote -o` (SHA-256 bank): a `TPML_PCR_SELECTION` (count,
/// then 16 `TPMS_PCR_SELECTION` slots of hash, sizeofSelect, `pcrSelect[4]` and one byte of
/// padding), then the number of `TPML_DIGEST`s and each of them (count, then 8
/// `TPM2B_DIGEST` slots of size and a 64-byte buffer), all little-endian as in memory.
pub fn pcr_blob(values: &PcrValues) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&1u32.to_le_bytes());
    let mut bitmap = [0u8; 4];
    for pcr in values.keys() {
        bitmap[usize::from(*pcr / 8)] |= 1 << (pcr % 8);
    }
    for bank in 0..NUM_PCR_BANKS {
        if bank == 0 {
            out.extend_from_slice(&TPM_ALG_SHA256.to_le_bytes());
            out.push(3);
            out.extend_from_slice(&bitmap);
        } else {
            out.extend_from_slice(&[0u8; 7]);
        }
        out.push(0);
    }
    let digests: Vec<&[u8; 32]> = values.values().collect();
    let lists = digests.chunks(DIGESTS_PER_LIST).collect::<Vec<_>>();
    out.extend_from_slice(&u32::try_from(lists.len()).unwrap_or(0).to_le_bytes());
    for list in lists {
        out.extend_from_slice(&u32::try_from(list.len()).unwrap_or(0).to_le_bytes());
        for slot in 0..DIGESTS_PER_LIST {
            let mut buffer = [0u8; TPMU_HA_SIZE];
            match list.get(slot) {
                Some(d) => {
                    out.extend_from_slice(&32u16.to_le_bytes());
                    buffer[..32].copy_from_slice(&d[..]);
                }
                None => out.extend_from_slice(&0u16.to_le_bytes()),
            }
            out.extend_from_slice(&buffer);
        }
    }
    out
}

/// Keylime's compound quote: `r` + base64(TPMS_ATTEST) + `:` + base64(TPMT_SIGNATURE) +
/// `:` + base64(PCR values file).
pub fn quote_string(attest: &[u8], signature: &[u8], values: &PcrValues) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "r{}:{}:{}",
        b64.encode(attest),
        b64.encode(signature),
        b64.encode(pcr_blob(values))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(parse_mask("0x1").unwrap().pcrs(), vec![0]);
        assert_eq!(parse_mask("0x408000").unwrap().pcrs(), vec![15, 22]);
        assert_eq!(parse_mask("0").unwrap().pcrs(), Vec::<u8>::new());
        assert!(parse_mask("0x1000000").is_err());
        assert!(parse_mask("zz").is_err());
        let s = with_data_pcr(&parse_mask("0x11").unwrap()).unwrap();
        assert_eq!(s.pcrs(), vec![0, 4, 16]);
    }

    #[test]
    fn pcr_blob_layout_matches_tpm2_tools() {
        let mut values = PcrValues::new();
        for i in [0u8, 1, 2, 3, 4, 5, 6, 7, 16] {
            values.insert(i, [i; 32]);
        }
        let blob = pcr_blob(&values);
        // selection: 4 + 16 * 8; count: 4; two lists of 4 + 8 * 66.
        assert_eq!(blob.len(), 4 + 128 + 4 + 2 * (4 + 8 * 66));
        assert_eq!(&blob[4..11], &[0x0b, 0x00, 3, 0xff, 0x00, 0x01, 0x00]);
        assert_eq!(&blob[132..136], &2u32.to_le_bytes());
        assert_eq!(&blob[136..140], &8u32.to_le_bytes());
        assert_eq!(&blob[140..142], &32u16.to_le_bytes());
        assert_eq!(&blob[142..174], &[0u8; 32]);
        let second = 136 + 4 + 8 * 66;
        assert_eq!(&blob[second..second + 4], &1u32.to_le_bytes());
        assert_eq!(&blob[second + 6..second + 38], &[16u8; 32]);
    }

    #[test]
    fn binding_is_keylime_sim_extend() {
        // Keylime: sha256(0^32 || sha256(data.encode())).
        let v = bound_value("abc");
        let inner: [u8; 32] = Sha256::digest(b"abc").into();
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update(inner);
        assert_eq!(v, <[u8; 32]>::from(h.finalize()));
    }
}
