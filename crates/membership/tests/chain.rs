//! The membership chain rules, one test per rule, and the property that the
//! validated chain depends on the set of entries only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bae_crypto::{IdentityPublicKey, IdentitySigningKey};
use bae_hlc::{DeviceId, Timestamp};
use bae_membership::{
    Action, Chain, Cutoffs, DeviceCutoff, Entry, EntryHash, LibraryId, Rejection, Role,
    SignedEntry, ValidatedChain,
};
use proptest::prelude::*;

const LIB: LibraryId = LibraryId::from_bytes([1; 16]);

fn hlc(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000 + ms).unwrap()
}

/// A user writing entries: keeps their seq and prev.
struct Author {
    key: IdentitySigningKey,
    seq: u64,
    prev: Option<EntryHash>,
}

impl Author {
    fn new(n: u8) -> Self {
        Author {
            key: IdentitySigningKey::from_seed(&[n; 32]),
            seq: 0,
            prev: None,
        }
    }

    fn public(&self) -> IdentityPublicKey {
        self.key.public_key()
    }

    /// The next entry of this author, at `ms`.
    fn write(&mut self, ms: i64, action: Action) -> SignedEntry {
        let signed = SignedEntry::sign(&self.key, self.draft(ms, action)).unwrap();
        self.seq += 1;
        self.prev = Some(signed.hash());
        signed
    }

    /// The entry `write` would make, without advancing.
    fn draft(&self, ms: i64, action: Action) -> Entry {
        Entry {
            library_id: LIB,
            author: self.public(),
            seq: self.seq,
            prev: self.prev,
            hlc: hlc(ms),
            action,
        }
    }

    fn genesis(&mut self, ms: i64) -> SignedEntry {
        let me = self.public();
        self.write(ms, add(&me, Role::Owner))
    }
}

fn add(subject: &IdentityPublicKey, role: Role) -> Action {
    Action::Add {
        subject: *subject,
        role,
    }
}

fn remove(subject: &IdentityPublicKey) -> Action {
    Action::Remove {
        subject: *subject,
        cutoffs: Cutoffs::default(),
    }
}

fn change(subject: &IdentityPublicKey, role: Role) -> Action {
    Action::ChangeRole {
        subject: *subject,
        role,
        cutoffs: Cutoffs::default(),
    }
}

fn validate(founder: &Author, entries: &[SignedEntry]) -> ValidatedChain {
    Chain::new(LIB, founder.public()).validate(entries.iter().cloned())
}

/// The reasons the entry `hash` was refused for.
fn reasons(chain: &ValidatedChain, hash: EntryHash) -> Vec<Rejection> {
    chain
        .rejected()
        .iter()
        .filter(|r| r.entry == hash)
        .map(|r| r.reason)
        .collect()
}

fn counts(chain: &ValidatedChain, entry: &SignedEntry) -> bool {
    chain.counted().contains(&entry.hash())
}

#[test]
fn the_genesis_is_the_founder_adding_itself_as_owner() {
    let mut owner = Author::new(1);
    let mut other = Author::new(2);
    let early = other.genesis(0);
    let genesis = owner.genesis(10);
    let chain = validate(&owner, &[early.clone(), genesis.clone()]);
    assert!(counts(&chain, &genesis));
    assert_eq!(reasons(&chain, early.hash()), [Rejection::BeforeGenesis]);
    assert_eq!(chain.current_members(), [(owner.public(), Role::Owner)]);
    // Validated against another founder, nothing counts.
    let chain = Chain::new(LIB, other.public()).validate([genesis.clone()]);
    assert!(chain.current_members().is_empty());
    assert_eq!(reasons(&chain, genesis.hash()), [Rejection::BeforeGenesis]);
}

#[test]
fn the_founder_adding_itself_as_admin_is_no_genesis() {
    let mut owner = Author::new(1);
    let me = owner.public();
    let not_genesis = owner.write(0, add(&me, Role::Admin));
    let chain = validate(&owner, std::slice::from_ref(&not_genesis));
    assert_eq!(
        reasons(&chain, not_genesis.hash()),
        [Rejection::BeforeGenesis]
    );
}

