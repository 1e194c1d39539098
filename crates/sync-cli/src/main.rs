//! `bae-sync`: drives the sync engine on a library file. Every command is
//! non-interactive; on error it prints one line and exits non-zero.
//!
//! The CLI is a host of the engine like bae-core: it opens a bae library
//! (creating bae's reference tables in a new file, as bae's migrations
//! would), records its writes through the `OpRecorder` and syncs it with a
//! `SyncService`. Nothing below it depends on it.
#![forbid(unsafe_code)]
// The arguments' doc comments are their `--help` text, shown as typed: an
// example bucket URL there is text for a terminal, not a link.
#![allow(rustdoc::bare_urls)]

mod error;
mod exit;

use bae_crypto::IdentityPublicKey;
use bae_membership::{Invite, InviteCredentials, LibraryId, Role, SealedCredentials};
use bae_oplog::fixture::{demo_album, open_library, AlbumImport, Library};
use bae_oplog::{canonical_dump, OpRecorder, BAE_SCHEMA};
use bae_sync_service::{library, KeyStore, Progress, Stage};
use clap::{Parser, Subcommand};
use error::CliError;
use exit::Exit;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `println!` for command output: a closed stdout (`bae-sync dump | head`)
/// is [`CliError::StdoutClosed`], which ends the command quietly, where
/// `println!` would panic.
macro_rules! outln {
    ($($arg:tt)*) => {
        out(&format!("{}\n", format_args!($($arg)*)))
    };
}

mod files;

