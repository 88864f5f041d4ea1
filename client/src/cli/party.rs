//! The party commands: thin wrappers that resolve the settings, open a session, call the
//! library ([`arbiter_client::party`], [`arbiter_client::verify`]) and print for people
//! (or JSON for machines).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use arbiter_client::config::{Overrides, Settings};
use arbiter_client::http::PartyIdentity;
use arbiter_client::party;
use arbiter_client::session::Session;
use arbiter_client::trust::{write_atomic, write_new_private};
use arbiter_client::verify::{self, Attestation, UNPINNED_PLATFORM_WARNING};
use serde_json::{Value, json};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn session(o: Overrides) -> anyhow::Result<Session> {
    Ok(Session::open(Settings::resolve(o)?)?)
}

fn policy_of(s: &Session) -> anyhow::Result<arbiter_policy::appraisal::AppraisalPolicy> {
    Ok(verify::session_policy(s, None)?)
}

/// Says out loud, on `err`, that a trusted verdict rests on no reference value for the
/// platform.
fn warn_unpinned(unpinned: bool, err: &mut dyn Write) -> anyhow::Result<()> {
    if unpinned {
        writeln!(err, "{UNPINNED_PLATFORM_WARNING}")?;
    }
    Ok(())
}

/// Pretty JSON, through a `Value` so that keys print sorted, as they always have.
fn pretty<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_default()
}

/// Prints an attestation's verdict for people.
fn print_verdict(a: &Attestation, out: &mut dyn Write) -> anyhow::Result<()> {
    let v = &a.verdict;
    let ap = &v.appraised;
    if v.trusted {
        writeln!(
            out,
            "TRUSTED: the attestation passed every check of the policy"
        )?;
        if ap.unpinned_platform {
            writeln!(out, "{UNPINNED_PLATFORM_WARNING}")?;
        }
    } else {
        writeln!(out, "NOT TRUSTED: {} reason(s)", v.reasons.len())?;
        for r in &v.reasons {
            writeln!(out, "  - {r}")?;
        }
    }
    writeln!(out, "  nonce:          {} (fresh: {})", a.nonce, v.fresh)?;
    writeln!(out, "  TLS key:        {}", a.tls_spki_sha256)?;
    if let Some(name) = &ap.ak_name {
        writeln!(out, "  AK:             {}", hex::encode(name))?;
    }
    if let Some(c) = &v.as_of {
        writeln!(
            out,
            "  TPM clock:      {} ms, reset {} restart {}",
            c.clock, c.reset_count, c.restart_count
        )?;
    }
    if let Some(p) = &ap.platform_pcrs {
        writeln!(out, "  platform PCRs:  {:?}", p.pcrs())?;
    }
    if let Some(g) = ap.log_generation {
        writeln!(out, "  log generation: {g}")?;
    }
    if let Some(version) = &ap.daemon_version {
        // The version is the daemon's own string: escaped, so it cannot drive the terminal.
        writeln!(
            out,
            "  daemon:         version {}, started {} time(s) in this log generation",
            version.escape_debug(),
            ap.daemon_starts
        )?;
    }
    if let Some(exe) = &ap.daemon_executable_sha256 {
        writeln!(
            out,
            "  executable:     {} (SHA-256 as the daemon reports it)",
            hex::encode(exe)
        )?;
    }
    for f in &ap.functions {
        writeln!(out, "  function:       {}", hex::encode(f))?;
    }
    if let Some(m) = &ap.manifest_sha256 {
        writeln!(out, "  manifest:       {}", hex::encode(m))?;
    }
    if let Some(f) = &ap.function_sha256 {
        writeln!(out, "  instance runs:  {}", hex::encode(f))?;
    }
    Ok(())
}

/// `arbiter identity new`.
pub fn identity_new(dir: &Path, name: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if key.exists() {
        bail!(
            "{} exists: refusing to overwrite an identity",
            key.display()
        );
    }
    let id = PartyIdentity::generate(name)?;
    // The key first, created 0600 and never over an existing file (whatever the umask,
    // there is no moment in which it is readable by others); then its certificate.
    write_new_private(&key, id.key_pem().as_bytes())?;
    write_atomic(&cert, id.cert_pem().as_bytes())?;
    writeln!(out, "{}", id.identity()?)?;
    Ok(())
}

