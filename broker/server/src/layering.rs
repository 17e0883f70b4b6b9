//! The rule that imports point down, checked on the sources: every module
//! of this crate has a layer, and a module may use only modules of its own
//! or a lower layer. A scan of the `crate::` paths in each file fails the
//! test on an upward import, so the structure keeps holding as code grows.
//!
//! Layers, top to bottom (DESIGN.md's flow: net -> api -> metadata ->
//! registry -> replica -> storage):
//! - the composition root and tools: `server`, `cli`, `fuzzing` (the fuzz
//!   targets' way in);
//! - net: `connection`, `listeners`, `http`;
//! - api: `handlers`;
//! - coordinators: `group`;
//! - metadata and replication: `cluster` (the quorum-backed image, topic
//!   admin, the applier, follower fetchers and leader duties);
//! - registry: `broker` (hosted topics and partitions);
//! - replica: `partition`;
//! - leaves: configs, metrics, file formats, helpers.
//!
//! `KNOWN_UPWARD` is where an upward import that must stay for a while
//! would be listed (with the test failing once it is gone, so the list only
//! shrinks); it is empty: the registry no longer owns the group
//! coordinator nor points back to the cluster, handlers get both through
//! `handlers::Node`, and the coordinator follows leadership through the
//! cluster's applied-image watch.

/// Each module's layer; higher numbers sit above lower ones.
#[cfg(test)]
const LAYERS: &[(&str, u8)] = &[
    ("server", 9),
    ("cli", 9),
    ("fuzzing", 9),
    ("connection", 8),
    ("authenticate", 8),
    ("listeners", 8),
    ("http", 8),
    ("scrape", 8),
    ("handlers", 7),
    ("group", 6),
    ("txn", 6),
    ("cluster", 5),
    ("broker", 4),
    ("partition", 3),
    ("partition_tests", 3),
    ("log_dir", 2),
    ("config", 1),
    ("topic_config", 0),
    ("metrics", 1),
    ("series", 1),
    ("clock", 1),
    ("lease", 1),
    ("meta_store", 1),
    ("hw_checkpoint", 1),
    ("identity", 2),
    ("parallel", 1),
    ("security", 1),
    ("quota", 2),
];

/// Upward imports that predate the rule: (from, to). None are left.
#[cfg(test)]
const KNOWN_UPWARD: &[(&str, &str)] = &[];

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeSet,
        path::{Path, PathBuf},
    };

    use super::*;

    fn layer(module: &str) -> u8 {
        LAYERS
            .iter()
            .find(|(m, _)| *m == module)
            .unwrap_or_else(|| panic!("module `{module}` has no layer in layering.rs"))
            .1
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The top-level modules a source text names through `crate::`,
    /// including every item of a grouped `crate::{a::x, b::{y, z}}`.
    fn crate_paths(text: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 1;
                let mut item = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 || (c == ',' && depth == 1) {
                        if let Some(name) = item.trim().split("::").next() {
                            if !name.is_empty() {
                                found.insert(name.to_string());
                            }
                        }
                        item.clear();
                        if depth == 0 {
                            break;
                        }
                    } else {
                        item.push(c);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                found.insert(name);
            }
        }
        found
    }

    #[test]
    fn the_scan_sees_plain_and_grouped_paths() {
        let text =
            "use crate::{broker::Broker, group::{a, b}, partition};\nlet x = crate::cluster::f();";
        let found: Vec<String> = crate_paths(text).into_iter().collect();
        assert_eq!(found, ["broker", "cluster", "group", "partition"]);
    }

    #[test]
    fn imports_point_down() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut upward = BTreeSet::new();
        for file in files {
            let rel = file.strip_prefix(&src).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let module = first.trim_end_matches(".rs").to_string();
            // The crate roots declare modules; this file quotes paths.
            if matches!(module.as_str(), "lib" | "main" | "layering") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for used in crate_paths(&text) {
                if used == module || used.is_empty() {
                    continue;
                }
                if layer(&used) > layer(&module) {
                    upward.insert((module.clone(), used, rel.display().to_string()));
                }
            }
        }
        let new: Vec<_> = upward
            .iter()
            .filter(|(from, to, _)| !KNOWN_UPWARD.contains(&(from.as_str(), to.as_str())))
            .collect();
        assert!(
            new.is_empty(),
            "modules importing a higher layer (see layering.rs): {new:#?}"
        );
        for (from, to) in KNOWN_UPWARD {
            assert!(
                upward.iter().any(|(f, t, _)| f == from && t == to),
                "`{from}` no longer imports `{to}`: take it off KNOWN_UPWARD"
            );
        }
    }
}
