//! The unique rule: among rows that share the values of one of their
//! table's `UNIQUE` groups (`TableSchema::unique`), only one is present.
//!
//! Two devices can insert different rows with the same unique values (the
//! same artist credited twice on an album, an audio format for the same
//! track). SQLite refuses the second; a batch that kept failing on it would
//! stall its device's stream for good. Instead, like a row under an absent
//! parent, the rows that lose stay absent with their values kept
//! (`bae_sync_parked`), and which row is present is a function of the stamps:
//! of the rows that live and whose parents are present, the one with the
//! newest row (insert) stamp, ties broken by id. Every device therefore
//! keeps the same row whatever the arrival order, and when that row is
//! deleted or moves away, the next one comes back.
//!
//! Merge settles a unique key whenever its holder may change: an insert or
//! revival refused by the constraint, a present row leaving (deleted, under
//! an absent parent, or outbid), an update of a unique column, and this
//! device's own writes to a table with unique groups.

use crate::apply::Applier;
use crate::error::MergeError;
use crate::state::{self, RowState};
use bae_hlc::Stamp;
use bae_oplog::{TableSchema, Value};
use std::collections::BTreeSet;

/// One unique group's values: the key whose holder is to be settled.
#[derive(Clone, Debug)]
pub(crate) struct UniqueKey {
    table: &'static TableSchema,
    group: usize,
    values: Vec<Value>,
}

impl PartialEq for UniqueKey {
    fn eq(&self, other: &Self) -> bool {
        self.table.name == other.table.name
            && self.group == other.group
            && self.values == other.values
    }
}

/// Rows and keys waiting to be settled at the end of a batch.
#[derive(Debug, Default)]
pub(crate) struct Unsettled {
    keys: Vec<UniqueKey>,
    /// Tables whose parked rows must all be checked (this device wrote to
    /// them: a key it vacated is not known any more).
    tables: BTreeSet<&'static str>,
}

/// The unique keys of a row with `values` (groups with a missing or NULL
/// value constrain nothing, as in SQL).
pub(crate) fn keys_of<'v>(
    table: &'static TableSchema,
    values: impl Fn(&str) -> Option<&'v Value>,
) -> Vec<UniqueKey> {
    table
        .unique
        .iter()
        .enumerate()
        .filter_map(|(group, columns)| {
            let values: Option<Vec<Value>> = columns
                .iter()
                .map(|c| values(c).filter(|v| **v != Value::Null).cloned())
                .collect();
            values.map(|values| UniqueKey {
                table,
                group,
                values,
            })
        })
        .collect()
}

/// Whether an insert or update failed on a `UNIQUE` constraint.
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::ConstraintViolation
            && f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

impl Applier<'_> {
    /// Queues the keys of a row with these values.
    pub(crate) fn unsettle(&mut self, table: &'static TableSchema, fields: &[(&str, &Value)]) {
        if table.unique.is_empty() {
            return;
        }
        for key in keys_of(table, |c| {
            fields.iter().find(|(f, _)| *f == c).map(|(_, v)| *v)
        }) {
            if !self.unsettled.keys.contains(&key) {
                self.unsettled.keys.push(key);
            }
        }
    }

    /// Queues the keys of a present row (read before it changes or goes).
    pub(crate) fn unsettle_present(
        &mut self,
        table: &'static TableSchema,
        id: &str,
    ) -> Result<(), MergeError> {
        if table.unique.is_empty() {
            return Ok(());
        }
        let values = state::physical_values(self.conn, table, id)?;
        let fields: Vec<(&str, &Value)> = values.iter().map(|(c, v)| (*c, v)).collect();
        self.unsettle(table, &fields);
        Ok(())
    }

    /// Queues every parked row of `table` (this device wrote to it).
    pub(crate) fn unsettle_table(&mut self, table: &str) {
        if let Some(t) = self.schema.table(table).filter(|t| !t.unique.is_empty()) {
            self.unsettled.tables.insert(t.name);
        }
    }

    /// Settles every queued key: the newest eligible row is present, the
    /// others absent with their values kept.
    pub(crate) fn settle(&mut self) -> Result<(), MergeError> {
        for table in std::mem::take(&mut self.unsettled.tables) {
            let Some(table) = self.schema.table(table) else {
                continue;
            };
            for id in state::parked_ids(self.conn, table.name)? {
                let st = state::load_row(self.conn, table, &id)?;
                if st.own_live() {
                    let values = self.live_values(table, &id, &st)?;
                    let fields: Vec<(&str, &Value)> =
                        values.iter().map(|(c, v)| (c.as_str(), v)).collect();
                    self.unsettle(table, &fields);
                }
            }
        }
        let mut done: Vec<UniqueKey> = Vec::new();
        while let Some(key) = self.unsettled.keys.pop() {
            if done.contains(&key) {
                continue;
            }
            self.settle_key(&key)?;
            done.push(key);
        }
        Ok(())
    }

    fn settle_key(&mut self, key: &UniqueKey) -> Result<(), MergeError> {
        let table = key.table;
        let columns = table.unique[key.group];
        let mut candidates = state::ids_with_values(self.conn, table.name, columns, &key.values)?;
        for id in state::parked_ids_with(self.conn, table.name, columns[0], &key.values[0])? {
            if !candidates.contains(&id) {
                candidates.push(id);
            }
        }
        if candidates.is_empty() {
            return Ok(());
        }
        let mut eligible: Vec<(Option<Stamp>, String, RowState)> = Vec::new();
        for id in candidates {
            let st = state::load_row(self.conn, table, &id)?;
            if st.present || self.could_be_present(key, &id, &st)? {
                eligible.push((st.ins, id, st));
            }
        }
        let Some(best) = eligible
            .iter()
            .max_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)))
            .map(|e| e.1.clone())
        else {
            return Ok(());
        };
        for (_, id, st) in &eligible {
            if st.present && *id != best {
                self.make_absent(table, id)?;
            }
        }
        if let Some((_, id, st)) = eligible.iter().find(|e| e.1 == best && !e.2.present) {
            self.materialize(table, id, st, false)?;
        }
        Ok(())
    }

    /// Whether an absent row lives, holds `key` and has every parent present.
    fn could_be_present(
        &self,
        key: &UniqueKey,
        id: &str,
        st: &RowState,
    ) -> Result<bool, MergeError> {
        if !st.own_live() {
            return Ok(false);
        }
        let values = self.live_values(key.table, id, st)?;
        let fields: Vec<(&str, &Value)> = values.iter().map(|(c, v)| (c.as_str(), v)).collect();
        let holds_key = key.table.unique[key.group]
            .iter()
            .zip(&key.values)
            .all(|(c, want)| fields.iter().any(|(f, v)| f == c && *v == want));
        Ok(holds_key
            && self.check_parents(key.table, id, &fields)?.is_none()
            && self.parents_present(key.table, &fields)?)
    }
}
