//! `entrepot test DIR`: the check a GitOps repository's CI runs before a merge.

use std::{path::Path, process::ExitCode};

use crate::{flow::Flow, manifest::Manifests, reconcile::Reconciler, secrets::Secrets};

use anyhow::Result;
use entrepot_api::mapping::run_tests;

pub fn run(dir: &Path) -> Result<ExitCode> {
    let manifests = Manifests::load_dir(dir)?;
    let mut failed = 0;
    let mut passed = 0;
    for (key, mapping) in &manifests.mappings {
        let origin = manifests.origin("Mapping", key).map(|o| o.to_string()).unwrap_or_default();
        let report = run_tests(mapping);
        if report.ok() {
            println!("PASS  Mapping {key}: {} example(s)", report.passed);
            passed += 1;
        } else {
            failed += 1;
            println!("FAIL  Mapping {key} ({origin}): {} passed, {} failed", report.passed, report.failures.len());
            for f in &report.failures {
                println!("      example `{}`:", f.name);
                for line in f.diff.lines() {
                    println!("        {line}");
                }
            }
        }
    }
    match super::resolve(&manifests) {
        Ok(config) => {
            for flow in config.flows {
                let name = format!("{}/{}", flow.namespace, flow.name);
                // Compiles the flow's programs and checks its targets; Secret values
                // are not needed for that.
                let checked = Flow::new(flow, &Secrets::placeholders()).map(drop).map_err(|e| e.to_string());
                tally(&format!("SyncFlow {name}"), checked, &mut passed, &mut failed);
            }
        }
        Err(e) => {
            for line in e.to_string().lines() {
                println!("FAIL  {line}");
                failed += 1;
            }
        }
    }
    for (key, spec) in &manifests.schedules {
        // The flow's own failure is reported above; here, whether the schedule fits it.
        let checked = super::reconcile::flow_of(&manifests, &key.namespace, &key.name, spec).and_then(|flow| {
            Reconciler::new(&key.name, spec, flow, &Secrets::placeholders(), jiff::Timestamp::now()).map_err(Into::into)
        });
        tally(
            &format!("ReconcileSchedule {key}"),
            checked.map(drop).map_err(|e| format!("{e:#}")),
            &mut passed,
            &mut failed,
        );
    }
    println!("manifests: {passed} passed, {failed} failed");
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Prints one check's PASS or FAIL line and counts it.
fn tally(what: &str, checked: Result<(), String>, passed: &mut u32, failed: &mut u32) {
    match checked {
        Ok(()) => {
            println!("PASS  {what}");
            *passed += 1;
        }
        Err(e) => {
            println!("FAIL  {what}: {e}");
            *failed += 1;
        }
    }
}
