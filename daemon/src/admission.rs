//! Admission of connections and request bodies, so that no client — with or without a
//! certificate — can exhaust the daemon's descriptors or memory: a global connection cap
//! bounded by the open-file limit less a reserve for the TPM, the store and the evaluator;
//! a per-address cap; a byte budget for request bodies buffered at once; the backoff of an
//! accept loop whose `accept` fails.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::LimitsSection;

/// Descriptors kept free for everything but client connections: the listener, the store
/// (database, WAL, shared memory, journals), the measurement log and its marker, the lock
/// file, the TPM connection, the runtime's own (epoll, eventfd, signal pipe), stdio.
pub const RESERVED_FDS: u64 = 64;
/// Descriptors one running evaluation needs (pipes to and from the child, its pidfd).
pub const FDS_PER_EVALUATION: u64 = 8;
/// The fewest client connections worth starting with.
pub const MIN_CONNECTIONS: u64 = 16;

/// The body budget's unit: permits count KiB, so a `u32` of permits covers 4 TiB.
const BODY_UNIT: usize = 1024;

/// Why the daemon cannot admit clients safely.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdmissionError {
    /// The open-file limit leaves too few descriptors for clients.
    #[error(
        "the open-file limit ({soft}) leaves fewer than {MIN_CONNECTIONS} descriptors for \
         clients after {reserved} reserved for the TPM, the store and evaluations: raise it \
         (LimitNOFILE= in the unit, or ulimit -n)"
    )]
    TooFewDescriptors {
        /// The soft limit.
        soft: u64,
        /// The reserve.
        reserved: u64,
    },
}

/// Raises the soft open-file limit to the hard one (what systemd's `LimitNOFILE=` or the
/// shell allows) and returns the soft limit in force.
pub fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Ok((soft, _)) => soft,
        // Unknown: assume the traditional default.
        Err(_) => 1024,
    }
}

/// The open-file soft limit in force.
pub fn open_file_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024)
}

/// How many connections may be served at once: the configured cap, bounded by the
/// descriptors left once the reserve is set aside.
pub fn connection_capacity(
    limits: &LimitsSection,
    soft_nofile: u64,
) -> Result<usize, AdmissionError> {
    let reserved = RESERVED_FDS + FDS_PER_EVALUATION * limits.max_concurrent_evaluations as u64;
    let available = soft_nofile.saturating_sub(reserved);
    if available < MIN_CONNECTIONS {
        return Err(AdmissionError::TooFewDescriptors {
            soft: soft_nofile,
            reserved,
        });
    }
    Ok(usize::try_from(available)
        .unwrap_or(usize::MAX)
        .min(limits.max_connections))
}

/// The connection caps.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    per_ip_max: usize,
}

/// A connection admitted: holds its slot and its address's count until dropped.
#[derive(Debug)]
pub struct Admitted {
    _slot: OwnedSemaphorePermit,
    ip: IpAddr,
    admission: Arc<Admission>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut per_ip = self
            .admission
            .per_ip
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl Admission {
    /// Caps of `capacity` connections in all and `per_ip_max` from one address.
    pub fn new(capacity: usize, per_ip_max: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(capacity)),
            per_ip: Mutex::new(HashMap::new()),
            per_ip_max,
        })
    }

    /// Waits for a free slot: while every slot is taken the daemon stops accepting, and
    /// new clients wait in the kernel's listen queue instead of costing a descriptor.
    pub async fn slot(&self) -> OwnedSemaphorePermit {
        loop {
            // The semaphore is never closed, so acquiring only fails if it were; retry.
            if let Ok(permit) = Arc::clone(&self.slots).acquire_owned().await {
                return permit;
            }
        }
    }

    /// Admits a connection from `ip` into `slot`, or `None` when that address already holds
    /// its share (the caller closes the connection at once).
    pub fn admit(self: &Arc<Self>, slot: OwnedSemaphorePermit, ip: IpAddr) -> Option<Admitted> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.per_ip_max {
            return None;
        }
        *n += 1;
        Some(Admitted {
            _slot: slot,
            ip,
            admission: Arc::clone(self),
        })
    }
}