#[test]
fn only_owners_and_admins_change_membership() {
    let (mut owner, mut member, mut outsider) = (Author::new(1), Author::new(2), Author::new(3));
    let reader = Author::new(4);
    let entries = vec![
        owner.genesis(0),
        owner.write(1, add(&member.public(), Role::Member)),
        member.write(2, add(&reader.public(), Role::Reader)),
        outsider.write(3, add(&reader.public(), Role::Reader)),
    ];
    let chain = validate(&owner, &entries);
    assert_eq!(
        reasons(&chain, entries[2].hash()),
        [Rejection::NotAuthorized {
            role: Some(Role::Member)
        }]
    );
    assert_eq!(
        reasons(&chain, entries[3].hash()),
        [Rejection::NotAuthorized { role: None }]
    );
    assert!(!chain.can_read(&reader.public()));
}

#[test]
fn admins_cannot_touch_owners() {
    let (mut owner, mut admin, other) = (Author::new(1), Author::new(2), Author::new(3));
    let mut entries = vec![
        owner.genesis(0),
        owner.write(1, add(&admin.public(), Role::Admin)),
        owner.write(2, add(&other.public(), Role::Member)),
    ];
    let refused = [
        admin.write(3, remove(&owner.public())),
        admin.write(4, change(&owner.public(), Role::Member)),
        admin.write(5, change(&other.public(), Role::Owner)),
        admin.write(6, add(&Author::new(9).public(), Role::Owner)),
    ];
    let allowed = admin.write(7, change(&other.public(), Role::Reader));
    entries.extend(refused.iter().cloned());
    entries.push(allowed.clone());
    let chain = validate(&owner, &entries);
    for entry in &refused {
        assert_eq!(
            reasons(&chain, entry.hash()),
            [Rejection::AdminCannotTouchOwner]
        );
    }
    assert!(counts(&chain, &allowed));
    assert_eq!(chain.role_at(&other.public(), hlc(7)), Some(Role::Reader));
}

#[test]
fn the_last_owner_cannot_be_removed_or_demoted_but_one_of_two_can() {
    let (mut owner, mut second) = (Author::new(1), Author::new(2));
    let me = owner.public();
    let entries = vec![
        owner.genesis(0),
        owner.write(1, remove(&me)),
        owner.write(2, change(&me, Role::Admin)),
        owner.write(3, add(&second.public(), Role::Owner)),
        second.write(4, remove(&me)),
        second.write(5, change(&second.public(), Role::Admin)),
    ];
    let chain = validate(&owner, &entries);
    assert_eq!(reasons(&chain, entries[1].hash()), [Rejection::LastOwner]);
    assert_eq!(reasons(&chain, entries[2].hash()), [Rejection::LastOwner]);
    assert!(counts(&chain, &entries[4]));
    assert_eq!(reasons(&chain, entries[5].hash()), [Rejection::LastOwner]);
    assert_eq!(chain.current_members(), [(second.public(), Role::Owner)]);
    assert_eq!(chain.role_at(&me, hlc(3)), Some(Role::Owner));
    assert_eq!(chain.role_at(&me, hlc(4)), None);
}

#[test]
fn adding_a_member_twice_or_changing_a_stranger_is_refused() {
    let mut owner = Author::new(1);
    let (member, stranger) = (Author::new(2), Author::new(3));
    let entries = vec![
        owner.genesis(0),
        owner.write(1, add(&member.public(), Role::Member)),
        owner.write(2, add(&member.public(), Role::Admin)),
        owner.write(3, change(&member.public(), Role::Member)),
        owner.write(4, remove(&stranger.public())),
        owner.write(5, change(&stranger.public(), Role::Reader)),
    ];
    let chain = validate(&owner, &entries);
    assert_eq!(
        reasons(&chain, entries[2].hash()),
        [Rejection::AlreadyMember]
    );
    assert_eq!(reasons(&chain, entries[3].hash()), [Rejection::Unchanged]);
    assert_eq!(reasons(&chain, entries[4].hash()), [Rejection::NotAMember]);
    assert_eq!(reasons(&chain, entries[5].hash()), [Rejection::NotAMember]);
}

