//! `arbiter eventlog replay|show`: read a firmware log or a measurement log from a file and
//! print its replayed PCRs or its events. All parsing and replay is in
//! `arbiter-measured-boot`; this module only reads the file and formats.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, Result};
use arbiter_measured_boot::LogFile;
use arbiter_measured_boot::cel::{self, LogRead, Record, TornReason};
use arbiter_measured_boot::firmware::{DataCheck, DataCoverage, EventLog, LogFormat};
use serde_json::{Map, Value, json};

fn load(file: &Path) -> Result<LogFile> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    LogFile::from_bytes(&bytes).with_context(|| format!("parsing {}", file.display()))
}

/// The records of a measurement log, warning about a torn last line.
fn records<'a>(log: &'a LogFile, err: &mut dyn Write) -> Result<Option<&'a [Record]>> {
    match log {
        LogFile::Firmware(_) => Ok(None),
        LogFile::CelArray(records) => Ok(Some(records)),
        LogFile::CelLines(LogRead { records, torn }) => {
            if let Some(t) = torn {
                let why = match &t.reason {
                    TornReason::NoNewline => "no terminating newline".to_owned(),
                    TornReason::Unparseable(reason) => reason.clone(),
                };
                writeln!(
                    err,
                    "warning: torn last record (line {}, offset {}, {} bytes): {why}; ignored",
                    t.line, t.offset, t.len
                )?;
            }
            Ok(Some(records))
        }
    }
}

/// `arbiter eventlog replay FILE [--json]`. A firmware log's complete banks are printed with
/// their values; a bank the log declares but some extending event carries no digest for is
/// incomplete: it is named (with the first event lacking it), never given values, and not an
/// error.
pub fn replay(file: &Path, as_json: bool, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let log = load(file)?;
    let mut incomplete = Vec::new();
    let value = match &log {
        LogFile::Firmware(fw) => {
            let pcrs = fw
                .replay()
                .with_context(|| format!("replaying {}", file.display()))?;
            for alg in &pcrs.unsupported {
                writeln!(
                    err,
                    "warning: bank {alg} is declared but not supported; not replayed"
                )?;
            }
            incomplete = pcrs.incomplete.iter().map(ToString::to_string).collect();
            pcrs.to_json()
        }
        _ => {
            let records = records(&log, err)?.unwrap_or_default();
            for (i, r) in records.iter().enumerate() {
                if !r.digest_matches() {
                    writeln!(
                        err,
                        "warning: record {i}: digest does not match its content"
                    )?;
                }
            }
            let pcrs: Map<String, Value> = cel::replay_by_pcr(records)
                .into_iter()
                .map(|(pcr, v)| (pcr.to_string(), Value::String(hex::encode(v))))
                .collect();
            json!({ "pcrs": { "sha256": pcrs } })
        }
    };
    if as_json {
        serde_json::to_writer_pretty(&mut *out, &value)?;
        writeln!(out)?;
    } else {
        print_pcrs(&value, out)?;
        for line in incomplete {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

fn print_pcrs(value: &Value, out: &mut dyn Write) -> Result<()> {
    let Some(banks) = value["pcrs"].as_object() else {
        return Ok(());
    };
    for (bank, pcrs) in banks {
        writeln!(out, "{bank}:")?;
        let sorted: BTreeMap<u32, &Value> = pcrs
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.parse().ok()?, v)))
            .collect();
        for (pcr, v) in sorted {
            writeln!(out, "  {pcr:>2}: {}", v.as_str().unwrap_or_default())?;
        }
    }
    Ok(())
}

/// `arbiter eventlog show FILE`.
pub fn show(file: &Path, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let log = load(file)?;
    match &log {
        LogFile::Firmware(fw) => show_firmware(fw, out),
        _ => show_records(records(&log, err)?.unwrap_or_default(), out),
    }
}

fn check_label(check: DataCheck) -> String {
    match check {
        DataCheck::Matches(DataCoverage::Whole) => "data matches digest".into(),
        DataCheck::Matches(DataCoverage::WithoutTrailingNul) => {
            "data (without trailing NUL) matches digest".into()
        }
        DataCheck::Matches(DataCoverage::TextAfterLabel(label)) => {
            format!("text after {label:?} matches digest")
        }
        DataCheck::Matches(DataCoverage::VariableValue) => "variable value matches digest".into(),
        DataCheck::Mismatch(alg) => format!("DATA DOES NOT MATCH the {alg} digest"),
        DataCheck::NotCheckable => "digest is not of the data: unverified".into(),
        DataCheck::NotExtended => "not extended".into(),
    }
}

fn show_firmware(log: &EventLog, out: &mut dyn Write) -> Result<()> {
    let format = match log.format {
        LogFormat::CryptoAgile => "crypto-agile",
        LogFormat::Sha1Legacy => "legacy SHA-1",
    };
    let banks: Vec<String> = log.banks.iter().map(|(alg, _)| alg.name()).collect();
    writeln!(
        out,
        "firmware event log: {format}, banks {}, {} events",
        banks.join(" "),
        log.events.len()
    )?;
    for bank in log.incomplete_banks() {
        writeln!(out, "  {bank}")?;
    }
    for e in &log.events {
        writeln!(
            out,
            "#{:<4} PCR {:<2} {} [{}]\n      {}",
            e.index,
            e.pcr,
            e.event_type,
            check_label(e.check_data()),
            e.decoded
        )?;
        for d in &e.digests {
            writeln!(out, "      {:<7} {}", d.alg.name(), hex::encode(&d.digest))?;
        }
    }
    Ok(())
}

fn show_records(records: &[Record], out: &mut dyn Write) -> Result<()> {
    writeln!(out, "measurement log: {} records", records.len())?;
    for (i, r) in records.iter().enumerate() {
        let check = if r.digest_matches() {
            "digest ok"
        } else {
            "DIGEST DOES NOT MATCH CONTENT"
        };
        writeln!(
            out,
            "#{i:<4} recnum {} PCR {} {} [{check}]\n      sha256  {}",
            r.recnum,
            r.pcr,
            r.content.event_name(),
            r.digest
        )?;
        let content = serde_json::to_value(&r.content)?;
        if let Some(fields) = content.as_object() {
            for (k, v) in fields.iter().filter(|(k, _)| k.as_str() != "event") {
                writeln!(out, "      {k}: {v}")?;
            }
        }
    }
    Ok(())
}
