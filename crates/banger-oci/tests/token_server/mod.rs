//! A bearer-token server for the registry tests: the registry (configured
//! with `auth: token`) answers 401 with a `Bearer realm=…` challenge, the
//! client asks this server for a token with basic credentials, and this
//! server answers with a JWT the registry verifies against the test's own
//! self-signed certificate (RS256, the certificate in the `x5c` header).
//!
//! The JWT is signed once, with `openssl dgst`, and grants pull and push on
//! the repositories the test names; wrong or missing credentials get 401.
//! Every token request is counted, so the test can prove the token flow ran.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

/// The `service` the registry and the token agree on.
pub const SERVICE: &str = "banger-test-registry";
/// The token issuer the registry trusts.
pub const ISSUER: &str = "banger-test-issuer";

/// A running token server.
pub struct TokenServer {
    /// The realm URL for the registry's challenge.
    pub realm: String,
    /// The certificate bundle the registry verifies tokens with.
    pub cert: std::path::PathBuf,
    granted: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
}

impl TokenServer {
    /// Token requests answered with a token.
    pub fn granted(&self) -> usize {
        self.granted.load(Ordering::SeqCst)
    }

    /// Token requests refused (no or wrong credentials).
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// The `auth:` YAML for the registry's configuration.
    pub fn registry_auth(&self) -> String {
        format!(
            "  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.realm,
            self.cert.display()
        )
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Makes a key and self-signed certificate in `dir` and a JWT granting
/// pull and push on `repositories` to `user`, valid for an hour.
fn signed_token(dir: &Path, user: &str, repositories: &[&str]) -> String {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "token.key",
            "-out",
            "token.crt",
            "-days",
            "1",
            "-subj",
            "/CN=banger-test-token",
        ],
    );
    let der = openssl(dir, &["x509", "-in", "token.crt", "-outform", "DER"]);
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "RS256",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(der)],
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let access: Vec<_> = repositories
        .iter()
        .map(|name| serde_json::json!({"type": "repository", "name": name, "actions": ["pull", "push"]}))
        .collect();
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": user,
        "aud": SERVICE,
        "exp": now + 3600,
        "nbf": now - 60,
        "iat": now - 60,
        "jti": format!("banger-test-{now}"),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    fs_err::write(dir.join("signing-input"), &signing_input).unwrap();
    let signature = openssl(
        dir,
        &["dgst", "-sha256", "-sign", "token.key", "signing-input"],
    );
    format!("{signing_input}.{}", b64url(&signature))
}

/// Starts the server on 127.0.0.1:<free port>: GET with `Authorization:
/// Basic user:password` gets the token, anything else 401.
pub fn start(dir: &Path, user: &str, password: &str, repositories: &[&str]) -> TokenServer {
    fs_err::create_dir_all(dir).unwrap();
    let token = signed_token(dir, user, repositories);
    let expected = format!(
        "basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let granted = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let (granted_in, refused_in) = (Arc::clone(&granted), Arc::clone(&refused));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut authorized = false;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                let trimmed = line.trim();
                if trimmed.is_empty() {
                    break;
                }
                if let Some((name, value)) = trimmed.split_once(':')
                    && name.eq_ignore_ascii_case("authorization")
                {
                    // The scheme is case-insensitive; the credentials are not.
                    let value = value.trim();
                    authorized = value
                        .split_at_checked(6)
                        .is_some_and(|(scheme, credentials)| {
                            scheme.eq_ignore_ascii_case("basic ") && credentials == &expected[6..]
                        });
                }
                line.clear();
            }
            let reply = if authorized {
                granted_in.fetch_add(1, Ordering::SeqCst);
                let body =
                    serde_json::json!({"token": token, "access_token": token, "expires_in": 3600})
                        .to_string();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                refused_in.fetch_add(1, Ordering::SeqCst);
                let body = r#"{"details":"credentials refused"}"#;
                format!(
                    "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    TokenServer {
        realm: format!("http://127.0.0.1:{port}/token"),
        cert: dir.join("token.crt"),
        granted,
        refused,
    }
}
