//! Validating the membership chain.
//!
//! Every device fetches every entry, in whatever order the bucket lists them,
//! and must reach the same membership. [`Chain::validate`] is a function of
//! the *set* of entries (and the library's id and founder), never of their
//! arrival order:
//!
//! 1. **Signature**: an entry whose signature does not verify under its
//!    author is [`Rejection::BadSignature`] and never counts.
//! 2. **Library**: an entry of another library is [`Rejection::WrongLibrary`].
//! 3. **Replays**: entries with the same [`EntryHash`] are one entry; the
//!    copies are [`Rejection::Duplicate`]. An entry signed again (a different
//!    signature over the same bytes) is the same entry.
//! 4. **Author chains**: each author's entries must run seq 0, 1, 2, ... with
//!    each `prev` the hash of the one before and strictly increasing HLCs.
//!    Two different entries with one (author, seq) are a fork: both are
//!    [`Rejection::Fork`]. At the first fork, gap, wrong `prev` or HLC that
//!    does not increase, that entry and every later one of the author are
//!    refused ([`Rejection::BrokenChain`]): the author signed two histories,
//!    and no device can tell which one others saw.
//! 5. **Order**: the rest sort by (HLC, author key bytes, seq) and apply one
//!    by one; an entry counts only if its author had the right at that point
//!    (which is its HLC):
//!    - the first to count is the genesis: the founder adding itself as owner
//!      (anything ordered before it is [`Rejection::BeforeGenesis`]);
//!    - only owners and admins change membership ([`Rejection::NotAuthorized`]);
//!    - admins cannot add, remove or change owners, nor make anyone owner
//!      ([`Rejection::AdminCannotTouchOwner`]);
//!    - the last owner cannot be removed or demoted ([`Rejection::LastOwner`]);
//!    - adding a member, or removing or changing a non-member, is refused
//!      ([`Rejection::AlreadyMember`], [`Rejection::NotAMember`],
//!      [`Rejection::Unchanged`]).
//!
//!    Two admins removing each other concurrently: the earlier in this order
//!    counts, and the later's author is no longer an admin at its HLC.
//! 6. **Back-dating**: a removal or demotion of S records the last entry seq
//!    of S its author had applied. An entry of S with a later seq that claims
//!    an HLC before the revocation (and after the entry that gave the
//!    revoker its role, which the revoker had seen) is
//!    [`Rejection::Backdated`]: an HLC can be set back, a seq cannot. Refusing such an entry can change what counts,
//!    so validation starts again without it until nothing more is refused.
//!
//! [`ValidatedChain::extend`] re-validates the union of what it had and what
//! it is given, so it always equals validating everything at once. Chains are
//! small (one entry per membership change), so this costs little.

use crate::entry::{Action, Cutoffs, Entry, EntryHash, Role, SignedEntry};
use crate::library::LibraryId;
use bae_crypto::IdentityPublicKey;
use bae_hlc::{DeviceId, Timestamp};
use bae_oplog::BatchHash;
use std::collections::{BTreeMap, BTreeSet};

