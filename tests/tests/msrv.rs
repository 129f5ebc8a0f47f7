//! The declared minimum Rust versions are true: no dependency of the library (normal
//! dependencies) declares a higher `rust-version` than the library does, and no dependency of a
//! workspace member (any kind) a higher one than that member. A dependency update that raises
//! the minimum fails here, in CI, instead of on a user's older toolchain.
//!
//! It reads `cargo metadata` (the resolved lock file, offline); it checks what dependencies
//! declare, which is what cargo itself enforces. What the compiler accepts in our own code is
//! checked by clippy's `incompatible_msrv` lint, which CI runs with `-D warnings`.

use std::collections::{HashMap, HashSet};
use std::process::Command;

use serde_json::Value;

fn version(text: &str) -> (u64, u64, u64) {
    let mut parts = text.split('.').map(|p| p.parse::<u64>().expect("a numeric rust-version"));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn no_dependency_needs_a_newer_rust_than_declared() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    // Only the host's dependency graph: evstore builds only on Linux, and the lock file also
    // lists packages for other targets (plotters' wasm crates, ctrlc's macOS ones) that cargo
    // never downloads here, so `--offline` could not read their manifests.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = Command::new(rustc).arg("-vV").output().expect("rustc -vV runs");
    let rustc_version = String::from_utf8_lossy(&rustc_version.stdout).into_owned();
    let host = rustc_version.lines().find_map(|l| l.strip_prefix("host: ")).expect("rustc -vV names the host");
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--filter-platform", host])
        .args(["--manifest-path", manifest])
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let packages: HashMap<&str, &Value> =
        metadata["packages"].as_array().unwrap().iter().map(|p| (p["id"].as_str().unwrap(), p)).collect();
    let nodes: HashMap<&str, &Value> =
        metadata["resolve"]["nodes"].as_array().unwrap().iter().map(|n| (n["id"].as_str().unwrap(), n)).collect();
    let closure = |root: &str, all_kinds: bool| -> HashSet<String> {
        let mut seen = HashSet::new();
        let mut stack = vec![root.to_string()];
        while let Some(id) = stack.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            for dep in nodes[id.as_str()]["deps"].as_array().unwrap() {
                let normal = dep["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].is_null());
                if all_kinds || normal {
                    stack.push(dep["pkg"].as_str().unwrap().to_string());
                }
            }
        }
        seen
    };
    let mut checked = 0;
    for member in metadata["workspace_members"].as_array().unwrap() {
        let member = member.as_str().unwrap();
        let package = packages[member];
        let name = package["name"].as_str().unwrap();
        let declared = package["rust_version"].as_str().unwrap_or_else(|| panic!("{name} declares no rust-version"));
        // The library's users build only its normal dependencies; the bench and the tests build all.
        let all_kinds = name != "evstore";
        for id in closure(member, all_kinds) {
            let dependency = packages[id.as_str()];
            if let Some(needed) = dependency["rust_version"].as_str() {
                assert!(
                    version(needed) <= version(declared),
                    "{name} declares rust-version {declared}, but {} {} needs {needed}",
                    dependency["name"].as_str().unwrap(),
                    dependency["version"].as_str().unwrap()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "only {checked} dependencies declared a rust-version: is the metadata complete?");
}
