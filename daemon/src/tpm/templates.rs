//! The public-area templates of the keys Arbiter creates, and the sealing index's public
//! area: the one place their attributes are written down (docs/protocol.md).

use arbiter_policy::{NvAttributes, NvPublic, PolicyDigest};
use tss_esapi::{
    attributes::ObjectAttributesBuilder,
    interface_types::{algorithm::HashingAlgorithm, algorithm::PublicAlgorithm, ecc::EccCurve},
    structures::{
        Digest, EccPoint, EccScheme, HashScheme, KeyDerivationFunctionScheme, Public,
        PublicBuilder, PublicEccParametersBuilder, SymmetricDefinitionObject,
    },
};

use super::error::{TpmError, command};

/// Size of the sealing index's data: `key[32] || epoch (u64, big-endian)`.
pub const SEALING_DATA_SIZE: u16 = 40;

/// An ECC P-256 ECDSA-SHA256 signing key template; `restricted` for the AK, and with
/// `user_with_auth` or an `auth_policy` as the key's role needs; `no_da` exempts it from
/// the TPM's dictionary-attack protection.
fn signing_key(
    restricted: bool,
    user_with_auth: bool,
    auth_policy: Option<&PolicyDigest>,
    no_da: bool,
) -> Result<Public, TpmError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(user_with_auth)
        .with_admin_with_policy(false)
        .with_no_da(no_da)
        .with_restricted(restricted)
        .with_decrypt(false)
        .with_sign_encrypt(true)
        .build()
        .map_err(command("building key attributes"))?;
    let params = PublicEccParametersBuilder::new()
        .with_ecc_scheme(EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)))
        .with_curve(EccCurve::NistP256)
        .with_is_signing_key(true)
        .with_is_decryption_key(false)
        .with_restricted(restricted)
        .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
        .with_symmetric(SymmetricDefinitionObject::Null)
        .build()
        .map_err(command("building key parameters"))?;
    let mut builder = PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(params)
        .with_ecc_unique_identifier(EccPoint::default());
    if let Some(policy) = auth_policy {
        builder = builder.with_auth_policy(
            Digest::try_from(policy.as_bytes().to_vec()).map_err(command("policy digest"))?,
        );
    }
    builder.build().map_err(command("building a key template"))
}

/// The attestation key: restricted ECC P-256 ECDSA-SHA256, fixedTPM, fixedParent,
/// sensitiveDataOrigin, userWithAuth, noDA, adminWithPolicy clear, no policy.
///
/// noDA: its authValue is empty, so dictionary-attack protection guards no secret, while a
/// DA-protected key used before a power loss costs one of the TPM's few allowed failures
/// and a lockout stops every quote (docs/protocol.md, "The TPM objects").
pub fn attestation_key() -> Result<Public, TpmError> {
    signing_key(true, true, None, true)
}

/// The attestation key as releases before noDA created it (the same template with noDA
/// clear): still accepted at the persistent handle, so an AK that parties pinned survives
/// the upgrade.
pub fn attestation_key_da_protected() -> Result<Public, TpmError> {
    signing_key(true, true, None, false)
}

/// The statement key: unrestricted ECC P-256 ECDSA-SHA256, userWithAuth and adminWithPolicy
/// clear, noDA (as the AK: its ADMIN role's authValue is empty), `authPolicy` =
/// PolicyPCR(platform) then PolicyCommandCode(TPM2_Sign).
pub fn statement_key(policy: &PolicyDigest) -> Result<Public, TpmError> {
    signing_key(false, false, Some(policy), true)
}

/// The statement key as releases before noDA created it, still accepted (see
/// [`attestation_key_da_protected`]).
pub fn statement_key_da_protected(policy: &PolicyDigest) -> Result<Public, TpmError> {
    signing_key(false, false, Some(policy), false)
}

/// The storage primary key used only to salt sessions: the TCG SRK template (ECC P-256,
/// restricted decrypt, AES-128-CFB, noDA).
pub fn salt_key() -> Result<Public, TpmError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()
        .map_err(command("building SRK attributes"))?;
    let params = PublicEccParametersBuilder::new()
        .with_ecc_scheme(EccScheme::Null)
        .with_curve(EccCurve::NistP256)
        .with_is_signing_key(false)
        .with_is_decryption_key(true)
        .with_restricted(true)
        .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
        .with_symmetric(SymmetricDefinitionObject::AES_128_CFB)
        .build()
        .map_err(command("building SRK parameters"))?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(params)
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .map_err(command("building the SRK template"))
}

/// The sealing index's public area as docs/protocol.md fixes it: nameAlg SHA-256, attributes
/// exactly
/// `POLICYREAD | POLICYWRITE | NO_DA` (plus `WRITTEN` once written), `authPolicy` =
/// PolicyPCR over the platform set, 40 bytes of data.
pub fn sealing_index(index: u32, policy: &PolicyDigest, written: bool) -> NvPublic {
    let mut bits = NvAttributes::POLICYREAD.0 | NvAttributes::POLICYWRITE.0 | NvAttributes::NO_DA.0;
    if written {
        bits |= NvAttributes::WRITTEN.0;
    }
    NvPublic {
        index,
        name_alg: arbiter_policy::tpm::TPM_ALG_SHA256,
        attributes: NvAttributes(bits),
        auth_policy: policy.as_bytes().to_vec(),
        data_size: SEALING_DATA_SIZE,
    }
}
