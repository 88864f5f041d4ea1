//! The measurement log's files on disk: one JSON Lines file per generation, the marker
//! of the last record known extended, and whole-record appends that cut a failed write
//! back so no torn line is left.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::MeasureError;
use crate::storage::StorageFault;

/// What went wrong with a log file: the words, and the storage fault they show.
pub(super) trait Detail {
    fn detail(self) -> (String, Option<StorageFault>);
}

impl Detail for std::io::Error {
    fn detail(self) -> (String, Option<StorageFault>) {
        (self.to_string(), StorageFault::of_io(&self))
    }
}

impl Detail for String {
    fn detail(self) -> (String, Option<StorageFault>) {
        (self, None)
    }
}

impl Detail for &str {
    fn detail(self) -> (String, Option<StorageFault>) {
        (self.to_owned(), None)
    }
}

pub(super) fn io(path: &Path, e: impl Detail) -> MeasureError {
    let (detail, fault) = e.detail();
    MeasureError::Io {
        path: path.display().to_string(),
        detail,
        fault,
    }
}

pub(super) fn generation_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("generation-{generation:010}.jsonl"))
}

pub(super) fn latest_generation(dir: &Path) -> Result<Option<u64>, MeasureError> {
    let mut latest = None;
    let entries = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
    for entry in entries {
        let name = entry.map_err(|e| io(dir, e))?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("generation-")
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            latest = latest.max(Some(n));
        }
    }
    Ok(latest)
}

/// The marker of the last record known extended: `generation recnum`, written after each
/// extend. It tells a crash between append and extend (marker behind the log: extend the
/// record) from a PCR reset by someone else (marker at the record: fail closed) — the two
/// look the same to the write-ahead rule when the log has one record.
fn marker_path(dir: &Path) -> PathBuf {
    dir.join("extended")
}

pub(super) fn read_marker(dir: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(marker_path(dir)).ok()?;
    let (g, r) = text.trim().split_once(' ')?;
    Some((g.parse().ok()?, r.parse().ok()?))
}

pub(super) fn write_marker(dir: &Path, generation: u64, recnum: u64) -> Result<(), MeasureError> {
    let path = marker_path(dir);
    let tmp = dir.join("extended.tmp");
    let mut f = File::create(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(format!("{generation} {recnum}\n").as_bytes())
        .map_err(|e| io(&tmp, e))?;
    f.sync_data().map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
}

pub(super) fn open_append(path: &Path) -> Result<File, MeasureError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io(path, e))
}

/// The file operations an append needs; a seam so tests can fail a write part-way, as a
/// full disk does.
pub(super) trait LogFile: Write {
    fn set_len(&self, len: u64) -> std::io::Result<()>;
    fn sync_data(&self) -> std::io::Result<()>;
}

impl LogFile for File {
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        File::set_len(self, len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        File::sync_data(self)
    }
}

/// Cuts the log back to `len` bytes (the end of its last whole record) and fsyncs.
pub(super) fn truncate(file: &impl LogFile, len: u64) -> std::io::Result<()> {
    file.set_len(len)?;
    file.sync_data()
}

/// Appends one line to the log and fsyncs it. On a failed write or fsync (e.g. ENOSPC) it
/// cuts the file back to `len`, so no torn line is left to stop the next start, and
/// returns the error.
pub(super) fn append_whole(
    file: &mut impl LogFile,
    path: &Path,
    len: u64,
    line: &[u8],
) -> Result<(), MeasureError> {
    let Err(e) = file.write_all(line).and_then(|()| file.sync_data()) else {
        return Ok(());
    };
    let detail = match truncate(file, len) {
        Ok(()) => format!(
            "appending a record failed ({e}); the log was cut back to its last whole record \
             and nothing was measured"
        ),
        Err(t) => format!(
            "appending a record failed ({e}) and cutting the partial record off failed too \
             ({t}); nothing was measured, and the next start drops the torn record"
        ),
    };
    Err(MeasureError::Io {
        path: path.display().to_string(),
        detail,
        fault: StorageFault::of_io(&e),
    })
}
