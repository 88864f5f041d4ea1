//! Disk faults under load (`arbiter_tests::fault_load`: three workers creating instances,
//! submitting inputs, evaluating, destroying, registering functions and attesting against
//! `arbiterd run` on a real swtpm), the state directory being a filesystem of its own,
//! mounted by the test (it runs as root):
//!
//! - **Full**: a 24 MiB tmpfs, filled by a filler file to a few hundred KiB of headroom that
//!   the load then uses up. Every refusal must be 507 `disk_full` naming the full disk,
//!   whether the store, the measurement log or the spool hit it; the filler is removed and,
//!   without restarting the daemon, the load must complete again.
//! - **Read-only**: a loop-mounted ext4 image (`errors=remount-ro`) that the kernel turns
//!   read-only under load (`/sys/fs/ext4/DEV/trigger_fs_error`, as it does on an I/O error).
//!   Every refusal must be 503 `storage_unavailable` with `Retry-After`, naming the
//!   read-only filesystem; attestations keep answering. The operator's recovery: stop the
//!   daemon, `e2fsck`, mount again, start it. Requests in flight when the filesystem failed
//!   may go either way (its `fsync` answers do not hold across the failure:
//!   docs/reliability.md); they are resolved from what is there and reported.
//!
//! After each, with the daemon stopped and again after a restart: every acknowledged input,
//! instance, function and destruction is there; nothing refused was stored;
//! `PRAGMA integrity_check` is `ok`; no instance is left `evaluating` or `destroying`; every
//! evaluated instance's signed result is the hash of the values sent; the on-disk and the
//! served measurement logs replay to PCR 23; a party's appraisal trusts the appliance.
//! Without the right to mount (not root, no loop devices) the test prints why and passes.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Instant;

use arbiter_tests::TestTpm;
use arbiter_tests::fault_load::{
    check_running, check_stopped, log_replays, logged_events, report, setup, start_workers,
    stop_workers, store_integrity, wait_for,
};
use hyper::StatusCode;

/// The refusals a full or read-only state directory explains: 507 `disk_full` or 503
/// `storage_unavailable` with `Retry-After`, the message naming the problem.
fn storage_refusal(
    _what: &str,
    status: StatusCode,
    code: &str,
    message: &str,
    retry_after: bool,
) -> Result<(), String> {
    match (status, code) {
        (StatusCode::INSUFFICIENT_STORAGE, "disk_full") if message.contains("disk is full") => {
            Ok(())
        }
        (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
            if message.contains("read-only") && retry_after =>
        {
            Ok(())
        }
        _ => Err("only storage refusals naming the problem are expected".into()),
    }
}

/// A filesystem mounted for the test, unmounted (lazily) on drop.
struct Mount {
    at: PathBuf,
    mounted: bool,
}

impl Mount {
    fn run(args: &[&str]) -> Result<(), String> {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .map_err(|e| format!("{}: {e}", args[0]))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// A tmpfs of `size` at `at`.
    fn tmpfs(at: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(at).unwrap();
        Self::run(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
            at.to_str().unwrap(),
        ])?;
        Ok(Self {
            at: at.to_owned(),
            mounted: true,
        })
    }

    /// An ext4 image `image` of `size`, loop-mounted at `at` with `errors=remount-ro`.
    fn ext4(image: &Path, at: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(at).unwrap();
        Self::run(&["truncate", "-s", size, image.to_str().unwrap()])?;
        Self::run(&["mkfs.ext4", "-q", "-F", image.to_str().unwrap()])?;
        let mut m = Self {
            at: at.to_owned(),
            mounted: false,
        };
        m.mount_ext4(image)?;
        m.mounted = true;
        Ok(m)
    }

    fn mount_ext4(&self, image: &Path) -> Result<(), String> {
        Self::run(&[
            "mount",
            "-o",
            "loop,errors=remount-ro",
            image.to_str().unwrap(),
            self.at.to_str().unwrap(),
        ])?;
        // The daemon wants its state directory to itself.
        let _ = std::fs::remove_dir(self.at.join("lost+found"));
        Ok(())
    }

    fn unmount(&mut self) {
        if self.mounted {
            Self::run(&["umount", self.at.to_str().unwrap()])
                .unwrap_or_else(|e| panic!("unmounting: {e}"));
            self.mounted = false;
        }
    }

    /// The loop device's name under `/sys/fs/ext4/` for this mount.
    fn ext4_device(&self) -> String {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let line = mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(self.at.to_str().unwrap()))
            .unwrap_or_else(|| panic!("{} is not mounted", self.at.display()));
        line.split(' ')
            .next()
            .unwrap()
            .trim_start_matches("/dev/")
            .to_owned()
    }

    fn free_bytes(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.at).unwrap();
        s.blocks_available() * s.fragment_size()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Self::run(&["umount", "-l", self.at.to_str().unwrap()]);
        }
    }
}

