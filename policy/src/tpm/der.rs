//! A minimal DER reader for what enrolment compares: the `RSAPublicKey` (modulus and
//! exponent) inside a certificate's subject public key.

/// One DER TLV: (tag, body, what follows). `None` when the input is truncated or the
/// length is longer than the input.
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let l0 = usize::from(*b.get(1)?);
    let (len, hdr) = if l0 < 0x80 {
        (l0, 2)
    } else {
        let n = l0 & 0x7f;
        let mut len = 0usize;
        for i in 0..n {
            len = len.checked_shl(8)? | usize::from(*b.get(2 + i)?);
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    let body = b.get(hdr..end)?;
    Some((tag, body, b.get(end..)?))
}

/// The big-endian bytes of an unsigned integer without leading zero bytes.
pub(crate) fn strip_leading_zeros(v: &[u8]) -> Vec<u8> {
    v.iter().skip_while(|b| **b == 0).copied().collect()
}

/// Reads a DER `RSAPublicKey` (`SEQUENCE { INTEGER modulus, INTEGER publicExponent }`,
/// the contents of an RSA SPKI's `subjectPublicKey`): (modulus, exponent), each without
/// leading zero bytes. `None` when it is not one.
pub fn rsa_public_key(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (0x30, seq, _) = tlv(der)? else {
        return None;
    };
    let (0x02, n, rest) = tlv(seq)? else {
        return None;
    };
    let (0x02, e, _) = tlv(rest)? else {
        return None;
    };
    Some((strip_leading_zeros(n), strip_leading_zeros(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_public_keys_parse_from_der() {
        // SEQUENCE { INTEGER 0x00c5, INTEGER 0x010001 }
        let der = [
            0x30, 0x09, 0x02, 0x02, 0x00, 0xc5, 0x02, 0x03, 0x01, 0x00, 0x01,
        ];
        assert_eq!(
            rsa_public_key(&der),
            Some((vec![0xc5], vec![0x01, 0x00, 0x01]))
        );
        assert_eq!(rsa_public_key(&der[..5]), None);
        // Not a SEQUENCE; a SEQUENCE of something else; a length beyond the input.
        assert_eq!(rsa_public_key(&[0x31, 0x00]), None);
        assert_eq!(rsa_public_key(&[0x30, 0x02, 0x04, 0x00]), None);
        assert_eq!(rsa_public_key(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(
            rsa_public_key(&[0x30, 0x89, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
            None
        );
    }
}