/// `arbiter identity show`.
pub fn identity_show(o: Overrides, out: &mut dyn Write) -> anyhow::Result<()> {
    let settings = Settings::resolve(o)?;
    let id = arbiter_client::session::load_identity(&settings)?;
    writeln!(out, "{}", id.identity()?)?;
    Ok(())
}

/// `arbiter health`.
pub fn health(o: Overrides, out: &mut dyn Write) -> anyhow::Result<()> {
    let s = session(o)?;
    let r = runtime()?.block_on(s.get("/healthz"))?;
    let health: arbiter_proto::api::Health = r.answer("GET /healthz")?;
    writeln!(out, "{} answers: {}", s.settings.server, json!(health))?;
    writeln!(out, "  its TLS key: {}", r.server_spki_sha256)?;
    match s.trust.server(&s.settings.server)?.attested_tls_spki {
        Some(k) if k == r.server_spki_sha256 => {
            writeln!(out, "  the same TLS key as the last trusted attestation")?
        }
        Some(k) => writeln!(
            out,
            "  NOTE: the last trusted attestation bound TLS key {k}; attest again before trusting this one"
        )?,
        None => writeln!(out, "  no trusted attestation of this server yet")?,
    }
    Ok(())
}

/// `arbiter fleet status` and `arbiter fleet clear-revocation`.
pub fn fleet(o: Overrides, clear: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let s = session(o)?;
    let r = if clear {
        runtime()?.block_on(party::clear_fleet_revocation(&s))?
    } else {
        runtime()?.block_on(party::fleet_revocation(&s))?
    };
    match (r.revoked, clear) {
        (None, false) => writeln!(out, "not revoked by the fleet verifier")?,
        (None, true) => writeln!(out, "nothing to clear: not revoked by the fleet verifier")?,
        (Some(v), false) => writeln!(
            out,
            "REVOKED by the fleet verifier since {} ({}): {}",
            v.since.escape_debug(),
            v.source.escape_debug(),
            v.reason.escape_debug()
        )?,
        (Some(v), true) => writeln!(
            out,
            "cleared the revocation of {} ({}): {}",
            v.since.escape_debug(),
            v.source.escape_debug(),
            v.reason.escape_debug()
        )?,
    }
    Ok(())
}

/// `arbiter enroll`.
pub fn enroll(o: Overrides, cas: &[PathBuf], out: &mut dyn Write) -> anyhow::Result<()> {
    let s = session(o)?;
    let cas = arbiter_client::enroll::read_cas(cas)?;
    let e = runtime()?.block_on(arbiter_client::enroll::enroll(&s, &cas))?;
    for (alg, outcome) in &e.eks {
        match outcome {
            Ok(path) => writeln!(
                out,
                "EK {alg}: certificate chain {} verified; key and TCG template match; credential activated",
                path.join(" <- ")
            )?,
            Err(reason) => writeln!(out, "EK {alg}: refused: {reason}")?,
        }
    }
    writeln!(
        out,
        "AK {} bound to EK {} and pinned for {}",
        e.ak_name, e.ek_alg, s.settings.server
    )?;
    writeln!(out, "  trust store: {}", s.trust.dir().display())?;
    Ok(())
}

/// `arbiter attest`.
pub fn attest(
    o: Overrides,
    instance: Option<&str>,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let s = session(o)?;
    let policy = policy_of(&s)?;
    let a = runtime()?.block_on(verify::attest(&s, &policy, instance))?;
    if json {
        writeln!(out, "{}", pretty(&a.to_json()))?;
        warn_unpinned(verify::trusted_unpinned(&a.verdict), err)?;
    } else {
        print_verdict(&a, out)?;
    }
    // A daemon that cannot unseal its secrets in this platform state (docs/protocol.md) says so
    // beside the quote. The claim is unsigned, but it only ever makes the answer "no".
    if let Some(reason) = a.answer()?.sealing.unavailable.as_deref() {
        let reason = reason.escape_debug();
        if !json {
            writeln!(
                out,
                "NOT USABLE: the appliance is degraded and refuses everything that needs a secret: {reason}"
            )?;
        }
        bail!("the appliance is not usable: {reason}");
    }
    // Keylime's verifier found the platform failing (docs/fleet.md): the daemon refuses
    // inputs and evaluations until an operator clears it. Unsigned too; it only says "no".
    if let Some(r) = a.answer()?.fleet_revoked.as_ref() {
        let reason = r.reason.escape_debug();
        if !json {
            writeln!(
                out,
                "NOT USABLE: revoked by the fleet verifier: {reason} (since {}); the appliance \
                 refuses inputs and evaluations until its operator clears it",
                r.since.escape_debug()
            )?;
        }
        bail!("the appliance is not usable: revoked by the fleet verifier: {reason}");
    }
    if !a.verdict.trusted {
        bail!("not trusted");
    }
    Ok(())
}