#[test]
fn a_forged_signature_or_other_library_never_counts() {
    let mut owner = Author::new(1);
    let member = Author::new(2);
    let genesis = owner.genesis(0);
    let mut bytes = owner
        .write(1, add(&member.public(), Role::Member))
        .to_bytes();
    bytes[0] ^= 1; // a signature byte
    let forged = SignedEntry::from_bytes(&bytes).unwrap();
    let mut elsewhere = owner.draft(2, add(&member.public(), Role::Reader));
    elsewhere.library_id = LibraryId::from_bytes([2; 16]);
    let elsewhere = SignedEntry::sign(&owner.key, elsewhere).unwrap();
    let chain = validate(&owner, &[genesis, forged.clone(), elsewhere.clone()]);
    assert_eq!(reasons(&chain, forged.hash()), [Rejection::BadSignature]);
    assert_eq!(reasons(&chain, elsewhere.hash()), [Rejection::WrongLibrary]);
    assert!(!chain.can_read(&member.public()));
}

#[test]
fn a_replayed_entry_changes_nothing() {
    let (mut owner, member) = (Author::new(1), Author::new(2));
    let entries = vec![
        owner.genesis(0),
        owner.write(1, add(&member.public(), Role::Member)),
        owner.write(2, remove(&member.public())),
    ];
    let once = validate(&owner, &entries);
    let mut replayed = entries.clone();
    replayed.push(entries[1].clone());
    replayed.push(entries[1].clone());
    let twice = validate(&owner, &replayed);
    assert_eq!(twice.counted(), once.counted());
    assert_eq!(twice.current_members(), once.current_members());
    assert_eq!(
        reasons(&twice, entries[1].hash()),
        [Rejection::Duplicate, Rejection::Duplicate]
    );
    assert!(!twice.can_read(&member.public()));
}

#[test]
fn a_fork_refuses_both_entries_and_everything_after_them() {
    let (mut owner, mut admin) = (Author::new(1), Author::new(2));
    let (a, b) = (Author::new(3), Author::new(4));
    let mut entries = vec![
        owner.genesis(0),
        owner.write(1, add(&admin.public(), Role::Admin)),
    ];
    let left = admin.draft(2, add(&a.public(), Role::Member));
    let right = admin.draft(2, add(&b.public(), Role::Member));
    let left = SignedEntry::sign(&admin.key, left).unwrap();
    let right = SignedEntry::sign(&admin.key, right).unwrap();
    admin.seq = 1;
    admin.prev = Some(left.hash());
    let after = admin.write(3, change(&a.public(), Role::Reader));
    entries.extend([left.clone(), right.clone(), after.clone()]);
    let chain = validate(&owner, &entries);
    assert_eq!(reasons(&chain, left.hash()), [Rejection::Fork]);
    assert_eq!(reasons(&chain, right.hash()), [Rejection::Fork]);
    assert_eq!(reasons(&chain, after.hash()), [Rejection::BrokenChain]);
    assert!(!chain.can_read(&a.public()) && !chain.can_read(&b.public()));
}

#[test]
fn a_gap_holds_later_entries_until_the_missing_one_arrives() {
    let (mut owner, a, b) = (Author::new(1), Author::new(2), Author::new(3));
    let genesis = owner.genesis(0);
    let first = owner.write(1, add(&a.public(), Role::Member));
    let second = owner.write(2, add(&b.public(), Role::Member));
    let mut chain = validate(&owner, &[genesis.clone(), second.clone()]);
    assert_eq!(reasons(&chain, second.hash()), [Rejection::BrokenChain]);
    chain.extend([first.clone()]);
    assert!(counts(&chain, &first) && counts(&chain, &second));
    assert_eq!(chain, validate(&owner, &[genesis, first, second]));
}

#[test]
fn an_author_whose_hlc_goes_back_breaks_their_chain() {
    let (mut owner, a, b) = (Author::new(1), Author::new(2), Author::new(3));
    let entries = vec![
        owner.genesis(5),
        owner.write(10, add(&a.public(), Role::Member)),
        owner.write(9, add(&b.public(), Role::Member)),
    ];
    let chain = validate(&owner, &entries);
    assert!(counts(&chain, &entries[1]));
    assert_eq!(reasons(&chain, entries[2].hash()), [Rejection::BrokenChain]);
}

#[test]
fn two_admins_removing_each_other_concurrently_agree_everywhere() {
    let (mut owner, mut x, mut y) = (Author::new(1), Author::new(2), Author::new(3));
    let mut entries = vec![
        owner.genesis(0),
        owner.write(1, add(&x.public(), Role::Admin)),
        owner.write(2, add(&y.public(), Role::Admin)),
    ];
    let x_removes_y = x.write(10, remove(&y.public()));
    let y_removes_x = y.write(11, remove(&x.public()));
    entries.extend([y_removes_x.clone(), x_removes_y.clone()]);
    let chain = validate(&owner, &entries);
    assert!(counts(&chain, &x_removes_y));
    assert_eq!(
        reasons(&chain, y_removes_x.hash()),
        [Rejection::NotAuthorized { role: None }]
    );
    entries.reverse();
    assert_eq!(validate(&owner, &entries), chain);
}

