//! Applying one op under the merge rules (see the crate docs).

use crate::error::MergeError;
use crate::kept;
use crate::keys::row_key;
use crate::stamps::{self, StampIds};
use crate::state::{self, RowState};
use crate::ties;
use crate::unique::{is_unique_violation, Unsettled};
use bae_hlc::{DeviceId, Stamp};
use bae_oplog::{Op, OpKind, SyncSchema, TableSchema, Value};
use rusqlite::{Connection, ErrorCode};
use std::borrow::Cow;
use std::collections::HashMap;
use std::rc::Rc;

/// How many local ops the fold of local writes reads at a time. Small in
/// the crate's own tests, so every fold there spans several pages.
const FOLD_PAGE: usize = if cfg!(test) { 3 } else { 4096 };

/// What applying a batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Ops in the batch.
    pub ops: usize,
    /// Fields whose incoming write was newer and won.
    pub fields_won: usize,
    /// Fields whose incoming write was older and was skipped.
    pub fields_lost: usize,
    /// Rows that appeared (inserted or revived).
    pub rows_inserted: usize,
    /// Rows removed by a winning delete (their dependents go with them).
    pub rows_deleted: usize,
    /// Ops on rows that stay absent (deleted by a newer tombstone, or under
    /// an absent parent): their stamps were recorded, their values kept
    /// aside, nothing became visible.
    pub ops_on_absent_rows: usize,
    /// Ops of a newer writer naming tables or columns this device's schema
    /// does not know: that part of each is kept (`kept.rs`) until an
    /// upgrade.
    pub ops_kept: usize,
}

/// Where a referenced parent row stands.
enum ParentStatus {
    Present,
    /// Known here (it has stamps) but absent: the child stays absent too.
    Absent,
    /// Never heard of: its insert has not arrived.
    Unknown,
}

/// Applies ops inside one transaction.
pub(crate) struct Applier<'c> {
    pub(crate) conn: &'c Connection,
    /// Which tables and columns sync (every name in SQL comes from here).
    pub(crate) schema: &'static SyncSchema,
    /// Whether `bae_sync_parked` may hold rows (skips revival lookups when not).
    parking_used: bool,
    /// Whether `bae_sync_column_stamps` may hold rows (skips their lookup
    /// for an insert of a row never stamped when not).
    column_stamps_used: bool,
    /// Each table's column defaults, read once when an insert omits columns.
    defaults: HashMap<&'static str, Rc<[(&'static str, Value)]>>,
    pub(crate) stats: ApplyStats,
    /// Unique keys whose holder may have changed (`unique.rs`).
    pub(crate) unsettled: Unsettled,
    /// The local numbers of the devices and tables stamps name.
    ids: StampIds,
}

impl<'c> Applier<'c> {
    pub(crate) fn new(
        conn: &'c Connection,
        schema: &'static SyncSchema,
    ) -> Result<Self, MergeError> {
        let parking_used = state::ensure_parking(conn)?;
        let column_stamps_used = stamps::any_column_stamps(conn)?;
        Ok(Applier {
            conn,
            schema,
            parking_used,
            column_stamps_used,
            defaults: HashMap::new(),
            stats: ApplyStats::default(),
            unsettled: Unsettled::default(),
            ids: StampIds::default(),
        })
    }

    /// Sets a row's insert stamp to `s` (newer than the one it has) and
    /// drops the column stamps of `st` that `s` covers.
    fn set_row_stamp(
        &mut self,
        table: &str,
        id: &str,
        s: Stamp,
        st: &RowState,
    ) -> Result<(), MergeError> {
        let (table, writer) = (
            self.ids.table(self.conn, table)?,
            self.ids.writer(self.conn, s.device)?,
        );
        let passed = st
            .fields
            .iter()
            .filter(|(_, f)| *f <= s)
            .map(|(c, _)| c.as_str());
        stamps::set_row_stamp(self.conn, table, id, stamp_hlc(s), writer, passed)
    }