/// `arbiter function register`.
pub fn function_register(
    o: Overrides,
    file: &Path,
    name: Option<String>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let s = session(o)?;
    let name = name.unwrap_or_else(|| {
        file.file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "function".into())
    });
    let f = runtime()?.block_on(party::register_function(&s, file, &name))?;
    writeln!(out, "registered function {}", f.id)?;
    writeln!(
        out,
        "  measurement (sha256 of the source, checked): {}",
        f.sha256
    )?;
    Ok(())
}

/// `arbiter function list` (and `arbiter functions`).
pub fn function_list(o: Overrides, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let s = session(o)?;
    let list = runtime()?.block_on(party::list_functions(&s))?;
    if json {
        writeln!(out, "{}", pretty(&list))?;
        return Ok(());
    }
    for f in &list {
        let kind = if f.library { "library" } else { "registered" };
        writeln!(out, "{}  {}  {}  {kind}", f.name, f.sha256, f.id)?;
        if let Some(d) = &f.description {
            writeln!(out, "    {d}")?;
        }
    }
    Ok(())
}

/// `arbiter function show`.
pub fn function_show(
    o: Overrides,
    id: &str,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let s = session(o)?;
    let f = runtime()?.block_on(party::show_function(&s, id))?;
    if json {
        writeln!(out, "{}", pretty(&f))?;
        return Ok(());
    }
    writeln!(out, "function {} `{}`", id, f.name)?;
    writeln!(
        out,
        "  sha256 {} (recomputed from the source below: matches)",
        f.sha256
    )?;
    if f.library {
        writeln!(
            out,
            "  shipped library function, registered at start at {}",
            f.registered_at
        )?;
    } else {
        writeln!(
            out,
            "  registered by {} at {}",
            f.registered_by, f.registered_at
        )?;
    }
    if let Some(d) = &f.description {
        writeln!(out, "  {d}")?;
    }
    writeln!(out, "----")?;
    write!(out, "{}", f.source)?;
    if !f.source.ends_with('\n') {
        writeln!(out)?;
    }
    Ok(())
}

/// `arbiter instance create`.
pub fn instance_create(
    o: Overrides,
    manifest: &Path,
    quiet: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let s = session(o)?;
    let i = runtime()?.block_on(party::create_instance(&s, manifest))?;
    let id = i.id.as_str();
    if quiet {
        writeln!(out, "{id}")?;
    } else {
        writeln!(out, "created instance {id}")?;
        writeln!(out, "  manifest_sha256 {} (checked)", i.manifest_sha256)?;
        writeln!(out, "  function        {}", i.function_sha256)?;
        // The state quoted, as JSON, as it has always printed.
        writeln!(out, "  state {} round {}", json!(i.state), i.round)?;
    }
    Ok(())
}

/// `arbiter instance show`.
pub fn instance_show(o: Overrides, id: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let s = session(o)?;
    let i = runtime()?.block_on(party::show_instance(&s, id))?;
    writeln!(out, "{}", pretty(&i))?;
    Ok(())
}

/// Prints an upgrade status: the authorization, then one line per live instance.
fn print_upgrade(u: &arbiter_proto::api::UpgradeStatus, out: &mut dyn Write) -> anyhow::Result<()> {
    match &u.authorized {
        Some(a) => writeln!(
            out,
            "upgrade authorized by {} at {}{}",
            a.by,
            a.at,
            if a.forced { " (forced)" } else { "" }
        )?,
        None => writeln!(out, "no upgrade authorized")?,
    }
    writeln!(out, "{} live instance(s)", u.live_instances.len())?;
    for i in &u.live_instances {
        writeln!(
            out,
            "  {} {:<10} {} {}",
            i.id,
            i.state,
            i.created_at,
            i.name.escape_debug()
        )?;
    }
    Ok(())
}