/// Why an entry did not count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The signature does not verify under the entry's author.
    #[error("its signature does not verify")]
    BadSignature,
    /// The entry names another library.
    #[error("it names another library")]
    WrongLibrary,
    /// A copy of an entry already counted or refused (a replay).
    #[error("it repeats another entry")]
    Duplicate,
    /// Another entry of the same author has the same seq.
    #[error("another entry of its author has the same seq")]
    Fork,
    /// An earlier entry of the author is missing, forked or not the one
    /// `prev` names, or the HLC does not increase along the author's entries.
    #[error("it does not follow its author's previous entry")]
    BrokenChain,
    /// Ordered before the genesis entry (or there is no genesis).
    #[error("it comes before the library's first entry")]
    BeforeGenesis,
    /// The author was not an owner or admin at the entry's HLC (`None`: not a
    /// member at all).
    #[error("its author was {} then, not an owner or admin", role.map_or("not a member".to_owned(), |r| format!("a {r:?}").to_lowercase()))]
    NotAuthorized {
        /// The author's role then.
        role: Option<Role>,
    },
    /// An admin adding, removing or changing an owner, or making an owner.
    #[error("an admin cannot add, remove or change an owner")]
    AdminCannotTouchOwner,
    /// Would leave the library without an owner.
    #[error("it would leave the library without an owner")]
    LastOwner,
    /// Adds someone who is already a member.
    #[error("it adds someone who is already a member")]
    AlreadyMember,
    /// Removes or changes someone who is not a member.
    #[error("it removes or changes someone who is not a member")]
    NotAMember,
    /// Changes a role to the role the member already has.
    #[error("it gives a member the role they have")]
    Unchanged,
    /// Written by a member after a revocation of theirs (by seq) but claiming
    /// an HLC before it.
    #[error("its author wrote it after being revoked, with an HLC from before")]
    Backdated {
        /// The revoking entry.
        revoked_by: EntryHash,
    },
}

/// An entry that did not count, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The entry.
    pub entry: EntryHash,
    /// Its claimed author.
    pub author: IdentityPublicKey,
    /// Its claimed seq.
    pub seq: u64,
    /// Why it did not count.
    pub reason: Rejection,
}

/// What validation is against: the library, and its founder (the only key
/// whose self-addition as owner can be the genesis; a joiner learns it with
/// the invitation, so a removed member cannot forge an earlier genesis).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    library_id: LibraryId,
    founder: IdentityPublicKey,
}

/// One change of a member's role, as counted.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RoleChange {
    hlc: Timestamp,
    subject: [u8; 32],
    role: Option<Role>,
}

/// The membership a set of entries yields; see the module docs for the rules.
#[derive(Clone, Debug)]
pub struct ValidatedChain {
    chain: Chain,
    received: Vec<SignedEntry>,
    counted: Vec<EntryHash>,
    history: Vec<RoleChange>,
    members: BTreeMap<[u8; 32], (IdentityPublicKey, Role)>,
    cutoffs: BTreeMap<(DeviceId, [u8; 32]), Cutoff>,
    cut_offs: Vec<CutOff>,
    names: BTreeMap<[u8; 32], String>,
    rejected: Vec<Rejected>,
}

/// The cutoff that stands for one device of one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cutoff {
    seq: u64,
    last_hash: Option<BatchHash>,
}

/// A counted removal or demotion, with the devices its cutoffs list.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CutOff {
    hlc: Timestamp,
    subject: [u8; 32],
    devices: Vec<DeviceId>,
}

impl PartialEq for ValidatedChain {
    /// Equal when they say the same thing (what was received, in whatever
    /// order, is not compared).
    fn eq(&self, other: &Self) -> bool {
        self.chain == other.chain
            && self.counted == other.counted
            && self.history == other.history
            && self.members == other.members
            && self.cutoffs == other.cutoffs
            && self.cut_offs == other.cut_offs
            && self.names == other.names
            && self.rejected == other.rejected
    }
}

impl Eq for ValidatedChain {}

fn rejected(signed: &SignedEntry, reason: Rejection) -> Rejected {
    Rejected {
        entry: signed.hash(),
        author: signed.entry().author,
        seq: signed.entry().seq,
        reason,
    }
}

impl Chain {
    /// Validation for the library `library_id` founded by `founder`.
    pub fn new(library_id: LibraryId, founder: IdentityPublicKey) -> Self {
        Chain {
            library_id,
            founder,
        }
    }

