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

/// No spec file was found: where [`default_spec_path`] looked.
#[derive(Debug, Error)]
pub enum SpecNotFound {
    /// `$BANGER_FC_SPEC` is set but does not name a file.
    #[error("Firecracker API spec not found: {SPEC_ENV}={} is not a file", .path.display())]
    EnvNotAFile {
        /// The variable's value.
        path: PathBuf,
    },
    /// No `shared/firecracker/firecracker.yaml` above the workspace (or its
    /// local `origin`).
    #[error(
        "Firecracker API spec not found: no {SPEC_RELATIVE} {}; set {SPEC_ENV} to the path of firecracker.yaml",
        looked_in(.workspace, .origin.as_deref())
    )]
    NotAbove {
        /// The workspace root searched from.
        workspace: PathBuf,
        /// The checkout the workspace's `origin` points at, also searched.
        origin: Option<PathBuf>,
    },
}

/// `in or above W[ nor in or above its origin O]`.
fn looked_in(workspace: &Path, origin: Option<&Path>) -> String {
    let mut looked = format!("in or above {}", workspace.display());
    if let Some(origin) = origin {
        looked.push_str(&format!(" nor in or above its origin {}", origin.display()));
    }
    looked
}

/// Why the spec could not be loaded.
#[derive(Debug, Error)]
pub enum SpecLoadError {
    /// No spec file was found ([`SpecNotFound`] says where it looked).
    #[error(transparent)]
    NotFound(#[from] SpecNotFound),
    /// Reading the file failed.
    #[error("{path}")]
    Io {
        /// The spec file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("{path}: not a Swagger document")]
    Yaml {
        /// The spec file.
        path: PathBuf,
        /// The parse error.
        source: serde_norway::Error,
    },
    /// The YAML lacks `paths` or `definitions`.
    #[error("{path}: not a Swagger document: no {section}")]
    MissingSection {
        /// The spec file.
        path: PathBuf,
        /// The missing top-level key.
        section: &'static str,
    },
}

/// A request the spec refuses. Its text is the `fault_message` the fake
/// answers with, worded like Firecracker's own; where Firecracker embeds a
/// parse error in that message, the error is a plain field here, not a
/// `source`, so the message is complete on its own.
#[derive(Debug, Error)]
pub enum SpecViolation {
    /// The path exists, but not with this method.
    #[error("Invalid request method: {method} is not defined for {path}")]
    MethodNotDefined {
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
    },
    /// No path template matches.
    #[error("Invalid request method and/or path: {method} {path}")]
    UnknownPath {
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
    },
    /// A body was sent to an operation without one.
    #[error("{method} {path} takes no body")]
    UnexpectedBody {
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
    },
    /// The operation requires a body and got none.
    #[error("Empty request body")]
    EmptyBody,
    /// The body is not JSON.
    #[error("An error occurred when deserializing the json body of a request: {error}")]
    BodyNotJson {
        /// The JSON error (part of Firecracker's message, so not a source).
        error: serde_json::Error,
    },
    /// A path parameter (e.g. `drive_id`) differs from the body's field.
    #[error("The id from the path ({in_path}) does not match the id from the body ({in_body})")]
    IdMismatch {
        /// The id in the URL.
        in_path: String,
        /// The body's value for it.
        in_body: Value,
    },
    /// The spec itself uses a `$ref` outside `#/definitions/`.
    #[error("unsupported $ref {reference}")]
    UnsupportedRef {
        /// The reference.
        reference: String,
    },
    /// The spec itself refers to a definition it lacks.
    #[error("unknown definition {name}")]
    UnknownDefinition {
        /// The definition's name.
        name: String,
    },
    /// A value of the wrong JSON type.
    #[error("{at}: invalid type: expected {expected}, got {value}")]
    WrongType {
        /// Where in the body (`body.drives[0].path_on_host`).
        at: String,
        /// The schema's type (`?` when unknown).
        expected: String,
        /// The value sent.
        value: Value,
    },
    /// A value outside the schema's `enum`.
    #[error("{at}: unknown variant {value}, expected one of {allowed:?}")]
    UnknownVariant {
        /// Where in the body.
        at: String,
        /// The value sent.
        value: Value,
        /// The values allowed.
        allowed: Vec<Value>,
    },
    /// A number below the schema's `minimum`.
    #[error("{at}: {number} is below the minimum {minimum}")]
    BelowMinimum {
        /// Where in the body.
        at: String,
        /// The number sent.
        number: f64,
        /// The minimum.
        minimum: f64,
    },
    /// A number above the schema's `maximum`.
    #[error("{at}: {number} is above the maximum {maximum}")]
    AboveMaximum {
        /// Where in the body.
        at: String,
        /// The number sent.
        number: f64,
        /// The maximum.
        maximum: f64,
    },
    /// A required field is absent.
    #[error("{at}: missing field `{field}`")]
    MissingField {
        /// Where in the body.
        at: String,
        /// The field.
        field: String,
    },
    /// A field the schema does not define (Firecracker denies unknown fields).
    #[error("{at}: unknown field `{field}`")]
    UnknownField {
        /// Where in the body.
        at: String,
        /// The field.
        field: String,
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
pub fn default_spec_path() -> Result<PathBuf, SpecNotFound> {
    if let Some(path) = std::env::var_os(SPEC_ENV).filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(SpecNotFound::EnvNotAFile { path })
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
    find_upward(&starts).ok_or(SpecNotFound::NotAbove { workspace, origin })
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
        let missing = |section| SpecLoadError::MissingSection {
            path: path.to_path_buf(),
            section,
        };
        let doc: Value = serde_norway::from_str(&text).map_err(|source| SpecLoadError::Yaml {
            path: path.to_path_buf(),
            source,
        })?;
        let paths = doc
            .get("paths")
            .and_then(Value::as_object)
            .ok_or_else(|| missing("paths"))?;
        let definitions = doc
            .get("definitions")
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| missing("definitions"))?;
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
        let path = default_spec_path()?;
        Self::load(&path)
    }

    /// Checks a request; `Err` displays as a Firecracker-style fault message.
    pub fn check(&self, method: &str, path: &str, body: &[u8]) -> Result<Matched, SpecViolation> {
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
            let (method, path) = (method.to_owned(), path.to_owned());
            return Err(if path_matched {
                SpecViolation::MethodNotDefined { method, path }
            } else {
                SpecViolation::UnknownPath { method, path }
            });
        };
        let body = match (&op.body_schema, body.is_empty()) {
            (None, true) => None,
            (None, false) => {
                return Err(SpecViolation::UnexpectedBody {
                    method: method.to_owned(),
                    path: path.to_owned(),
                });
            }
            (Some(_), true) if op.body_required => return Err(SpecViolation::EmptyBody),
            (Some(_), true) => None,
            (Some(schema), false) => {
                let value: Value = serde_json::from_slice(body)
                    .map_err(|error| SpecViolation::BodyNotJson { error })?;
                self.validate(schema, &value, "body")?;
                // Firecracker refuses ids in the URL that differ from the body's.
                for (name, in_path) in &params {
                    if let Some(in_body) = value.get(name) {
                        if in_body.as_str() != Some(in_path.as_str()) {
                            return Err(SpecViolation::IdMismatch {
                                in_path: in_path.clone(),
                                in_body: in_body.clone(),
                            });
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

    fn resolve<'a>(&'a self, schema: &'a Value) -> Result<&'a Value, SpecViolation> {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference.strip_prefix("#/definitions/").ok_or_else(|| {
                    SpecViolation::UnsupportedRef {
                        reference: reference.to_owned(),
                    }
                })?;
                let target =
                    self.definitions
                        .get(name)
                        .ok_or_else(|| SpecViolation::UnknownDefinition {
                            name: name.to_owned(),
                        })?;
                self.resolve(target)
            }
            None => Ok(schema),
        }
    }

    /// Validates `value` against `schema`; `at` names the location for errors.
    fn validate(&self, schema: &Value, value: &Value, at: &str) -> Result<(), SpecViolation> {
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
            return Err(SpecViolation::WrongType {
                at: at.to_owned(),
                expected: kind.unwrap_or("?").to_owned(),
                value: value.clone(),
            });
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                return Err(SpecViolation::UnknownVariant {
                    at: at.to_owned(),
                    value: value.clone(),
                    allowed: allowed.clone(),
                });
            }
        }
        if let Some(number) = value.as_f64() {
            if let Some(minimum) = schema.get("minimum").and_then(Value::as_f64) {
                if number < minimum {
                    return Err(SpecViolation::BelowMinimum {
                        at: at.to_owned(),
                        number,
                        minimum,
                    });
                }
            }
            if let Some(maximum) = schema.get("maximum").and_then(Value::as_f64) {
                if number > maximum {
                    return Err(SpecViolation::AboveMaximum {
                        at: at.to_owned(),
                        number,
                        maximum,
                    });
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
                    return Err(SpecViolation::MissingField {
                        at: at.to_owned(),
                        field: required.to_owned(),
                    });
                }
            }
            for (name, field) in object {
                match properties.get(name) {
                    Some(field_schema) => {
                        self.validate(field_schema, field, &format!("{at}.{name}"))?;
                    }
                    None if open => {}
                    None => {
                        return Err(SpecViolation::UnknownField {
                            at: at.to_owned(),
                            field: name.clone(),
                        });
                    }
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
