//! The TPM owner thread: holds the one [`Device`] and runs queued jobs one at a time,
//! reopening the connection after the TPM went away.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::{Device, Job, TpmConfig, TpmError};

/// The owner thread's state: the configuration and the device, absent after a lost
/// connection until the next job reopens it.
pub(super) struct Slot {
    config: TpmConfig,
    device: Option<Device>,
    /// Bumped on each reopened connection and each statement key created ([`super::Tpm::epoch`]).
    epoch: Arc<AtomicU64>,
}

impl Slot {
    pub(super) fn new(config: TpmConfig, device: Device, epoch: Arc<AtomicU64>) -> Self {
        Self {
            config,
            device: Some(device),
            epoch,
        }
    }

    /// Runs `f` with the device, opening it first if needed; drops the device when the
    /// connection turned out to be broken, so the next job starts on a fresh `Context`
    /// (tss-esapi's stays in a bad-sequence state after a transport error).
    pub(super) fn with_device<T>(
        &mut self,
        f: impl FnOnce(&mut Device) -> Result<T, TpmError>,
    ) -> Result<T, TpmError> {
        let device = match &mut self.device {
            Some(device) => device,
            empty => {
                let device = Device::open(&self.config).map_err(|e| match e {
                    TpmError::Open { .. } | TpmError::Command { .. } => TpmError::Unreachable {
                        op: "reopening the TPM",
                        detail: e.to_string(),
                    },
                    other => other,
                })?;
                // A new connection: the TPM may have started up, objects and saved contexts
                // of the old one are gone.
                self.epoch.fetch_add(1, Ordering::AcqRel);
                empty.insert(device)
            }
        };
        let result = f(device);
        if device.take_statement_key_created() {
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
        if matches!(&result, Err(e) if e.is_connection_lost()) {
            self.device = None;
        }
        result
    }
}

/// The owner thread's loop: ends when every [`super::Tpm`] handle is dropped.
pub(super) fn run(mut slot: Slot, mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = jobs.blocking_recv() {
        let _open = super::spawn_gate::connections_may_open();
        job(&mut slot);
    }
    // Closing the context may still talk to the TPM.
    let _open = super::spawn_gate::connections_may_open();
    drop(slot);
}