    /// Validates a set of signed entries (see the module docs).
    pub fn validate(&self, entries: impl IntoIterator<Item = SignedEntry>) -> ValidatedChain {
        let received: Vec<SignedEntry> = entries.into_iter().collect();
        let mut refused = Vec::new();
        let unique = self.unique_verified(&received, &mut refused);
        let candidates = chained_per_author(&unique, &mut refused);
        let mut backdated: BTreeMap<EntryHash, EntryHash> = BTreeMap::new();
        let mut state = loop {
            let state = self.apply_in_order(&candidates, &backdated);
            let found = state.backdated_entries(&candidates);
            let before = backdated.len();
            backdated.extend(found);
            if backdated.len() == before {
                break state;
            }
        };
        for signed in &candidates {
            if let Some(by) = backdated.get(&signed.hash()) {
                refused.push(rejected(signed, Rejection::Backdated { revoked_by: *by }));
            }
        }
        refused.append(&mut state.refused);
        refused.sort_by(|a, b| {
            (a.entry, a.reason, a.author.to_bytes(), a.seq).cmp(&(
                b.entry,
                b.reason,
                b.author.to_bytes(),
                b.seq,
            ))
        });
        let counted = state.counted.iter().map(|(h, _)| *h).collect();
        let (history, members, cutoffs, cut_offs, names) = (
            state.history,
            state.members,
            state.cutoffs,
            state.cut_offs,
            state.names,
        );
        ValidatedChain {
            chain: self.clone(),
            received,
            counted,
            history,
            members,
            cutoffs,
            cut_offs,
            names,
            rejected: refused,
        }
    }

    /// Steps 1-3: signature, library, replays. Returns one entry per hash
    /// (of copies, the one with the smallest signature bytes, so the choice
    /// does not depend on order).
    fn unique_verified<'a>(
        &self,
        received: &'a [SignedEntry],
        refused: &mut Vec<Rejected>,
    ) -> BTreeMap<EntryHash, &'a SignedEntry> {
        let mut unique: BTreeMap<EntryHash, &SignedEntry> = BTreeMap::new();
        for signed in received {
            if signed.verify().is_err() {
                refused.push(rejected(signed, Rejection::BadSignature));
            } else if signed.entry().library_id != self.library_id {
                refused.push(rejected(signed, Rejection::WrongLibrary));
            } else if let Some(kept) = unique.get_mut(&signed.hash()) {
                refused.push(rejected(signed, Rejection::Duplicate));
                if signed.signature().to_bytes() < kept.signature().to_bytes() {
                    *kept = signed;
                }
            } else {
                unique.insert(signed.hash(), signed);
            }
        }
        unique
    }

    /// Step 5: applies the candidates (already in order) but the back-dated.
    fn apply_in_order<'a>(
        &self,
        candidates: &[&'a SignedEntry],
        backdated: &BTreeMap<EntryHash, EntryHash>,
    ) -> State<'a> {
        let mut state = State::default();
        for signed in candidates {
            if backdated.contains_key(&signed.hash()) {
                continue;
            }
            match state.apply(self, signed.entry()) {
                Ok(()) => {
                    state.counted.push((signed.hash(), *signed));
                }
                Err(reason) => state.refused.push(rejected(signed, reason)),
            }
        }
        state
    }
}

/// Step 4: keeps, per author, the entries that chain from seq 0; returns
/// them in the order of step 5.
fn chained_per_author<'a>(
    unique: &BTreeMap<EntryHash, &'a SignedEntry>,
    refused: &mut Vec<Rejected>,
) -> Vec<&'a SignedEntry> {
    let mut by_author: BTreeMap<[u8; 32], BTreeMap<u64, Vec<&SignedEntry>>> = BTreeMap::new();
    for signed in unique.values() {
        by_author
            .entry(signed.entry().author.to_bytes())
            .or_default()
            .entry(signed.entry().seq)
            .or_default()
            .push(signed);
    }
    let mut chained = Vec::new();
    for entries in by_author.into_values() {
        let mut expected_seq = 0u64;
        let mut prev: Option<&Entry> = None;
        let mut prev_hash = None;
        let mut broken = false;
        for (seq, at_seq) in entries {
            let [signed] = at_seq.as_slice() else {
                broken = true;
                for signed in at_seq {
                    refused.push(rejected(signed, Rejection::Fork));
                }
                continue;
            };
            let entry = signed.entry();
            broken = broken
                || seq != expected_seq
                || entry.prev != prev_hash
                || prev.is_some_and(|p| p.hlc >= entry.hlc);
            if broken {
                refused.push(rejected(signed, Rejection::BrokenChain));
                continue;
            }
            chained.push(*signed);
            expected_seq = seq.saturating_add(1);
            prev = Some(entry);
            prev_hash = Some(signed.hash());
        }
    }
    chained.sort_by(|a, b| {
        let (a, b) = (a.entry(), b.entry());
        (a.hlc, a.author.to_bytes(), a.seq).cmp(&(b.hlc, b.author.to_bytes(), b.seq))
    });
    chained
}

