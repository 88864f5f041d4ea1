//! Logging: every part of the daemon logs through `tracing` events with structured fields
//! (`instance`, `identity`, `event`, `tpm_command`, `duration_ms`, ...); [`init`] installs
//! the one subscriber of `arbiterd run` in the form `[log] format` asks for — the journal's
//! native protocol, human-readable lines or JSON lines on stderr.
//!
//! Every line is bounded: callers pass variable-length text (request paths, error messages
//! from other parties) through [`clip`], and the stderr writer cuts any line longer than
//! [`MAX_LINE_BYTES`] as a last resort. No event carries a secret or a plaintext: fields
//! are ids, identities (public-key hashes), counts, durations and reasons.

use std::fmt;
use std::io::{self, IsTerminal, Write};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, LogLevel, LogSection};

/// The most bytes of one field value passed through [`clip`].
pub const MAX_FIELD_BYTES: usize = 256;
/// The most bytes of one line written to stderr (human or JSON); longer lines are cut.
pub const MAX_LINE_BYTES: usize = 4096;

/// Installing the subscriber failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `format = "journald"` but the journal's socket cannot be reached.
    #[error("cannot log to the journal: {0}")]
    Journald(#[source] io::Error),
    /// A subscriber was installed before.
    #[error("a log subscriber is already installed: {0}")]
    AlreadyInstalled(String),
}

/// Where events go once [`init`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// The journal's native socket.
    Journald,
    /// Human-readable lines on stderr.
    Human,
    /// JSON lines on stderr.
    Json,
}

/// Resolves `auto`: journald when `journal_stream` (the value of `JOURNAL_STREAM`, set by
/// systemd as `DEVICE:INODE` of the stream it connected) names `stderr`'s device and inode
/// (`stderr_id`), human-readable lines otherwise. A child that inherited the variable but
/// writes elsewhere (a redirected stderr) does not log to the journal.
pub fn choose(
    format: LogFormat,
    journal_stream: Option<&str>,
    stderr_id: Option<(u64, u64)>,
) -> Destination {
    match format {
        LogFormat::Journald => Destination::Journald,
        LogFormat::Human => Destination::Human,
        LogFormat::Json => Destination::Json,
        LogFormat::Auto => {
            let named = journal_stream.and_then(|v| {
                let (dev, ino) = v.split_once(':')?;
                Some((dev.parse::<u64>().ok()?, ino.parse::<u64>().ok()?))
            });
            match (named, stderr_id) {
                (Some(named), Some(actual)) if named == actual => Destination::Journald,
                _ => Destination::Human,
            }
        }
    }
}

/// The device and inode of this process's stderr.
// `dev_t` and `ino_t` are 64-bit on Linux; the casts keep other targets building.
#[allow(clippy::unnecessary_cast)]
fn stderr_id() -> Option<(u64, u64)> {
    let stat = nix::sys::stat::fstat(io::stderr()).ok()?;
    Some((stat.st_dev as u64, stat.st_ino as u64))
}

/// Installs the process's subscriber for `section` (and returns where events go). Under
/// `journald`, an unreachable journal is an error; under `auto` it falls back to stderr.
pub fn init(section: &LogSection) -> Result<Destination, LogError> {
    let journal_stream = std::env::var("JOURNAL_STREAM").ok();
    let mut destination = choose(section.format, journal_stream.as_deref(), stderr_id());
    let level = match section.level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Trace => tracing::Level::TRACE,
    };
    // Only the daemon's own events at the chosen level; libraries' at warnings and worse.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::WARN)
        .with_target("arbiter_daemon", level)
        .with_target("arbiterd", level);
    let journald = if destination == Destination::Journald {
        match tracing_journald::layer() {
            Ok(layer) => Some(layer.with_syslog_identifier("arbiterd".into())),
            Err(e) if section.format == LogFormat::Journald => return Err(LogError::Journald(e)),
            Err(_) => {
                destination = Destination::Human;
                None
            }
        }
    } else {
        None
    };
    let human = (destination == Destination::Human).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(BoundedStderr)
            .with_ansi(io::stderr().is_terminal())
            .with_target(false)
    });
    let json = (destination == Destination::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(BoundedStderr)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(journald)
        .with(human)
        .with(json)
        .try_init()
        .map_err(|e| LogError::AlreadyInstalled(e.to_string()))?;
    Ok(destination)
}

