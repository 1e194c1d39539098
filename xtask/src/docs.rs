//! `cargo xtask docs`: the documentation site. Every library crate and the
//! CLI, documented with rustdoc; `docs/*.md` appear on it as the modules of
//! `bae_sync_service::guide`. Any rustdoc warning (a broken or private
//! intra-doc link, a bare URL, an unclosed HTML tag in a document) and any
//! undocumented public item fails the build.

use std::path::{Path, PathBuf};

/// The module that includes the documents, and how it names one.
const GUIDE: &str = "crates/sync-service/src/guide.rs";
const INCLUDE_PREFIX: &str = "include_str!(\"../../../docs/";

/// Packages that are not part of the site: tasks and benchmarks.
const NOT_ON_SITE: &[&str] = &["xtask", "bae-bench", "bae-core-host"];

/// Checks that the guide includes every document, then builds the site.
pub fn build(root: &Path) -> super::Result<()> {
    check_guide(root)?;
    let mut cmd = super::cargo();
    cmd.args(["doc", "--workspace", "--no-deps", "--all-features"]);
    for package in NOT_ON_SITE {
        cmd.args(["--exclude", package]);
    }
    // `missing_docs` is a rustc lint that rustdoc runs too; it is denied
    // here by name, not only through `warnings`, so a crate that relaxes
    // the workspace lint still fails.
    cmd.env("RUSTDOCFLAGS", "-D warnings -D missing_docs");
    super::run(cmd)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let index = target
        .join("doc")
        .join("bae_sync_service")
        .join("index.html");
    eprintln!("xtask: documentation site at {}", index.display());
    Ok(())
}

/// Fails naming every `docs/*.md` file the guide module does not include,
/// so a new document cannot be left off the site. (A document the guide
/// includes but that does not exist fails the build itself.)
fn check_guide(root: &Path) -> super::Result<()> {
    let guide = std::fs::read_to_string(root.join(GUIDE))
        .map_err(|e| format!("cannot read {GUIDE}: {e}"))?;
    let entries =
        std::fs::read_dir(root.join("docs")).map_err(|e| format!("cannot list docs/: {e}"))?;
    let mut missing = Vec::new();
    let mut count = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".md") {
            continue;
        }
        count += 1;
        if !includes(&guide, &name) {
            missing.push(name);
        }
    }
    if missing.is_empty() {
        eprintln!("xtask: the guide includes all {count} documents in docs/");
        Ok(())
    } else {
        missing.sort();
        Err(format!(
            "{GUIDE} does not include docs/{}; add a module with \
             #[doc = {INCLUDE_PREFIX}NAME.md\")]",
            missing.join(", docs/")
        ))
    }
}

/// Whether the guide's source includes `docs/{name}`.
fn includes(guide: &str, name: &str) -> bool {
    guide.contains(&format!("{INCLUDE_PREFIX}{name}\")"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_include_names_the_whole_file() {
        let guide =
            "#[doc = include_str!(\"../../../docs/FORMAT-sync.md\")]\npub mod format_sync {}";
        assert!(includes(guide, "FORMAT-sync.md"));
        assert!(!includes(guide, "sync.md"));
        assert!(!includes(guide, "FORMAT.md"));
    }
}