    /// Sets a column's stamp to `s` (newer than its effective stamp).
    fn set_column_stamp(
        &mut self,
        table: &str,
        id: &str,
        column: &str,
        s: Stamp,
    ) -> Result<(), MergeError> {
        let (table, writer) = (
            self.ids.table(self.conn, table)?,
            self.ids.writer(self.conn, s.device)?,
        );
        self.column_stamps_used = true;
        stamps::set_column_stamp(self.conn, table, id, column, stamp_hlc(s), writer)
    }

    /// Sets a row's tombstone to `s` (newer than the one it has).
    fn set_tombstone(&mut self, table: &str, id: &str, s: Stamp) -> Result<(), MergeError> {
        let (table, writer) = (
            self.ids.table(self.conn, table)?,
            self.ids.writer(self.conn, s.device)?,
        );
        stamps::set_tombstone(self.conn, table, id, stamp_hlc(s), writer)
    }

    /// Applies one validated op written by `device` under schema
    /// `writer_version`. What the schema does not know (validation let it
    /// through only from a newer writer) is kept, the rest applies.
    pub(crate) fn apply_op(
        &mut self,
        op: &Op,
        device: DeviceId,
        writer_version: u32,
    ) -> Result<(), MergeError> {
        let stamp = Stamp::new(op.hlc, device);
        let Some(table) = self.schema.table(&op.table) else {
            kept::keep(self.conn, op, device, writer_version, true, &op.fields)?;
            self.stats.ops += 1;
            self.stats.ops_kept += 1;
            return Ok(());
        };
        if op.fields.iter().all(|(c, _)| table.syncs(c)) {
            return self.apply_known(op, table, stamp);
        }
        let (known, unknown) = kept::split_fields(self.schema, op);
        kept::keep(self.conn, op, device, writer_version, false, &unknown)?;
        self.stats.ops_kept += 1;
        let known = Op {
            fields: known,
            ..op.clone()
        };
        self.apply_known(&known, table, stamp)
    }

    /// Applies an op whose table and fields the schema knows.
    pub(crate) fn apply_known(
        &mut self,
        op: &Op,
        table: &'static TableSchema,
        stamp: Stamp,
    ) -> Result<(), MergeError> {
        self.stats.ops += 1;
        match op.kind {
            OpKind::Delete => self.delete(table, &op.row_id, stamp),
            OpKind::Insert => {
                if self.insert_unseen(table, op, stamp)? {
                    return Ok(());
                }
                let op = self.complete_insert(table, op)?;
                self.write(table, &op, stamp)
            }
            OpKind::Update => self.write(table, op, stamp),
        }
    }

