//! The shipped systemd integration, checked with systemd's own tools (no systemd running is
//! needed): the unit's exposure score from `systemd-analyze security --offline=true` stays at
//! 1.5 or below, `systemd-analyze verify` has nothing to say about it, every directive carries
//! a comment (on its line or on its group), and the sysusers.d, tmpfiles.d and udev files
//! agree with the unit on who the daemon is: the group `arbiter` owns the TPM device and
//! reads the configuration, nobody else. The Debian package's metadata ships these files
//! where systemd and udev read them, and `arbiterd live-instances`, which the package's
//! purge obeys, never reports an unreadable store as empty.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arbiter_tests::daemon::arbiterd_path;

/// The highest exposure score the unit may have.
const MAX_EXPOSURE: f64 = 1.5;

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging")
}

fn unit_path() -> PathBuf {
    packaging().join("arbiterd.service")
}

fn unit_text() -> String {
    std::fs::read_to_string(unit_path()).expect("reading packaging/arbiterd.service")
}

/// Runs a systemd tool, failing with a hint when it is not installed.
fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "")
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e} (install systemd: `make deps`)"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The score of the last line, `→ Overall exposure level for arbiterd.service: 1.3 OK 🙂`.
fn exposure(stdout: &str) -> f64 {
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .expect("systemd-analyze security printed nothing");
    let (_, after) = last
        .split_once("Overall exposure level for ")
        .unwrap_or_else(|| panic!("no exposure level in the last line: {last:?}"));
    let (_, score) = after
        .split_once(": ")
        .unwrap_or_else(|| panic!("no score in {last:?}"));
    let score = score.split_whitespace().next().unwrap_or_default();
    score
        .parse()
        .unwrap_or_else(|e| panic!("score {score:?} in {last:?}: {e}"))
}

#[test]
fn the_exposure_score_is_at_most_1_5() {
    let path = unit_path();
    let out = run(
        "systemd-analyze",
        &["security", "--offline=true", path.to_str().unwrap()],
    );
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "systemd-analyze security failed ({}):\n{stdout}{}",
        out.status,
        text(&out.stderr)
    );
    let score = exposure(&stdout);
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} is above {MAX_EXPOSURE}; what counts:\n{}",
        stdout
            .lines()
            .filter(|l| l.starts_with('✗'))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn systemd_analyze_verify_finds_nothing() {
    // verify checks that ExecStart's binary exists: the same unit, pointed at the one built.
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_text();
    assert!(unit.contains("ExecStart=/usr/bin/arbiterd "), "{unit}");
    let unit = unit.replace(
        "ExecStart=/usr/bin/arbiterd ",
        &format!("ExecStart={} ", arbiterd_path().display()),
    );
    let copy = dir.path().join("arbiterd.service");
    std::fs::write(&copy, unit).unwrap();
    let out = run(
        "systemd-analyze",
        &["verify", "--man=no", copy.to_str().unwrap()],
    );
    // Unknown keys and unparsable values are warnings with exit status 0: any output fails.
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify ({}):\n{said}",
        out.status
    );
}

#[test]
fn every_directive_of_the_unit_is_commented() {
    let unit = unit_text();
    let mut commented = false;
    let mut bare = Vec::new();
    let mut directives = 0;
    for (n, line) in unit.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('#') {
            commented = true;
        } else if line.is_empty() || line.starts_with('[') {
            // A blank line or a section header ends a group and its comment.
            commented = false;
        } else {
            directives += 1;
            if !commented && !line.contains(" # ") {
                bare.push(format!("{}: {line}", n + 1));
            }
        }
    }
    assert!(
        directives > 40,
        "{directives} directives: is this the unit?"
    );
    assert!(
        bare.is_empty(),
        "directives without a comment:\n{}",
        bare.join("\n")
    );
}

/// The values of `key=` in the unit.
fn directive<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_unit_runs_as_arbiter_and_reads_the_boot_id() {
    let unit = unit_text();
    assert_eq!(directive(&unit, "User"), ["arbiter"]);
    assert_eq!(directive(&unit, "Group"), ["arbiter"]);
    // The TPM is the group's own (udev), not shared through tss.
    assert!(directive(&unit, "SupplementaryGroups").is_empty());
    // ProcSubset=pid would hide /proc/sys/kernel/random/boot_id from daemon_started.
    assert!(directive(&unit, "ProcSubset").is_empty());
    // systemd 252 has no tpm2.target; the device unit does exist.
    let after = directive(&unit, "After");
    assert!(!after.concat().contains("tpm2.target"), "{after:?}");
    assert!(directive(&unit, "Wants").is_empty());
    assert_eq!(directive(&unit, "BindsTo"), ["dev-tpmrm0.device"]);
    assert!(after.concat().contains("dev-tpmrm0.device"), "{after:?}");
    assert_eq!(directive(&unit, "DeviceAllow"), ["/dev/tpmrm0 rw"]);
}

