//! `cargo run -p placement-proto-codegen [-- --check]`: regenerates
//! placement-proto's src/generated/ from its .proto files (needs protoc), or
//! with `--check` fails if the committed code differs from what the .proto
//! files give (CI runs it, so a .proto change cannot land without its code).

#[path = "../generate.rs"]
mod generate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let check = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--check") => true,
        Some(_) => {
            eprintln!("usage: placement-proto-codegen [--check]");
            return ExitCode::from(2);
        }
    };
    match run(check) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("placement-proto-codegen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Whether the committed code is current (after writing it, unless `check`).
fn run(check: bool) -> Result<bool, Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let committed = proto_dir.join("src/generated");
    let scratch = std::env::temp_dir().join(format!("placement-proto-codegen.{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let fresh = generate::generate(&proto_dir, &scratch).and_then(|()| rust_files(&scratch));
    let _ = std::fs::remove_dir_all(&scratch);
    let fresh = fresh?;
    let old = if committed.exists() { rust_files(&committed)? } else { BTreeMap::new() };
    let stale: Vec<&String> = fresh
        .keys()
        .chain(old.keys())
        .filter(|name| fresh.get(*name) != old.get(*name))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if check {
        for name in &stale {
            eprintln!(
                "src/generated/{name} is not what the .proto files give: run `cargo run -p placement-proto-codegen`"
            );
        }
        return Ok(stale.is_empty());
    }
    std::fs::create_dir_all(&committed)?;
    for name in old.keys().filter(|n| !fresh.contains_key(*n)) {
        std::fs::remove_file(committed.join(name))?;
    }
    for (name, text) in &fresh {
        std::fs::write(committed.join(name), text)?;
    }
    println!("wrote {} files to {} ({} changed)", fresh.len(), committed.display(), stale.len());
    Ok(true)
}

/// The `.rs` files directly in `dir` (not the simulation's flavour in
/// `sim/`), by name.
fn rust_files(dir: &Path) -> Result<BTreeMap<String, String>, Box<dyn std::error::Error>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            files.insert(name, std::fs::read_to_string(&path)?);
        }
    }
    Ok(files)
}
