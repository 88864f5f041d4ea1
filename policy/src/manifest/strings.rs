//! The manifest's checked text: [`Identity`], [`Sha256Hex`] and [`SlotName`] (string
//! newtypes that can only hold valid values and (de)serialise as plain JSON strings) and
//! [`Timestamp`] (RFC 3339 in UTC).

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Defines a string newtype that can only hold values `$check` accepts; it
/// (de)serialises as a plain JSON string.
macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $check:path, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                if $check(&value) {
                    Ok(Self(value))
                } else {
                    Err(format!("not {}: {value:?}", $what))
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(value: &str) -> Result<Self, String> {
                Self::try_from(value.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

/// Whether `s` is 64 lowercase hex characters (a SHA-256 digest in docs/protocol.md hex).
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `s` is a slot name: `^[a-z][a-z0-9_]{0,63}$`.
pub fn is_slot_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && s.len() <= 64
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

checked_string!(
    /// An identity (docs/protocol.md): lowercase hex of the SHA-256 of a TLS client certificate's
    /// SubjectPublicKeyInfo, 64 characters.
    Identity,
    is_sha256_hex,
    "an identity (64 lowercase hex characters)"
);

checked_string!(
    /// A SHA-256 digest as 64 lowercase hex characters (e.g. a function measurement).
    Sha256Hex,
    is_sha256_hex,
    "a SHA-256 digest (64 lowercase hex characters)"
);

checked_string!(
    /// A slot name: `^[a-z][a-z0-9_]{0,63}$`.
    SlotName,
    is_slot_name,
    "a slot name ([a-z][a-z0-9_]{0,63})"
);

impl Sha256Hex {
    /// The digest's 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        // The constructor admits only 64 hex characters, so this cannot fail; should it,
        // the all-zero digest matches no real measurement.
        if hex::decode_to_slice(&self.0, &mut out).is_err() {
            out = [0u8; 32];
        }
        out
    }
}

/// A point in time from a manifest: RFC 3339, UTC, written with `Z` (docs/protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// Parses an RFC 3339 timestamp that ends in `Z`.
    ///
    /// # Errors
    /// A message saying why the text is not such a timestamp.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.ends_with('Z') || text.as_bytes().get(10) != Some(&b'T') {
            return Err(format!(
                "timestamp {text:?} must be RFC 3339 in UTC, like 2026-10-01T00:00:00Z (with 'T' and ending in 'Z')"
            ));
        }
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map(Self)
            .map_err(|e| format!("timestamp {text:?} is not RFC 3339: {e}"))
    }

    /// The time as a `time::OffsetDateTime` (offset UTC).
    pub fn get(&self) -> OffsetDateTime {
        self.0
    }

    /// A timestamp from an `OffsetDateTime`, converted to UTC.
    pub fn from_datetime(at: OffsetDateTime) -> Self {
        Self(at.to_offset(time::UtcOffset::UTC))
    }

    /// RFC 3339 text with `Z`, e.g. `2026-10-01T00:00:00Z`.
    pub fn to_rfc3339(&self) -> String {
        // Formatting a UTC time with a four-digit year as RFC 3339 cannot fail; years
        // outside 0..=9999 do not parse in the first place.
        self.0
            .to_offset(time::UtcOffset::UTC)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    }
}

impl TryFrom<String> for Timestamp {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<Timestamp> for String {
    fn from(value: Timestamp) -> String {
        value.to_rfc3339()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}