#[derive(Parser)]
#[command(
    name = "bae-sync",
    version,
    about = "Sync a bae library through a bucket",
    after_help = exit::EXIT_HELP
)]
struct Cli {
    /// Keep keys in files under this directory instead of the system
    /// keyring (e.g. ~/.bae-sync).
    #[arg(long, global = true, env = "BAE_SYNC_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The library file, as every command that works on one takes it.
const LIBRARY_HELP: &str = "The bae library file (e.g. ~/Music/bae/library.db)";

#[derive(Subcommand)]
enum Command {
    /// Set up sync for a library: make its key, push everything to the bucket.
    Init {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
        /// Where to sync: a directory (/mnt/nas/bae), file:///mnt/nas/bae, or
        /// s3://bucket/prefix?endpoint=https://s3.example.com&region=auto
        #[arg(long, value_name = "URL")]
        bucket: String,
    },
    /// Library key commands.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Set up another device (with --bucket and --key-file), or join a
    /// library someone shared with you (with --invite): take the key, pull
    /// everything.
    Join {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
        /// The bucket the library syncs through, as given to init (e.g.
        /// /mnt/nas/bae or s3://bucket/prefix?endpoint=...)
        #[arg(long, value_name = "URL", required_unless_present = "invite")]
        bucket: Option<String>,
        /// The key file written by `key export` on a device already set up
        /// (e.g. library.key)
        #[arg(long, value_name = "FILE", required_unless_present = "invite")]
        key_file: Option<PathBuf>,
        /// The invite code an owner or admin gave you (bae-invite-v1:...);
        /// it names the bucket and the library
        #[arg(long, value_name = "CODE", conflicts_with_all = ["bucket", "key_file"])]
        invite: Option<String>,
    },
    /// Add a member to the library (you must be an owner or admin): seals
    /// the library key to them and prints the invite code to give them.
    Invite {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
        /// Their public key, as `bae-sync identity show` prints it (64 hex
        /// digits)
        #[arg(long, value_name = "PUBKEY")]
        member: String,
        /// What they may do: owner, admin (manage members), member (read
        /// and write) or reader (read only)
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Their display name in this library (e.g. "Bob"), at most 64 bytes
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Also put this machine's S3 credentials (AWS_ACCESS_KEY_ID,
        /// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) in the code, sealed so
        /// only they can read them
        #[arg(long)]
        with_credentials: bool,
    },
    /// Set a display name in this library: your own, or (as an owner or
    /// admin) another member's. Members see it in `members`; it is sealed
    /// in the bucket like everything else.
    Name {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
        /// Whose name (64 hex digits); yours when left out
        #[arg(long, value_name = "PUBKEY")]
        member: Option<String>,
        /// The name (e.g. "Alice"), at most 64 bytes
        name: String,
    },
    /// Remove a member and start a new library key for everyone else;
    /// nothing written afterwards can be read or written by them.
    Revoke {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
        /// Their public key (64 hex digits, as `members` lists it)
        #[arg(long, value_name = "PUBKEY")]
        member: String,
    },
    /// Undo `init`/`join` on this device: keep the library's rows, forget
    /// the bucket and sync state, delete the key; `join` works again after.
    Leave {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
    },
    /// Import made-up albums, written as bae writes an import. Albums the
    /// library already has are skipped, so an interrupted import is resumed
    /// by running it again.
    DemoImport {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
        /// How many albums (e.g. 50)
        #[arg(long, value_name = "N")]
        albums: u64,
        /// Which set of made-up albums: the same seed makes the same albums
        /// (e.g. 2)
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Number of the first album, to add albums after ones imported
        /// before (e.g. 50 after `--albums 50`)
        #[arg(long, value_name = "N", default_value_t = 0)]
        first: u64,
    },
    /// List a release's files and whether each is in the bucket
    /// (uploaded; waiting: this device uploads it; elsewhere: the device
    /// that imported it does).
    Files {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
        /// The release's id (e.g. the id shown by `dump`)
        #[arg(long, value_name = "ID")]
        release: String,
    },
    /// Encrypt and upload the release files this device has that the
    /// bucket lacks; the next push tells the other devices.
    Upload {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
        /// Only this release's files (default: every release's)
        #[arg(long, value_name = "ID")]
        release: Option<String>,
    },
    /// Download and decrypt one release file, or a byte range of it.
    Fetch {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
        /// The file's id (as `files` lists it)
        #[arg(long, value_name = "ID")]
        file: String,
        /// Where to write it (replaced only once everything decrypted)
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
        /// Only plaintext bytes START up to END, END not included (e.g.
        /// 0-65536 for the first 64 KiB)
        #[arg(long, value_name = "START-END", value_parser = files::parse_range)]
        range: Option<std::ops::Range<u64>>,
    },
    /// Give one release to someone outside the library: writes a grant
    /// file, signed by you, that only they can open. Every file of the
    /// release must be uploaded first (`upload --release ID`).
    Share {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
        /// The release's id (e.g. the id shown by `dump`)
        #[arg(long, value_name = "ID")]
        release: String,
        /// Their public key, as `bae-sync identity show` prints it (64 hex
        /// digits)
        #[arg(long, value_name = "PUBKEY")]
        to: String,
        /// Also put this machine's S3 credentials (AWS_ACCESS_KEY_ID,
        /// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) in the grant, sealed so
        /// only they can read them; without them the recipient needs their
        /// own access to the bucket
        #[arg(long)]
        with_credentials: bool,
        /// Days until the grant stops being honoured (1 to 3650)
        #[arg(long, value_name = "DAYS", default_value_t = 30,
              value_parser = clap::value_parser!(u64).range(1..=3650))]
        expires: u64,
        /// The grant file to write (a new file)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Fetch and decrypt the release a grant gives you into a directory,
    /// under the files' original names (needs no library; --home selects
    /// the identity the grant is for).
    Redeem {
        /// The grant file you were given
        #[arg(long, value_name = "FILE")]
        grant: PathBuf,
        /// The directory to write the files into (created if missing; an
        /// existing file is never replaced)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Change fields of one row, recorded for sync. Values are read by the
    /// column's type: `year=1999` (a whole number), `title=007` (text, kept
    /// as typed), `title=` (empty text); `--null year` clears a field.
    Set {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
        /// A table that syncs (e.g. albums, releases, tracks)
        table: String,
        /// The row's id (e.g. the id shown by `dump`)
        row_id: String,
        /// COLUMN=VALUE, one or more (e.g. title="Blue Train" year=1957)
        #[arg(value_name = "COLUMN=VALUE", required_unless_present = "null")]
        assignments: Vec<String>,
        /// Set this column to NULL (no value); repeat for more (e.g. --null year)
        #[arg(long, value_name = "COLUMN")]
        null: Vec<String>,
    },
    /// Delete one row and everything under it (an album takes its releases,
    /// tracks, files and images), recorded for sync.
    Delete {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
        /// A table that syncs (e.g. albums)
        table: String,
        /// The row's id (e.g. the id shown by `dump`)
        row_id: String,
    },
    /// Upload this device's changes to the bucket.
    Push {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
        /// First re-upload this device's batches that are missing from the
        /// bucket or damaged there, and rewrite its head.
        #[arg(long)]
        repair: bool,
    },
    /// Fetch and apply the other devices' changes.
    Pull {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
    },
    /// Push, then pull.
    Sync {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
    },
    /// What is waiting to sync and when each device last synced (no network).
    /// Also checks the library file for damage.
    Status {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
        /// Print it as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Print the synced rows as sorted text (two synced devices print the same).
    Dump {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
    },
    /// Write a snapshot of the whole library to the bucket, so new devices
    /// start from it (pushes and pulls first).
    Checkpoint {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
    },
    /// Delete changes and old snapshots from the bucket that the newest
    /// snapshot covers, once it is 30 days old.
    Gc {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
        /// Delete now, without waiting 30 days (every device must have
        /// synced since the snapshot).
        #[arg(long)]
        now: bool,
    },
    /// This user's identity (one signing key for every library).
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// List the library's members, their roles and the devices each signs for.
    Members {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Make a read-only copy of the library from the bucket's newest
    /// snapshot, for a server.
    ServerBootstrap {
        /// The bucket the library syncs through (e.g. /mnt/nas/bae or
        /// s3://bucket/prefix?endpoint=...)
        #[arg(long, value_name = "URL")]
        bucket: String,
        /// The key file written by `key export` (e.g. library.key)
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
        /// The database file to write (e.g. server.db)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Also apply the changes made since the snapshot.
        #[arg(long)]
        refresh: bool,
    },
    /// Show sync working: two devices with bae's library tables and one
    /// bucket in a local directory; edits on both, sync, identical libraries.
    Demo {
        /// A new or empty directory for the demo's libraries and bucket
        /// (e.g. /tmp/bae-demo; default: a temporary one, removed after)
        #[arg(long)]
        dir: Option<PathBuf>,
        /// How many albums the first device imports (e.g. 50)
        #[arg(long, value_name = "N", default_value_t = 50)]
        albums: u64,
    },
}

/// A member's role, as `invite --role` takes it.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum RoleArg {
    Owner,
    Admin,
    Member,
    Reader,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Owner => Role::Owner,
            RoleArg::Admin => Role::Admin,
            RoleArg::Member => Role::Member,
            RoleArg::Reader => Role::Reader,
        }
    }
}

