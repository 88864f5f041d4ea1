//! Unit tests over real firmware logs: a capture is a policy with the boot chain, Secure
//! Boot and systemd-boot command lines are captured, and a comparison reports each match
//! and mismatch.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use arbiter_policy::appraisal::AppraisalPolicy;

use super::compare::set_of;
use super::*;

fn fixture(name: &str) -> EventLog {
    let path = format!(
        "{}/../measured-boot/testdata/eventlogs/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    EventLog::from_bytes(&std::fs::read(path).unwrap()).unwrap()
}

/// A capture of a machine booted as a real firmware log says.
fn captured(name: &str) -> (String, EventLog) {
    let log = fixture(name);
    let banks = log.replay().unwrap();
    let platform = vec![0u8, 2, 4, 7, 9];
    let pcrs = platform
        .iter()
        .map(|&i| {
            let v: [u8; 32] = banks
                .get(HashAlg::Sha256, u32::from(i))
                .map_or([0u8; 32], |v| v.try_into().unwrap());
            (i, v)
        })
        .collect();
    let input = CaptureInput {
        server: "https://appliance.example:8443".into(),
        ak_name: Some(format!("000b{}", "5a".repeat(32))),
        platform_pcrs: platform,
        pcrs,
        firmware_log: Some(log.clone()),
        executables: [[0x5e; 32]].into(),
        functions: [[0x57; 32]].into(),
    };
    (render_capture(&input), log)
}

#[test]
fn a_capture_from_a_real_log_is_a_policy_with_the_boot_chain() {
    let (text, log) = captured("coreos_36_shielded_vm_no_secure_boot_eventlog.bin");
    let policy = AppraisalPolicy::from_toml(&text).unwrap();
    assert!(policy.pins_platform(None), "{text}");
    let apps = policy
        .firmware
        .as_ref()
        .unwrap()
        .boot_applications
        .as_ref()
        .unwrap();
    // shim and GRUB, the two EFI applications PCR 4 measured.
    assert_eq!(apps.len(), 2, "{text}");
    assert!(
        text.contains("shimx64.efi") && text.contains("grubx64.efi"),
        "{text}"
    );
    for name in ["SecureBoot", "PK", "KEK", "db", "dbx"] {
        assert!(text.contains(&format!("#   {name:<10} sha256 ")), "{text}");
    }
    // Secure Boot is off on this VM: not required, and said so.
    assert!(!policy.firmware.as_ref().unwrap().secure_boot);
    assert!(text.contains("Secure Boot is DISABLED"), "{text}");
    let cmdlines = captured_cmdlines(&text);
    assert_eq!(cmdlines.len(), 1, "{text}");
    // GRUB measures it into PCR 8, outside the default platform set: said so.
    assert!(
        text.contains("# measured in PCR 8, which is NOT in the platform set"),
        "{text}"
    );
    assert!(cmdlines[0].contains("ostree=/ostree/boot"), "{cmdlines:?}");
    assert_eq!(policy.executable_sha256, Some([[0x5e; 32]].into()));
    // The same input, the same text.
    assert_eq!(
        text,
        captured("coreos_36_shielded_vm_no_secure_boot_eventlog.bin").0
    );

    // Explained by the log: every event of each pinned PCR, the replay matching.
    let lines = explain(&policy, Some(&log));
    let text = lines.join("\n");
    assert!(text.contains("PCR 4 (boot manager"), "{text}");
    assert!(text.contains("EV_EFI_BOOT_SERVICES_APPLICATION"), "{text}");
    assert!(text.contains("EV_EFI_VARIABLE_DRIVER_CONFIG"), "{text}");
    assert_eq!(
        text.matches(": matches the pin").count(),
        policy.pcrs.len(),
        "{text}"
    );
    assert!(!text.contains("NOT the pinned value"), "{text}");
    assert!(
        text.contains("loaded (PCR 4):") && text.contains("shimx64.efi"),
        "{text}"
    );
    // Without the log, nothing can be explained.
    let text = explain(&policy, None).join("\n");
    assert_eq!(
        text.matches("cannot be explained without the firmware log")
            .count(),
        policy.pcrs.len() + apps.len(),
        "{text}"
    );
    // Another machine's log does not explain these values.
    let other = fixture("event-arch-linux.bin");
    let text = explain(&policy, Some(&other)).join("\n");
    assert!(text.contains("NOT the pinned value"), "{text}");
}

#[test]
fn secure_boot_and_systemd_boot_command_lines_are_captured() {
    let (text, _) = captured("sb_cert_eventlog.bin");
    let policy = AppraisalPolicy::from_toml(&text).unwrap();
    assert!(policy.firmware.as_ref().unwrap().secure_boot, "{text}");
    let (text, _) = captured("event-sd-boot-fedora37.bin");
    assert_eq!(
        captured_cmdlines(&text),
        vec!["console=ttyS0 console=tty0 efi=debug".to_owned()],
        "{text}"
    );
}

#[test]
fn compare_reports_each_match_and_mismatch() {
    let (text, _) = captured("coreos_36_shielded_vm_no_secure_boot_eventlog.bin");
    let policy = AppraisalPolicy::from_toml(&text).unwrap();
    let apps: Vec<String> = set_of(
        policy
            .firmware
            .as_ref()
            .unwrap()
            .boot_applications
            .as_ref()
            .unwrap(),
    )
    .into_iter()
    .collect();
    let cmdline = captured_cmdlines(&text).remove(0);
    let pcr4 = hex::encode(policy.pcrs[&4].first().unwrap());
    let reference = ReferenceValues::from_toml(&format!(
        "image = \"coreos 36\"\nboot_applications = [\"{}\", \"{}\"]\nkernel_cmdline = {}\nsecure_boot = false\nexecutable_sha256 = [\"{}\"]\n[pcrs]\n4 = \"{pcr4}\"\n",
        apps[0],
        apps[1],
        toml_string(&cmdline),
        "5e".repeat(32)
    ))
    .unwrap();
    let result = compare(&policy, &text, &reference);
    assert_eq!(result.len(), 5, "{result:?}");
    assert!(result.iter().all(|c| c.matches), "{result:?}");

    let mismatching = ReferenceValues {
        boot_applications: Some(vec![apps[0].clone(), "ab".repeat(32)]),
        kernel_cmdline: Some("root=/dev/sda1".into()),
        secure_boot: Some(true),
        pcrs: [("4".to_owned(), "cd".repeat(32))].into(),
        ..reference
    };
    let result = compare(&policy, &text, &mismatching);
    let failed: Vec<&str> = result
        .iter()
        .filter(|c| !c.matches)
        .map(|c| c.what.as_str())
        .collect();
    assert_eq!(
        failed,
        [
            "boot_applications",
            "secure_boot",
            "kernel_cmdline",
            "pcrs.4"
        ],
        "{result:?}"
    );
    let apps_detail = &result[0].detail;
    assert!(
        apps_detail.contains(&"ab".repeat(32)) && apps_detail.contains(&apps[1]),
        "{apps_detail}"
    );
    for bad in [
        "boot_applications = [\"xyz\"]",
        "colour = 1",
        "[pcrs]\n24 = \"0000000000000000000000000000000000000000000000000000000000000000\"",
    ] {
        assert!(ReferenceValues::from_toml(bad).is_err(), "{bad}");
    }
}
