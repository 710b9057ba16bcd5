//! The daemon's modules import one way only: main → api → domain → state →
//! the bottom (store, host, progress, error, …). This test reads the
//! sources and fails on an import that goes up, on HTTP types (axum, hyper's
//! server side) outside `api/` and `main.rs`, and on a module it does not
//! know (a new module must be given its place in [`LAYERS`]).
//!
//! The order, top to bottom, and why it is this way: docs/architecture.md.

use std::path::{Path, PathBuf};

/// Every top-level module of `src/`, top layer first. A module may import
/// only modules listed after it; modules on one line are one layer and may
/// not import each other.
const LAYERS: &[&[&str]] = &[
    &["main"],
    &["api"],
    &["usage"],
    &["sessions"],
    &["vms"],
    &["images"],
    &["kernels"],
    &["dns"],
    &["state"],
    &["host", "store", "listener", "logging", "progress"],
    &["events"],
    &["error", "fault", "step_timer"],
];

/// Modules allowed to name HTTP server types.
const HTTP_MODULES: &[&str] = &["main", "api"];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs_err::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/vms/boot.rs` → `vms`).
fn module_of(path: &Path) -> String {
    let relative = path.strip_prefix(src_dir()).expect("under src");
    let first = relative
        .components()
        .next()
        .expect("non-empty")
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_owned()
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Source text without `//` comments, so doc text naming a module does not count.
fn code_only(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(index) => &line[..index],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a source names through `crate::` paths, including
/// grouped imports such as `use crate::{state::AppState, store::Store};`.
fn crate_references(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(index) = rest.find("crate::") {
        let preceded_by_ident = rest[..index]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[index + "crate::".len()..];
        if preceded_by_ident {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut segment = String::new();
            let mut at_start = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        at_start = true;
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 && at_start {
                    if c.is_alphanumeric() || c == '_' {
                        segment.push(c);
                    } else if !segment.is_empty() {
                        found.push(std::mem::take(&mut segment));
                        at_start = false;
                    }
                }
            }
            if !segment.is_empty() {
                found.push(segment);
            }
        } else {
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !ident.is_empty() {
                found.push(ident);
            }
        }
    }
    found
}

/// Every rule broken by `sources` (pairs of a file's label and its module
/// and source text).
fn violations(sources: &[(String, String, String)]) -> Vec<String> {
    let mut violations = Vec::new();
    for (file, module, text) in sources {
        let Some(layer) = layer_of(module) else {
            violations.push(format!(
                "{file}: module `{module}` has no layer; add it to LAYERS in tests/layering.rs"
            ));
            continue;
        };
        let code = code_only(text);
        for target in crate_references(&code) {
            if &target == module {
                continue;
            }
            match layer_of(&target) {
                Some(target_layer) if target_layer > layer => {}
                Some(_) => violations.push(format!(
                    "{file}: `{module}` imports `crate::{target}`, which is not below it"
                )),
                None => violations.push(format!(
                    "{file}: `{module}` imports unknown module `crate::{target}`"
                )),
            }
        }
        if !HTTP_MODULES.contains(&module.as_str()) {
            for needle in ["axum", "bangerd::api", "ApiFailure", "StatusCode"] {
                if code.contains(needle) {
                    violations.push(format!(
                        "{file}: `{module}` names `{needle}`; HTTP belongs in api/"
                    ));
                }
            }
        }
    }
    violations
}

#[test]
fn imports_go_one_way() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    files.sort();
    let sources: Vec<(String, String, String)> = files
        .iter()
        .filter(|file| module_of(file) != "lib")
        .map(|file| {
            (
                file.display().to_string(),
                module_of(file),
                fs_err::read_to_string(file).expect("read source"),
            )
        })
        .collect();
    assert!(sources.len() > 20, "found the sources: {}", sources.len());
    let violations = violations(&sources);
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_reference_parser_sees_grouped_and_nested_imports() {
    let code = "use crate::{state::AppState, store::{Store, VmRow}};\nlet x = crate::vms::row(); foocrate::nope;";
    assert_eq!(crate_references(code), ["state", "store", "vms"]);
}

#[test]
fn upward_imports_http_types_and_unknown_modules_are_reported() {
    let source = |module: &str, text: &str| ("x.rs".to_owned(), module.to_owned(), text.to_owned());
    let found = violations(&[
        source("vms", "use crate::api::ApiFailure;"),
        source("state", "use crate::vms::VmLock;"),
        source("store", "use crate::host::Host;"),
        source("images", "fn f() -> axum::Json<()> { todo!() }"),
        source("widgets", "use crate::store::Store;"),
        source(
            "vms",
            "// crate::api::ApiFailure in a comment is fine\nuse crate::store::Store;",
        ),
    ]);
    assert_eq!(found.len(), 6, "{found:#?}");
    assert!(
        found[0].contains("`vms` imports `crate::api`"),
        "{}",
        found[0]
    );
    assert!(found[1].contains("ApiFailure"), "{}", found[1]);
    assert!(
        found[2].contains("`state` imports `crate::vms`"),
        "{}",
        found[2]
    );
    assert!(
        found[3].contains("`store` imports `crate::host`"),
        "{}",
        found[3]
    );
    assert!(found[4].contains("names `axum`"), "{}", found[4]);
    assert!(found[5].contains("`widgets` has no layer"), "{}", found[5]);
}