/// The budget for request bodies buffered at once, over all connections.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    units: Arc<Semaphore>,
}

/// Bytes of the budget held while one body is read and parsed.
#[derive(Debug)]
pub struct BodyReservation {
    _units: OwnedSemaphorePermit,
}

impl BodyBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        let units = bytes.div_ceil(BODY_UNIT).min(Semaphore::MAX_PERMITS);
        Self {
            units: Arc::new(Semaphore::new(units)),
        }
    }

    /// Reserves `bytes` now, or `None` when the budget is spent (the caller answers 503).
    pub fn try_reserve(&self, bytes: usize) -> Option<BodyReservation> {
        let units = u32::try_from(bytes.div_ceil(BODY_UNIT).max(1)).ok()?;
        Arc::clone(&self.units)
            .try_acquire_many_owned(units)
            .ok()
            .map(|p| BodyReservation { _units: p })
    }
}

/// Backoff for a failing `accept` (out of descriptors, out of memory): doubling from 10 ms
/// to 1 s, so the loop neither spins at a full core nor stays deaf long after recovery.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    next: Option<Duration>,
}

impl AcceptBackoff {
    /// The delay before the next `accept` after a failure.
    pub fn failed(&mut self) -> Duration {
        let delay = self.next.map_or(Duration::from_millis(10), |d| {
            (d * 2).min(Duration::from_secs(1))
        });
        self.next = Some(delay);
        delay
    }

    /// An `accept` succeeded.
    pub fn succeeded(&mut self) {
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn capacity_is_bounded_by_descriptors_less_the_reserve() {
        let limits = LimitsSection::default();
        // systemd's default soft limit: 1,024 less 64 + 2×8 reserved.
        assert_eq!(connection_capacity(&limits, 1024).unwrap(), 512);
        let small = LimitsSection {
            max_connections: 10_000,
            ..LimitsSection::default()
        };
        assert_eq!(connection_capacity(&small, 1024).unwrap(), 1024 - 80);
        let err = connection_capacity(&limits, 90).unwrap_err().to_string();
        assert!(err.contains("open-file limit (90)"), "{err}");
    }

    #[tokio::test]
    async fn one_address_gets_its_share_and_slots_come_back_on_drop() {
        let admission = Admission::new(4, 2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.1".parse().unwrap();
        let first = admission.admit(admission.slot().await, a).unwrap();
        let _second = admission.admit(admission.slot().await, a).unwrap();
        assert!(admission.admit(admission.slot().await, a).is_none());
        let _other = admission.admit(admission.slot().await, b).unwrap();
        assert_eq!(admission.slots.available_permits(), 4 - 3);
        drop(first);
        assert_eq!(admission.slots.available_permits(), 4 - 2);
        assert!(admission.admit(admission.slot().await, a).is_some());
    }

    #[test]
    fn the_body_budget_refuses_what_does_not_fit_and_refills() {
        let budget = BodyBudget::new(10 * 1024);
        let eight = budget.try_reserve(8 * 1024).unwrap();
        assert!(budget.try_reserve(4 * 1024).is_none());
        drop(eight);
        assert!(budget.try_reserve(10 * 1024).is_some());
    }

    #[test]
    fn accept_backoff_doubles_to_a_second_and_resets() {
        let mut b = AcceptBackoff::default();
        assert_eq!(b.failed(), Duration::from_millis(10));
        assert_eq!(b.failed(), Duration::from_millis(20));
        for _ in 0..10 {
            b.failed();
        }
        assert_eq!(b.failed(), Duration::from_secs(1));
        b.succeeded();
        assert_eq!(b.failed(), Duration::from_millis(10));
    }
}
