//! The Firecracker API specification (Swagger 2.0 YAML) as a request
//! validator.
//!
//! [`ApiSpec::load`] reads `firecracker.yaml`; [`ApiSpec::check`] accepts a
//! request only when the spec defines its path and method and its body matches
//! the body schema: required fields, types, enums, minimum/maximum, nested
//! `$ref` definitions, and no unknown fields (Firecracker deserialises with
//! `deny_unknown_fields`) unless a schema says `additionalProperties: true`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use thiserror::Error;

/// Environment variable overriding the spec's location.
pub const SPEC_ENV: &str = "BANGER_FC_SPEC";

/// Why the spec could not be loaded.
#[derive(Debug, Error)]
pub enum SpecLoadError {
    /// No spec file was found ([`default_spec_path`] says where it looked).
    #[error("{0}")]
    NotFound(String),
    /// Reading the file failed.
    #[error("{path}")]
    Io {
        /// The spec file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The YAML did not parse or lacks `paths`/`definitions`.
    #[error("{path}: not a Swagger document: {reason}")]
    Invalid {
        /// The spec file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Where the spec lives relative to a directory above the checkout.
pub(crate) const SPEC_RELATIVE: &str = "shared/firecracker/firecracker.yaml";

/// Where the spec is: `$BANGER_FC_SPEC` if set (it must exist); otherwise
/// the first `shared/firecracker/firecracker.yaml` in the workspace root or
/// a directory above it, then in the checkout the workspace's git `origin`
/// points at (when that is a local path) or a directory above that one: CI
/// tests a fresh clone (`git clone . /tmp/fresh`), whose own parents have no
/// `shared/`. `scripts/test.sh` looks the same way. `Err` says where it
/// looked and names `BANGER_FC_SPEC`.
pub fn default_spec_path() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(SPEC_ENV).filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "Firecracker API spec not found: {SPEC_ENV}={} is not a file",
                path.display()
            ))
        };
    }
    // This crate is <workspace>/crates/banger-testkit.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| manifest.to_path_buf());
    let origin = local_origin(&workspace);
    let starts: Vec<PathBuf> = std::iter::once(workspace.clone())
        .chain(origin.clone())
        .collect();
    find_upward(&starts).ok_or_else(|| {
        let mut looked = format!("in or above {}", workspace.display());
        if let Some(origin) = &origin {
            looked.push_str(&format!(" nor in or above its origin {}", origin.display()));
        }
        format!(
            "Firecracker API spec not found: no {SPEC_RELATIVE} {looked}; \
             set {SPEC_ENV} to the path of firecracker.yaml"
        )
    })
}

/// The first `<dir>/`[`SPEC_RELATIVE`] that is a file, for `dir` each start
/// and then each of its ancestors, in order.
pub(crate) fn find_upward(starts: &[PathBuf]) -> Option<PathBuf> {
    starts
        .iter()
        .flat_map(|start| start.ancestors())
        .map(|dir| dir.join(SPEC_RELATIVE))
        .find(|candidate| candidate.is_file())
}