#[derive(Subcommand)]
enum IdentityCommand {
    /// Print this user's public key (made on first use), 64 hex digits on
    /// the last line.
    Show,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Write the library key to a file, for another device of the same user.
    Export {
        #[arg(long, value_name = "FILE", help = LIBRARY_HELP)]
        library: PathBuf,
        /// The key file to write (e.g. library.key), a new file created
        /// with mode 0600; keep it secret
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace an existing file (never the library or another database).
        #[arg(long)]
        force: bool,
    },
}

impl Command {
    /// The database file the command works on, named when it is damaged.
    fn database(&self) -> Option<&Path> {
        match self {
            Command::Init { library, .. }
            | Command::Join { library, .. }
            | Command::Leave { library }
            | Command::DemoImport { library, .. }
            | Command::Set { library, .. }
            | Command::Delete { library, .. }
            | Command::Push { library, .. }
            | Command::Pull { library }
            | Command::Sync { library }
            | Command::Status { library, .. }
            | Command::Dump { library }
            | Command::Checkpoint { library }
            | Command::Gc { library, .. }
            | Command::Members { library, .. }
            | Command::Invite { library, .. }
            | Command::Revoke { library, .. }
            | Command::Name { library, .. }
            | Command::Files { library, .. }
            | Command::Upload { library, .. }
            | Command::Fetch { library, .. }
            | Command::Share { library, .. }
            | Command::Key {
                command: KeyCommand::Export { library, .. },
            } => Some(library),
            Command::ServerBootstrap { out, .. } => Some(out),
            Command::Demo { .. } | Command::Identity { .. } | Command::Redeem { .. } => None,
        }
    }

    /// Whether the command may create its database file (every other
    /// command refuses a missing one, so a mistyped path creates nothing).
    fn creates_library(&self) -> bool {
        matches!(
            self,
            Command::Init { .. }
                | Command::Join { .. }
                | Command::DemoImport { .. }
                | Command::ServerBootstrap { .. }
                | Command::Demo { .. }
        )
    }
}

fn main() -> ExitCode {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout and are not errors.
            let status = if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Done
            };
            let _ = e.print();
            return status.code();
        }
    };
    let keys = cli.home.clone().map_or(KeyStore::Os, KeyStore::Files);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bae-sync: cannot start runtime: {e}");
            return Exit::Error.code();
        }
    };
    let database = cli.command.database().map(Path::to_path_buf);
    let redeeming = matches!(cli.command, Command::Redeem { .. });
    let status = match runtime.block_on(run(cli.command, &keys)) {
        Ok(Outcome::Done) | Err(CliError::StdoutClosed) => Exit::Done,
        Ok(Outcome::Rejected(n)) => {
            eprintln!(
                "bae-sync: {} rejected and not applied (everything else was); \
                 the device that wrote each must run `bae-sync push --repair`",
                count(n, "batch", "batches")
            );
            Exit::Rejected
        }
        Err(e) => {
            let e = match (error::damage(&e), &database) {
                (Some(detail), Some(path)) => CliError::Damaged {
                    path: path.display().to_string(),
                    detail,
                },
                _ => e,
            };
            eprintln!("bae-sync: {e}");
            match e {
                CliError::Sync(bae_sync_service::SyncError::LibraryBusy { .. }) => Exit::Busy,
                CliError::Sync(bae_sync_service::SyncError::Share(ref e))
                    if redeeming
                        && matches!(**e, bae_sync_service::grants::ShareError::Grant(_)) =>
                {
                    Exit::GrantRefused
                }
                _ => Exit::Error,
            }
        }
    };
    status.code()
}

