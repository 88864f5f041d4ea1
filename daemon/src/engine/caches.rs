//! What the submission path keeps in memory instead of recomputing per request: each
//! instance's HPKE private key (derived from its secret with a P-256 scalar
//! multiplication) and its parsed, validated manifest (stored as JSON text). Also each
//! live instance's destruction policy, which the deadline check reads every 2 s.
//!
//! Both are bounded (the oldest entry goes first when full). The keys live in the
//! daemon's memory, which `mlockall` keeps out of swap (`crate::hardening`); each is held
//! in one `Arc` allocation and its scalar is zeroized when the last reference drops. A key
//! is evicted when its instance starts being destroyed and when it is destroyed, and the
//! whole cache is emptied when the sealing key rotates; entries are stamped with the
//! sealing epoch they were derived under and are never served, nor inserted, under another.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use arbiter_policy::hpke::PrivateKey;
use arbiter_policy::manifest::{DestructionPolicy, Manifest};

/// Instances whose derived HPKE keys are kept (about 200 bytes each).
pub(crate) const KEY_CAPACITY: usize = 4096;
/// Instances whose parsed manifests are kept.
pub(crate) const MANIFEST_CAPACITY: usize = 1024;

/// A bounded map, oldest insertion evicted first.
struct Bounded<V> {
    map: HashMap<String, V>,
    order: VecDeque<String>,
    capacity: usize,
}

impl<V> Bounded<V> {
    fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    fn insert(&mut self, key: &str, value: V) {
        if self.map.insert(key.to_owned(), value).is_some() {
            return;
        }
        self.order.push_back(key.to_owned());
        while self.map.len() > self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.map.remove(&oldest);
                }
                None => break,
            }
        }
    }

    fn remove(&mut self, key: &str) {
        if self.map.remove(key).is_some() {
            self.order.retain(|k| k != key);
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The instances' derived HPKE private keys, valid for one sealing epoch.
pub(crate) struct InstanceKeys {
    inner: Mutex<(u64, Bounded<Arc<PrivateKey>>)>,
}

impl Default for InstanceKeys {
    fn default() -> Self {
        Self::with_capacity(KEY_CAPACITY)
    }
}

impl InstanceKeys {
    /// An empty cache holding at most `capacity` keys.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Mutex::new((0, Bounded::new(capacity))),
        }
    }

    /// The key of `id` if it was derived under `epoch`.
    pub(crate) fn get(&self, id: &str, epoch: u64) -> Option<Arc<PrivateKey>> {
        let inner = lock(&self.inner);
        (inner.0 == epoch)
            .then(|| inner.1.map.get(id).cloned())
            .flatten()
    }

    /// Keeps the key of `id` derived under `epoch`. A key of an older epoch than the
    /// cache's is dropped (a rotation emptied the cache meanwhile); a newer epoch empties
    /// the cache first.
    pub(crate) fn insert(&self, id: &str, epoch: u64, key: Arc<PrivateKey>) {
        let mut inner = lock(&self.inner);
        if epoch < inner.0 {
            return;
        }
        if epoch > inner.0 {
            inner.1.clear();
            inner.0 = epoch;
        }
        inner.1.insert(id, key);
    }

    /// Forgets the key of `id` (its instance is being destroyed).
    pub(crate) fn evict(&self, id: &str) {
        lock(&self.inner).1.remove(id);
    }

    /// Forgets every key and accepts only keys derived under `epoch` from now on (the
    /// sealing key rotated to it).
    pub(crate) fn rotated(&self, epoch: u64) {
        let mut inner = lock(&self.inner);
        inner.1.clear();
        inner.0 = inner.0.max(epoch);
    }

    /// How many keys are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.inner).1.map.len()
    }
}

/// The instances' parsed manifests, each with the SHA-256 of the JSON it was parsed from
/// (a manifest never changes after creation; the digest is checked on every hit anyway).
#[derive(Default)]
pub(crate) struct Manifests {
    inner: Mutex<Option<Bounded<DigestedManifest>>>,
}