#[test]
fn an_entry_backdated_before_its_authors_removal_is_refused() {
    let (mut owner, mut admin, victim) = (Author::new(1), Author::new(2), Author::new(3));
    let mut entries = vec![
        owner.genesis(0),
        owner.write(1, add(&admin.public(), Role::Admin)),
        owner.write(2, add(&victim.public(), Role::Member)),
    ];
    let seen = admin.write(3, change(&victim.public(), Role::Reader));
    let removal = owner.write(
        10,
        Action::Remove {
            subject: admin.public(),
            cutoffs: Cutoffs {
                last_entry: Some(0),
                devices: vec![],
            },
        },
    );
    // Written after the removal (seq 1) but claiming HLC 5, when the admin
    // still was one.
    let backdated = admin.write(5, remove(&victim.public()));
    entries.extend([seen.clone(), removal.clone(), backdated.clone()]);
    let chain = validate(&owner, &entries);
    assert!(counts(&chain, &seen));
    assert_eq!(
        reasons(&chain, backdated.hash()),
        [Rejection::Backdated {
            revoked_by: removal.hash()
        }]
    );
    assert_eq!(chain.role_at(&victim.public(), hlc(20)), Some(Role::Reader));
}

/// A cutoff's hash stands with its seq: the lowest seq recorded for a
/// device wins with its hash (or without, if its entry had none), and of two
/// at the same seq the first with a hash.
#[test]
fn the_lowest_cutoff_stands_with_its_hash() {
    let (mut owner, writer) = (Author::new(1), Author::new(2));
    let (laptop, phone) = (DeviceId::from_bytes([1; 16]), DeviceId::from_bytes([2; 16]));
    let pinned = |device, seq, hash: u8| DeviceCutoff {
        device,
        seq,
        last_hash: Some(bae_oplog::BatchHash([hash; 32])),
    };
    let entries = vec![
        owner.genesis(0),
        owner.write(1, add(&writer.public(), Role::Admin)),
        owner.write(
            2,
            Action::ChangeRole {
                subject: writer.public(),
                role: Role::Reader,
                cutoffs: Cutoffs {
                    last_entry: None,
                    devices: vec![pinned(laptop, 41, 0xaa), DeviceCutoff::unpinned(phone, 7)],
                },
            },
        ),
        owner.write(3, add(&writer.public(), Role::Member)),
        owner.write(
            4,
            Action::Remove {
                subject: writer.public(),
                cutoffs: Cutoffs {
                    last_entry: None,
                    devices: vec![pinned(laptop, 50, 0xbb), pinned(phone, 7, 0xcc)],
                },
            },
        ),
    ];
    let chain = validate(&owner, &entries);
    assert_eq!(chain.cutoff_for(laptop, &writer.public()), Some(41));
    assert_eq!(
        chain.cutoff_hash(laptop, &writer.public()),
        Some(bae_oplog::BatchHash([0xaa; 32]))
    );
    assert_eq!(chain.cutoff_for(phone, &writer.public()), Some(7));
    assert_eq!(
        chain.cutoff_hash(phone, &writer.public()),
        Some(bae_oplog::BatchHash([0xcc; 32]))
    );
    assert_eq!(chain.cutoff_hash(laptop, &owner.public()), None);
}