/// Membership while applying entries in order.
#[derive(Default)]
struct State<'a> {
    counted: Vec<(EntryHash, &'a SignedEntry)>,
    history: Vec<RoleChange>,
    members: BTreeMap<[u8; 32], (IdentityPublicKey, Role)>,
    cutoffs: BTreeMap<(DeviceId, [u8; 32]), Cutoff>,
    cut_offs: Vec<CutOff>,
    names: BTreeMap<[u8; 32], String>,
    refused: Vec<Rejected>,
}

impl State<'_> {
    fn role(&self, member: &IdentityPublicKey) -> Option<Role> {
        self.members.get(&member.to_bytes()).map(|(_, r)| *r)
    }

    fn owners(&self) -> usize {
        self.members
            .values()
            .filter(|(_, r)| *r == Role::Owner)
            .count()
    }

    fn set(&mut self, hlc: Timestamp, subject: &IdentityPublicKey, role: Option<Role>) {
        match role {
            Some(r) => self.members.insert(subject.to_bytes(), (*subject, r)),
            None => self.members.remove(&subject.to_bytes()),
        };
        self.history.push(RoleChange {
            hlc,
            subject: subject.to_bytes(),
            role,
        });
    }

    fn cut_off(&mut self, hlc: Timestamp, subject: &IdentityPublicKey, cutoffs: &Cutoffs) {
        self.cut_offs.push(CutOff {
            hlc,
            subject: subject.to_bytes(),
            devices: cutoffs.devices.iter().map(|c| c.device).collect(),
        });
        for c in &cutoffs.devices {
            // The lowest cutoff a device ever got stands (a member removed and
            // added again joins with new devices), with its hash; of two at
            // the same seq, the first counted that has a hash.
            let new = Cutoff {
                seq: c.seq,
                last_hash: c.last_hash,
            };
            self.cutoffs
                .entry((c.device, subject.to_bytes()))
                .and_modify(|old| {
                    if new.seq < old.seq || (new.seq == old.seq && old.last_hash.is_none()) {
                        *old = new;
                    }
                })
                .or_insert(new);
        }
    }

    /// Applies one entry, or says why it does not count.
    fn apply(&mut self, chain: &Chain, entry: &Entry) -> Result<(), Rejection> {
        if self.members.is_empty() && self.history.is_empty() {
            let genesis = entry.author == chain.founder
                && entry.action
                    == (Action::Add {
                        subject: chain.founder,
                        role: Role::Owner,
                    });
            if !genesis {
                return Err(Rejection::BeforeGenesis);
            }
            self.set(entry.hlc, &entry.author, Some(Role::Owner));
            return Ok(());
        }
        if let Action::SetName { subject, name } = &entry.action {
            return self.set_name(entry, subject, name);
        }
        let author_role = self.role(&entry.author);
        let author_role = match author_role {
            Some(r) if r.can_manage() => r,
            role => return Err(Rejection::NotAuthorized { role }),
        };
        let admin = author_role == Role::Admin;
        let subject = *entry.action.subject();
        let current = self.role(&subject);
        match &entry.action {
            Action::Add { role, .. } => {
                if current.is_some() {
                    return Err(Rejection::AlreadyMember);
                }
                if admin && *role == Role::Owner {
                    return Err(Rejection::AdminCannotTouchOwner);
                }
                self.set(entry.hlc, &subject, Some(*role));
            }
            Action::Remove { cutoffs, .. } => {
                let current = current.ok_or(Rejection::NotAMember)?;
                self.check_owner_rules(admin, current, None)?;
                self.set(entry.hlc, &subject, None);
                self.cut_off(entry.hlc, &subject, cutoffs);
            }
            // Handled above: any member may name themselves.
            Action::SetName { .. } => return Err(Rejection::Unchanged),
            Action::ChangeRole { role, cutoffs, .. } => {
                let current = current.ok_or(Rejection::NotAMember)?;
                if current == *role {
                    return Err(Rejection::Unchanged);
                }
                self.check_owner_rules(admin, current, Some(*role))?;
                self.set(entry.hlc, &subject, Some(*role));
                if role.rank() < current.rank() {
                    self.cut_off(entry.hlc, &subject, cutoffs);
                }
            }
        }
        Ok(())
    }

    /// A display name: any current member names themselves; owners and
    /// admins name others (admins not owners). Recorded in the history as
    /// the subject's unchanged role, so the history stays one change per
    /// counted entry.
    fn set_name(
        &mut self,
        entry: &Entry,
        subject: &IdentityPublicKey,
        name: &str,
    ) -> Result<(), Rejection> {
        let author_role = self
            .role(&entry.author)
            .ok_or(Rejection::NotAuthorized { role: None })?;
        let current = self.role(subject).ok_or(Rejection::NotAMember)?;
        if *subject != entry.author {
            if !author_role.can_manage() {
                return Err(Rejection::NotAuthorized {
                    role: Some(author_role),
                });
            }
            if author_role == Role::Admin && current == Role::Owner {
                return Err(Rejection::AdminCannotTouchOwner);
            }
        }
        self.names.insert(subject.to_bytes(), name.to_owned());
        self.set(entry.hlc, subject, Some(current));
        Ok(())
    }

    /// Admins cannot touch owners; the last owner stays.
    fn check_owner_rules(
        &self,
        admin: bool,
        current: Role,
        new: Option<Role>,
    ) -> Result<(), Rejection> {
        if admin && (current == Role::Owner || new == Some(Role::Owner)) {
            return Err(Rejection::AdminCannotTouchOwner);
        }
        if current == Role::Owner && new != Some(Role::Owner) && self.owners() == 1 {
            return Err(Rejection::LastOwner);
        }
        Ok(())
    }

    /// Step 6: counted entries that a counted revocation makes back-dated,
    /// each with the revoking entry. An entry no later than the one that
    /// gave the revoker its role is never back-dated: the revoker had seen
    /// it (and a revoker that understates `last_entry` cannot retract the
    /// history its own authority rests on).
    fn backdated_entries(&self, candidates: &[&SignedEntry]) -> Vec<(EntryHash, EntryHash)> {
        let counted: BTreeSet<EntryHash> = self.counted.iter().map(|(h, _)| *h).collect();
        let mut found = Vec::new();
        for (index, (revoking_hash, revoking)) in self.counted.iter().enumerate() {
            let r = revoking.entry();
            let (subject, cutoffs) = match &r.action {
                Action::Remove { subject, cutoffs } => (subject, cutoffs),
                Action::ChangeRole {
                    subject, cutoffs, ..
                } => (subject, cutoffs),
                Action::Add { .. } | Action::SetName { .. } => continue,
            };
            if !self.is_demotion(index) {
                continue;
            }
            let rests_on = self.authority_rests_on(index, r.author.to_bytes(), subject.to_bytes());
            for signed in candidates {
                let e = signed.entry();
                let after_cutoff = cutoffs.last_entry.is_none_or(|last| e.seq > last);
                if e.author == *subject
                    && after_cutoff
                    && rests_on.is_none_or(|seq| e.seq > seq)
                    && e.hlc < r.hlc
                    && counted.contains(&signed.hash())
                {
                    found.push((signed.hash(), *revoking_hash));
                }
            }
        }
        found
    }

    /// The highest seq of `subject`'s entries that `author`'s role at
    /// history `index` rests on: walking back from the entry that gave
    /// `author` its role, to the one that gave that entry's author theirs,
    /// and so on to the genesis, the newest of those entries `subject`
    /// wrote. Such an entry (and, by its `prev` chain, every earlier one of
    /// `subject`) is never back-dated by `author`'s revocation of
    /// `subject`: the revoker's own authority depends on it. Nothing else
    /// is exempt, whatever HLC it claims.
    fn authority_rests_on(&self, index: usize, author: [u8; 32], subject: [u8; 32]) -> Option<u64> {
        let mut rests_on = None;
        let (mut who, mut upto) = (author, index);
        // Each step moves to an earlier history index: at most one pass.
        while let Some(j) = self.role_granted_at(who, upto) {
            let grant = self.counted[j].1.entry();
            if grant.author.to_bytes() == subject {
                rests_on = rests_on.max(Some(grant.seq));
            }
            if grant.author.to_bytes() == who {
                break;
            }
            (who, upto) = (grant.author.to_bytes(), j);
        }
        rests_on
    }

    /// The history index before `upto` of the counted entry that gave
    /// `member` the role they held then (names and unchanged roles skipped).
    fn role_granted_at(&self, member: [u8; 32], upto: usize) -> Option<usize> {
        let changes: Vec<usize> = (0..upto)
            .filter(|&j| self.history[j].subject == member)
            .collect();
        changes.iter().enumerate().rev().find_map(|(n, &j)| {
            let before = n.checked_sub(1).and_then(|p| self.history[changes[p]].role);
            (self.history[j].role.is_some() && self.history[j].role != before).then_some(j)
        })
    }

    /// Whether the counted entry at `index` removed or demoted its subject.
    fn is_demotion(&self, index: usize) -> bool {
        let change = &self.history[index];
        let before = self.history[..index]
            .iter()
            .rev()
            .find(|c| c.subject == change.subject)
            .and_then(|c| c.role);
        match (before, change.role) {
            (Some(_), None) => true,
            (Some(b), Some(a)) => a.rank() < b.rank(),
            _ => false,
        }
    }
}

