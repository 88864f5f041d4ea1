//! Big-endian reading and writing of TPM primitive types and size-prefixed `TPM2B_*`
//! buffers: the only place that slices input bytes, so that every parser above it is
//! panic-free by construction.

use crate::Error;

/// A cursor over untrusted input. Every read either returns the bytes asked for or
/// `Error::Truncated` naming what was being read.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// Takes the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
        if self.rest.len() < n {
            return Err(Error::Truncated { what });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// Reads a `TPM2B_*`: a u16 size, then that many bytes.
    pub(crate) fn tpm2b(&mut self, what: &'static str) -> Result<&'a [u8], Error> {
        let size = self.u16(what)?;
        self.take(usize::from(size), what)
    }

    /// Succeeds only if the input has been read completely.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), Error> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingBytes { what })
        }
    }
}

/// Appends a `TPM2B_*` (u16 size, then the bytes). The caller guarantees `bytes` fits a
/// u16 size; longer input is refused with `Error::TooLong`.
pub(crate) fn put_tpm2b(out: &mut Vec<u8>, bytes: &[u8], what: &'static str) -> Result<(), Error> {
    let size = u16::try_from(bytes.len()).map_err(|_| Error::TooLong {
        what,
        len: bytes.len(),
        max: usize::from(u16::MAX),
    })?;
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// `bytes` size-prefixed as a `TPM2B_*` (u16 size, then the bytes): the one way this
/// workspace marshals a sized buffer.
///
/// # Errors
/// [`Error::TooLong`] when `bytes` does not fit a u16 size.
pub fn tpm2b(bytes: &[u8], what: &'static str) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(bytes.len() + 2);
    put_tpm2b(&mut out, bytes, what)?;
    Ok(out)
}

/// The body of a whole `TPM2B_*`: its size prefix must match the bytes after it exactly.
///
/// # Errors
/// [`Error::Truncated`] when the input is shorter than its size says,
/// [`Error::TrailingBytes`] when it is longer.
pub fn tpm2b_body<'a>(bytes: &'a [u8], what: &'static str) -> Result<&'a [u8], Error> {
    let mut reader = Reader::new(bytes);
    let body = reader.tpm2b(what)?;
    reader.finish(what)?;
    Ok(body)
}

/// Appends a `TPM2B_*` whose content is known to fit (it came out of a parser that read a
/// u16 size, or is a fixed-size digest); content that does not fit is cut at 65,535 bytes,
/// which no caller in this crate can produce.
pub(crate) fn put_tpm2b_bounded(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len().min(usize::from(u16::MAX));
    let size = u16::try_from(len).unwrap_or(u16::MAX);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(bytes.get(..len).unwrap_or(bytes));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_and_reports_what_was_truncated() {
        let mut r = Reader::new(&[0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07]);
        assert_eq!(r.u16("a").unwrap(), 0x0102);
        assert_eq!(r.u32("b").unwrap(), 0x0304_0506);
        assert_eq!(r.u16("c"), Err(Error::Truncated { what: "c" }));
        assert_eq!(r.finish("x"), Err(Error::TrailingBytes { what: "x" }));
        assert_eq!(r.u8("d").unwrap(), 0x07);
        r.finish("x").unwrap();
    }

    #[test]
    fn tpm2b_round_trip_and_truncation() {
        let mut out = Vec::new();
        put_tpm2b(&mut out, b"abc", "t").unwrap();
        assert_eq!(out, [0, 3, b'a', b'b', b'c']);
        assert_eq!(Reader::new(&out).tpm2b("t").unwrap(), b"abc");
        assert_eq!(
            Reader::new(&out[..4]).tpm2b("t"),
            Err(Error::Truncated { what: "t" })
        );
        assert_eq!(tpm2b(b"abc", "t").unwrap(), out);
        assert_eq!(tpm2b_body(&out, "t").unwrap(), b"abc");
        assert_eq!(
            tpm2b_body(&out[..4], "t"),
            Err(Error::Truncated { what: "t" })
        );
        let mut longer = out.clone();
        longer.push(0);
        assert_eq!(
            tpm2b_body(&longer, "t"),
            Err(Error::TrailingBytes { what: "t" })
        );
        assert_eq!(tpm2b_body(&[0], "t"), Err(Error::Truncated { what: "t" }));
        let long = vec![0u8; 70_000];
        assert_eq!(
            put_tpm2b(&mut Vec::new(), &long, "t"),
            Err(Error::TooLong {
                what: "t",
                len: 70_000,
                max: 65_535
            })
        );
        assert!(tpm2b(&long, "t").is_err());
    }
}
