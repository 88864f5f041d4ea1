//! One daemon per state directory: an exclusive `flock` on `STATE_DIR/arbiterd.lock`, held
//! for the daemon's lifetime (the kernel releases it when the process dies, also on
//! `kill -9`, so a stale lock never blocks a restart). Two daemons on one store, one log and
//! one sealing index would extend the same PCR from two logs and rotate the key under each
//! other; the second is refused before it touches anything.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The lock file's name inside the state directory.
pub const LOCK_FILE: &str = "arbiterd.lock";

/// Why the state directory could not be locked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "another arbiterd is running on the state directory {dir}{holder}: one daemon per state \
         directory (stop it first, or give this one its own --state-dir)"
    )]
    Held {
        /// The state directory.
        dir: String,
        /// ` (pid N)` when the holder wrote its pid.
        holder: String,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock the state directory {dir}: {detail}")]
    Io {
        /// The state directory.
        dir: String,
        /// What failed.
        detail: String,
    },
}

/// The held lock; dropping it releases the state directory.
#[derive(Debug)]
pub struct StateLock {
    _file: Flock<File>,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock of `state_dir` (created if missing, mode 0700) or says who holds it.
    pub fn acquire(state_dir: &Path) -> Result<Self, LockError> {
        let io = |e: &dyn std::fmt::Display| LockError::Io {
            dir: state_dir.display().to_string(),
            detail: e.to_string(),
        };
        std::fs::create_dir_all(state_dir).map_err(|e| io(&e))?;
        let path = state_dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io(&e))?;
        let mut locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    dir: state_dir.display().to_string(),
                    holder: if pid.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {pid})")
                    },
                });
            }
            Err((_, e)) => return Err(io(&e)),
        };
        // The pid is for the operator's error message only; the lock is the flock.
        locked.set_len(0).map_err(|e| io(&e))?;
        locked.rewind().map_err(|e| io(&e))?;
        locked
            .write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(|e| io(&e))?;
        Ok(Self {
            _file: locked,
            path,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path()).unwrap();
        let err = StateLock::acquire(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("another arbiterd is running"), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        StateLock::acquire(dir.path()).unwrap();
    }
}
