//! The README's promises name their proofs: every `file::test` named in the table
//! of "What mailferry guarantees", and every `module::name` anywhere in the README,
//! is a test or function that exists, so a renamed or deleted test cannot leave a
//! promise without proof. (That the named tests pass is what `cargo test` runs.)

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `module::name` references in backticks, with `module::*` meaning the whole file.
fn references(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for chunk in text.split('`').skip(1).step_by(2) {
        let Some((module, name)) = chunk.split_once("::") else {
            continue;
        };
        let ident =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        // `Type::method` is a path into a module, not a file: left to the reader.
        let module_like = module.starts_with(|c: char| c.is_ascii_lowercase());
        if module_like && ident(module) && (name == "*" || ident(name)) {
            out.push((module.to_string(), name.to_string()));
        }
    }
    out
}

/// Where `module` lives: an integration test file, or a source module (unit tests).
fn source_of(module: &str) -> Option<String> {
    let candidates = [
        root().join("tests/it").join(format!("{module}.rs")),
        root().join("src").join(format!("{module}.rs")),
        root().join("src").join(module).join("mod.rs"),
    ];
    candidates
        .iter()
        .find(|p| p.exists())
        .map(|p| std::fs::read_to_string(p).unwrap())
}

#[test]
fn every_promise_names_tests_that_exist() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("## What mailferry guarantees")
        .expect("the guarantees section");
    let end = readme[start..]
        .find("\nWhat is not promised")
        .map_or(readme.len(), |e| start + e);
    let table = &readme[start..end];
    assert!(references(table).len() >= 20, "the table names its proofs");
    let refs = references(&readme);
    let mut missing = Vec::new();
    for (module, name) in &refs {
        match source_of(module) {
            None => missing.push(format!(
                "{module}::{name} (no tests/it/{module}.rs or src/{module}.rs)"
            )),
            Some(_) if name == "*" || name == "tests" => {}
            Some(text) => {
                if !text.contains(&format!("fn {name}(")) {
                    missing.push(format!("{module}::{name}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README names tests that do not exist: {missing:?}"
    );
}

#[test]
fn the_reference_reader_finds_and_rejects() {
    let refs = references(
        "a `migrate::full_run`, `faults::*`, `not a ref`, `x::y z`, `--flag`, `Client::peek`",
    );
    assert_eq!(
        refs,
        vec![
            ("migrate".to_string(), "full_run".to_string()),
            ("faults".to_string(), "*".to_string())
        ]
    );
}