/// How long a command waits for another bae-sync working on its library
/// when `BAE_SYNC_LOCK_WAIT` (seconds) is not set.
const DEFAULT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// One bae-sync at a time per library: every command that opens one takes
/// its lock first, so two never upload the same batches or fight over the
/// database. Held until the command ends (or the process dies).
///
/// Also the one place a missing library file is refused, for every command
/// that may not create one ([`Command::creates_library`]): the commands
/// then open their library with `open_library`, which would create it.
fn lock_library(command: &Command) -> Result<Option<library::LibraryLock>, CliError> {
    // The demo's libraries are its own, in a directory it makes.
    let Some(path) = command.database() else {
        return Ok(None);
    };
    // Refused before the lock file is made next to it.
    if !command.creates_library() && !path.is_file() {
        return Err(CliError::NoLibrary {
            path: path.display().to_string(),
        });
    }
    let wait = match std::env::var("BAE_SYNC_LOCK_WAIT") {
        Err(_) => DEFAULT_LOCK_WAIT,
        Ok(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
            .ok_or(CliError::BadLockWait { found: text })?,
    };
    Ok(Some(library::LibraryLock::acquire(path, wait)?))
}

/// How a command that completed went.
enum Outcome {
    /// Everything done.
    Done,
    /// Done, except this many remote batches were rejected ([`Exit::Rejected`]).
    Rejected(usize),
}

async fn run(command: Command, keys: &KeyStore) -> Result<Outcome, CliError> {
    let _lock = lock_library(&command)?;
    let mut rejected = 0;
    match command {
        Command::Init { library, bucket } => {
            let s = library::init(open_library(&library)?, &bucket, keys).await?;
            outln!("initialized device {} with bucket {bucket}", s.device())?;
        }
        Command::Key {
            command:
                KeyCommand::Export {
                    library,
                    out,
                    force,
                },
        } => {
            library::export_key(open_library(&library)?, keys, &out, force)?;
            outln!("library key written to {}", out.display())?;
        }
        Command::Leave { library } => {
            let r = library::leave(open_library(&library)?, keys)?;
            outln!(
                "left library {} (bucket {}); rows kept, key deleted; this library is now device {}",
                r.library_id, r.bucket_url, r.new_device
            )?;
        }
        Command::Join {
            library,
            bucket,
            key_file,
            invite,
        } => join(&library, bucket, key_file, invite, keys).await?,
        Command::Invite {
            library,
            member,
            role,
            name,
            with_credentials,
        } => {
            let member = member_key(&member)?;
            let bucket = library::saved_bucket(open_library(&library)?)?;
            let s = library::open(open_library(&library)?, keys)?;
            let credentials = match with_credentials {
                true => Some(credentials_for(&bucket, s.library_id(), &member)?),
                false => None,
            };
            report_plant(
                s.invite(member, role.into())
                    .await?
                    .replaced_plant
                    .as_deref(),
            );
            if let Some(name) = name {
                report_plant(s.set_name(member, &name).await?.replaced_plant.as_deref());
            }
            let code = Invite {
                library_id: s.library_id(),
                bucket,
                founder: s.founder_key(),
                inviter: s.member_key(),
                invitee: member,
                role: role.into(),
                credentials,
            }
            .to_code();
            outln!("invited {member} as {role:?}; give them this code (they run `bae-sync join --library FILE --invite CODE`):")?;
            outln!("{code}")?;
        }
        Command::Name {
            library,
            member,
            name,
        } => {
            let s = library::open(open_library(&library)?, keys)?;
            let member = match member {
                Some(text) => member_key(&text)?,
                None => s.member_key(),
            };
            report_plant(s.set_name(member, &name).await?.replaced_plant.as_deref());
            outln!("{member} is now called {name:?} in this library")?;
        }
        Command::Revoke { library, member } => {
            let member = member_key(&member)?;
            let s = library::open(open_library(&library)?, keys)?;
            let r = s.revoke(member).await?;
            report_plant(r.replaced_plant.as_deref());
            match (r.removed, r.new_epoch) {
                (true, _) => outln!("removed {member}")?,
                (false, _) => outln!("{member} was already removed")?,
            }
            if let Some(epoch) = r.new_epoch {
                outln!(
                    "new library key (epoch {}) sealed to every remaining member",
                    epoch.0
                )?;
            }
            if let Some(key) = &r.checkpoint {
                outln!("checkpoint {key} written: it holds their batches up to the removal")?;
            }
            if let Some((device, seq)) = r.behind {
                outln!("no checkpoint written: batch {seq} of device {device} is gone from the bucket and this device has not restored it; run `pull`, then `checkpoint`")?;
            }
            outln!("they keep what they already downloaded, and any S3 credentials they were given: revoke those at your storage provider")?;
        }
        Command::DemoImport {
            library,
            albums,
            seed,
            first,
        } => {
            refuse_reader(&library, keys)?;
            demo_import(&library, albums, seed, first)?
        }
        Command::Files { library, release } => files::files(&library, &release, keys).await?,
        Command::Upload { library, release } => {
            refuse_reader(&library, keys)?;
            files::upload(&library, release.as_deref(), keys).await?
        }
        Command::Fetch {
            library,
            file,
            out,
            range,
        } => files::fetch(&library, &file, &out, range, keys).await?,
        Command::Share {
            library,
            release,
            to,
            with_credentials,
            expires,
            out,
        } => {
            let to = member_key(&to)?;
            let credentials = match with_credentials {
                true => {
                    let bucket = library::saved_bucket(open_library(&library)?)?;
                    Some(env_credentials(&bucket)?)
                }
                false => None,
            };
            files::share(&library, &release, to, credentials, expires, &out, keys).await?
        }
        Command::Redeem { grant, out } => files::redeem(&grant, &out, keys).await?,
        Command::Set {
            library,
            table,
            row_id,
            assignments,
            null,
        } => {
            let fields = parse_assignments(&assignments, &null)?;
            refuse_reader(&library, keys)?;
            let mut lib = Library::new(open_library(&library)?);
            lib.set(&table, &row_id, &fields)?;
            let columns: Vec<&str> = fields.iter().map(|(c, _)| *c).collect();
            outln!("{table} {row_id}: {} set", columns.join(", "))?;
        }
        Command::Delete {
            library,
            table,
            row_id,
        } => {
            refuse_reader(&library, keys)?;
            let mut lib = Library::new(open_library(&library)?);
            match lib.remove(&table, &row_id)? {
                0 => outln!("deleted {table} {row_id}")?,
                n => outln!(
                    "deleted {table} {row_id} and {} under it",
                    count(n, "row", "rows")
                )?,
            }
        }
        Command::Push { library, repair } => {
            let service = library::open(open_library(&library)?, keys)?;
            let (repaired, r) = with_progress("pushing", |p| async move {
                let service = service.with_progress(p);
                let repaired = match repair {
                    true => Some(service.repair().await?),
                    false => None,
                };
                Ok::<_, bae_sync_service::SyncError>((repaired, service.push().await?))
            })
            .await?;
            if let Some(repaired) = &repaired {
                print_repair(repaired)?;
            }
            report_retaken(&r.retaken);
            outln!(
                "pushed {}, {}",
                count(r.batches, "batch", "batches"),
                count(r.images, "image", "images")
            )?;
            if r.images_waiting > 0 {
                eprintln!(
                    "bae-sync: {} no local bytes yet; they stay queued",
                    count(r.images_waiting, "queued image has", "queued images have")
                );
            }
        }
        Command::Pull { library } => {
            let service = library::open(open_library(&library)?, keys)?;
            let r = with_progress("pulling", |p| async move {
                service.with_progress(p).pull().await
            })
            .await?;
            outln!("applied {}", count(r.applied, "batch", "batches"))?;
            rejected = report_problems(&r.problems);
            report_images(&r.images_rejected);
        }
        Command::Sync { library } => {
            let rec = open_library(&library)?;
            check_pages(&rec, &library)?;
            let service = library::open(rec, keys)?;
            let (push, pull) = with_progress("syncing", |p| async {
                service.with_progress(p).sync().await
            })
            .await?;
            report_retaken(&push.retaken);
            outln!(
                "pushed {}, applied {}",
                count(push.batches, "batch", "batches"),
                count(pull.applied, "batch", "batches")
            )?;
            rejected = report_problems(&pull.problems);
            report_images(&pull.images_rejected);
        }
        Command::Status { library, json } => {
            let rec = open_library(&library)?;
            check_pages(&rec, &library)?;
            let status = library::open(rec, keys)?.status().await?;
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&status).unwrap_or_default()
                )?;
            } else {
                print_status(&status)?;
            }
        }
        Command::Identity {
            command: IdentityCommand::Show,
        } => {
            let identity = keys
                .identity_store()
                .load_or_create()
                .map_err(bae_sync_service::SyncError::from)?;
            outln!("{}", identity.public_key())?;
        }
        Command::Members { library, json } => {
            let rec = open_library(&library)?;
            let members = library::open(rec, keys)?.members().await?;
            print_members(&members, json)?;
        }
        Command::Dump { library } => {
            let mut rec = open_library(&library)?;
            out(&canonical_dump(rec.sync_parts().0, &BAE_SCHEMA)?)?;
        }
        Command::Demo { dir, albums } => demo(dir, albums, keys).await?,
        Command::Checkpoint { library } => {
            let service = library::open(open_library(&library)?, keys)?;
            let r = with_progress("writing checkpoint", |p| async {
                service.with_progress(p).checkpoint().await
            })
            .await?;
            outln!(
                "checkpoint {} written: {}, {}",
                r.key,
                count(r.records, "record", "records"),
                count(r.sealed_bytes, "byte", "bytes")
            )?;
        }
        Command::Gc { library, now } => {
            let s = library::open(open_library(&library)?, keys)?;
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let r = s.gc(now_ms, bae_sync_service::GC_GRACE, now).await?;
            match (&r.checkpoint, r.grace_left_ms) {
                (None, _) => outln!("no checkpoint: nothing to delete")?,
                (Some(k), Some(left)) => outln!(
                    "checkpoint {k} is inside the grace period ({} left): nothing deleted",
                    count(left / 86_400_000 + 1, "day", "days")
                )?,
                (Some(k), None) if r.held_by_membership.is_some() => outln!(
                    "checkpoint {k}: nothing deleted: membership entry {} does not open with this member's keys (this member may have been removed, or a new library key has not reached this device); run gc again after a pull",
                    r.held_by_membership.as_deref().unwrap_or_default()
                )?,
                (Some(k), None) if r.held_by_newer.is_some() => outln!(
                    "checkpoint {k}: nothing deleted: a newer checkpoint, {}, cannot be weighed yet (its clock is ahead of this device's, or a listing missed it); run gc again later",
                    r.held_by_newer.as_deref().unwrap_or_default()
                )?,
                (Some(k), None) if r.held_by_older.is_some() => outln!(
                    "checkpoint {k}: nothing deleted: an older checkpoint, {}, holds batches gone from the bucket that this one lacks; run checkpoint (it recovers them first), then gc again",
                    r.held_by_older.as_deref().unwrap_or_default()
                )?,
                (Some(k), None) => outln!(
                    "checkpoint {k}: deleted {}, {}; pruned {}",
                    count(r.ops_deleted, "batch", "batches"),
                    count(
                        r.checkpoints_deleted,
                        "older checkpoint",
                        "older checkpoints"
                    ),
                    count(r.local_ops_pruned, "local op", "local ops")
                )?,
            }
            for e in &r.rejected {
                eprintln!("bae-sync: {e}");
            }
            for i in &r.ignored_membership {
                eprintln!(
                    "bae-sync: membership object {} does not open and cannot remove this member ({}): gc did not wait for it; whoever can write to the bucket may have put it there",
                    i.key, i.reason
                );
            }
        }
        Command::ServerBootstrap {
            bucket,
            key_file,
            out,
            refresh,
        } => rejected = server_bootstrap(&bucket, &key_file, &out, refresh).await?,
    }
    Ok(match rejected {
        0 => Outcome::Done,
        n => Outcome::Rejected(n),
    })
}

