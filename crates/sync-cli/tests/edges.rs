//! The CLI's edges through the `bae-sync` binary: missing files, typed
//! `set`, exit statuses, a closed stdout, help text, wording, resumed
//! imports and a damaged library file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bin;
#[path = "../../sync-service/tests/common/mod.rs"]
mod common;

use bin::*;
use common::*;
use std::io::Read;
use std::process::Stdio;

fn album_id(i: u64) -> String {
    bae_oplog::fixture::demo_album(1, i, 12)
        .album_id()
        .unwrap()
        .to_owned()
}

/// A library of `albums` demo albums; returns its path.
fn library(w: &World, name: &str, albums: u64) -> String {
    let lib = path(w.library(name));
    let n = albums.to_string();
    ok(w, &["demo-import", "--library", &lib, "--albums", &n]);
    lib
}

#[test]
fn a_missing_library_file_is_refused_by_name_and_not_created() {
    let w = World::new(Bucket::Local, "edges-missing");
    let lib = path(w.library("mistyped"));
    let commands: &[&[&str]] = &[
        &["push"],
        &["pull"],
        &["sync"],
        &["status"],
        &["dump"],
        &["checkpoint"],
        &["gc"],
        &["set", "albums", "x", "title=y"],
        &["delete", "albums", "x"],
    ];
    for args in commands {
        let mut args = args.to_vec();
        args.insert(1, "--library");
        args.insert(2, &lib);
        let e = fails(&w, &args);
        assert!(
            e.contains(&lib) && e.contains("no such library file"),
            "{args:?}: {e}"
        );
        assert!(!w.library("mistyped").exists(), "{args:?} created it");
        let lock = w.dir.path().join("mistyped.db.sync-lock");
        assert!(!lock.exists(), "{args:?} left a lock file next to it");
    }
}