impl ValidatedChain {
    /// Adds entries and validates again; equals validating every entry at
    /// once.
    pub fn extend(&mut self, new_entries: impl IntoIterator<Item = SignedEntry>) {
        let mut all = std::mem::take(&mut self.received);
        all.extend(new_entries);
        *self = self.chain.validate(all);
    }

    /// The role of `member` at `hlc`: after every counted entry with an HLC
    /// up to and including `hlc`.
    pub fn role_at(&self, member: &IdentityPublicKey, hlc: Timestamp) -> Option<Role> {
        let member = member.to_bytes();
        self.history
            .iter()
            .rev()
            .find(|c| c.subject == member && c.hlc <= hlc)
            .and_then(|c| c.role)
    }

    /// The HLC of the newest counted role change (`None` without one). A
    /// device stamps its writes after it, so a member's first writes are
    /// never dated before the entry that let them write.
    pub fn newest_change(&self) -> Option<Timestamp> {
        self.history.iter().map(|c| c.hlc).max()
    }

    /// Every current member and their role, ordered by public key bytes.
    pub fn current_members(&self) -> Vec<(IdentityPublicKey, Role)> {
        self.members.values().copied().collect()
    }

    /// Whether `author` could write at `hlc` (owner, admin or member then).
    /// A batch must also be below its device's [`ValidatedChain::cutoff_for`].
    pub fn can_write(&self, author: &IdentityPublicKey, hlc: Timestamp) -> bool {
        self.role_at(author, hlc).is_some_and(Role::can_write)
    }