/// Runs a long operation with a progress display on stderr (drawn only when
/// stderr is a terminal, so scripts and tests see clean output): a spinner
/// saying `what` until the service reports a stage, then a bar per stage.
async fn with_progress<T, F>(what: &'static str, work: impl FnOnce(Progress) -> F) -> T
where
    F: std::future::Future<Output = T>,
{
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(what);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let shown = bar.clone();
    let current = std::sync::Mutex::new(None::<Stage>);
    let progress: Progress = std::sync::Arc::new(move |stage, done, total| {
        if let Ok(mut current) = current.lock() {
            if *current != Some(stage) {
                *current = Some(stage);
                let counts = match stage {
                    Stage::Upload | Stage::Download => "{bytes}/{total_bytes}".to_owned(),
                    _ => format!("{{human_pos}}/{{human_len}} {}", stage.unit()),
                };
                // wide_bar takes what the terminal has left, so the line
                // fits an 80-column terminal.
                let template = format!("{{msg:>22}} {{wide_bar}} {counts} ({{eta}})");
                shown.set_style(
                    indicatif::ProgressStyle::with_template(&template)
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                shown.set_message(stage.verb());
            }
        }
        shown.set_length(total);
        shown.set_position(done);
    });
    let out = work(progress).await;
    bar.finish_and_clear();
    out
}

/// `server-bootstrap`, with progress while the checkpoint downloads and
/// restores. Returns the number of rejected batches (with `--refresh`).
async fn server_bootstrap(
    bucket: &str,
    key_file: &Path,
    out: &Path,
    refresh: bool,
) -> Result<usize, CliError> {
    let r = with_progress("bootstrapping", |p| {
        bae_sync_service::server_bootstrap(bucket, key_file, out, open_library, refresh, Some(p))
    })
    .await?;
    if let Some(b) = &r.bootstrap {
        outln!(
            "restored {} ({}) into {}",
            b.key,
            count(b.records, "record", "records"),
            out.display()
        )?;
        for e in &b.rejected {
            eprintln!("bae-sync: skipped {e}");
        }
    }
    Ok(match &r.refreshed {
        Some(p) => {
            outln!(
                "replayed {}",
                count(p.applied, "newer batch", "newer batches")
            )?;
            report_problems(&p.problems)
        }
        None => 0,
    })
}

/// Prints each damaged image on stderr (wanted and retried by later pulls;
/// the device that wrote it runs `push --repair`).
fn report_images(rejected: &[String]) {
    for why in rejected {
        eprintln!("bae-sync: image not fetched, will retry: {why}");
    }
}

/// Names the batches a push took back from the bucket because this
/// library went back in time (a restored backup, a power loss).
fn report_retaken(seqs: &[u64]) {
    if let (Some(first), Some(last)) = (seqs.first(), seqs.last()) {
        eprintln!(
            "bae-sync: this library went back in time; re-took batches {first}..={last} it had pushed before, new batches continue above them"
        );
    }
}

/// Names on stderr a planted object a membership entry replaced at its
/// path (no device could have counted it; whoever can write to the bucket
/// put it there).
fn report_plant(replaced: Option<&str>) {
    if let Some(key) = replaced {
        eprintln!("bae-sync: replaced a planted object at {key} (it was no entry of yours; whoever can write to the bucket put it there)");
    }
}

fn print_repair(r: &bae_sync_service::RepairReport) -> Result<(), CliError> {
    report_retaken(&r.retaken);
    outln!(
        "repair: checked {}, re-uploaded {}{}",
        count(r.checked, "batch", "batches"),
        r.repaired.len(),
        r.head
            .map_or(String::new(), |h| format!(", head rewritten at {h}"))
    )?;
    for seq in &r.repaired {
        outln!("repaired batch {seq}")?;
    }
    for image in &r.images_repaired {
        outln!("repaired image {image}")?;
    }
    for (seq, why) in &r.unrepairable {
        eprintln!("bae-sync: batch {seq} cannot be repaired: {why}");
    }
    Ok(())
}

/// Writes a small deterministic stand-in for each image the album imports,
/// so push and pull carry image bytes as bae would.
fn write_placeholder_images(dir: &Path, album: &AlbumImport) -> Result<(), CliError> {
    for row in album.rows.iter().filter(|r| r.table == "images") {
        std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
        let mut bytes = b"bae placeholder image\n".to_vec();
        let mut xof = blake3::Hasher::new()
            .update(row.id.as_bytes())
            .finalize_xof();
        let mut noise = [0u8; 1024];
        xof.fill(&mut noise);
        bytes.extend_from_slice(&noise);
        let path = dir.join(&row.id);
        std::fs::write(&path, bytes).map_err(|e| CliError::io(&path, e))?;
    }
    Ok(())
}

/// Prints each problem batch on stderr; returns how many were rejected
/// (held ones are retried by the next pull and do not count).
fn report_problems(problems: &[bae_sync_service::Problem]) -> usize {
    for p in problems {
        eprintln!(
            "bae-sync: batch {} of device {} {:?}: {}",
            p.seq, p.device, p.kind, p.reason
        );
    }
    problems
        .iter()
        .filter(|p| p.kind == bae_sync_service::ProblemKind::Rejected)
        .count()
}

fn print_status(s: &bae_sync_service::Status) -> Result<(), CliError> {
    outln!(
        "device {}  bucket {}",
        s.device,
        s.bucket.as_deref().unwrap_or("-")
    )?;
    outln!("pending batches: {}", s.pending_batches)?;
    outln!(
        "images: {} waiting to upload, {} wanted from the bucket",
        s.images_queued,
        s.images_wanted
    )?;
    for d in &s.devices {
        outln!(
            "device {}: applied {} of {}, last synced {}",
            d.device,
            d.applied_seq,
            d.head_seq.map_or("?".into(), |h| h.to_string()),
            d.last_synced_ms.map_or("never".into(), utc_time)
        )?;
    }
    for p in &s.problems {
        outln!("{} batch {} of {}: {}", p.kind, p.seq, p.device, p.reason)?;
    }
    for w in &s.newer_schema {
        outln!(
            "device {} writes schema {}, this device has {}: update to see everything",
            w.device,
            w.schema_version,
            s.schema_version
        )?;
    }
    if s.kept_ops > 0 {
        outln!(
            "kept for after the update: {}",
            count(s.kept_ops, "op", "ops")
        )?;
    }
    if let Some(e) = &s.last_error {
        outln!("last error: {e}")?;
    }
    Ok(())
}

/// Unix milliseconds as `2026-11-26 04:06:31 UTC`.
fn utc_time(ms: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_else(|| format!("{ms} ms after the Unix epoch"))
}

/// `COLUMN=VALUE` arguments and `--null COLUMN` flags as the library's
/// [`Library::set`] takes them: the value as text (read by the column's
/// type there), `None` for NULL.
fn parse_assignments<'a>(
    items: &'a [String],
    nulls: &'a [String],
) -> Result<Vec<(&'a str, Option<&'a str>)>, CliError> {
    let mut fields = items
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(c, v)| (c, Some(v)))
                .ok_or_else(|| CliError::BadAssignment {
                    found: item.clone(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    fields.extend(nulls.iter().map(|c| (c.as_str(), None)));
    Ok(fields)
}

/// Writes command output to stdout (see [`outln!`]).
fn out(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => CliError::StdoutClosed,
            _ => CliError::Stdout(e),
        })
}

/// `1 batch`, `3 batches`: every count the CLI prints.
fn count<N>(n: N, one: &str, many: &str) -> String
where
    N: std::fmt::Display + PartialEq + From<u8>,
{
    let word = if n == N::from(1) { one } else { many };
    format!("{n} {word}")
}

/// Reads every page of the library (`PRAGMA quick_check`), so a damaged
/// page is reported by `status` and `sync` and not only by the command that
/// happens to read it. About 0.2 s for 2,000 albums (60 MB); `quick_check`
/// skips the index-content checks of `integrity_check`, which take longer.
fn check_pages(rec: &OpRecorder, path: &Path) -> Result<(), CliError> {
    let db = rec.database();
    let mut stmt = db.prepare("PRAGMA quick_check(3)")?;
    let found: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(bae_oplog::OplogError::from)?;
    match found.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        problems => Err(CliError::Damaged {
            path: path.display().to_string(),
            // quick_check's lines may hold newlines; the error is one line.
            detail: problems.join("\n").lines().collect::<Vec<_>>().join("; "),
        }),
    }
}