/// A step of the daemon's life: logged, and sent to the service manager as `STATUS=` (what
/// `systemctl status` shows; nothing without `NOTIFY_SOCKET`). Never given secrets.
pub fn status_line(line: &str) {
    tracing::info!(event = "status", "{}", clip(line));
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(line)]);
}

/// `text` bounded for a log field: at most [`MAX_FIELD_BYTES`] bytes of it (cut at a
/// character boundary, the cut said with how much was left out), control characters
/// escaped, so one field never makes a long or a multi-line entry.
pub fn clip(text: &str) -> Clipped<'_> {
    Clipped(text)
}

/// A log field bounded by [`clip`]; formats with `%`.
#[derive(Debug, Clone, Copy)]
pub struct Clipped<'a>(&'a str);

impl fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut end = self.0.len().min(MAX_FIELD_BYTES);
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        for c in self.0[..end].chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_str(c.encode_utf8(&mut [0; 4]))?;
            }
        }
        if end < self.0.len() {
            write!(f, "…[{} more bytes]", self.0.len() - end)?;
        }
        Ok(())
    }
}

/// Stderr, one event per writer, each cut to [`MAX_LINE_BYTES`] (the formatters write an
/// event's whole line in one `write`).
#[derive(Debug, Clone, Copy)]
struct BoundedStderr;

impl<'a> MakeWriter<'a> for BoundedStderr {
    type Writer = BoundedLine;

    fn make_writer(&'a self) -> Self::Writer {
        BoundedLine { written: 0 }
    }
}

/// One event's line on stderr, cut at [`MAX_LINE_BYTES`].
#[derive(Debug)]
struct BoundedLine {
    written: usize,
}

impl Write for BoundedLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = MAX_LINE_BYTES.saturating_sub(self.written);
        let mut stderr = io::stderr().lock();
        if buf.len() <= room {
            stderr.write_all(buf)?;
        } else if room > 0 {
            let mut end = room;
            while end > 0 && (buf[end] & 0xC0) == 0x80 {
                end -= 1;
            }
            stderr.write_all(&buf[..end])?;
            write!(stderr, "…[line cut: {} more bytes]", buf.len() - end)?;
            if buf.last() == Some(&b'\n') {
                stderr.write_all(b"\n")?;
            }
        }
        self.written += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_journald_only_when_stderr_is_the_named_stream() {
        assert_eq!(
            choose(LogFormat::Auto, Some("8:1234"), Some((8, 1234))),
            Destination::Journald
        );
        assert_eq!(
            choose(LogFormat::Auto, Some("8:1234"), Some((8, 99))),
            Destination::Human
        );
        assert_eq!(
            choose(LogFormat::Auto, None, Some((8, 1234))),
            Destination::Human
        );
        assert_eq!(
            choose(LogFormat::Auto, Some("junk"), Some((8, 1234))),
            Destination::Human
        );
        assert_eq!(
            choose(LogFormat::Json, Some("8:1234"), Some((8, 1234))),
            Destination::Json
        );
        assert_eq!(choose(LogFormat::Human, None, None), Destination::Human);
        assert_eq!(
            choose(LogFormat::Journald, None, None),
            Destination::Journald
        );
    }

    #[test]
    fn clip_bounds_long_text_and_escapes_control_characters() {
        let long = "é".repeat(60_000);
        let clipped = clip(&long).to_string();
        assert!(clipped.len() < MAX_FIELD_BYTES + 40, "{}", clipped.len());
        assert!(clipped.ends_with("more bytes]"));
        assert_eq!(clip("a\nb").to_string(), "a\\nb");
        assert_eq!(clip("short").to_string(), "short");
    }
}
