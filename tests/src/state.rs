//! The daemon's state directory as a test inspects it: a copy (a backup, or a thief's), and
//! a snapshot to compare before and after — every file's bytes, except that the database
//! is compared by its rows (SQLite may checkpoint and rewrite the file without changing
//! them) and the lock and SQLite's WAL files are left out.

use std::collections::BTreeMap;
use std::path::Path;

/// Copies the directory tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating the copy");
    for entry in std::fs::read_dir(from).expect("reading the state") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copying a file");
        }
    }
}

/// Every row of every table of the SQLite database at `path`, read without writing.
pub fn db_rows(path: &Path) -> Vec<String> {
    use rusqlite::{Connection, OpenFlags};
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("opening the database read-only");
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .expect("listing tables")
        .query_map([], |r| r.get(0))
        .expect("listing tables")
        .map(|t| t.expect("a table name"))
        .collect();
    let mut rows = Vec::new();
    for t in tables {
        let mut stmt = c
            .prepare(&format!("SELECT * FROM \"{t}\""))
            .expect("selecting a table");
        let n = stmt.column_count();
        let mut q = stmt.query([]).expect("reading a table");
        while let Some(row) = q.next().expect("reading a row") {
            let cells: Vec<String> = (0..n)
                .map(|i| format!("{:?}", row.get_ref(i).expect("a cell")))
                .collect();
            rows.push(format!("{t}: {}", cells.join(", ")));
        }
    }
    rows.sort();
    rows
}

/// The state directory's content by path: database rows, and every other file's bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("reading the state") {
            let entry = entry.expect("a directory entry");
            let path = entry.path();
            if entry.file_type().expect("a file type").is_dir() {
                walk(base, &path, out);
                continue;
            }
            let name = path
                .strip_prefix(base)
                .expect("a path under the state")
                .display()
                .to_string();
            if name.ends_with(".db") {
                out.insert(name, db_rows(&path).join("\n").into_bytes());
            } else if name != "arbiterd.lock" && !name.ends_with("-wal") && !name.ends_with("-shm")
            {
                out.insert(name, std::fs::read(&path).expect("reading a file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The paths whose content differs between two snapshots, each with both versions (for an
/// assertion's message); empty when nothing changed.
pub fn changes(before: &BTreeMap<String, Vec<u8>>, after: &BTreeMap<String, Vec<u8>>) -> String {
    let show = |m: &BTreeMap<String, Vec<u8>>, k: &str| {
        m.get(k)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_else(|| "(absent)".into())
    };
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| {
            format!(
                "{k} before:\n{}\n{k} after:\n{}\n",
                show(before, k),
                show(after, k)
            )
        })
        .collect()
}