/// `demo-import`: albums `first..first + albums` of `seed`, skipping those
/// the library already has, so running it again resumes an interrupted one.
fn demo_import(library: &Path, albums: u64, seed: u64, first: u64) -> Result<(), CliError> {
    let mut lib = Library::new(open_library(library)?);
    let images = bae_sync_service::images_dir_for(library);
    let files_dir = bae_sync_service::files_dir_for(library);
    let (mut imported, mut present) = (0u64, 0u64);
    for i in first..first.saturating_add(albums) {
        let album = demo_album(seed, i, 12);
        let id = album.album_id().unwrap_or_default().to_owned();
        let exists: bool = lib.recorder().database().query_row(
            "SELECT EXISTS (SELECT 1 FROM albums WHERE id = ?1)",
            [&id],
            |r| r.get(0),
        )?;
        if exists {
            present += 1;
            continue;
        }
        write_placeholder_images(&images, &album)?;
        // Real files behind the album's file rows, for `upload` and `fetch`.
        let album = album
            .with_files_in(&files_dir)
            .map_err(|e| CliError::io(&files_dir, e))?;
        lib.import_album(&album)?;
        imported += 1;
    }
    match present {
        0 => outln!("imported {}", count(imported, "album", "albums")),
        _ => outln!(
            "imported {} ({} already in the library)",
            count(imported, "album", "albums"),
            present
        ),
    }
}