/// Writes up to `len` zero bytes to `path`, or as many as fit: the load keeps writing while
/// the filler grows, so the disk may fill up before the filler is whole (which is what the
/// filler is for).
fn fill(path: &Path, len: u64) {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64);
        match file.write_all(&chunk[..n as usize]) {
            Ok(()) => left -= n,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return,
            Err(e) => panic!("writing the filler {}: {e}", path.display()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disk_filling_up_under_load_refuses_cleanly_and_recovers_when_space_returns() {
    let started = Instant::now();
    let tpm = TestTpm::start();
    let state_dir = tpm.path("daemon");
    let mut mount = match Mount::tmpfs(&state_dir, "24m") {
        Ok(m) => m,
        Err(e) => {
            println!("SKIPPED: cannot mount a tmpfs for the state directory: {e}");
            return;
        }
    };
    let (mut daemon, world, policy) = setup(&tpm, &state_dir, storage_refusal).await;
    let workers = start_workers(&world);
    wait_for(
        &world,
        &daemon,
        20,
        "two rounds completed before the fault",
        || world.completed.load(Ordering::SeqCst) >= 2,
    )
    .await;

    // Fill the disk to a small headroom; the load uses it up.
    let filler = state_dir.join("filler");
    let headroom = 384 << 10;
    fill(&filler, mount.free_bytes().saturating_sub(headroom));
    world.refused.store(0, Ordering::SeqCst);
    wait_for(
        &world,
        &daemon,
        30,
        "refusals once the disk filled up",
        || world.refused.load(Ordering::SeqCst) >= 20,
    )
    .await;
    let full_at = world.completed.load(Ordering::SeqCst);
    println!(
        "disk full: {} refusals, free {} bytes",
        world.refused.load(Ordering::SeqCst),
        mount.free_bytes()
    );

    // Space returns: the same daemon completes rounds again.
    std::fs::remove_file(&filler).unwrap();
    wait_for(
        &world,
        &daemon,
        30,
        "rounds completed after space returned",
        || world.completed.load(Ordering::SeqCst) >= full_at + 6,
    )
    .await;
    stop_workers(&world, workers).await;
    check_running(&world, &state_dir, &policy, "space returned, no restart").await;

    // And across a restart.
    assert!(daemon.terminate().success(), "{}", daemon.log());
    check_stopped(&tpm, &state_dir);
    let mut daemon = tokio::task::spawn_blocking(move || {
        daemon.restart();
        daemon
    })
    .await
    .unwrap();
    check_running(&world, &state_dir, &policy, "after a restart").await;
    report(&world, "disk full", started).await;
    println!("disk full: daemon log events {:?}", logged_events(&daemon));
    daemon.kill();
    mount.unmount();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_state_directory_turned_read_only_under_load_refuses_cleanly_and_recovers() {
    let started = Instant::now();
    let mut tpm = TestTpm::start();
    let state_dir = tpm.path("daemon");
    let image = tpm.path("state.ext4");
    let mut mount = match Mount::ext4(&image, &state_dir, "64M") {
        Ok(m) => m,
        Err(e) => {
            println!("SKIPPED: cannot loop-mount an ext4 image for the state directory: {e}");
            return;
        }
    };
    let (mut daemon, world, policy) = setup(&tpm, &state_dir, storage_refusal).await;
    let workers = start_workers(&world);
    wait_for(
        &world,
        &daemon,
        20,
        "two rounds completed before the fault",
        || world.completed.load(Ordering::SeqCst) >= 2,
    )
    .await;

    // The kernel finds an error and turns the filesystem read-only.
    let device = mount.ext4_device();
    let trigger = format!("/sys/fs/ext4/{device}/trigger_fs_error");
    if !Path::new(&trigger).exists() {
        println!("SKIPPED: {trigger} is missing: this kernel cannot fail ext4 on request");
        stop_workers(&world, workers).await;
        return;
    }
    world.fault_begin.store(true, Ordering::SeqCst);
    std::fs::write(&trigger, "arbiter disk fault test\n").unwrap();
    // Requests in flight until now may have either outcome (the filesystem's fsync
    // promises do not hold across its failure); the checks resolve them.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    world.fault_settled.store(true, Ordering::SeqCst);
    world.refused.store(0, Ordering::SeqCst);
    wait_for(
        &world,
        &daemon,
        30,
        "refusals once the filesystem turned read-only",
        || world.refused.load(Ordering::SeqCst) >= 20,
    )
    .await;
    stop_workers(&world, workers).await;

    // Recovery: stop the daemon, check and mount the filesystem again, start the daemon.
    let status = daemon.terminate();
    println!("read-only: the daemon stopped with {status}");
    mount.unmount();
    let fsck = Command::new("e2fsck")
        .args(["-f", "-y", image.to_str().unwrap()])
        .output()
        .unwrap();
    println!(
        "read-only: e2fsck exited {:?}",
        fsck.status.code() // 1: errors corrected (the recorded error), 0: clean
    );
    mount.mount_ext4(&image).unwrap();
    mount.mounted = true;
    store_integrity(&state_dir);
    if let Err(e) = log_replays(&tpm, &state_dir) {
        // The filesystem lost log records whose fsync had succeeded and which PCR 23
        // holds: the daemon's start refuses that (fail closed) until the next TPM startup,
        // which begins a new generation. The recovery is a reboot.
        println!("read-only: the on-disk log lost records PCR 23 holds ({e}); rebooting");
        tpm.tool_ok("tpm2_shutdown", &[]);
        tpm.swtpm.restart().unwrap();
    }
    let mut daemon = tokio::task::spawn_blocking(move || {
        daemon.restart();
        daemon
    })
    .await
    .unwrap();
    check_running(
        &world,
        &state_dir,
        &policy,
        "after the remount and a restart",
    )
    .await;
    // The load completes again.
    let workers = start_workers(&world);
    let at = world.completed.load(Ordering::SeqCst);
    wait_for(
        &world,
        &daemon,
        30,
        "rounds completed after the remount",
        || world.completed.load(Ordering::SeqCst) >= at + 4,
    )
    .await;
    stop_workers(&world, workers).await;
    check_running(&world, &state_dir, &policy, "after the load resumed").await;
    report(&world, "read-only", started).await;
    println!("read-only: daemon log events {:?}", logged_events(&daemon));
    daemon.kill();
    mount.unmount();
}
