//! Writes the seeds of the targets whose valid inputs need a key (`hpke_envelope`,
//! `jws_statement`): input bodies sealed to the fixed instance key and statements signed
//! by the fixed statement key, exactly as the CLI seals and the daemon signs. Run from
//! `fuzz/`: `cargo run --example make_seeds`.

use std::fs;

use arbiter_fuzz::{
    INPUT_CONTEXT, PLAINTEXT, destruction_certificate, input_leaves, instance_keys,
    result_statement, sign_statement,
};
use arbiter_policy::hpke;
use arbiter_policy::jws::{Statement, inclusion_of};
use base64::Engine as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    fs::create_dir_all("seeds/hpke_envelope")?;
    let (_, public) = instance_keys();
    for (name, plain, expect) in [
        ("submit.json", PLAINTEXT.to_vec(), None),
        (
            "submit_expect_function.json",
            PLAINTEXT.to_vec(),
            Some(INPUT_CONTEXT.function_sha256),
        ),
    ] {
        let (enc, ct) = hpke::seal(&public, &INPUT_CONTEXT, &plain)?;
        let mut body = serde_json::json!({"enc": b64.encode(enc), "ciphertext": b64.encode(ct)});
        if let Some(f) = expect {
            body["expect_function_sha256"] = f.into();
        }
        fs::write(
            format!("seeds/hpke_envelope/{name}"),
            serde_json::to_vec(&body)?,
        )?;
    }
    fs::create_dir_all("seeds/jws_statement")?;
    let result = Statement::Result(result_statement());
    let destruction = Statement::Destruction(destruction_certificate());
    fs::write("seeds/jws_statement/result.jws", sign_statement(&result))?;
    fs::write(
        "seeds/jws_statement/destruction.jws",
        sign_statement(&destruction),
    )?;
    fs::write(
        "seeds/jws_statement/result_payload.json",
        serde_json::to_vec(&result.to_value())?,
    )?;
    fs::write(
        "seeds/jws_statement/destruction_payload.json",
        serde_json::to_vec(&destruction.to_value())?,
    )?;
    let leaves = input_leaves();
    for i in 0..leaves.len() {
        fs::write(
            format!("seeds/jws_statement/inclusion_{i}.json"),
            serde_json::to_vec(&inclusion_of(&leaves, i)?)?,
        )?;
    }
    captured_policies()?;
    Ok(())
}

/// `arbiter policy capture` output for machines booted as real firmware logs say, and
/// reference values that match the first.
fn captured_policies() -> Result<(), Box<dyn std::error::Error>> {
    use arbiter_client::reference::{CaptureInput, captured_cmdlines, render_capture};
    use arbiter_measured_boot::HashAlg;
    use arbiter_measured_boot::firmware::EventLog;
    fs::create_dir_all("seeds/appraisal_policy")?;
    for (i, name) in [
        "coreos_36_shielded_vm_no_secure_boot_eventlog.bin",
        "event-sd-boot-fedora37.bin",
        "sb_cert_eventlog.bin",
    ]
    .iter()
    .enumerate()
    {
        let log = EventLog::from_bytes(&fs::read(format!(
            "../measured-boot/testdata/eventlogs/{name}"
        ))?)?;
        let banks = log.replay()?;
        let platform = vec![0u8, 2, 4, 7, 9];
        let pcrs = platform
            .iter()
            .map(|&i| {
                let v = banks
                    .get(HashAlg::Sha256, u32::from(i))
                    .and_then(|v| <[u8; 32]>::try_from(v).ok())
                    .unwrap_or([0; 32]);
                (i, v)
            })
            .collect();
        let text = render_capture(&CaptureInput {
            server: "https://appliance.example:8443".into(),
            ak_name: Some(
                "000b7e45e974fe064dc9fc3e5fefadb6671bb22c033f9d76e46dff6f04ccc22e5ebc".into(),
            ),
            platform_pcrs: platform,
            pcrs,
            firmware_log: Some(log),
            executables: [[0x5e; 32]].into(),
            functions: [[0x57; 32]].into(),
        });
        fs::write(format!("seeds/appraisal_policy/captured_{i}.toml"), &text)?;
        if i == 0 {
            let cmdline = captured_cmdlines(&text)
                .into_iter()
                .next()
                .unwrap_or_default();
            let reference = format!(
                "image = \"coreos 36\"\nkernel_cmdline = {}\nsecure_boot = false\nexecutable_sha256 = [\"{}\"]\nfunctions = [\"{}\"]\n",
                toml::Value::String(cmdline),
                "5e".repeat(32),
                "57".repeat(32),
            );
            fs::write("seeds/appraisal_policy/reference.toml", reference)?;
        }
    }
    Ok(())
}
