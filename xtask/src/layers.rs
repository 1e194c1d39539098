//! The crate-layering check (SPEC section 2): a crate may depend only on
//! crates of a strictly lower layer.

use std::path::Path;
use std::process::Command;

/// Layer of each workspace crate that takes part in the layering.
const LAYERS: &[(&str, u8)] = &[
    ("bae-hlc", 0),
    ("bae-crypto", 0),
    ("bae-oplog", 1),
    ("bae-storage-s3", 1),
    ("bae-merge", 2),
    ("bae-membership", 2),
    ("bae-sync-service", 3),
    ("bae-sync-cli", 4),
    // The example host (`examples/bae-core-host`): a host like the CLI;
    // nothing in the engine may depend on it.
    ("bae-core-host", 4),
];

fn layer_of(name: &str) -> Option<u8> {
    LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
}

/// Reads `cargo metadata` and fails with every violation found.
pub fn check(root: &Path) -> super::Result<()> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("bad cargo metadata: {e}"))?;
    let packages = meta["packages"].as_array().cloned().unwrap_or_default();
    let violations = violations(&packages);
    for (name, _) in LAYERS {
        if !packages.iter().any(|p| p["name"] == *name) {
            return Err(format!(
                "layering: crate {name} is missing from the workspace"
            ));
        }
    }
    if violations.is_empty() {
        eprintln!("xtask: layers ok ({} crates)", LAYERS.len());
        Ok(())
    } else {
        Err(format!(
            "layering violations:\n  {}",
            violations.join("\n  ")
        ))
    }
}

fn violations(packages: &[serde_json::Value]) -> Vec<String> {
    let mut found = Vec::new();
    for pkg in packages {
        let Some(name) = pkg["name"].as_str() else {
            continue;
        };
        let Some(own) = layer_of(name) else { continue };
        for dep in pkg["dependencies"].as_array().into_iter().flatten() {
            // Every kind counts, dev-dependencies too: a test that needs a
            // higher crate belongs in that crate's tests.
            let Some(dep_name) = dep["name"].as_str() else {
                continue;
            };
            // A dev-dependency on itself only turns on the crate's own
            // features for its tests (`bae-storage-s3`'s `testing`).
            if dep_name == name && dep["kind"] == "dev" {
                continue;
            }
            if let Some(theirs) = layer_of(dep_name) {
                if theirs >= own {
                    found.push(format!(
                        "{name} (layer {own}) depends on {dep_name} (layer {theirs})"
                    ));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, deps: &[(&str, Option<&str>)]) -> serde_json::Value {
        let deps: Vec<_> = deps
            .iter()
            .map(|(n, kind)| serde_json::json!({"name": n, "kind": kind}))
            .collect();
        serde_json::json!({"name": name, "dependencies": deps})
    }

    #[test]
    fn downward_dependencies_pass() {
        let p = [pkg("bae-merge", &[("bae-oplog", None), ("bae-hlc", None)])];
        assert!(violations(&p).is_empty());
    }

    #[test]
    fn same_layer_and_upward_dependencies_fail() {
        let p = [
            pkg("bae-oplog", &[("bae-storage-s3", None)]),
            pkg("bae-hlc", &[("bae-sync-service", None)]),
        ];
        assert_eq!(violations(&p).len(), 2);
    }

    #[test]
    fn upward_dev_dependencies_fail_too() {
        let p = [pkg("bae-oplog", &[("bae-merge", Some("dev"))])];
        assert_eq!(violations(&p).len(), 1);
    }

    #[test]
    fn a_dev_dependency_on_itself_for_its_own_features_passes() {
        let p = [pkg("bae-storage-s3", &[("bae-storage-s3", Some("dev"))])];
        assert!(violations(&p).is_empty());
        let p = [pkg("bae-oplog", &[("bae-oplog", None)])];
        assert_eq!(
            violations(&p).len(),
            1,
            "a normal dependency on itself is not allowed"
        );
    }
}
