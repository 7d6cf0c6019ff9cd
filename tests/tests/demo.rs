//! The README's main command: `entrepot-demo` runs to completion and its own check passes.

use std::process::Command;

use entrepot_e2e::test_binary;

#[test]
fn the_demo_delivers_every_order_once_and_explains_the_dead_letter() {
    let out = Command::new(test_binary("entrepot-demo-under-test"))
        .args(["--orders", "12", "--rate", "40", "--outage", "300ms"])
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("OK: every acknowledged order is in the ERP exactly once"), "{stdout}");
    let stored = stdout.lines().find(|l| l.contains("sales orders stored in the ERP")).expect("report line");
    assert!(stored.contains(" 12 ") && stored.contains("created 12"), "{stored}");
    assert!(
        stdout.contains("rejected") && stdout.contains("DISCONTINUED-HAT") && stdout.contains("INVALID_KEY_OR_REF"),
        "{stdout}"
    );
}