#[test]
fn a_removal_cuts_off_the_removed_members_devices_only() {
    let (mut owner, writer, other) = (Author::new(1), Author::new(2), Author::new(3));
    let (laptop, phone, others) = (
        DeviceId::from_bytes([1; 16]),
        DeviceId::from_bytes([2; 16]),
        DeviceId::from_bytes([3; 16]),
    );
    let entries = vec![
        owner.genesis(0),
        owner.write(1, add(&writer.public(), Role::Member)),
        owner.write(2, add(&other.public(), Role::Member)),
        owner.write(
            10,
            Action::Remove {
                subject: writer.public(),
                cutoffs: Cutoffs {
                    last_entry: None,
                    devices: vec![
                        DeviceCutoff::unpinned(laptop, 41),
                        DeviceCutoff::unpinned(phone, 7),
                        DeviceCutoff::unpinned(others, 2),
                    ],
                },
            },
        ),
        owner.write(
            11,
            Action::ChangeRole {
                subject: other.public(),
                role: Role::Reader,
                cutoffs: Cutoffs {
                    last_entry: None,
                    devices: vec![DeviceCutoff::unpinned(others, 9)],
                },
            },
        ),
    ];
    let chain = validate(&owner, &entries);
    assert_eq!(chain.cutoff_for(laptop, &writer.public()), Some(41));
    assert_eq!(chain.cutoff_for(phone, &writer.public()), Some(7));
    // Listed under the removed member, but the device is another's.
    assert_eq!(chain.cutoff_for(others, &other.public()), Some(9));
    assert_eq!(chain.cutoff_for(laptop, &other.public()), None);
    assert_eq!(chain.cutoffs_of(laptop), vec![(writer.public(), 41)]);
    assert!(chain.has_cut_offs());
    assert_eq!(chain.cutoffs_of(DeviceId::from_bytes([4; 16])), vec![]);
    assert!(chain.can_write(&writer.public(), hlc(9)));
    assert!(!chain.can_write(&writer.public(), hlc(10)));
    assert!(chain.can_write(&other.public(), hlc(10)));
    assert!(!chain.can_write(&other.public(), hlc(11)));
    assert!(chain.can_read(&other.public()));
    assert!(!chain.can_read(&writer.public()));
    // A device the removal did not list gets nothing in before it: its
    // HLC could be set back. After the removal, the role check refuses it.
    let unknown = DeviceId::from_bytes([4; 16]);
    assert!(chain.unlisted_before_cut_off(unknown, &writer.public(), hlc(9)));
    assert!(!chain.unlisted_before_cut_off(laptop, &writer.public(), hlc(9)));
    assert!(!chain.unlisted_before_cut_off(unknown, &writer.public(), hlc(10)));
    assert!(!chain.unlisted_before_cut_off(unknown, &owner.public(), hlc(9)));
    // The demotion listed only `others` for `other`.
    assert!(chain.unlisted_before_cut_off(laptop, &other.public(), hlc(10)));
    assert!(chain.ever_member(&writer.public()) && chain.ever_member(&other.public()));
    assert!(!chain.ever_member(&Author::new(9).public()));
}

#[test]
fn a_promotion_records_no_cutoff() {
    let (mut owner, reader) = (Author::new(1), Author::new(2));
    let device = DeviceId::from_bytes([1; 16]);
    let entries = vec![
        owner.genesis(0),
        owner.write(1, add(&reader.public(), Role::Reader)),
        owner.write(
            2,
            Action::ChangeRole {
                subject: reader.public(),
                role: Role::Member,
                cutoffs: Cutoffs {
                    last_entry: None,
                    devices: vec![DeviceCutoff::unpinned(device, 1)],
                },
            },
        ),
    ];
    let chain = validate(&owner, &entries);
    assert_eq!(chain.cutoff_for(device, &reader.public()), None);
    assert!(chain.can_write(&reader.public(), hlc(2)));
}

#[test]
fn next_for_continues_an_authors_chain() {
    let mut owner = Author::new(1);
    let member = Author::new(2);
    let entries = vec![
        owner.genesis(0),
        owner.write(1, add(&member.public(), Role::Member)),
    ];
    let chain = validate(&owner, &entries);
    assert_eq!(
        chain.next_for(&owner.public()),
        (2, Some(entries[1].hash()))
    );
    assert_eq!(chain.next_for(&member.public()), (0, None));
}