    /// `member`'s display name in this library, if one was set.
    pub fn name_of(&self, member: &IdentityPublicKey) -> Option<&str> {
        self.names.get(&member.to_bytes()).map(String::as_str)
    }

    /// `member`'s role now (`None`: not a member).
    pub fn current_role(&self, member: &IdentityPublicKey) -> Option<Role> {
        self.members.get(&member.to_bytes()).map(|(_, role)| *role)
    }

    /// Whether `member` may write now (a current owner, admin or member).
    pub fn can_write_now(&self, member: &IdentityPublicKey) -> bool {
        self.current_role(member).is_some_and(Role::can_write)
    }

    /// Whether `member` was a member at any point (a current member, or one
    /// removed since).
    pub fn ever_member(&self, member: &IdentityPublicKey) -> bool {
        let member = member.to_bytes();
        self.history.iter().any(|c| c.subject == member)
    }

    /// Whether `member` may read now (any current role); the key blobs of
    /// new epochs go to these members.
    pub fn can_read(&self, member: &IdentityPublicKey) -> bool {
        self.members.contains_key(&member.to_bytes())
    }

    /// The last seq of `device` that counts, when its author `author` was
    /// removed or demoted to reader: every later batch of the device is
    /// rejected, whatever HLC it claims. A cutoff names a device of the
    /// removed member only; one listed under another member does not apply.
    pub fn cutoff_for(&self, device: DeviceId, author: &IdentityPublicKey) -> Option<u64> {
        self.cutoffs
            .get(&(device, author.to_bytes()))
            .map(|c| c.seq)
    }

