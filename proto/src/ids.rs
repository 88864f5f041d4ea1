//! Validated identifiers and digests, parsed once at the edge: instance and function ids
//! (32 lowercase hex characters, 128 random bits), identities (64 lowercase hex characters,
//! the SHA-256 of a certificate's SubjectPublicKeyInfo) and SHA-256 digests (64 lowercase
//! hex characters). Each serializes as its text and refuses any other text when parsed.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ProtoError;

/// Whether `s` is exactly `len` lowercase hex characters.
fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The regular expression (for the API document) of `len` lowercase hex characters.
pub(crate) fn hex_pattern(len: usize) -> String {
    format!("^[0-9a-f]{{{len}}}$")
}

macro_rules! hex_text_id {
    ($(#[$doc:meta])* $name:ident, $len:expr, $what:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The number of hex characters.
            pub const LEN: usize = $len;

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id's text, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = ProtoError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if is_lower_hex(s, $len) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(ProtoError::Malformed {
                        what: $what,
                        text: s.chars().take(80).collect(),
                    })
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = ProtoError;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                if is_lower_hex(&s, $len) {
                    Ok(Self(s))
                } else {
                    s.parse()
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
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

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::try_from(s).map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "pattern": hex_pattern($len),
                    "description": $what,
                })
            }
        }
    };
}

hex_text_id!(
    /// An instance id: 128 random bits as 32 lowercase hex characters.
    InstanceId,
    32,
    "an instance id (32 lowercase hex characters)"
);

hex_text_id!(
    /// A function id: 128 random bits as 32 lowercase hex characters.
    FunctionId,
    32,
    "a function id (32 lowercase hex characters)"
);

hex_text_id!(
    /// An identity: lowercase hex of the SHA-256 of a TLS certificate's
    /// SubjectPublicKeyInfo (64 characters).
    IdentityId,
    64,
    "an identity (64 lowercase hex characters: the SHA-256 of a certificate's SubjectPublicKeyInfo)"
);

/// A SHA-256 digest: 32 bytes, 64 lowercase hex characters on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// The digest's bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", hex::encode(self.0))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl FromStr for Sha256Digest {
    type Err = ProtoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || ProtoError::Malformed {
            what: "a SHA-256 digest (64 lowercase hex characters)",
            text: s.chars().take(80).collect(),
        };
        if !is_lower_hex(s, 64) {
            return Err(malformed());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| malformed())?;
        Ok(Self(out))
    }
}

impl PartialEq<str> for Sha256Digest {
    fn eq(&self, other: &str) -> bool {
        other.parse::<Sha256Digest>().is_ok_and(|o| o == *self)
    }
}

impl PartialEq<&str> for Sha256Digest {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl From<[u8; 32]> for Sha256Digest {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl From<Sha256Digest> for arbiter_measured_boot::cel::Sha256Digest {
    fn from(d: Sha256Digest) -> Self {
        Self(d.0)
    }
}

impl From<arbiter_measured_boot::cel::Sha256Digest> for Sha256Digest {
    fn from(d: arbiter_measured_boot::cel::Sha256Digest) -> Self {
        Self(d.0)
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Sha256Digest {
    fn schema_name() -> Cow<'static, str> {
        "Sha256Digest".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": hex_pattern(64),
            "description": "a SHA-256 digest (64 lowercase hex characters)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_exactly_lowercase_hex_of_their_length() {
        let id = "0123456789abcdef".repeat(2);
        assert_eq!(
            id.parse::<InstanceId>().map(|i| i.into_string()),
            Ok(id.clone())
        );
        assert!(id.parse::<FunctionId>().is_ok());
        assert!(id.to_uppercase().parse::<InstanceId>().is_err());
        assert!(id[..31].parse::<InstanceId>().is_err());
        assert!(format!("{id}0").parse::<InstanceId>().is_err());
        assert!("g".repeat(32).parse::<InstanceId>().is_err());
        assert!(id.parse::<IdentityId>().is_err());
        assert!(id.repeat(2).parse::<IdentityId>().is_ok());
    }

    #[test]
    fn digests_round_trip_as_lowercase_hex() {
        let text = "ab".repeat(32);
        let d: Sha256Digest = text.parse().unwrap_or(Sha256Digest([0; 32]));
        assert_eq!(d.0, [0xab; 32]);
        assert_eq!(d.to_string(), text);
        assert_eq!(serde_json::to_string(&d).ok(), Some(format!("\"{text}\"")));
        assert!(serde_json::from_str::<Sha256Digest>(&format!("\"{}\"", "AB".repeat(32))).is_err());
        assert!(serde_json::from_str::<Sha256Digest>("\"abcd\"").is_err());
        assert!(d == text.as_str());
    }

    #[test]
    fn json_refuses_malformed_ids() {
        assert!(serde_json::from_str::<InstanceId>("\"nope\"").is_err());
        assert!(serde_json::from_str::<InstanceId>("17").is_err());
        let ok = format!("\"{}\"", "a".repeat(32));
        assert_eq!(
            serde_json::from_str::<FunctionId>(&ok)
                .map(|f| f.to_string())
                .ok(),
            Some("a".repeat(32))
        );
    }
}
