//! Manifest loading: any text, as one YAML file of a directory the runner loads in local
//! mode, then resolved into a runner configuration. Either step may refuse the text, with
//! an error; neither may panic, loop or take unbounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let mut manifests = entrepot::manifest::Manifests::default();
    if manifests.add_text(std::path::Path::new("fuzz.yaml"), text).is_ok() {
        let _ = manifests.runner_config();
    }
});