/// The directory `checkout`'s `origin` remote points at, when it is a local
/// path (`git clone /work/main /tmp/fresh` records `/work/main`).
pub(crate) fn local_origin(checkout: &Path) -> Option<PathBuf> {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(checkout)
        .args(["remote", "get-url", "origin"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let url = String::from_utf8(output.stdout).ok()?;
    let url = url.trim();
    let path = checkout.join(url.strip_prefix("file://").unwrap_or(url));
    path.canonicalize().ok().filter(|path| path.is_dir())
}

/// One operation (path + method) of the API.
#[derive(Debug, Clone)]
struct Operation {
    template: String,
    method: String,
    pre_boot_only: bool,
    body_schema: Option<Value>,
    body_required: bool,
}

/// A request the spec allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// The spec's path template, e.g. `/drives/{drive_id}`.
    pub template: String,
    /// The operation is documented as "Pre-boot only".
    pub pre_boot_only: bool,
    /// The parsed body, if any.
    pub body: Option<Value>,
}

/// The loaded specification.
#[derive(Debug, Clone)]
pub struct ApiSpec {
    operations: Vec<Operation>,
    definitions: Map<String, Value>,
    /// The `info.version` of the spec (the Firecracker version).
    pub version: String,
}

impl ApiSpec {
    /// Loads the spec at `path`.
    pub fn load(path: &Path) -> Result<Self, SpecLoadError> {
        let text = fs_err::read_to_string(path).map_err(|source| SpecLoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |reason: String| SpecLoadError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let doc: Value = serde_norway::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let paths = doc
            .get("paths")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("no paths".into()))?;
        let definitions = doc
            .get("definitions")
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| invalid("no definitions".into()))?;
        let mut operations = Vec::new();
        for (template, methods) in paths {
            let Some(methods) = methods.as_object() else {
                continue;
            };
            for (method, op) in methods {
                let summary = op.get("summary").and_then(Value::as_str).unwrap_or("");
                let body = op
                    .get("parameters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|p| p.get("in").and_then(Value::as_str) == Some("body"));
                operations.push(Operation {
                    template: template.clone(),
                    method: method.to_ascii_uppercase(),
                    pre_boot_only: summary.contains("Pre-boot only"),
                    body_schema: body.and_then(|b| b.get("schema")).cloned(),
                    body_required: body
                        .and_then(|b| b.get("required"))
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                });
            }
        }
        let version = doc
            .pointer("/info/version")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        Ok(Self {
            operations,
            definitions,
            version,
        })
    }

    /// Loads the spec from [`default_spec_path`];
    /// [`SpecLoadError::NotFound`] when there is none (tests then call
    /// [`skip_or_fail`](crate::skip_or_fail) with it).
    pub fn load_default() -> Result<Self, SpecLoadError> {
        let path = default_spec_path().map_err(SpecLoadError::NotFound)?;
        Self::load(&path)
    }

    /// Checks a request; `Err` carries a Firecracker-style fault message.
    pub fn check(&self, method: &str, path: &str, body: &[u8]) -> Result<Matched, String> {
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        let mut path_matched = false;
        let mut found = None;
        for op in &self.operations {
            if let Some(params) = match_template(&op.template, &segments) {
                path_matched = true;
                if op.method == method {
                    found = Some((op, params));
                    break;
                }
            }
        }
        let Some((op, params)) = found else {
            return Err(if path_matched {
                format!("Invalid request method: {method} is not defined for {path}")
            } else {
                format!("Invalid request method and/or path: {method} {path}")
            });
        };
        let body = match (&op.body_schema, body.is_empty()) {
            (None, true) => None,
            (None, false) => return Err(format!("{method} {path} takes no body")),
            (Some(_), true) if op.body_required => {
                return Err("Empty request body".into());
            }
            (Some(_), true) => None,
            (Some(schema), false) => {
                let value: Value = serde_json::from_slice(body).map_err(|e| {
                    format!("An error occurred when deserializing the json body of a request: {e}")
                })?;
                self.validate(schema, &value, "body")?;
                // Firecracker refuses ids in the URL that differ from the body's.
                for (name, in_path) in &params {
                    if let Some(in_body) = value.get(name) {
                        if in_body.as_str() != Some(in_path.as_str()) {
                            return Err(format!(
                                "The id from the path ({in_path}) does not match the id from the body ({in_body})"
                            ));
                        }
                    }
                }
                Some(value)
            }
        };
        Ok(Matched {
            template: op.template.clone(),
            pre_boot_only: op.pre_boot_only,
            body,
        })
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> Result<&'a Value, String> {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference
                    .strip_prefix("#/definitions/")
                    .ok_or_else(|| format!("unsupported $ref {reference}"))?;
                let target = self
                    .definitions
                    .get(name)
                    .ok_or_else(|| format!("unknown definition {name}"))?;
                self.resolve(target)
            }
            None => Ok(schema),
        }
    }

    /// Validates `value` against `schema`; `at` names the location for errors.
    fn validate(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        let schema = self.resolve(schema)?;
        let kind = schema
            .get("type")
            .and_then(Value::as_str)
            .or_else(|| schema.get("properties").map(|_| "object"));
        let type_ok = match kind {
            Some("object") => value.is_object(),
            Some("string") => value.is_string(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("number") => value.is_number(),
            Some("boolean") => value.is_boolean(),
            Some("array") => value.is_array(),
            _ => true,
        };
        if !type_ok {
            return Err(format!(
                "{at}: invalid type: expected {}, got {value}",
                kind.unwrap_or("?")
            ));
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                return Err(format!(
                    "{at}: unknown variant {value}, expected one of {allowed:?}"
                ));
            }
        }
        if let Some(number) = value.as_f64() {
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                if number < min {
                    return Err(format!("{at}: {number} is below the minimum {min}"));
                }
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                if number > max {
                    return Err(format!("{at}: {number} is above the maximum {max}"));
                }
            }
        }
        if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
            for (index, item) in array.iter().enumerate() {
                self.validate(items, item, &format!("{at}[{index}]"))?;
            }
        }
        if let Some(object) = value.as_object() {
            let empty = Map::new();
            let properties = schema
                .get("properties")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            let open = schema.get("additionalProperties") == Some(&Value::Bool(true));
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !object.contains_key(required) {
                    return Err(format!("{at}: missing field `{required}`"));
                }
            }
            for (name, field) in object {
                match properties.get(name) {
                    Some(field_schema) => {
                        self.validate(field_schema, field, &format!("{at}.{name}"))?;
                    }
                    None if open => {}
                    None => return Err(format!("{at}: unknown field `{name}`")),
                }
            }
        }
        Ok(())
    }
}

/// Matches `/a/{x}` against path segments; returns the path parameters.
fn match_template(template: &str, segments: &[&str]) -> Option<Vec<(String, String)>> {
    let parts: Vec<&str> = template.split('/').skip(1).collect();
    // "/" splits into [""], as does a request for "/".
    if parts.len() != segments.len() {
        return None;
    }
    let mut params = Vec::new();
    for (part, segment) in parts.iter().zip(segments) {
        if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if segment.is_empty() {
                return None;
            }
            params.push((name.to_owned(), (*segment).to_owned()));
        } else if part != segment {
            return None;
        }
    }
    Some(params)
}