    /// The hash of the batch at [`Self::cutoff_for`]`(device, author)`, when
    /// the entry that set that cutoff recorded it: a reader that had not
    /// applied that far takes only the chain of batches ending in it.
    pub fn cutoff_hash(&self, device: DeviceId, author: &IdentityPublicKey) -> Option<BatchHash> {
        self.cutoffs
            .get(&(device, author.to_bytes()))
            .and_then(|c| c.last_hash)
    }

    /// Whether any removal or demotion counted (a revoke starts a new key
    /// epoch with its removal).
    pub fn has_cut_offs(&self) -> bool {
        !self.cut_offs.is_empty()
    }

    /// Every cutoff recorded for `device`, with the member it was recorded
    /// under (only the one `device` is bound to applies to its batches).
    pub fn cutoffs_of(&self, device: DeviceId) -> Vec<(IdentityPublicKey, u64)> {
        self.cutoffs
            .range((device, [0u8; 32])..=(device, [0xffu8; 32]))
            .filter_map(|((_, author), c)| {
                IdentityPublicKey::from_bytes(author)
                    .ok()
                    .map(|author| (author, c.seq))
            })
            .collect()
    }

    /// Whether a batch of `device` signed by `author` at `hlc` claims a time
    /// before a removal or demotion of `author` whose cutoffs do not list
    /// `device`. The remover had applied nothing of that device, so nothing
    /// of it that claims to predate the removal counts: an HLC can be
    /// back-dated, and a device unknown to the remover would otherwise
    /// escape every cutoff.
    pub fn unlisted_before_cut_off(
        &self,
        device: DeviceId,
        author: &IdentityPublicKey,
        hlc: Timestamp,
    ) -> bool {
        let author = author.to_bytes();
        self.cut_offs
            .iter()
            .any(|c| c.subject == author && hlc < c.hlc && !c.devices.contains(&device))
    }

    /// The hashes of the entries that counted, in chain order.
    pub fn counted(&self) -> &[EntryHash] {
        &self.counted
    }

    /// The entries that did not count, each with why, ordered by hash.
    pub fn rejected(&self) -> &[Rejected] {
        &self.rejected
    }

    /// The next seq and `prev` for a new entry by `author`: after the
    /// author's newest entry in the received set that chains.
    pub fn next_for(&self, author: &IdentityPublicKey) -> (u64, Option<EntryHash>) {
        let mut chain: Vec<&SignedEntry> = self
            .received
            .iter()
            .filter(|s| s.entry().author == *author && s.verify().is_ok())
            .collect();
        chain.sort_by_key(|s| s.entry().seq);
        let mut next = (0, None);
        for signed in chain {
            if signed.entry().seq == next.0 && signed.entry().prev == next.1 {
                next = (signed.entry().seq.saturating_add(1), Some(signed.hash()));
            }
        }
        next
    }
}