/// Two devices on one local-directory bucket converge.
/// `members`: one line per member (key, role, device ids), or JSON.
fn print_members(members: &[bae_sync_service::MemberInfo], json: bool) -> Result<(), CliError> {
    let role = |r: bae_membership::Role| format!("{r:?}").to_lowercase();
    if json {
        let list: Vec<serde_json::Value> = members
            .iter()
            .map(|m| {
                serde_json::json!({
                    "key": m.key.to_string(),
                    "name": m.name,
                    "role": role(m.role),
                    "devices": m.devices.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                })
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        )?;
        return Ok(());
    }
    for m in members {
        let devices: Vec<String> = m.devices.iter().map(|d| d.to_string()).collect();
        let devices = if devices.is_empty() {
            "no devices yet".to_owned()
        } else {
            devices.join(" ")
        };
        let name = m
            .name
            .as_deref()
            .map(|n| format!("{n:?}  "))
            .unwrap_or_default();
        outln!("{}  {name}{:<6}  {devices}", m.key, role(m.role))?;
    }
    Ok(())
}

/// `join`: with a key file (another device of this user) or an invite
/// code (a library someone shared).
async fn join(
    library: &Path,
    bucket: Option<String>,
    key_file: Option<PathBuf>,
    invite: Option<String>,
    keys: &KeyStore,
) -> Result<(), CliError> {
    let s = match (invite, bucket, key_file) {
        (Some(code), _, _) => {
            // A mistyped code, or one for another identity, is refused before
            // the library is opened (which creates a missing one).
            let invite = Invite::from_code(&code)?;
            let me = keys
                .identity_store()
                .load()
                .map_err(bae_sync_service::SyncError::from)?;
            invite.check_invitee(&me.public_key())?;
            if let Some(sealed) = &invite.credentials {
                let credentials = sealed.open(invite.library_id, &me)?;
                library::save_s3_credentials(keys, invite.library_id, &credentials)?;
            }
            let rec = open_library(library)?;
            with_progress("joining", |p| {
                library::join_invited(
                    rec,
                    &invite.bucket,
                    invite.library_id,
                    &invite.founder,
                    &invite.inviter,
                    keys,
                    Some(p),
                )
            })
            .await?
        }
        (None, Some(bucket), Some(key_file)) => {
            // A mistyped or unreadable key file is refused before the
            // library is opened (which creates a missing one).
            bae_sync_service::keystore::read_key_file(&key_file)?;
            let rec = open_library(library)?;
            with_progress("joining", |p| {
                library::join(rec, &bucket, &key_file, keys, Some(p))
            })
            .await?
        }
        // clap requires --bucket and --key-file unless --invite is given.
        (None, _, _) => return Err(CliError::JoinNeedsKeyOrInvite),
    };
    outln!("joined as device {}", s.device())?;
    Ok(())
}

/// Refuses an edit by a reader of a library set up for sync (as of its
/// last pull): every other member would refuse the batch.
fn refuse_reader(library: &Path, keys: &KeyStore) -> Result<(), CliError> {
    if !library.exists() {
        return Ok(());
    }
    match library::cached_role(open_library(library)?, keys)? {
        Some(Role::Reader) => Err(CliError::ReaderCannotWrite),
        _ => Ok(()),
    }
}

/// A public key given on the command line.
fn member_key(text: &str) -> Result<IdentityPublicKey, CliError> {
    IdentityPublicKey::from_hex(text.trim()).map_err(CliError::MemberKey)
}

/// This machine's S3 credentials, sealed to `member`, for an invite to an
/// S3 bucket.
fn credentials_for(
    bucket: &str,
    library: LibraryId,
    member: &IdentityPublicKey,
) -> Result<SealedCredentials, CliError> {
    let credentials = env_credentials(bucket)?;
    Ok(SealedCredentials::seal(&credentials, library, member)?)
}

/// This machine's S3 credentials (`AWS_*`), for a bucket on S3.
fn env_credentials(bucket: &str) -> Result<InviteCredentials, CliError> {
    if !bucket.starts_with("s3://") {
        return Err(CliError::Credentials("the library's bucket is not on S3"));
    }
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    let (Some(access_key), Some(secret_key)) =
        (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
    else {
        return Err(CliError::Credentials(
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set",
        ));
    };
    Ok(InviteCredentials {
        access_key,
        secret_key: zeroize::Zeroizing::new(secret_key),
        session_token: var("AWS_SESSION_TOKEN").map(zeroize::Zeroizing::new),
    })
}

async fn demo(dir: Option<PathBuf>, albums: u64, keys: &KeyStore) -> Result<(), CliError> {
    let temp;
    let dir = match dir {
        Some(d) => d,
        None => {
            temp = tempfile::tempdir().map_err(|e| CliError::io(Path::new("temp dir"), e))?;
            temp.path().to_path_buf()
        }
    };
    if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(CliError::DemoDirInUse {
            path: dir.display().to_string(),
        });
    }
    std::fs::create_dir_all(&dir).map_err(|e| CliError::io(&dir, e))?;
    let keys = match keys {
        KeyStore::Os => KeyStore::Files(dir.join("home")),
        k => k.clone(),
    };
    let bucket = dir.join("bucket");
    let bucket = bucket.to_string_lossy().into_owned();
    let (a, b, key) = (
        dir.join("laptop.db"),
        dir.join("desktop.db"),
        dir.join("library.key"),
    );
    let mut lib = Library::new(open_library(&a)?);
    for i in 0..albums {
        let album = demo_album(1, i, 12);
        write_placeholder_images(&bae_sync_service::images_dir_for(&a), &album)?;
        lib.import_album(&album)?;
    }
    drop(lib);
    let laptop = library::init(open_library(&a)?, &bucket, &keys).await?;
    outln!(
        "laptop: imported {} and pushed them to {bucket}",
        count(albums, "album", "albums")
    )?;
    library::export_key(open_library(&a)?, &keys, &key, false)?;
    let desktop = library::join(open_library(&b)?, &bucket, &key, &keys, None).await?;
    outln!("desktop: joined and pulled")?;
    let album0 = demo_album(1, 0, 12)
        .album_id()
        .unwrap_or_default()
        .to_owned();
    laptop
        .with_db(move |rec| {
            let mut tx = rec.transaction()?;
            tx.update(
                "albums",
                &album0,
                &[("title", "Edited on the laptop".into())],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await?;
    desktop.sync().await?;
    laptop.sync().await?;
    desktop.sync().await?;
    let dump_a = laptop
        .with_db(|rec| Ok(canonical_dump(rec.sync_parts().0, &BAE_SCHEMA)?))
        .await?;
    let dump_b = desktop
        .with_db(|rec| Ok(canonical_dump(rec.sync_parts().0, &BAE_SCHEMA)?))
        .await?;
    let rows = dump_a.lines().count();
    if dump_a == dump_b {
        outln!(
            "converged: both devices hold the same {}",
            count(rows, "synced row", "synced rows")
        )
    } else {
        Err(CliError::Diverged {
            laptop: rows,
            desktop: dump_b.lines().count(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_exit_status_is_listed_in_help() {
        for status in [
            Exit::Done,
            Exit::Error,
            Exit::Usage,
            Exit::Rejected,
            Exit::Busy,
        ] {
            let line = format!("\n  {}  ", status as u8);
            assert!(exit::EXIT_HELP.contains(&line), "{status:?}");
        }
    }

    fn check_help(command: &clap::Command, path: &str) {
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            assert!(!help.trim().is_empty(), "{path} {id} has no help");
        }
        for sub in command.get_subcommands() {
            assert!(
                sub.get_about().is_some(),
                "{path} {} has no help",
                sub.get_name()
            );
            check_help(sub, &format!("{path} {}", sub.get_name()));
        }
    }

    #[test]
    fn every_argument_of_every_command_has_help() {
        check_help(&Cli::command(), "bae-sync");
    }
}