/// A history with everything that could make order matter: concurrent
/// mutual removals (at chosen HLCs), a back-dated entry, a fork, a forged
/// signature, replays, and a gap filled later.
fn scenario(x_at: i64, y_at: i64, fork: bool, backdate: i64) -> (Author, Vec<SignedEntry>) {
    let (mut owner, mut x, mut y) = (Author::new(1), Author::new(2), Author::new(3));
    let (m, n) = (Author::new(4), Author::new(5));
    let mut entries = vec![
        owner.genesis(0),
        owner.write(1, add(&x.public(), Role::Admin)),
        owner.write(2, add(&y.public(), Role::Admin)),
        x.write(3, add(&m.public(), Role::Member)),
        x.write(
            x_at,
            Action::Remove {
                subject: y.public(),
                cutoffs: Cutoffs {
                    last_entry: None,
                    devices: vec![DeviceCutoff::unpinned(DeviceId::from_bytes([7; 16]), 3)],
                },
            },
        ),
        y.write(
            y_at,
            Action::Remove {
                subject: x.public(),
                cutoffs: Cutoffs {
                    last_entry: Some(0),
                    devices: vec![DeviceCutoff::unpinned(DeviceId::from_bytes([8; 16]), 5)],
                },
            },
        ),
        y.write(y_at + backdate, add(&n.public(), Role::Reader)),
        owner.write(40, change(&m.public(), Role::Reader)),
    ];
    if fork {
        let twin = owner.draft(50, add(&n.public(), Role::Member));
        entries.push(SignedEntry::sign(&owner.key, twin).unwrap());
    }
    entries.push(owner.write(50, add(&n.public(), Role::Admin)));
    let mut forged = entries[3].to_bytes();
    forged[5] ^= 0x20;
    entries.push(SignedEntry::from_bytes(&forged).unwrap());
    entries.push(entries[1].clone());
    entries.push(entries[5].clone());
    (owner, entries)
}

proptest! {
    #[test]
    fn any_arrival_order_yields_the_same_chain(
        (x_at, y_at, fork, backdate, entries) in
            (4i64..30, 4i64..30, any::<bool>(), 1i64..20).prop_flat_map(|(x_at, y_at, fork, backdate)| {
                let (_, entries) = scenario(x_at, y_at, fork, backdate);
                (Just(x_at), Just(y_at), Just(fork), Just(backdate), Just(entries).prop_shuffle())
            }),
        split in any::<prop::sample::Index>(),
    ) {
        let (owner, ordered) = scenario(x_at, y_at, fork, backdate);
        let expected = validate(&owner, &ordered);
        let shuffled = validate(&owner, &entries);
        prop_assert_eq!(&shuffled, &expected);

        // Arriving in two pulls gives the same chain as one.
        let at = split.index(entries.len() + 1);
        let mut incremental = validate(&owner, &entries[..at]);
        incremental.extend(entries[at..].iter().cloned());
        prop_assert_eq!(&incremental, &expected);

        // Every received entry either counted or is reported.
        prop_assert_eq!(
            expected.counted().len() + expected.rejected().len(),
            ordered.len()
        );
        // The owner stays, whatever the admins did.
        prop_assert_eq!(expected.role_at(&owner.public(), hlc(100)), Some(Role::Owner));
        // Of two concurrent mutual removals, exactly one counts.
        let (x, y) = (Author::new(2).public(), Author::new(3).public());
        prop_assert!(expected.can_read(&x) != expected.can_read(&y));
    }

    #[test]
    fn random_histories_validate_the_same_in_any_order(
        steps in proptest::collection::vec((0usize..4, 0usize..5, 0u8..7, 0i64..50), 1..25),
        seed in any::<u64>(),
    ) {
        // Four authors (the first the founder) write random actions on five
        // subjects at random HLCs; whatever is refused, order never matters.
        let mut authors: Vec<Author> = (1..=4).map(Author::new).collect();
        let subjects: Vec<IdentityPublicKey> = (1..=5).map(|n| Author::new(n).public()).collect();
        let mut entries = vec![authors[0].genesis(0)];
        let mut clock = [1i64; 4];
        for (a, s, what, dt) in steps {
            clock[a] += dt + 1;
            let subject = &subjects[s];
            let action = match what {
                0 => add(subject, Role::Admin),
                1 => add(subject, Role::Member),
                2 => add(subject, Role::Owner),
                3 => remove(subject),
                4 => change(subject, Role::Reader),
                5 => change(subject, Role::Admin),
                _ => change(subject, Role::Owner),
            };
            entries.push(authors[a].write(clock[a], action));
        }
        let expected = validate(&authors[0], &entries);
        let mut rotated = entries.clone();
        let k = (seed as usize) % rotated.len();
        rotated.rotate_left(k);
        rotated.reverse();
        prop_assert_eq!(&validate(&authors[0], &rotated), &expected);
        let mut incremental = validate(&authors[0], &rotated[..k]);
        incremental.extend(rotated[k..].iter().cloned());
        prop_assert_eq!(&incremental, &expected);
    }
}

