//! `bae-sync`: drives the sync engine on a library file. Every command is
//! non-interactive; on error it prints one line and exits non-zero.
//!
//! The CLI is a host of the engine like bae-core: it opens a bae library
//! (creating bae's reference tables in a new file, as bae's migrations
//! would), records its writes through the `OpRecorder` and syncs it with a
//! `SyncService`. Nothing below it depends on it.
#![forbid(unsafe_code)]

mod error;

use bae_oplog::fixture::{demo_album, open_library, AlbumImport, Library};
use bae_oplog::{canonical_dump, Value, BAE_SCHEMA};
use bae_sync_service::{library, KeyStore, Progress, Stage};
use clap::{Parser, Subcommand};
use error::CliError;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "bae-sync",
    version,
    about = "Sync a bae library through a bucket",
    after_help = "Exit status: 0 done; 1 error (one line on stderr); 2 pull, sync or \
                  server-bootstrap --refresh applied everything except batches it rejected \
                  (listed on stderr and in `status`)."
)]
struct Cli {
    /// Keep keys in files under this directory instead of the OS keyring.
    #[arg(long, global = true, env = "BAE_SYNC_HOME")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create sync state and a library key; first push.
    Init {
        #[arg(long)]
        library: PathBuf,
        /// A directory path, file:///path, or s3://bucket/prefix?endpoint=...&region=...
        #[arg(long)]
        bucket: String,
    },
    /// Library key commands.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// A new device: take the key, pull everything.
    Join {
        #[arg(long)]
        library: PathBuf,
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        key_file: PathBuf,
    },
    /// Undo `init`/`join` on this device: keep the library's rows, forget
    /// the bucket and sync state, delete the key; `join` works again after.
    Leave {
        #[arg(long)]
        library: PathBuf,
    },
    /// Import N bae-shaped albums through the OpRecorder.
    DemoImport {
        #[arg(long)]
        library: PathBuf,
        #[arg(long)]
        albums: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Index of the first album (to import more later without clashing).
        #[arg(long, default_value_t = 0)]
        first: u64,
    },
    /// One recorded edit: TABLE ROW_ID COLUMN=VALUE...
    Set {
        #[arg(long)]
        library: PathBuf,
        table: String,
        row_id: String,
        #[arg(required = true)]
        assignments: Vec<String>,
    },
    /// One recorded delete (with its cascade).
    Delete {
        #[arg(long)]
        library: PathBuf,
        table: String,
        row_id: String,
    },
    /// Upload unpushed batches.
    Push {
        #[arg(long)]
        library: PathBuf,
        /// First re-upload this device's batches that are missing from the
        /// bucket or do not verify, and rewrite its head.
        #[arg(long)]
        repair: bool,
    },
    /// Fetch and merge other devices' batches.
    Pull {
        #[arg(long)]
        library: PathBuf,
    },
    /// Push, then pull.
    Sync {
        #[arg(long)]
        library: PathBuf,
    },
    /// Sync status (local state only).
    Status {
        #[arg(long)]
        library: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Canonical, sorted text of the synced tables.
    Dump {
        #[arg(long)]
        library: PathBuf,
    },
    /// Write a checkpoint of the library to the bucket (pushes and pulls first).
    Checkpoint {
        #[arg(long)]
        library: PathBuf,
    },
    /// Delete batches and old checkpoints covered by the newest checkpoint
    /// once it is 30 days old.
    Gc {
        #[arg(long)]
        library: PathBuf,
        /// Compact now: skip the grace period (every device must be online).
        #[arg(long)]
        now: bool,
    },
    /// Read-only server database from the newest checkpoint (bae-server tier 1).
    ServerBootstrap {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        key_file: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Also replay batches newer than the checkpoint (tier 2).
        #[arg(long)]
        refresh: bool,
    },
    /// Demonstration on the embedded default: two devices, one local-directory
    /// bucket, edits on both, sync, identical libraries.
    Demo {
        /// Where to put the demo's libraries and bucket (default: a temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value_t = 50)]
        albums: u64,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Write the library key to a file, for another device of the same user.
    Export {
        #[arg(long)]
        library: PathBuf,
        /// A new file (created with mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file (never the library or another database).
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let keys = cli.home.clone().map_or(KeyStore::Os, KeyStore::Files);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bae-sync: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, &keys)) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Rejected(n)) => {
            eprintln!(
                "bae-sync: {n} batch(es) rejected and not applied (everything else was); \
                 the device that wrote each must run `bae-sync push --repair`"
            );
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("bae-sync: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How a command that completed went.
enum Outcome {
    /// Everything done.
    Done,
    /// Done, except this many remote batches were rejected (exit status 2).
    Rejected(usize),
}

async fn run(command: Command, keys: &KeyStore) -> Result<Outcome, CliError> {
    let mut rejected = 0;
    match command {
        Command::Init { library, bucket } => {
            let s = library::init(open_library(&library)?, &bucket, keys).await?;
            println!("initialized device {} with bucket {bucket}", s.device());
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
            println!("library key written to {}", out.display());
        }
        Command::Leave { library } => {
            let r = library::leave(open_library(&library)?, keys)?;
            println!(
                "left library {} (bucket {}); rows kept, key deleted; this library is now device {}",
                r.library_id, r.bucket_url, r.new_device
            );
        }
        Command::Join {
            library,
            bucket,
            key_file,
        } => {
            // A mistyped or unreadable key file is refused before the
            // library is opened (which creates a missing one).
            bae_sync_service::keystore::read_key_file(&key_file)?;
            let rec = open_library(&library)?;
            let s = with_progress("joining", |p| {
                library::join(rec, &bucket, &key_file, keys, Some(p))
            })
            .await?;
            println!("joined as device {}", s.device());
        }
        Command::DemoImport {
            library,
            albums,
            seed,
            first,
        } => {
            let mut lib = Library::new(open_library(&library)?);
            let images = bae_sync_service::images_dir_for(&library);
            for i in first..first + albums {
                let album = demo_album(seed, i, 12);
                write_placeholder_images(&images, &album)?;
                lib.import_album(&album)?;
            }
            println!("imported {albums} albums");
        }
        Command::Set {
            library,
            table,
            row_id,
            assignments,
        } => {
            let fields = parse_assignments(&assignments)?;
            let fields: Vec<(&str, Value)> = fields
                .iter()
                .map(|(c, v)| (c.as_str(), v.clone()))
                .collect();
            let mut lib = Library::new(open_library(&library)?);
            lib.edit(&table, &row_id, &fields)?;
        }
        Command::Delete {
            library,
            table,
            row_id,
        } => {
            let mut lib = Library::new(open_library(&library)?);
            lib.delete(&table, &row_id)?;
        }
        Command::Push { library, repair } => {
            let s = library::open(open_library(&library)?, keys)?;
            if repair {
                print_repair(&s.repair().await?);
            }
            let r = s.push().await?;
            println!("pushed {} batches, {} images", r.batches, r.images);
            if r.images_waiting > 0 {
                eprintln!(
                    "bae-sync: {} queued images have no local bytes yet; they stay queued",
                    r.images_waiting
                );
            }
        }
        Command::Pull { library } => {
            let service = library::open(open_library(&library)?, keys)?;
            let r = with_progress("pulling", |p| async move {
                service.with_progress(p).pull().await
            })
            .await?;
            println!("applied {} batches", r.applied);
            rejected = report_problems(&r.problems);
            report_images(&r.images_rejected);
        }
        Command::Sync { library } => {
            let service = library::open(open_library(&library)?, keys)?;
            let (push, pull) = with_progress("syncing", |p| async {
                service.with_progress(p).sync().await
            })
            .await?;
            println!(
                "pushed {} batches, applied {} batches",
                push.batches, pull.applied
            );
            rejected = report_problems(&pull.problems);
            report_images(&pull.images_rejected);
        }
        Command::Status { library, json } => {
            let status = library::open(open_library(&library)?, keys)?
                .status()
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).unwrap_or_default()
                );
            } else {
                print_status(&status);
            }
        }
        Command::Dump { library } => {
            let mut rec = open_library(&library)?;
            print!("{}", canonical_dump(rec.sync_parts().0, &BAE_SCHEMA)?);
        }
        Command::Demo { dir, albums } => demo(dir, albums, keys).await?,
        Command::Checkpoint { library } => {
            let service = library::open(open_library(&library)?, keys)?;
            let r = with_progress("writing checkpoint", |p| async {
                service.with_progress(p).checkpoint().await
            })
            .await?;
            println!(
                "checkpoint {} written: {} records, {} bytes",
                r.key, r.records, r.sealed_bytes
            );
        }
        Command::Gc { library, now } => {
            let s = library::open(open_library(&library)?, keys)?;
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let r = s.gc(now_ms, bae_sync_service::GC_GRACE, now).await?;
            match (&r.checkpoint, r.grace_left_ms) {
                (None, _) => println!("no checkpoint: nothing to delete"),
                (Some(k), Some(left)) => println!(
                    "checkpoint {k} is inside the grace period ({} days left): nothing deleted",
                    left / 86_400_000 + 1
                ),
                (Some(k), None) => println!(
                    "checkpoint {k}: deleted {} batches, {} older checkpoints; pruned {} local ops",
                    r.ops_deleted, r.checkpoints_deleted, r.local_ops_pruned
                ),
            }
            for e in &r.rejected {
                eprintln!("bae-sync: {e}");
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
                let template = format!("{{msg:>22}} {{bar:40}} {counts} ({{eta}})");
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
        println!(
            "restored {} ({} records) into {}",
            b.key,
            b.records,
            out.display()
        );
        for e in &b.rejected {
            eprintln!("bae-sync: skipped {e}");
        }
    }
    Ok(match &r.refreshed {
        Some(p) => {
            println!("replayed {} newer batches", p.applied);
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

fn print_repair(r: &bae_sync_service::RepairReport) {
    println!(
        "repair: checked {} batches, re-uploaded {}{}",
        r.checked,
        r.repaired.len(),
        r.head
            .map_or(String::new(), |h| format!(", head rewritten at {h}"))
    );
    for seq in &r.repaired {
        println!("repaired batch {seq}");
    }
    for image in &r.images_repaired {
        println!("repaired image {image}");
    }
    for (seq, why) in &r.unrepairable {
        eprintln!("bae-sync: batch {seq} cannot be repaired: {why}");
    }
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

fn print_status(s: &bae_sync_service::Status) {
    println!(
        "device {}  bucket {}",
        s.device,
        s.bucket.as_deref().unwrap_or("-")
    );
    println!("pending batches: {}", s.pending_batches);
    println!(
        "images: {} waiting to upload, {} wanted from the bucket",
        s.images_queued, s.images_wanted
    );
    for d in &s.devices {
        println!(
            "device {}: applied {} of {}, last synced {}",
            d.device,
            d.applied_seq,
            d.head_seq.map_or("?".into(), |h| h.to_string()),
            d.last_synced_ms.map_or("never".into(), utc_time)
        );
    }
    for p in &s.problems {
        println!("{} batch {} of {}: {}", p.kind, p.seq, p.device, p.reason);
    }
    if let Some(e) = &s.last_error {
        println!("last error: {e}");
    }
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

/// `COLUMN=VALUE`: integers as integers, `NULL` as null, the rest as text.
fn parse_assignments(items: &[String]) -> Result<Vec<(String, Value)>, CliError> {
    items
        .iter()
        .map(|item| {
            let (c, v) = item
                .split_once('=')
                .ok_or_else(|| CliError::BadAssignment {
                    found: item.clone(),
                })?;
            let value = if v == "NULL" {
                Value::Null
            } else if let Ok(i) = v.parse::<i64>() {
                Value::Integer(i)
            } else {
                Value::Text(v.to_owned())
            };
            Ok((c.to_owned(), value))
        })
        .collect()
}

/// Two devices on one local-directory bucket converge.
async fn demo(dir: Option<PathBuf>, albums: u64, keys: &KeyStore) -> Result<(), CliError> {
    let temp;
    let dir = match dir {
        Some(d) => d,
        None => {
            temp = tempfile::tempdir().map_err(|e| CliError::io(Path::new("temp dir"), e))?;
            temp.path().to_path_buf()
        }
    };
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
    println!("laptop: imported {albums} albums and pushed them to {bucket}");
    library::export_key(open_library(&a)?, &keys, &key, false)?;
    let desktop = library::join(open_library(&b)?, &bucket, &key, &keys, None).await?;
    println!("desktop: joined and pulled");
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
        println!("converged: both devices hold the same {rows} synced rows");
        Ok(())
    } else {
        Err(CliError::Diverged {
            laptop: rows,
            desktop: dump_b.lines().count(),
        })
    }
}
