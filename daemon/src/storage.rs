//! What a failed write to the state directory means for a client: the disk is full (507
//! `disk_full`: space must be freed) or the filesystem refuses writes (503
//! `storage_unavailable`: read-only or failing; an operator must repair it). Both the store
//! (SQLite) and the measurement log classify their errors with [`StorageFault`], so a
//! refusal names the problem whichever file hit it first (docs/reliability.md).

/// Why the state directory could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFault {
    /// No space left on the device (`ENOSPC`, `EDQUOT`, `SQLITE_FULL`).
    Full,
    /// The filesystem refuses writes: read-only (`EROFS`, `SQLITE_READONLY`) or failing
    /// (`EIO`, `SQLITE_IOERR`).
    Unavailable,
}

impl StorageFault {
    /// The fault an I/O error of a file in the state directory shows, if any.
    pub fn of_io(e: &std::io::Error) -> Option<Self> {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => Some(Self::Full),
            ErrorKind::ReadOnlyFilesystem => Some(Self::Unavailable),
            _ if e.raw_os_error() == Some(nix::libc::EIO) => Some(Self::Unavailable),
            _ => None,
        }
    }

    /// The fault a SQLite error shows, if any.
    pub fn of_sqlite(e: &rusqlite::Error) -> Option<Self> {
        use rusqlite::ErrorCode;
        let rusqlite::Error::SqliteFailure(f, _) = e else {
            return None;
        };
        match f.code {
            ErrorCode::DiskFull => Some(Self::Full),
            ErrorCode::ReadOnly | ErrorCode::SystemIoFailure | ErrorCode::CannotOpen => {
                Some(Self::Unavailable)
            }
            _ => None,
        }
    }

    /// The refusal's message: what is wrong and that nothing was stored, then `detail`
    /// (the file and the system's words).
    pub fn message(self, detail: &str) -> String {
        match self {
            Self::Full => format!(
                "the appliance's disk is full; the request was not stored (a destruction \
                 already under way completes by itself once space is freed). Retry once space \
                 was freed ({detail})"
            ),
            Self::Unavailable => format!(
                "the appliance's state directory cannot be written (its filesystem is \
                 read-only or failing); the request was not stored. An operator must make it \
                 writable again: a filesystem the kernel turned read-only needs a check, a \
                 remount and a restart of arbiterd ({detail})"
            ),
        }
    }
}