/// `arbiter upgrade status`.
pub fn upgrade_status(o: Overrides, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let s = session(o)?;
    let u = runtime()?.block_on(party::upgrade_status(&s))?;
    if json {
        writeln!(out, "{}", pretty(&u))?;
    } else {
        print_upgrade(&u, out)?;
    }
    Ok(())
}

/// `arbiter upgrade authorize`.
pub fn upgrade_authorize(o: Overrides, force: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let s = session(o)?;
    let u = runtime()?.block_on(party::authorize_upgrade(&s, force))?;
    print_upgrade(&u, out)
}

/// `arbiter upgrade withdraw`.
pub fn upgrade_withdraw(o: Overrides, out: &mut dyn Write) -> anyhow::Result<()> {
    let s = session(o)?;
    let u = runtime()?.block_on(party::withdraw_upgrade(&s))?;
    match &u.authorized {
        Some(a) => writeln!(
            out,
            "withdrawn: the upgrade authorized by {} at {}",
            a.by, a.at
        )?,
        None => writeln!(out, "no upgrade was authorized")?,
    }
    Ok(())
}

/// `arbiter instance approve`.
pub fn instance_approve(o: Overrides, id: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let s = session(o)?;
    let r = runtime()?.block_on(party::approve_instance(&s, id))?;
    writeln!(out, "approved instance {id}: {}", json!(r))?;
    Ok(())
}

/// `arbiter instance evaluate`.
pub fn instance_evaluate(o: Overrides, id: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let s = session(o)?;
    let r = runtime()?.block_on(party::evaluate_instance(&s, id))?;
    writeln!(out, "evaluation of instance {id} requested: {}", json!(r))?;
    Ok(())
}

/// The arguments of `arbiter submit`.
pub struct SubmitArgs<'a> {
    /// The instance.
    pub instance: &'a str,
    /// The slot.
    pub slot: &'a str,
    /// The input as JSON text.
    pub value: Option<String>,
    /// A file holding the input.
    pub file: Option<PathBuf>,
    /// The reviewed function measurement.
    pub expect_function: &'a str,
    /// No progress.
    pub quiet: bool,
}

