//! Unit tests of the write-ahead rule's edge cases: a write cut short by a full disk, a
//! failed fsync, a whole append kept, and a failed extend judged by the PCR read after it.

use std::io::Write;

use super::files::LogFile;
use super::*;

/// A log file on a disk that fills up: writes stop after `room` bytes with ENOSPC, and
/// fsync fails when `sync_fails`.
struct FullDisk {
    data: std::cell::RefCell<Vec<u8>>,
    room: usize,
    sync_fails: bool,
}

impl FullDisk {
    fn new(data: &[u8], room: usize, sync_fails: bool) -> Self {
        Self {
            data: std::cell::RefCell::new(data.to_vec()),
            room,
            sync_fails,
        }
    }
}

impl Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let data = self.data.get_mut();
        let free = self.room.saturating_sub(data.len());
        if free == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
        }
        let n = free.min(buf.len());
        data.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogFile for FullDisk {
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.data.borrow_mut().truncate(len as usize);
        Ok(())
    }

    fn sync_data(&self) -> std::io::Result<()> {
        if self.sync_fails {
            Err(std::io::Error::other("fsync failed"))
        } else {
            Ok(())
        }
    }
}

const WHOLE: &[u8] = b"{\"recnum\":0}\n";
const NEXT: &[u8] = b"{\"recnum\":1,\"content\":\"a longer record\"}\n";

#[test]
fn a_write_cut_short_by_a_full_disk_leaves_the_log_whole() {
    let mut file = FullDisk::new(WHOLE, WHOLE.len() + 10, false);
    let err = append_whole(&mut file, Path::new("log"), WHOLE.len() as u64, NEXT)
        .expect_err("the disk is full");
    assert_eq!(file.data.borrow().as_slice(), WHOLE, "no torn line is left");
    let text = err.to_string();
    assert!(text.contains("cut back to its last whole record"), "{text}");
}

#[test]
fn a_failed_fsync_cuts_the_record_off() {
    let mut file = FullDisk::new(WHOLE, usize::MAX, true);
    let err = append_whole(&mut file, Path::new("log"), WHOLE.len() as u64, NEXT)
        .expect_err("fsync fails");
    // The record is cut off; the truncation's own fsync fails too, and the error says so.
    assert_eq!(file.data.borrow().as_slice(), WHOLE);
    assert!(err.to_string().contains("fsync failed"), "{err}");
    assert!(err.to_string().contains("failed too"), "{err}");
}

#[test]
fn a_whole_append_is_kept() {
    let mut file = FullDisk::new(WHOLE, usize::MAX, false);
    append_whole(&mut file, Path::new("log"), WHOLE.len() as u64, NEXT).unwrap();
    assert_eq!(file.data.borrow().as_slice(), [WHOLE, NEXT].concat());
}

#[test]
fn a_failed_extend_is_judged_by_the_pcr_read_after_it() {
    let before = [7u8; 32];
    let digest = [9u8; 32];
    let after = sha256_extend(&before, &digest);
    assert_eq!(
        extend_outcome(Some(after), &before, &digest),
        ExtendOutcome::Landed
    );
    assert_eq!(
        extend_outcome(Some(before), &before, &digest),
        ExtendOutcome::NotLanded
    );
    assert_eq!(
        extend_outcome(Some([0u8; 32]), &before, &digest),
        ExtendOutcome::Unknown
    );
    assert_eq!(
        extend_outcome(None, &before, &digest),
        ExtendOutcome::Unknown
    );
}
