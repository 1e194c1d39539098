//! The link check: the engine must resolve in one build with bae-core's
//! sqlx, today's (0.8) and the next (0.9). `libsqlite3-sys` declares
//! `links = "sqlite3"`, so a dependency graph can hold only one version of
//! it: the engine's rusqlite and sqlx's sqlx-sqlite must agree on one.
//!
//! For each sqlx version, a throwaway host crate in a temporary directory
//! depends on the engine crates a host takes (by path) and on
//! `sqlx = { version = "…", features = ["sqlite"] }` (default features on,
//! as bae-core has them, so sqlx's proc macros' SQLite counts too); then
//! `cargo generate-lockfile` must succeed and the lockfile must hold exactly
//! one `libsqlite3-sys`.

use std::path::{Path, PathBuf};

/// The sqlx requirements bae-core may use.
const SQLX_VERSIONS: &[&str] = &["0.8", "0.9"];

/// The engine crates a host depends on: (package, directory under `crates/`).
const ENGINE_CRATES: &[(&str, &str)] = &[
    ("bae-oplog", "oplog"),
    ("bae-sync-service", "sync-service"),
    ("bae-storage-s3", "storage-s3"),
    ("bae-crypto", "crypto"),
];

/// Resolves the engine beside each sqlx version; fails on the first that
/// does not resolve or holds more than one `libsqlite3-sys`.
pub fn check(root: &Path) -> super::Result<()> {
    for sqlx in SQLX_VERSIONS {
        let found = resolve_with(root, sqlx)?;
        eprintln!("xtask: sqlx {sqlx} resolves with the engine: {found}");
    }
    Ok(())
}

/// Resolves a probe host for `sqlx`; returns what it locked, as one line.
fn resolve_with(root: &Path, sqlx: &str) -> super::Result<String> {
    let dir = Probe::create(root, sqlx)?;
    let mut cmd = super::cargo();
    cmd.current_dir(&dir.0)
        .args(["generate-lockfile", "--manifest-path"])
        .arg(dir.0.join("Cargo.toml"));
    eprintln!("xtask: running {cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the engine does not resolve with sqlx {sqlx}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let lock_path = dir.0.join("Cargo.lock");
    let lock = std::fs::read_to_string(&lock_path)
        .map_err(|e| format!("cannot read {}: {e}", lock_path.display()))?;
    let sys = locked_versions(&lock, "libsqlite3-sys");
    let [sys] = sys.as_slice() else {
        return Err(format!(
            "with sqlx {sqlx} the graph holds libsqlite3-sys {sys:?}, not exactly one version"
        ));
    };
    Ok(format!(
        "sqlx {}, sqlx-sqlite {}, rusqlite {}, one libsqlite3-sys {sys}",
        locked_versions(&lock, "sqlx").join("/"),
        locked_versions(&lock, "sqlx-sqlite").join("/"),
        locked_versions(&lock, "rusqlite").join("/"),
    ))
}

/// A probe crate's directory, removed on drop.
struct Probe(PathBuf);

impl Probe {
    fn create(root: &Path, sqlx: &str) -> super::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("bae-sync-sqlx-{sqlx}-probe-{}", std::process::id()));
        let probe = Probe(dir);
        let src = probe.0.join("src");
        std::fs::create_dir_all(&src)
            .map_err(|e| format!("cannot create {}: {e}", src.display()))?;
        let write = |path: PathBuf, text: String| {
            std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        write(probe.0.join("Cargo.toml"), manifest(root, sqlx))?;
        write(src.join("lib.rs"), String::new())?;
        Ok(probe)
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The probe host's manifest: the engine by path, sqlx as bae-core has it.
fn manifest(root: &Path, sqlx: &str) -> String {
    let mut text = String::from(
        "[package]\nname = \"sqlx-probe\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n[workspace]\n\n[dependencies]\n",
    );
    for (name, dir) in ENGINE_CRATES {
        let path = root.join("crates").join(dir);
        text.push_str(&format!(
            "{name} = {{ path = {:?} }}\n",
            path.display().to_string()
        ));
    }
    text.push_str(&format!(
        "sqlx = {{ version = \"{sqlx}\", features = [\"sqlite\"] }}\n"
    ));
    text
}

/// The versions of package `name` in a lockfile.
fn locked_versions(lock: &str, name: &str) -> Vec<String> {
    let want = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    let mut found = Vec::new();
    while let Some(line) = lines.next() {
        if line.trim() == want {
            if let Some(version) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'))
            {
                found.push(version.to_owned());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_versions_reads_every_version_of_a_package() {
        let lock = "[[package]]\nname = \"libsqlite3-sys\"\nversion = \"0.30.1\"\n\n[[package]]\nname = \"libsqlite3-sys-x\"\nversion = \"9\"\n\n[[package]]\nname = \"libsqlite3-sys\"\nversion = \"0.35.0\"\n";
        assert_eq!(
            locked_versions(lock, "libsqlite3-sys"),
            ["0.30.1", "0.35.0"]
        );
        assert!(locked_versions(lock, "rusqlite").is_empty());
    }

    #[test]
    fn the_probe_depends_on_the_engine_by_path_and_on_sqlx() {
        let text = manifest(Path::new("/ws"), "0.9");
        assert!(text.contains("bae-sync-service = { path = \"/ws/crates/sync-service\" }"));
        assert!(text.contains("sqlx = { version = \"0.9\", features = [\"sqlite\"] }"));
    }
}
