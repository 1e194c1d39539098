//! Runs the example host as CI does (`cargo xtask test`, phase 1): the
//! program must exit 0, which it does only when both instances hold the
//! same synced rows.

use std::process::Command;

#[test]
fn the_example_host_runs_and_its_two_instances_converge() {
    let out = Command::new(env!("CARGO_BIN_EXE_bae-core-host"))
        .output()
        .expect("the example host starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the example host failed ({}):\n{stdout}{stderr}",
        out.status
    );
    assert!(
        stdout.contains("converged"),
        "no convergence summary:\n{stdout}"
    );
}
