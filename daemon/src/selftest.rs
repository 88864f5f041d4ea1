//! `arbiterd tpm-selftest`: exercises every part of the TPM layer once on a real TPM (or on
//! a private swtpm it starts) and checks each answer in software, printing what a person
//! needs to see and the files that `tpm2_checkquote` checks independently.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use arbiter_policy::{PcrSelection, verify_certify, verify_quote};
use sha2::{Digest as _, Sha256};

use crate::swtpm::{ProvisionedState, Swtpm, SwtpmError};
use crate::tpm::{SealedKey, Tpm, TpmConfig, TpmError};

/// What the self-test needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The TPM to use; ignored with `dev_swtpm`.
    pub config: TpmConfig,
    /// Start and provision a private swtpm instead of using `config.tcti`.
    pub dev_swtpm: bool,
    /// Where to write the quote files (`ak.pem`, `attest.bin`, `signature.bin`, `pcrs.bin`).
    pub out_dir: PathBuf,
}

/// Why the self-test failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SelftestError {
    /// The TPM layer failed.
    #[error(transparent)]
    Tpm(#[from] TpmError),
    /// The private swtpm could not be started.
    #[error(transparent)]
    Swtpm(#[from] SwtpmError),
    /// Evidence did not verify.
    #[error("evidence did not verify: {0}")]
    Evidence(#[from] arbiter_policy::Error),
    /// A check failed.
    #[error("check failed: {0}")]
    Check(String),
    /// Writing output failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), SelftestError> {
    std::fs::write(path, bytes).map_err(|source| SelftestError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn say(out: &mut dyn Write, line: String) -> Result<(), SelftestError> {
    writeln!(out, "{line}").map_err(|source| SelftestError::Io {
        path: "stdout".into(),
        source,
    })
}

/// Runs the self-test, printing each step to `out`.
pub async fn run(options: Options, out: &mut dyn Write) -> Result<(), SelftestError> {
    std::fs::create_dir_all(&options.out_dir).map_err(|source| SelftestError::Io {
        path: options.out_dir.display().to_string(),
        source,
    })?;
    let mut config = options.config.clone();
    // Kept alive until the end: dropping it kills swtpm.
    let _swtpm = if options.dev_swtpm {
        let dir = options.out_dir.join("swtpm");
        let state = ProvisionedState::provision(&dir)?;
        let tpm = Swtpm::start(&state.state_dir)?;
        config.tcti = tpm.tcti();
        say(out, format!("started a private swtpm: {}", config.tcti))?;
        Some(tpm)
    } else {
        None
    };
    let tpm = Tpm::open(config.clone())?;

    let ak = tpm.attestation_key().await?;
    let ak_pem = ak.public_pem()?;
    say(
        out,
        format!(
            "attestation key {:#010x}, name {}",
            ak.handle,
            hex::encode(&ak.name)
        ),
    )?;
    say(out, ak_pem.trim_end().to_owned())?;

    for ek in tpm.endorsement_keys().await? {
        say(
            out,
            format!(
                "endorsement key {}: {} byte public area, certificate {}",
                ek.alg.as_str(),
                ek.tpm2b_public.len(),
                ek.cert_der
                    .as_ref()
                    .map_or("absent".to_owned(), |c| format!("{} bytes", c.len()))
            ),
        )?;
    }

    let statement = tpm.ensure_statement_key().await?;
    let nonce = tpm.random(32).await?;
    let cert = tpm.certify_statement_key(nonce.clone()).await?;
    verify_certify(
        &cert.attest,
        &cert.signature,
        &ak.public,
        &statement.public,
        &nonce,
    )?;
    let digest: [u8; 32] = Sha256::digest(b"arbiter tpm-selftest").into();
    let signature = tpm.sign(digest).await?;
    let key = statement.public.p256_verifying_key()?;
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    key.verify_prehash(&digest, &signature.to_p256()?)
        .map_err(|_| {
            SelftestError::Check("the statement key's signature does not verify".into())
        })?;
    say(
        out,
        format!(
            "statement key {:#010x}, name {}: certified by the AK, signature verified",
            statement.handle,
            hex::encode(&statement.name)
        ),
    )?;

    let index = match tpm.sealing_index().await? {
        Some(index) => index,
        None => tpm.define_sealing_index(SealedKey::generate(0)).await?,
    };
    let sealed = tpm.read_sealing_key().await?;
    say(
        out,
        format!(
            "sealing index {:#010x}, name {}, epoch {}: read back under the sealed PCR state",
            index.nv_public.index,
            hex::encode(&index.name),
            sealed.epoch()
        ),
    )?;

    let app = PcrSelection::new([config.application_pcr])?;
    let before = tpm.pcr_read(app.clone()).await?;
    let measurement: [u8; 32] = Sha256::digest(b"arbiter tpm-selftest measurement").into();
    tpm.pcr_extend(config.application_pcr, measurement).await?;
    let after = tpm.pcr_read(app).await?;
    let old = before
        .get(&config.application_pcr)
        .copied()
        .unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(old);
    hasher.update(measurement);
    let expected: [u8; 32] = hasher.finalize().into();
    if after.get(&config.application_pcr) != Some(&expected) {
        return Err(SelftestError::Check(format!(
            "PCR {} is not sha256(old || digest) after the extend",
            config.application_pcr
        )));
    }
    say(
        out,
        format!(
            "extended PCR {} -> {}",
            config.application_pcr,
            hex::encode(expected)
        ),
    )?;

    let selection = config.quote_selection()?;
    let nonce = tpm.random(32).await?;
    let quote = tpm.quote(selection.clone(), nonce.clone()).await?;
    let attest = verify_quote(
        &quote.attest,
        &quote.signature,
        &ak.public,
        &nonce,
        &quote.pcrs,
    )?;
    say(
        out,
        format!(
            "quote over PCRs {:?} with nonce {}: verified (reset count {}, restart count {})",
            selection.pcrs(),
            hex::encode(&nonce),
            attest.clock_info.reset_count,
            attest.clock_info.restart_count
        ),
    )?;

    let dir = &options.out_dir;
    write_file(&dir.join("ak.pem"), ak_pem.as_bytes())?;
    write_file(&dir.join("attest.bin"), &quote.attest)?;
    write_file(&dir.join("signature.bin"), &quote.signature)?;
    let values: Vec<u8> = quote.pcrs.values().flatten().copied().collect();
    write_file(&dir.join("pcrs.bin"), &values)?;
    let list = selection
        .pcrs()
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let args = [
        "-u".to_owned(),
        dir.join("ak.pem").display().to_string(),
        "-m".to_owned(),
        dir.join("attest.bin").display().to_string(),
        "-s".to_owned(),
        dir.join("signature.bin").display().to_string(),
        "-f".to_owned(),
        dir.join("pcrs.bin").display().to_string(),
        "-l".to_owned(),
        format!("sha256:{list}"),
        "-g".to_owned(),
        "sha256".to_owned(),
        "-q".to_owned(),
        hex::encode(&nonce),
    ];
    say(
        out,
        format!("independent check: tpm2_checkquote {}", args.join(" ")),
    )?;
    let mut checkquote = Command::new("tpm2_checkquote");
    checkquote
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match crate::tpm::spawn_without_tpm(|| checkquote.spawn())
        .and_then(std::process::Child::wait_with_output)
    {
        Ok(o) if o.status.success() => say(
            out,
            "tpm2_checkquote: signature, nonce and PCR digest OK".into(),
        )?,
        Ok(o) => {
            return Err(SelftestError::Check(format!(
                "tpm2_checkquote refused the quote: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )));
        }
        Err(_) => say(
            out,
            "tpm2_checkquote is not installed (apt-get install tpm2-tools); skipped".into(),
        )?,
    }
    say(out, "TPM self-test passed".into())?;
    Ok(())
}