#[test]
fn the_udev_rule_gives_the_tpm_to_arbiter_only() {
    let rules = std::fs::read_to_string(packaging().join("60-arbiter-tpm.rules")).unwrap();
    let rule: Vec<&str> = rules
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(rule.len(), 1, "one rule: {rule:?}");
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for token in rule[0].split(", ") {
        // KEY OP "VALUE" with OP one of == != = += := (udev(7)).
        let at = token
            .find(['=', '!', '+', ':'])
            .unwrap_or_else(|| panic!("no operator in {token:?}"));
        let (key, rest) = token.split_at(at);
        let op_len = rest
            .find('"')
            .unwrap_or_else(|| panic!("unquoted: {token:?}"));
        let (op, value) = rest.split_at(op_len);
        assert!(
            ["==", "!=", "=", "+=", ":="].contains(&op),
            "operator {op:?} in {token:?}"
        );
        assert!(
            value.len() >= 2 && value.ends_with('"'),
            "value of {token:?}"
        );
        keys.push((key.into(), op.into(), value[1..value.len() - 1].into()));
    }
    let has = |k: &str, o: &str, v: &str| keys.iter().any(|(a, b, c)| a == k && b == o && c == v);
    assert!(has("KERNEL", "==", "tpmrm[0-9]*"), "{keys:?}");
    assert!(has("SUBSYSTEM", "==", "tpmrm"), "{keys:?}");
    // ":=" so that 60-tpm-udev.rules (GROUP="tss", read after this file) cannot undo it.
    assert!(has("GROUP", ":=", "arbiter"), "{keys:?}");
    assert!(has("MODE", ":=", "0660"), "{keys:?}");
    assert_eq!(keys.len(), 4, "nothing else: {keys:?}");
}

/// Runs systemd-sysusers and systemd-tmpfiles on the shipped files in a scratch root: the
/// user and group arbiter are created, and (as root, which chown needs) the configuration
/// ends up root:arbiter, directory 0750 and file 0640.
#[test]
fn sysusers_and_tmpfiles_create_the_user_and_the_config_permissions() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    let sysusers = packaging().join("sysusers.d/arbiter.conf");
    let tmpfiles = packaging().join("tmpfiles.d/arbiter.conf");
    let root = tempfile::tempdir().unwrap();
    let root_arg = format!("--root={}", root.path().display());
    std::fs::create_dir(root.path().join("etc")).unwrap();

    let out = run(
        "systemd-sysusers",
        &["--dry-run", &root_arg, sysusers.to_str().unwrap()],
    );
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "systemd-sysusers --dry-run:\n{said}");
    assert!(said.contains("Creating group 'arbiter'"), "{said}");
    assert!(said.contains("Creating user 'arbiter'"), "{said}");

    // /proc/self belongs to the effective user.
    let euid = std::fs::metadata("/proc/self").unwrap().uid();
    if euid != 0 {
        // systemd-tmpfiles has no --dry-run on systemd 252 and chown needs root: the
        // lines themselves, then.
        let lines = std::fs::read_to_string(&tmpfiles).unwrap();
        let lines: Vec<Vec<&str>> = lines
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines,
            [
                ["d", "/etc/arbiter", "0750", "root", "arbiter", "-"],
                [
                    "z",
                    "/etc/arbiter/arbiterd.toml",
                    "0640",
                    "root",
                    "arbiter",
                    "-"
                ],
            ]
        );
        return;
    }

    let out = run("systemd-sysusers", &[&root_arg, sysusers.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "systemd-sysusers:\n{}",
        text(&out.stderr)
    );
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    let gid: u32 = group
        .lines()
        .find_map(|l| l.strip_prefix("arbiter:x:"))
        .and_then(|rest| rest.split(':').next())
        .expect("group arbiter in etc/group")
        .parse()
        .unwrap();
    // The package ships the file; tmpfiles sets its owner and mode.
    std::fs::create_dir(root.path().join("etc/arbiter")).unwrap();
    let config = root.path().join("etc/arbiter/arbiterd.toml");
    std::fs::copy(packaging().join("arbiterd.toml"), &config).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();

    let out = run(
        "systemd-tmpfiles",
        &[&root_arg, "--create", tmpfiles.to_str().unwrap()],
    );
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-tmpfiles:\n{said}"
    );
    for (path, mode) in [(root.path().join("etc/arbiter"), 0o750), (config, 0o640)] {
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (0, gid, mode),
            "{}",
            path.display()
        );
    }
}