#[test]
fn set_reads_values_by_the_column_type_and_refuses_what_does_not_fit() {
    let w = World::new(Bucket::Local, "edges-set");
    let lib = library(&w, "lib", 2);
    let album = album_id(0);
    let said = ok(
        &w,
        &[
            "set",
            "--library",
            &lib,
            "albums",
            &album,
            "title=007",
            "year=1999",
        ],
    );
    assert_eq!(said, format!("albums {album}: title, year set\n"));
    let dump = ok(&w, &["dump", "--library", &lib]);
    assert!(
        dump.contains(r#"title="007""#) && dump.contains("year=1999"),
        "{dump}"
    );
    ok(
        &w,
        &["set", "--library", &lib, "albums", &album, "--null", "year"],
    );
    let before = ok(&w, &["dump", "--library", &lib]);
    assert!(before.contains(r#"title="007" year=NULL"#), "{before}");

    let refused: &[(&[&str], &[&str])] = &[
        (
            &["albums", &album, "year=notayear"],
            &["albums.year", "INTEGER", "notayear"],
        ),
        (&["albums", &album, "titel=x"], &["albums", "titel"]),
        (
            &["albums", &album, "--null", "title"],
            &["albums.title", "NULL"],
        ),
        (
            &["storage_profiles", "1", "name=x"],
            &["storage_profiles", "does not sync"],
        ),
        (&["op_log", "1", "x=1"], &["op_log", "no table"]),
        (
            &["files", "f", "source_path=/x"],
            &["files.source_path", "does not sync"],
        ),
        (
            &["albums", "no-such-album", "title=x"],
            &["no-such-album", "albums"],
        ),
    ];
    for (args, words) in refused {
        let mut full = vec!["set", "--library", &lib];
        full.extend_from_slice(args);
        let e = fails(&w, &full);
        assert!(words.iter().all(|word| e.contains(word)), "{args:?}: {e}");
        assert!(!e.contains("SQL") && !e.contains("database:"), "{e}");
    }
    let release = bae_oplog::fixture::demo_album(1, 0, 12)
        .ids("releases")
        .next()
        .unwrap()
        .to_owned();
    let e = fails(
        &w,
        &[
            "set",
            "--library",
            &lib,
            "releases",
            &release,
            "album_id=gone",
        ],
    );
    assert!(
        e.contains("releases.album_id") && e.contains("albums") && e.contains("\"gone\""),
        "{e}"
    );
    assert_eq!(
        ok(&w, &["dump", "--library", &lib]),
        before,
        "nothing written"
    );
}

#[test]
fn delete_says_how_many_rows_went_under_the_row() {
    let w = World::new(Bucket::Local, "edges-delete");
    let lib = library(&w, "lib", 2);
    let album = album_id(1);
    let said = ok(&w, &["delete", "--library", &lib, "albums", &album]);
    // album_discogs, album_artists, release, 12 tracks and 12 track
    // credits, 12 files, 12 audio formats, a cover image.
    assert_eq!(
        said,
        format!("deleted albums {album} and 52 rows under it\n")
    );
    let dump = ok(&w, &["dump", "--library", &lib]);
    assert!(!dump.contains(&album) && dump.contains(&album_id(0)));
    let e = fails(&w, &["delete", "--library", &lib, "storage_profiles", "1"]);
    assert!(
        e.contains("storage_profiles") && e.contains("does not sync"),
        "{e}"
    );
}

#[test]
fn exit_statuses_are_distinct_and_listed_in_help() {
    let w = World::new(Bucket::Local, "edges-exit");
    let lib = library(&w, "lib", 1);
    assert_eq!(run(&w, &["dump", "--library", &lib]).status.code(), Some(0));
    assert_eq!(run(&w, &["pull", "--library", &lib]).status.code(), Some(1));
    assert_eq!(run(&w, &["dump", "--libary", &lib]).status.code(), Some(2));
    assert_eq!(run(&w, &["no-such-command"]).status.code(), Some(2));
    let help = ok(&w, &["--help"]);
    for code in [
        "0  done",
        "1  error",
        "2  usage",
        "3  pull, sync",
        "4  another bae-sync",
    ] {
        assert!(help.contains(code), "{code:?} not in --help: {help}");
    }
    // Exit status 3 (rejected batches) is asserted by
    // cli.rs's cli_names_a_tampered_batch_and_push_repair_resumes_the_stream.
}

#[test]
fn a_closed_stdout_ends_dump_quietly() {
    let w = World::new(Bucket::Local, "edges-pipe");
    let lib = library(&w, "lib", 20);
    let mut child = bae_sync(&w)
        .args(["dump", "--library", &lib])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let full = ok(&w, &["dump", "--library", &lib]);
    assert!(full.len() > 1 << 17, "the dump must exceed a pipe buffer");
}

#[test]
fn every_argument_has_plain_help() {
    let w = World::new(Bucket::Local, "edges-help");
    let jargon = [
        "OpRecorder",
        "embedded default",
        "tier 1",
        "tier 2",
        "Recording",
    ];
    let top = ok(&w, &["--help"]);
    let commands: Vec<String> = top
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 14, "{commands:?}");
    let mut pages = vec![top];
    for c in &commands {
        pages.push(ok(&w, &[c, "--help"]));
    }
    pages.push(ok(&w, &["key", "export", "--help"]));
    for page in &pages {
        for word in jargon {
            assert!(!page.contains(word), "{word:?} in {page}");
        }
        let lines: Vec<&str> = page.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            let is_arg = line.starts_with("  ") && (t.starts_with('-') || t.starts_with('<'));
            if !is_arg {
                continue;
            }
            let own = t
                .split_once("  ")
                .is_some_and(|(_, h)| !h.trim().is_empty());
            let next = lines.get(i + 1).is_some_and(|n| {
                n.len() - n.trim_start().len() > line.len() - t.len() && !n.trim().is_empty()
            });
            assert!(own || next, "no help for {line:?} in {page}");
        }
    }
}

#[test]
fn counts_are_singular_for_one() {
    let w = World::new(Bucket::Local, "edges-wording");
    let lib = library(&w, "lib", 1);
    ok(&w, &["init", "--library", &lib, "--bucket", &w.bucket]);
    let album = album_id(0);
    ok(&w, &["set", "--library", &lib, "albums", &album, "title=x"]);
    let out = run(&w, &["push", "--library", &lib]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, "pushed 1 batch, 0 images\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    // Logs on a non-terminal stderr carry no colour codes.
    ok(&w, &["set", "--library", &lib, "albums", &album, "title=y"]);
    let out = bae_sync(&w)
        .args(["sync", "--library", &lib])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("INFO"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}

#[test]
fn demo_import_run_again_resumes_without_duplicates() {
    let w = World::new(Bucket::Local, "edges-import");
    let lib = library(&w, "lib", 3);
    let said = ok(&w, &["demo-import", "--library", &lib, "--albums", "5"]);
    assert_eq!(said, "imported 2 albums (3 already in the library)\n");
    let dump = ok(&w, &["dump", "--library", &lib]);
    let albums = dump.lines().filter(|l| l.starts_with("albums ")).count();
    assert_eq!(albums, 5, "{dump}");
    for i in 0..5 {
        assert!(dump.contains(&album_id(i)));
    }
}

#[test]
fn demo_refuses_a_used_directory() {
    let w = World::new(Bucket::Local, "edges-demo");
    let dir = w.dir.path().join("used");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keep.txt"), b"mine").unwrap();
    let e = fails(&w, &["demo", "--dir", &path(dir.clone()), "--albums", "1"]);
    assert!(e.contains("used") && e.contains("not empty"), "{e}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    assert_eq!(std::fs::read(dir.join("keep.txt")).unwrap(), b"mine");
}

/// Overwrites the first page of `table`'s b-tree with garbage.
fn damage_table(lib: &str, table: &str) {
    let conn = rusqlite::Connection::open(lib).unwrap();
    let (root, size): (u64, u64) = conn
        .query_row(
            "SELECT rootpage, (SELECT page_size FROM pragma_page_size) FROM sqlite_master WHERE name = ?1",
            [table],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .unwrap();
    drop(conn);
    let mut bytes = std::fs::read(lib).unwrap();
    let start = ((root - 1) * size) as usize;
    bytes[start..start + 64].fill(0xee);
    std::fs::write(lib, bytes).unwrap();
}

#[test]
fn a_damaged_page_is_reported_by_status_and_sync_naming_the_file() {
    let w = World::new(Bucket::Local, "edges-corrupt");
    let lib = library(&w, "lib", 3);
    ok(&w, &["init", "--library", &lib, "--bucket", &w.bucket]);
    // A page status and sync never read for themselves.
    damage_table(&lib, "tracks");
    for command in ["status", "sync", "dump"] {
        let e = fails(&w, &[command, "--library", &lib]);
        assert!(
            e.contains(&format!("{lib} is damaged")) && e.contains("PRAGMA integrity_check"),
            "{command}: {e}"
        );
    }
}