fn name(subject: &IdentityPublicKey, name: &str) -> Action {
    Action::SetName {
        subject: *subject,
        name: name.to_owned(),
    }
}

#[test]
fn members_name_themselves_and_managers_name_others() {
    let (mut owner, mut admin, mut member) = (Author::new(1), Author::new(2), Author::new(3));
    let outsider = Author::new(4);
    let mut entries = vec![
        owner.genesis(0),
        owner.write(1, add(&admin.public(), Role::Admin)),
        owner.write(2, add(&member.public(), Role::Member)),
    ];
    let own = member.write(3, name(&member.public(), "Mia"));
    let by_member = member.write(4, name(&owner.public(), "Boss"));
    let by_admin_of_owner = admin.write(5, name(&owner.public(), "Olga?"));
    let by_admin = admin.write(6, name(&member.public(), "Mia B."));
    let of_outsider = owner.write(7, name(&outsider.public(), "Nobody"));
    entries.extend([
        own.clone(),
        by_member.clone(),
        by_admin_of_owner.clone(),
        by_admin.clone(),
        of_outsider.clone(),
    ]);
    let chain = validate(&owner, &entries);
    assert!(counts(&chain, &own) && counts(&chain, &by_admin));
    assert_eq!(
        reasons(&chain, by_member.hash()),
        vec![Rejection::NotAuthorized {
            role: Some(Role::Member)
        }]
    );
    assert_eq!(
        reasons(&chain, by_admin_of_owner.hash()),
        vec![Rejection::AdminCannotTouchOwner]
    );
    assert_eq!(
        reasons(&chain, of_outsider.hash()),
        vec![Rejection::NotAMember]
    );
    // The newest counted name wins; a name changes no role.
    assert_eq!(chain.name_of(&member.public()), Some("Mia B."));
    assert_eq!(chain.name_of(&owner.public()), None);
    assert_eq!(chain.role_at(&member.public(), hlc(6)), Some(Role::Member));
    assert!(chain.can_write(&member.public(), hlc(7)));
}

#[test]
fn a_name_that_is_empty_too_long_or_has_control_characters_does_not_encode() {
    let mut owner = Author::new(1);
    owner.genesis(0);
    for bad in ["", "a\nb", &"x".repeat(65)] {
        let entry = owner.draft(1, name(&owner.public(), bad));
        assert!(
            matches!(entry.encode(), Err(bae_membership::EntryError::BadName)),
            "{bad:?}"
        );
    }
    assert!(owner
        .draft(1, name(&owner.public(), &"é".repeat(32)))
        .encode()
        .is_ok());
}

/// Review finding 6: an entry is never back-dated if it claims an HLC no
/// later than the entry that gave the revoker its role. A removed admin
/// uses exactly that window: the revoker (an admin added after them)
/// removed them having seen none of their entries, and they then write
/// one claiming a time between their own promotion and the revoker's,
/// adding an accomplice as admin, who adds them back.
#[test]
fn a_removed_admin_cannot_backdate_past_the_revokers_promotion() {
    let (mut owner, mut removed, mut revoker, mut accomplice) = (
        Author::new(1),
        Author::new(2),
        Author::new(3),
        Author::new(4),
    );
    let mut entries = vec![
        owner.genesis(0),
        owner.write(1, add(&removed.public(), Role::Admin)),
        owner.write(5, add(&revoker.public(), Role::Admin)),
        revoker.write(
            10,
            Action::Remove {
                subject: removed.public(),
                cutoffs: Cutoffs {
                    last_entry: None,
                    devices: vec![],
                },
            },
        ),
    ];
    // Written after the removal (the removed admin's first entry), claiming
    // HLC 3: after their promotion, before the revoker's.
    let backdated = removed.write(3, add(&accomplice.public(), Role::Admin));
    let back_again = accomplice.write(20, add(&removed.public(), Role::Admin));
    entries.extend([backdated.clone(), back_again]);
    let chain = validate(&owner, &entries);
    assert!(
        !counts(&chain, &backdated),
        "the removed admin's back-dated entry counts"
    );
    assert!(
        !chain
            .current_members()
            .iter()
            .any(|(m, _)| *m == removed.public() || *m == accomplice.public()),
        "{:?}",
        chain.current_members()
    );
}