/// A parsed manifest and the SHA-256 (hex) of the JSON it was parsed from.
type DigestedManifest = (String, Arc<Manifest>);

impl Manifests {
    /// The manifest of `id` parsed from JSON whose digest is `sha256`.
    pub(crate) fn get(&self, id: &str, sha256: &str) -> Option<Arc<Manifest>> {
        let inner = lock(&self.inner);
        let (digest, manifest) = inner.as_ref()?.map.get(id)?;
        (digest == sha256).then(|| Arc::clone(manifest))
    }

    /// Keeps the manifest of `id`, parsed from JSON whose digest is `sha256`.
    pub(crate) fn insert(&self, id: &str, sha256: &str, manifest: Arc<Manifest>) {
        lock(&self.inner)
            .get_or_insert_with(|| Bounded::new(MANIFEST_CAPACITY))
            .insert(id, (sha256.to_owned(), manifest));
    }
}

/// Each live instance's destruction policy (its manifest never changes), so that the
/// deadline check reads a few small columns of the live instances instead of every
/// manifest. Holds only instances that were live at the last check: its size follows the
/// live instances (about 100 bytes each), not the store.
#[derive(Default)]
pub(crate) struct DestructionPolicies {
    inner: Mutex<HashMap<String, DestructionPolicy>>,
}

impl DestructionPolicies {
    /// The policy of `id`, if known.
    pub(crate) fn get(&self, id: &str) -> Option<DestructionPolicy> {
        lock(&self.inner).get(id).copied()
    }

    /// Keeps the policy of `id`.
    pub(crate) fn insert(&self, id: &str, policy: DestructionPolicy) {
        lock(&self.inner).insert(id.to_owned(), policy);
    }

    /// Forgets every instance not in `live`.
    pub(crate) fn retain_live(&self, live: &HashSet<&str>) {
        lock(&self.inner).retain(|id, _| live.contains(id.as_str()));
    }

    /// How many policies are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.inner).len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use arbiter_policy::hpke;

    fn key(byte: u8) -> Arc<PrivateKey> {
        Arc::new(hpke::derive_keypair(&[byte; 32]).0)
    }

    #[test]
    fn keys_are_served_only_under_their_epoch_and_bounded() {
        let keys = InstanceKeys::with_capacity(2);
        keys.insert("a", 1, key(1));
        assert!(keys.get("a", 1).is_some());
        assert!(keys.get("a", 2).is_none(), "another epoch must miss");
        keys.insert("b", 1, key(2));
        keys.insert("c", 1, key(3));
        assert_eq!(keys.len(), 2);
        assert!(keys.get("a", 1).is_none(), "the oldest goes first");
        assert_eq!(
            keys.get("c", 1).unwrap().public_key(),
            hpke::derive_keypair(&[3; 32]).1
        );
        keys.evict("c");
        assert!(keys.get("c", 1).is_none());
        assert!(keys.get("b", 1).is_some());
    }

    #[test]
    fn a_rotation_empties_the_keys_and_refuses_late_inserts_of_the_old_epoch() {
        let keys = InstanceKeys::default();
        keys.insert("a", 3, key(1));
        keys.rotated(4);
        assert_eq!(keys.len(), 0);
        // A submission that read its secret before the rotation finishes after it.
        keys.insert("b", 3, key(2));
        assert_eq!(keys.len(), 0);
        assert!(keys.get("b", 3).is_none());
        keys.insert("b", 4, key(2));
        assert!(keys.get("b", 4).is_some());
    }

    #[test]
    fn destruction_policies_keep_only_live_instances() {
        let policies = DestructionPolicies::default();
        policies.insert("a", DestructionPolicy::AfterEvaluation);
        policies.insert("b", DestructionPolicy::OnRequest);
        assert_eq!(policies.get("b"), Some(DestructionPolicy::OnRequest));
        policies.retain_live(&HashSet::from(["b"]));
        assert_eq!(policies.len(), 1);
        assert_eq!(policies.get("a"), None);
    }
}
