//! Finding an instance's records in a log generation: the one search every verifier (the
//! appraisal, the client's result check, the offline bundle check) makes for an
//! instance's `instance_created` record.

use super::types::{EventContent, InstanceCreated, Record};

/// The `instance_created` record of the instance `instance_id` (32 lowercase hex) in
/// `records`, with its `recnum`. The daemon measures it once per generation; were there
/// more, the last one counts, as it does when the log is replayed.
pub fn find_instance_created<'a>(
    records: &'a [Record],
    instance_id: &str,
) -> Option<(u64, &'a InstanceCreated)> {
    records.iter().rev().find_map(|r| match &r.content {
        EventContent::InstanceCreated(c) if c.instance_id.to_string() == instance_id => {
            Some((r.recnum, c))
        }
        _ => None,
    })
}

/// Whether `records` hold an `instance_destroyed` record for `instance_id`.
pub fn instance_destroyed(records: &[Record], instance_id: &str) -> bool {
    records.iter().any(|r| {
        matches!(&r.content,
            EventContent::InstanceDestroyed(d) if d.instance_id.to_string() == instance_id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cel::{Id, InstanceDestroyed, Sha256Digest};

    fn created(recnum: u64, id: u8, manifest: u8) -> Record {
        let content = EventContent::InstanceCreated(InstanceCreated {
            instance_id: Id([id; 16]),
            manifest_sha256: Sha256Digest([manifest; 32]),
            public_key_sha256: Sha256Digest([0; 32]),
        });
        Record::new(recnum, 23, content).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn finds_the_instances_own_record_and_its_recnum() {
        let destroyed = Record::new(
            3,
            23,
            EventContent::InstanceDestroyed(InstanceDestroyed {
                instance_id: Id([1; 16]),
                epoch_retired: 0,
            }),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let log = vec![created(1, 1, 0xaa), created(2, 2, 0xbb), destroyed];
        let one = hex::encode([1u8; 16]);
        let two = hex::encode([2u8; 16]);
        let found = find_instance_created(&log, &two);
        assert_eq!(
            found.map(|(recnum, c)| (recnum, c.manifest_sha256.0)),
            Some((2, [0xbb; 32]))
        );
        assert!(find_instance_created(&log, &hex::encode([3u8; 16])).is_none());
        assert!(find_instance_created(&[], &one).is_none());
        assert!(instance_destroyed(&log, &one));
        assert!(!instance_destroyed(&log, &two));
        // Were it measured twice, the later record counts.
        let twice = vec![created(1, 1, 0xaa), created(5, 1, 0xcc)];
        assert_eq!(find_instance_created(&twice, &one).map(|(r, _)| r), Some(5));
    }
}
