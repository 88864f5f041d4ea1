//! `arbiter policy capture|explain|compare`: write an appraisal policy from a fresh,
//! checked attestation for a person to review; explain each pinned value by the firmware
//! events that produce it; compare a captured policy with reference values published from
//! the image's build. The logic is in [`arbiter_client::reference`]; this module reads and
//! writes the files and prints.

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, bail};
use arbiter_client::config::{Overrides, Settings};
use arbiter_client::reference::{self, CaptureInput, ReferenceValues};
use arbiter_client::session::Session;
use arbiter_client::trust::write_atomic;
use arbiter_client::verify;
use arbiter_measured_boot::firmware::EventLog;
use arbiter_policy::appraisal::AppraisalPolicy;

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// `arbiter policy capture --out FILE [--log-out FILE]`.
pub fn capture(
    o: Overrides,
    file: &Path,
    log_out: Option<&Path>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let s = Session::open(Settings::resolve(o)?)?;
    // Every check of `attest` with the enrolled AK; only reference values are not asked
    // for: capturing them is the point.
    let policy = verify::with_enrolled_ak(
        AppraisalPolicy {
            allow_unpinned_platform: true,
            ..AppraisalPolicy::default()
        },
        &s.trust.server(&s.settings.server)?,
    )?;
    let a = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(verify::attest(&s, &policy, None))?;
    let input = CaptureInput::of(&s.settings.server, &a)?;
    let text = reference::render_capture(&input);
    AppraisalPolicy::from_toml(&text).context("the captured policy does not read back")?;
    write_atomic(file, text.as_bytes())?;
    writeln!(
        out,
        "wrote {} from a fresh attestation (nonce {}, TLS key {}): REVIEW IT before use",
        file.display(),
        a.nonce,
        a.tls_spki_sha256
    )?;
    writeln!(
        out,
        "  platform PCRs {:?}; {} pinned to a non-zero value",
        input.platform_pcrs,
        input.pcrs.values().filter(|v| **v != [0u8; 32]).count()
    )?;
    match (&input.firmware_log, log_out) {
        (Some(_), Some(path)) => {
            let evidence = arbiter_policy::evidence::Evidence::from_value(a.evidence.clone())?;
            if let Some(bytes) = evidence.firmware_log {
                write_atomic(path, &bytes.0)?;
                writeln!(out, "  firmware log saved to {}", path.display())?;
            }
        }
        (Some(_), None) => writeln!(
            out,
            "  firmware log served: boot applications, Secure Boot and command line captured"
        )?,
        (None, _) => writeln!(
            out,
            "  no firmware log served: only PCR values captured (they cannot be explained)"
        )?,
    }
    if !input.pcrs.values().any(|v| *v != [0u8; 32]) && input.firmware_log.is_none() {
        writeln!(
            out,
            "  WARNING: every platform PCR is zero (a TPM with no firmware, e.g. swtpm): this policy pins no reference value and is refused unless it allows an unpinned platform"
        )?;
    }
    Ok(())
}

/// `arbiter policy explain FILE [--log FIRMWARE_LOG]`.
pub fn explain(file: &Path, log: Option<&Path>, out: &mut dyn Write) -> anyhow::Result<()> {
    let policy = AppraisalPolicy::from_toml(&read_text(file)?)
        .with_context(|| file.display().to_string())?;
    let log = log
        .map(|p| {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            EventLog::from_bytes(&bytes).with_context(|| format!("parsing {}", p.display()))
        })
        .transpose()?;
    for line in reference::explain(&policy, log.as_ref()) {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// `arbiter policy compare FILE --reference REF.toml`: exits non-zero on any mismatch.
pub fn compare(file: &Path, reference_file: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let text = read_text(file)?;
    let policy = AppraisalPolicy::from_toml(&text).with_context(|| file.display().to_string())?;
    let reference = ReferenceValues::from_toml(&read_text(reference_file)?)
        .with_context(|| reference_file.display().to_string())?;
    let results = reference::compare(&policy, &text, &reference);
    if results.is_empty() {
        bail!(
            "{} gives no reference value to compare",
            reference_file.display()
        );
    }
    if let Some(image) = &reference.image {
        writeln!(out, "reference: {}", image.escape_debug())?;
    }
    for c in &results {
        writeln!(
            out,
            "{} {}: {}",
            if c.matches { "MATCH   " } else { "MISMATCH" },
            c.what,
            c.detail
        )?;
    }
    let bad = results.iter().filter(|c| !c.matches).count();
    if bad > 0 {
        bail!("{bad} of {} reference value(s) do not match", results.len());
    }
    writeln!(out, "every reference value matches ({})", results.len())?;
    Ok(())
}