    /// An insert writes every synced column: one that omits some writes
    /// their SQL defaults, so a later insert replaces all of an earlier
    /// one's values whatever the arrival order.
    fn complete_insert<'o>(
        &mut self,
        table: &'static TableSchema,
        op: &'o Op,
    ) -> Result<Cow<'o, Op>, MergeError> {
        let carried = |c: &str| op.fields.iter().any(|(f, _)| f == c);
        if table.columns.iter().all(|c| carried(c)) {
            return Ok(Cow::Borrowed(op));
        }
        let mut full = op.clone();
        for (c, v) in self.defaults_of(table)?.iter() {
            if !carried(c) {
                full.fields.push(((*c).to_owned(), v.clone()));
            }
        }
        Ok(Cow::Owned(full))
    }

    /// A table's column defaults, read from the schema the first time.
    fn defaults_of(
        &mut self,
        table: &'static TableSchema,
    ) -> Result<Rc<[(&'static str, Value)]>, MergeError> {
        if let Some(d) = self.defaults.get(table.name) {
            return Ok(Rc::clone(d));
        }
        let d: Rc<[_]> = column_defaults(self.conn, table)?.into();
        self.defaults.insert(table.name, Rc::clone(&d));
        Ok(d)
    }

    fn write(&mut self, table: &'static TableSchema, op: &Op, s: Stamp) -> Result<(), MergeError> {
        let id = op.row_id.as_str();
        let st = state::load_row(self.conn, table, id)?;
        let is_insert = op.kind == OpKind::Insert;
        if !st.known() {
            if is_insert && self.insert_unseen(table, op, s)? {
                return Ok(());
            }
            return Err(MergeError::MissingRow {
                table: table.name.into(),
                row_id: id.into(),
            });
        }
        let becomes_ins = is_insert && st.ins.is_none_or(|i| i < s);
        // A field whose stamp equals the write's takes the greater value
        // (`ties.rs`); its stamp stays as it is.
        let mut winners: Vec<(&str, &Value)> = Vec::with_capacity(op.fields.len());
        let mut tied: Vec<&str> = Vec::new();
        for (c, v) in &op.fields {
            match st.field(c) {
                Some(f) if f > s => {}
                Some(f) if f == s => {
                    if self.wins_tie(table, id, &st, c, v)? {
                        winners.push((c.as_str(), v));
                        tied.push(c.as_str());
                    }
                }
                _ => winners.push((c.as_str(), v)),
            }
        }
        self.stats.fields_won += winners.len();
        self.stats.fields_lost += op.fields.len() - winners.len();
        let mut after = st.clone();
        if becomes_ins {
            // The row stamp is every column's stamp unless a column has a
            // newer explicit one, so winners need no rows of their own.
            self.set_row_stamp(table.name, id, s, &st)?;
            after.ins = Some(s);
            after.fields.retain(|(_, f)| *f > s);
        } else {
            for (c, _) in winners.iter().filter(|(c, _)| !tied.contains(c)) {
                self.set_column_stamp(table.name, id, c, s)?;
                after.fields.retain(|(f, _)| f != c);
                after.fields.push(((*c).to_owned(), s));
            }
        }
        if st.present {
            self.write_present(table, id, &winners)
        } else {
            self.write_absent(table, id, &winners, &after, s)
        }
    }

    /// Whether `value`, written to `column` of a known row with the stamp
    /// the field already has, wins the tie against the value the field
    /// holds: the row's own if present, its kept value if absent.
    fn wins_tie(
        &self,
        table: &'static TableSchema,
        id: &str,
        st: &RowState,
        column: &str,
        value: &Value,
    ) -> Result<bool, MergeError> {
        let current = if st.present {
            state::physical_values(self.conn, table, id)?
                .into_iter()
                .find(|(c, _)| *c == column)
                .map(|(_, v)| v)
        } else {
            state::parked_values(self.conn, table.name, id)?
                .into_iter()
                .find(|(c, _)| c == column)
                .map(|(_, v)| v)
        };
        ties::wins_tie(self.conn, table, column, value, current.as_ref())
    }

    /// Writes fields kept from an op whose other fields applied when it
    /// arrived (`kept.rs`): each wins unless the field's stamp is newer than
    /// the op's. A field whose stamp is the op's own (the insert it came
    /// with) takes the value without a stamp of its own. That equal stamp
    /// is taken for the op's own, not a tie (`ties.rs`): the insert wrote
    /// the column's default where the kept value belongs, and only a writer
    /// that reused a stamp for two ops of one row could have written
    /// something else there.
    pub(crate) fn write_late(
        &mut self,
        table: &'static TableSchema,
        op: &Op,
        s: Stamp,
    ) -> Result<(), MergeError> {
        let id = op.row_id.as_str();
        let st = state::load_row(self.conn, table, id)?;
        if !st.known() {
            return Err(MergeError::MissingRow {
                table: table.name.into(),
                row_id: id.into(),
            });
        }
        let winners: Vec<(&str, &Value)> = op
            .fields
            .iter()
            .filter(|(c, _)| st.field(c).is_none_or(|f| f <= s))
            .map(|(c, v)| (c.as_str(), v))
            .collect();
        self.stats.fields_won += winners.len();
        self.stats.fields_lost += op.fields.len() - winners.len();
        let mut after = st.clone();
        for (c, _) in &winners {
            if st.field(c) != Some(s) {
                self.set_column_stamp(table.name, id, c, s)?;
                after.fields.retain(|(f, _)| f != c);
                after.fields.push(((*c).to_owned(), s));
            }
        }
        if st.present {
            self.write_present(table, id, &winners)
        } else {
            self.write_absent(table, id, &winners, &after, s)
        }
    }

    /// An insert of a row never seen here, the common case, in one stamp
    /// insert and one row insert: the stamp goes in first, and only if the
    /// row has no row stamp, which is how this learns the row has none
    /// without reading its state. Returns false, having changed nothing,
    /// when the row is known after all (stamped, or present from before
    /// sync began): the caller applies the insert the general way.
    fn insert_unseen(
        &mut self,
        table: &'static TableSchema,
        op: &Op,
        s: Stamp,
    ) -> Result<bool, MergeError> {
        let id = op.row_id.as_str();
        let (table_id, writer) = (
            self.ids.table(self.conn, table.name)?,
            self.ids.writer(self.conn, s.device)?,
        );
        let key = row_key(id);
        if !stamps::claim_row_stamp(self.conn, table_id, &key, stamp_hlc(s), writer)? {
            return Ok(false);
        }
        if self.column_stamps_used && stamps::has_column_stamps(self.conn, table_id, &key)? {
            stamps::unclaim_row_stamp(self.conn, table_id, &key)?;
            return Ok(false);
        }
        // An insert writes every synced column: what it omits takes its SQL
        // default, so a later insert replaces all of an earlier one's values
        // whatever the arrival order. A new row gets those defaults from
        // SQLite itself; an absent one keeps them beside the rest.
        let carried = |c: &str| op.fields.iter().any(|(f, _)| f == c);
        let written = op.fields.len() + table.columns.iter().filter(|c| !carried(c)).count();
        let given: Vec<(&str, &Value)> = op.fields.iter().map(|(c, v)| (c.as_str(), v)).collect();
        let failed = match state::insert_row(self.conn, table.name, id, &given) {
            Ok(_) => {
                self.stats.fields_won += written;
                self.stats.rows_inserted += 1;
                self.revive_children(table, id)?;
                return Ok(true);
            }
            Err(e) => e,
        };
        let defaults = self.defaults_of(table)?;
        let mut fields = given;
        fields.extend(
            defaults
                .iter()
                .filter(|(c, _)| !carried(c))
                .map(|(c, v)| (*c, v)),
        );
        match failed {
            e if is_key_violation(&e) && state::exists(self.conn, table.name, id)? => {
                // Present from before sync began, with no stamps yet.
                stamps::unclaim_row_stamp(self.conn, table_id, &key)?;
                Ok(false)
            }
            e if is_unique_violation(&e) => {
                // Another row holds its unique values: absent for now, and
                // the newer of the two is settled at the end of the batch.
                self.stats.fields_won += fields.len();
                for (c, v) in &fields {
                    state::park(self.conn, table.name, id, c, v)?;
                }
                self.parking_used = true;
                self.unsettle(table, &fields);
                self.stats.ops_on_absent_rows += 1;
                Ok(true)
            }
            e if is_fk_violation(&e) => {
                // Some parent is not here: dead (known, absent) or not yet arrived.
                if let Some(missing) = self.check_parents(table, id, &fields)? {
                    return Err(missing);
                }
                self.stats.fields_won += fields.len();
                for (c, v) in &fields {
                    state::park(self.conn, table.name, id, c, v)?;
                }
                self.parking_used = true;
                self.stats.ops_on_absent_rows += 1;
                Ok(true)
            }
            e => Err(e.into()),
        }
    }

    fn write_present(
        &mut self,
        table: &'static TableSchema,
        id: &str,
        winners: &[(&str, &Value)],
    ) -> Result<(), MergeError> {
        if winners.is_empty() {
            return Ok(());
        }
        let moves_parent = table
            .parents
            .iter()
            .any(|(col, _)| winners.iter().any(|(c, _)| c == col));
        if moves_parent {
            if let Some(missing) = self.check_parents(table, id, winners)? {
                return Err(missing);
            }
            if !self.parents_present(table, winners)? {
                // Moved under an absent parent: the row goes absent with it.
                self.make_absent(table, id)?;
                for (c, v) in winners {
                    state::park(self.conn, table.name, id, c, v)?;
                }
                self.stats.ops_on_absent_rows += 1;
                return Ok(());
            }
        }
        let moves_key = table
            .unique
            .iter()
            .any(|g| winners.iter().any(|(c, _)| g.contains(c)));
        if !moves_key {
            return state::update_row(self.conn, table.name, id, winners);
        }
        // The key it leaves may let another row in; the key it takes may be
        // held by another row.
        self.unsettle_present(table, id)?;
        let mut values = state::physical_values(self.conn, table, id)?;
        for (c, v) in winners {
            if let Some(slot) = values.iter_mut().find(|(f, _)| f == c) {
                slot.1 = (*v).clone();
            }
        }
        let fields: Vec<(&str, &Value)> = values.iter().map(|(c, v)| (*c, v)).collect();
        self.unsettle(table, &fields);
        match state::update_row(self.conn, table.name, id, winners) {
            Err(MergeError::Db(e)) if is_unique_violation(&e) => {
                self.make_absent(table, id)?;
                for (c, v) in winners {
                    state::park(self.conn, table.name, id, c, v)?;
                }
                self.stats.ops_on_absent_rows += 1;
                Ok(())
            }
            other => other,
        }
    }

    fn write_absent(
        &mut self,
        table: &'static TableSchema,
        id: &str,
        winners: &[(&str, &Value)],
        after: &RowState,
        s: Stamp,
    ) -> Result<(), MergeError> {
        if after.after_tomb(Some(s)) {
            for (c, v) in winners {
                state::park(self.conn, table.name, id, c, v)?;
            }
            self.parking_used = true;
        }
        if !after.own_live() || !self.materialize(table, id, after, true)? {
            self.stats.ops_on_absent_rows += 1;
        }
        Ok(())
    }

    fn delete(
        &mut self,
        table: &'static TableSchema,
        id: &str,
        s: Stamp,
    ) -> Result<(), MergeError> {
        let st = state::load_row(self.conn, table, id)?;
        if st.tomb.is_some_and(|t| t >= s) {
            return Ok(());
        }
        self.set_tombstone(table.name, id, s)?;
        let mut after = st.clone();
        after.tomb = Some(s);
        if st.present && !after.own_live() {
            self.make_absent(table, id)?;
            self.stats.rows_deleted += 1;
        }
        Ok(())
    }

    /// Removes a present row and its present dependents, keeping their
    /// values aside so a later revival restores them identically everywhere.
    pub(crate) fn make_absent(
        &mut self,
        table: &'static TableSchema,
        id: &str,
    ) -> Result<(), MergeError> {
        self.park_subtree(table, id)?;
        self.parking_used = true;
        state::delete_row(self.conn, table.name, id)
    }

    fn park_subtree(&mut self, table: &'static TableSchema, id: &str) -> Result<(), MergeError> {
        // Its unique values are free once it goes.
        self.unsettle_present(table, id)?;
        for (child, column) in self.schema.children_of(table.name) {
            for cid in state::child_ids(self.conn, child.name, column, id)? {
                self.park_subtree(child, &cid)?;
            }
        }
        state::unpark(self.conn, table.name, id)?;
        // Values older than the row's own tombstone never come back.
        let st = state::load_row(self.conn, table, id)?;
        for (c, v) in state::physical_values(self.conn, table, id)? {
            if st.after_tomb(st.field(c)) {
                state::park(self.conn, table.name, id, c, &v)?;
            }
        }
        Ok(())
    }

    /// Puts an own-live absent row back from its kept values if every parent
    /// is present. Returns whether it did. With `strict`, a parent never
    /// heard of is an error (retry the batch later) unless another parent is
    /// known absent (then the row is simply absent).
    pub(crate) fn materialize(
        &mut self,
        table: &'static TableSchema,
        id: &str,
        st: &RowState,
        strict: bool,
    ) -> Result<bool, MergeError> {
        let values = self.live_values(table, id, st)?;
        let fields: Vec<(&str, &Value)> = values.iter().map(|(c, v)| (c.as_str(), v)).collect();
        if let Some(missing) = self.check_parents(table, id, &fields)? {
            return if strict { Err(missing) } else { Ok(false) };
        }
        if !self.parents_present(table, &fields)? {
            return Ok(false);
        }
        match state::insert_row(self.conn, table.name, id, &fields) {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                // Stays absent, values kept; settled at the end of the batch.
                self.unsettle(table, &fields);
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
        state::unpark(self.conn, table.name, id)?;
        self.stats.rows_inserted += 1;
        self.revive_children(table, id)?;
        Ok(true)
    }

    /// The kept values of an absent row that a revival would restore:
    /// those written after its tombstone.
    pub(crate) fn live_values(
        &self,
        table: &'static TableSchema,
        id: &str,
        st: &RowState,
    ) -> Result<Vec<(String, Value)>, MergeError> {
        Ok(state::parked_values(self.conn, table.name, id)?
            .into_iter()
            .filter(|(c, _)| st.after_tomb(st.field(c)))
            .collect())
    }

    /// Brings back absent children of a row that just appeared, when their
    /// own stamps say they live and all their parents are now present.
    pub(crate) fn revive_children(
        &mut self,
        table: &'static TableSchema,
        id: &str,
    ) -> Result<(), MergeError> {
        if !self.parking_used {
            return Ok(());
        }
        for (child, column) in self.schema.children_of(table.name) {
            for cid in state::parked_ids_with(self.conn, child.name, column, &Value::from(id))? {
                let st = state::load_row(self.conn, child, &cid)?;
                if !st.present && st.own_live() {
                    self.materialize(child, &cid, &st, false)?;
                }
            }
        }
        Ok(())
    }

    /// `Some(MissingParent)` if a referenced parent was never heard of and
    /// no other referenced parent is known absent.
    pub(crate) fn check_parents(
        &self,
        table: &'static TableSchema,
        id: &str,
        fields: &[(&str, &Value)],
    ) -> Result<Option<MergeError>, MergeError> {
        let mut missing = None;
        for (column, parent) in table.parents {
            let Some((_, Value::Text(pid))) = fields.iter().find(|(c, _)| c == column) else {
                continue;
            };
            match self.parent_status(parent, pid)? {
                ParentStatus::Present => {}
                ParentStatus::Absent => return Ok(None),
                ParentStatus::Unknown => {
                    missing.get_or_insert(MergeError::MissingParent {
                        table: table.name.into(),
                        row_id: id.into(),
                        parent_table: parent,
                        parent_id: pid.clone(),
                    });
                }
            }
        }
        Ok(missing)
    }

    pub(crate) fn parents_present(
        &self,
        table: &'static TableSchema,
        fields: &[(&str, &Value)],
    ) -> Result<bool, MergeError> {
        for (column, parent) in table.parents {
            if let Some((_, Value::Text(pid))) = fields.iter().find(|(c, _)| c == column) {
                if !state::exists(self.conn, parent, pid)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    fn parent_status(&self, parent: &str, id: &str) -> Result<ParentStatus, MergeError> {
        Ok(if state::exists(self.conn, parent, id)? {
            ParentStatus::Present
        } else if state::has_stamps(self.conn, parent, id)? {
            ParentStatus::Absent
        } else {
            ParentStatus::Unknown
        })
    }

    /// Folds this device's own writes recorded since the last fold into
    /// the merge state, in one pass over the op log: each field an insert
    /// or update wrote gets the op's stamp and each delete a tombstone
    /// (whenever newer than what is there), each insert its row stamp, and
    /// rows re-created locally revive their absent children.
    pub(crate) fn fold_local(&mut self, local: DeviceId) -> Result<(), MergeError> {
        let folded = stamps::folded_seq(self.conn)?;
        // A page of ops at a time: the first fold after a large import
        // reads the whole op log, which must never sit in memory at once.
        let mut last = folded;
        let mut any_insert = false;
        loop {
            let mut ops = Vec::new();
            let seen = self.local_ops_after(last, &mut ops)?;
            if seen == last {
                break;
            }
            last = seen;
            for op in &ops {
                any_insert |= self.fold_op(op, Stamp::new(op.hlc, local))?;
            }
        }
        // Revival waits until every op is folded: the tables already hold
        // the end of the op log, so a child must be judged by its final
        // stamps (a local delete after the parent's re-insert keeps it
        // dead), not by the stamps folded so far. A second read of the
        // same ops, in order, and only when anything is parked.
        let mut after = folded;
        while any_insert && self.parking_used && after < last {
            let mut ops = Vec::new();
            after = self.local_ops_after(after, &mut ops)?;
            for op in ops.iter().filter(|op| op.kind == OpKind::Insert) {
                if let Some(table) = self.schema.table(&op.table) {
                    if state::exists(self.conn, table.name, &op.row_id)? {
                        self.revive_children(table, &op.row_id)?;
                    }
                }
            }
        }
        if last != folded {
            stamps::set_folded_seq(self.conn, last)?;
        }
        Ok(())
    }

    /// The next page of local ops after op seq `after` into `ops`; the
    /// newest seq read (`after` when there are none).
    fn local_ops_after(&self, after: i64, ops: &mut Vec<Op>) -> Result<i64, MergeError> {
        Ok(bae_oplog::for_each_op_after(
            self.conn,
            self.schema,
            after,
            FOLD_PAGE,
            |op| {
                ops.push(op.clone());
                Ok(())
            },
        )?)
    }

    /// Folds one local op as merge would apply it, except that the row is
    /// already written: a delete sets the tombstone, an insert the row
    /// stamp (covering every column, so no column stamps), an update the
    /// stamps of the columns it wrote; each only if newer. Returns whether
    /// the op was an insert (whose row may bring back absent children once
    /// every op is folded).
    fn fold_op(&mut self, op: &Op, s: Stamp) -> Result<bool, MergeError> {
        let Some(table) = self.schema.table(&op.table) else {
            return Ok(false);
        };
        self.unsettle_table(table.name);
        let id = op.row_id.as_str();
        let st = state::load_row(self.conn, table, id)?;
        match op.kind {
            OpKind::Delete => {
                if st.tomb.is_none_or(|t| t < s) {
                    self.set_tombstone(table.name, id, s)?;
                }
                return Ok(false);
            }
            OpKind::Update => {
                // Never a tie (`ties.rs`) with a value it overwrote: a
                // stamp of this device's reaches the merge state only from
                // this fold, from an own batch merge applied (re-taken
                // after going back to a backup; the fold runs first and
                // the clock moves past the batch) or from a checkpoint
                // restore (its HLC is at least every stamp it holds, one
                // beyond the drift bound is refused, the clock moves past
                // it, and local batches after it replay through merge, not
                // this fold). So a local write recorded after any of them
                // is stamped after them (test
                // `a_local_write_after_an_applied_own_batch_is_stamped_after_it`).
                for (column, _) in &op.fields {
                    if st.field(column).is_none_or(|t| t < s) {
                        self.set_column_stamp(table.name, id, column, s)?;
                    }
                }
                return Ok(false);
            }
            OpKind::Insert => {}
        }
        if st.ins.is_none_or(|i| i < s) {
            self.set_row_stamp(table.name, id, s, &st)?;
        }
        if self.parking_used {
            state::unpark(self.conn, table.name, id)?;
        }
        Ok(true)
    }
}

/// A stamp's HLC as stored: packed HLCs stay below 2^63 until the year
/// 2093, so the signed column orders like the unsigned values.
fn stamp_hlc(s: Stamp) -> i64 {
    s.hlc.as_u64() as i64
}

/// The default value of each synced column, evaluated from the schema.
fn column_defaults(
    conn: &Connection,
    table: &'static TableSchema,
) -> Result<Vec<(&'static str, Value)>, MergeError> {
    let mut declared: HashMap<String, Option<String>> = HashMap::new();
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({})", table.name))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        declared.insert(r.get(1)?, r.get(4)?);
    }
    let mut out = Vec::with_capacity(table.columns.len());
    for c in table.columns {
        let value = match declared.get(*c).cloned().flatten() {
            Some(expr) => conn.query_row(&format!("SELECT {expr}"), [], |r| {
                Ok(Value::from(r.get_ref(0)?))
            })?,
            None => Value::Null,
        };
        out.push((*c, value));
    }
    Ok(out)
}

/// A `UNIQUE` or `PRIMARY KEY` constraint failed (which one SQLite reports
/// first when a row breaks both depends on its index order).
fn is_key_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == ErrorCode::ConstraintViolation
            && (f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY))
}

fn is_fk_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == ErrorCode::ConstraintViolation
            && f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
}
