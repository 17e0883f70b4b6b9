//! Writes the CRDs of the operator's custom resources as YAML.
//!
//! `crdgen` prints every CRD to stdout (separated by `---`);
//! `crdgen DIR...` writes one `DIR/<plural>.yaml` per CRD into each DIR.
//! The committed copies are `crds/` and the Helm chart's
//! `charts/rivulet/files/crds/`; a test fails when either is stale:
//! `cargo run -p rivulet-operator --bin crdgen -- crds charts/rivulet/files/crds`

use std::path::PathBuf;

use rivulet_operator::crd::{all_crds, crd_yaml};

fn main() -> anyhow::Result<()> {
    let dirs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        let docs: Vec<String> = all_crds().iter().map(|(_, crd)| crd_yaml(crd)).collect();
        print!("{}", docs.join("---\n"));
        return Ok(());
    }
    for dir in dirs {
        std::fs::create_dir_all(&dir)?;
        for (plural, crd) in all_crds() {
            let path = dir.join(format!("{plural}.yaml"));
            std::fs::write(&path, crd_yaml(&crd))?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}
