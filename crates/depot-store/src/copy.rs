//! Copying a registry's metadata from one engine to another (`depot admin migrate`): every table,
//! row for row, keeping sequence numbers, in batches that commit on their own. A copy that stops
//! half-way is resumed by running it again: rows the target has are skipped. `verify` then
//! checks that every row of the source is in the target, identical.

use std::collections::HashSet;

use crate::db::{Row, Value};
use crate::{Metadata, Result, StoreError};

/// Every table, parents before the tables that refer to them.
const TABLES: &[&str] = &[
    "blobs",
    "versions",
    "configs",
    "config_revisions",
    "agents",
    "deprecations",
    "channels",
    "channel_moves",
    "pipelines",
    "stages",
    "env_versions",
    "promotions",
    "events",
    "tokens",
    "rollouts",
    "signatures",
    "settings",
    "policies",
    "attestations",
    "ssh_keys",
    "blob_frames",
];

/// Columns numbered by the database (an identity on PostgreSQL, AUTOINCREMENT on SQLite): the
/// copy keeps their values, and moves the target's counter past them.
const SEQUENCES: &[(&str, &str)] =
    &[("versions", "seq"), ("channel_moves", "seq"), ("promotions", "id"), ("events", "seq")];

/// Rows written per transaction.
const BATCH: usize = 500;

/// What was copied of one table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableCopy {
    pub table: &'static str,
    /// Rows in the source.
    pub rows: u64,
    /// Rows the target did not have yet.
    pub copied: u64,
}

/// Copies every table of `from` into `to`; `progress` hears of each table as it is done.
pub fn copy_metadata(from: &Metadata, to: &Metadata, progress: &mut dyn FnMut(&TableCopy)) -> Result<Vec<TableCopy>> {
    // One read transaction: the copy is of one consistent moment of the source.
    let tables = from.read(|tx| {
        TABLES
            .iter()
            .map(|table| {
                let columns = tx.columns(table)?;
                let rows = tx.rows(&format!("SELECT {} FROM {table}", columns.join(", ")), ())?;
                Ok((*table, columns, rows))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let overriding = if to.engine() == "postgres" { "OVERRIDING SYSTEM VALUE" } else { "" };
    let mut report = Vec::new();
    for (table, columns, rows) in tables {
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let sequenced = SEQUENCES.iter().any(|(t, _)| *t == table);
        let insert = format!(
            "INSERT INTO {table} ({}) {} VALUES ({}) ON CONFLICT DO NOTHING",
            columns.join(", "),
            if sequenced { overriding } else { "" },
            placeholders.join(", ")
        );
        let mut copied = 0;
        for batch in rows.chunks(BATCH) {
            copied += to.transaction(|tx| {
                let mut copied = 0;
                for row in batch {
                    copied += tx.execute(&insert, row.0.clone())? as u64;
                }
                Ok(copied)
            })?;
        }
        let done = TableCopy { table, rows: rows.len() as u64, copied };
        progress(&done);
        report.push(done);
    }
    if to.engine() == "postgres" {
        to.transaction(|tx| {
            for (table, column) in SEQUENCES {
                tx.rows(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                         COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
                    ),
                    (),
                )?;
            }
            Ok(())
        })?;
    }
    Ok(report)
}

/// Checks that every row of every table of `from` is in `to`, identical; names the first
/// table that differs and how.
pub fn verify_metadata(from: &Metadata, to: &Metadata) -> Result<()> {
    for table in TABLES {
        let (columns, source) = from.read(|tx| {
            let columns = tx.columns(table)?;
            let rows = tx.rows(&format!("SELECT {} FROM {table}", columns.join(", ")), ())?;
            Ok((columns, rows))
        })?;
        let target = to.read(|tx| tx.rows(&format!("SELECT {} FROM {table}", columns.join(", ")), ()))?;
        let target: HashSet<&Vec<Value>> = target.iter().map(|Row(values)| values).collect();
        let missing = source.iter().filter(|Row(values)| !target.contains(values)).count();
        if missing > 0 {
            return Err(StoreError::Invalid(format!(
                "table {table}: {missing} of its {} rows are not in the target as they are in the source",
                source.len()
            )));
        }
    }
    Ok(())
}