/// Shows upload progress on stderr: one line redrawn on a terminal, otherwise a line at
/// each quarter.
fn progress_reporter() -> Arc<arbiter_client::http::Progress> {
    use std::io::IsTerminal as _;
    let terminal = std::io::stderr().is_terminal();
    let shown = Mutex::new(None::<u64>);
    Arc::new(move |sent: u64, total: u64| {
        let percent = (sent.saturating_mul(100)).checked_div(total).unwrap_or(100);
        let step = if terminal { percent } else { percent / 25 * 25 };
        let mut last = shown.lock().unwrap_or_else(|p| p.into_inner());
        if *last == Some(step) || (!terminal && step == 0 && last.is_some()) {
            return;
        }
        *last = Some(step);
        let mut err = std::io::stderr().lock();
        let line = format!("uploading: {sent} / {total} bytes ({percent}%)");
        let _ = if terminal {
            write!(err, "\r{line}{}", if sent >= total { "\n" } else { "" })
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    })
}

/// `arbiter submit`.
pub fn submit(o: Overrides, a: SubmitArgs<'_>, out: &mut dyn Write) -> anyhow::Result<()> {
    let SubmitArgs {
        instance,
        slot,
        value,
        file,
        expect_function,
        quiet,
    } = a;
    let bytes = match (value, file) {
        (Some(v), _) => zeroize::Zeroizing::new(v.into_bytes()),
        (None, Some(f)) => {
            zeroize::Zeroizing::new(std::fs::read(&f).with_context(|| f.display().to_string())?)
        }
        (None, None) => bail!("give the input with --value JSON or --file FILE"),
    };
    let s = session(o)?;
    let policy = policy_of(&s)?;
    let progress = (!quiet).then(progress_reporter);
    let r = runtime()?
        .block_on(party::submit_with_progress(
            &s,
            &policy,
            instance,
            slot,
            &bytes,
            expect_function,
            progress,
        ))
        .map_err(|e| match e {
            arbiter_client::ClientError::Server { status: 413, .. } => anyhow::Error::new(e)
                .context(format!(
                    "the input ({} bytes of JSON) is larger than the instance allows; nothing \
                     was stored",
                    bytes.len()
                )),
            arbiter_client::ClientError::Server { status: 503, .. } => anyhow::Error::new(e)
                .context(
                    "the daemon is busy receiving other inputs; nothing was stored, retry \
                          in a few seconds",
                ),
            other => anyhow::Error::new(other),
        })?;
    writeln!(
        out,
        "attested: trusted (nonce {}, TLS key {})",
        r.attestation.nonce, r.attestation.tls_spki_sha256
    )?;
    // The submission's output is for people only: the warning goes with it.
    warn_unpinned(verify::trusted_unpinned(&r.attestation.verdict), out)?;
    writeln!(
        out,
        "submitted slot `{}` round {} of instance {instance}",
        r.receipt.slot, r.receipt.round
    )?;
    writeln!(
        out,
        "  receipt ciphertext_sha256 {} (recomputed: matches)",
        r.receipt.ciphertext_sha256
    )?;
    writeln!(out, "  accepted at {}", r.receipt.accepted_at)?;
    Ok(())
}

/// `arbiter result`.
pub fn result(
    o: Overrides,
    id: &str,
    wait: bool,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let s = session(o)?;
    let policy = policy_of(&s)?;
    let r = runtime()?.block_on(party::result(&s, &policy, id, if wait { 300 } else { 0 }))?;
    warn_unpinned(verify::trusted_unpinned(&r.attestation.verdict), err)?;
    if json {
        let v = serde_json::to_value(&r.statement)?;
        writeln!(
            out,
            "{}",
            pretty(&serde_json::json!({"verified": true, "statement": v, "jws": r.jws}))
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "result of instance {id}, round {}: {}",
        r.statement.round, r.statement.output
    )?;
    writeln!(
        out,
        "  signature: verified against the statement key certified by the pinned AK"
    )?;
    writeln!(
        out,
        "  function {}  manifest {}",
        r.statement.function_sha256, r.statement.manifest_sha256
    )?;
    writeln!(
        out,
        "  inputs used: {} ({} of ours checked by receipt)",
        r.statement.inputs.len(),
        r.own_inputs_checked
    )?;
    writeln!(
        out,
        "  evaluated at {}",
        r.statement.evaluated_at.to_rfc3339()
    )?;
    Ok(())
}

fn print_destruction(
    r: &party::VerifiedDestruction,
    id: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    warn_unpinned(r.unpinned_platform, err)?;
    writeln!(
        out,
        "instance {id} destroyed at {}",
        r.statement.destroyed_at.to_rfc3339()
    )?;
    writeln!(
        out,
        "  certificate signature: verified against the certified statement key"
    )?;
    writeln!(
        out,
        "  inputs destroyed: {} ({} of ours checked by receipt)",
        r.statement.inputs_count, r.own_inputs_checked
    )?;
    writeln!(
        out,
        "  inputs root {}: every receipt of ours is included under it",
        r.statement.inputs_root
    )?;
    writeln!(
        out,
        "  instance_destroyed is record {} of log generation {} ({} attested log); sealing epoch {} retired",
        r.statement.instance_destroyed_recnum,
        r.statement.log_generation,
        r.log_source,
        r.statement.epoch_retired
    )?;
    Ok(())
}

/// `arbiter destroy`.
pub fn destroy(
    o: Overrides,
    id: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let s = session(o)?;
    let policy = policy_of(&s)?;
    let r = runtime()?.block_on(party::destroy(&s, &policy, id))?;
    print_destruction(&r, id, out, err)
}

/// `arbiter verify-destruction`.
pub fn verify_destruction(
    o: Overrides,
    id: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let s = session(o)?;
    let policy = policy_of(&s)?;
    let r = runtime()?.block_on(party::verify_destruction(&s, &policy, id))?;
    print_destruction(&r, id, out, err)
}

/// `arbiter bundle`.
pub fn bundle(
    o: Overrides,
    id: &str,
    file: &Path,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let s = session(o)?;
    let policy = policy_of(&s)?;
    let (b, a) = runtime()?.block_on(arbiter_client::bundle::collect(&s, &policy, id))?;
    warn_unpinned(verify::trusted_unpinned(&a.verdict), err)?;
    write_atomic(file, serde_json::to_string_pretty(&b)?.as_bytes())?;
    writeln!(
        out,
        "wrote {} (result: {}, certificate of destruction: {})",
        file.display(),
        if b["result"].is_string() { "yes" } else { "no" },
        if b["destruction"].is_string() {
            "yes"
        } else {
            "no"
        }
    )?;
    Ok(())
}

/// `arbiter verify-bundle`.
pub fn verify_bundle(
    o: Overrides,
    file: &Path,
    cas: &[PathBuf],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let settings = Settings::resolve(o)?;
    let text = std::fs::read(file).with_context(|| file.display().to_string())?;
    let b: Value = serde_json::from_slice(&text).with_context(|| file.display().to_string())?;
    let mut policy = match &settings.policy {
        Some(p) => verify::read_policy(p)?,
        None => arbiter_policy::appraisal::AppraisalPolicy::default(),
    };
    policy.allow_unpinned_platform |= settings.allow_unpinned_platform;
    let server = b["server"].as_str().unwrap_or_default();
    let trust = arbiter_client::trust::TrustStore::new(&settings.state);
    let policy = verify::with_enrolled_ak(policy, &trust.server(server)?)?;
    let cas = if cas.is_empty() {
        None
    } else {
        Some(arbiter_client::enroll::read_cas(cas)?)
    };
    let r = arbiter_client::bundle::verify(&b, &policy, cas.as_deref())?;
    warn_unpinned(verify::trusted_unpinned(&r.verdict), err)?;
    for c in &r.checks {
        writeln!(out, "  - {c}")?;
    }
    match &r.verdict.as_of {
        Some(c) => writeln!(
            out,
            "VERIFIED as of TPM clock {} ms (reset {}, restart {}) of the newest quote; not fresh: no nonce of ours",
            c.clock, c.reset_count, c.restart_count
        )?,
        None => writeln!(out, "VERIFIED")?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use arbiter_policy::appraisal::{Appraised, Verdict};

    use super::*;

    #[test]
    fn the_verdict_for_people_names_the_running_daemon() {
        let a = Attestation {
            verdict: Verdict {
                trusted: true,
                reasons: vec![],
                as_of: None,
                fresh: true,
                appraised: Appraised {
                    log_generation: Some(2),
                    daemon_version: Some("0.2.0\u{1b}[2J".into()),
                    daemon_executable_sha256: Some([0x62; 32]),
                    daemon_starts: 3,
                    ..Appraised::default()
                },
            },
            evidence: Value::Null,
            nonce: "00".into(),
            tls_spki_sha256: "5e".repeat(32),
            instance_id: None,
        };
        let mut out = Vec::new();
        print_verdict(&a, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                "  daemon:         version 0.2.0\\u{1b}[2J, started 3 time(s) in this log generation\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "  executable:     {} (SHA-256 as the daemon reports it)\n",
                "62".repeat(32)
            )),
            "{text}"
        );
    }

    #[test]
    fn a_trusted_verdict_without_reference_values_says_so() {
        let mut a = Attestation {
            verdict: Verdict {
                trusted: true,
                reasons: vec![],
                as_of: None,
                fresh: true,
                appraised: Appraised {
                    unpinned_platform: true,
                    ..Appraised::default()
                },
            },
            evidence: Value::Null,
            nonce: "00".into(),
            tls_spki_sha256: "5e".repeat(32),
            instance_id: None,
        };
        let mut out = Vec::new();
        print_verdict(&a, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(&format!("TRUSTED: the attestation passed every check of the policy\n{UNPINNED_PLATFORM_WARNING}\n")),
            "{text}"
        );
        let mut err = Vec::new();
        warn_unpinned(verify::trusted_unpinned(&a.verdict), &mut err).unwrap();
        assert_eq!(
            String::from_utf8(err).unwrap(),
            format!("{UNPINNED_PLATFORM_WARNING}\n")
        );
        // Pinned: no warning.
        a.verdict.appraised.unpinned_platform = false;
        let mut out = Vec::new();
        print_verdict(&a, &mut out).unwrap();
        assert!(!String::from_utf8(out).unwrap().contains("WARNING"));
        let mut err = Vec::new();
        warn_unpinned(verify::trusted_unpinned(&a.verdict), &mut err).unwrap();
        assert!(err.is_empty());
    }
}