/// The Debian package's metadata (`[package.metadata.deb]` in daemon/Cargo.toml) names files
/// that exist, installs the unit, sysusers, tmpfiles and udev files where systemd and udev
/// read them, keeps the configuration as a conffile, and its maintainer scripts parse
/// (`sh -n`). The package itself is built and installed by `make package-test`.
#[test]
fn the_package_metadata_ships_the_packaging_files_and_scripts_that_parse() {
    let daemon = Path::new(env!("CARGO_MANIFEST_DIR")).join("../daemon");
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(daemon.join("Cargo.toml")).unwrap()).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    assert_eq!(deb["name"].as_str(), Some("arbiter"));
    let assets: Vec<(String, String)> = deb["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_array().unwrap();
            (
                a[0].as_str().unwrap().to_owned(),
                a[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (source, _) in &assets {
        if !source.starts_with("target/") {
            assert!(daemon.join(source).exists(), "asset {source} is missing");
        }
    }
    let dest = |source: &str| {
        assets
            .iter()
            .find(|(s, _)| s == source)
            .map(|(_, d)| d.as_str())
            .unwrap_or_else(|| panic!("{source} is not packaged"))
    };
    assert_eq!(dest("target/release/arbiterd"), "usr/bin/");
    assert_eq!(dest("target/release/arbiter"), "usr/bin/");
    assert_eq!(
        dest("../packaging/arbiterd.service"),
        "usr/lib/systemd/system/arbiterd.service"
    );
    assert_eq!(
        dest("../packaging/sysusers.d/arbiter.conf"),
        "usr/lib/sysusers.d/arbiter.conf"
    );
    assert_eq!(
        dest("../packaging/tmpfiles.d/arbiter.conf"),
        "usr/lib/tmpfiles.d/arbiter.conf"
    );
    assert_eq!(
        dest("../packaging/60-arbiter-tpm.rules"),
        "usr/lib/udev/rules.d/60-arbiter-tpm.rules"
    );
    assert_eq!(
        dest("../packaging/arbiterd.toml"),
        "etc/arbiter/arbiterd.toml"
    );
    let conf_files: Vec<&str> = deb["conf-files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(conf_files, ["/etc/arbiter/arbiterd.toml"]);
    // The unit's Documentation= names files the package installs.
    for url in directive(&unit_text(), "Documentation")
        .iter()
        .flat_map(|v| v.split_whitespace())
    {
        let path = url.strip_prefix("file:///").expect("a file:// URL");
        assert!(
            assets.iter().any(|(_, d)| d == path),
            "Documentation={url} is not installed by the package"
        );
    }
    let scripts = deb["maintainer-scripts"].as_str().unwrap();
    for script in ["postinst", "prerm", "postrm"] {
        let path = daemon.join(scripts).join(script);
        let out = run("sh", &["-n", path.to_str().unwrap()]);
        assert!(out.status.success(), "{script}: {}", text(&out.stderr));
    }
}

/// `arbiterd live-instances`, which the package's removal records and its purge obeys:
/// nothing and exit 0 without a store, one line per instance not destroyed, and exit 74
/// (never "nothing live") for a store it cannot read.
#[test]
fn live_instances_lists_what_is_not_destroyed_and_fails_on_an_unreadable_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("arbiterd.toml");
    std::fs::write(&config, "").unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let list = || {
        Command::new(arbiterd_path())
            .args(["live-instances", "--config"])
            .arg(&config)
            .arg("--state-dir")
            .arg(&state)
            .output()
            .unwrap()
    };

    let out = list();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = arbiter_daemon::store::Store::open(&state).unwrap();
        store.close().await;
    });
    let db = rusqlite::Connection::open(state.join("arbiter.db")).unwrap();
    // Instances without their function rows: enough for the listing.
    db.execute_batch("PRAGMA foreign_keys = OFF;").unwrap();
    for (id, status) in [("a1", "destroyed"), ("b2", "evaluated")] {
        db.execute(
            "INSERT INTO instances (id, manifest_json, manifest_sha256, function_id, \
             function_sha256, public_key, created_by, created_at, state, round, evaluations) \
             VALUES (?1, '{}', 'm', 'f', 'fs', x'00', 'me', '2026-01-01T00:00:00Z', ?2, 0, 0)",
            rusqlite::params![id, status],
        )
        .unwrap();
    }
    drop(db);
    let out = list();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "b2 evaluated 2026-01-01T00:00:00Z\n");

    for f in ["arbiter.db-wal", "arbiter.db-shm"] {
        let _ = std::fs::remove_file(state.join(f));
    }
    std::fs::write(
        state.join("arbiter.db"),
        b"not a database, not empty either",
    )
    .unwrap();
    let out = list();
    assert_eq!(out.status.code(), Some(74), "{}", text(&out.stderr));
}
