//! The registry client: the part of the OCI distribution API a pull needs
//! (manifests and blobs by GET), with anonymous, basic and bearer-token
//! auth, on ureq with rustls (no OpenSSL).
//!
//! HTTPS always, except plain HTTP for loopback registries (127.0.0.0/8,
//! `::1`, `localhost`) and the ones the user listed as insecure. A token
//! realm gets credentials only over HTTPS or to a host plain HTTP is allowed
//! for. Redirects (to blob storage) are followed without the Authorization
//! header.

use std::io::Read;
use std::net::IpAddr;
use std::time::Duration;

use crate::auth::Credentials;
use crate::digest::Digest;
use crate::reference::{ImageRef, host_without_port};
use crate::spec::{MAX_DOCUMENT_BYTES, manifest_accept};

/// Why a registry request failed; each names the URL or registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request could not be made or its response read.
    #[error("cannot reach {url}")]
    Http {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The registry answered with an unexpected status.
    #[error("{url} answered {status}{hint}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What to do about it, or empty.
        hint: &'static str,
    },
    /// The registry wants credentials and none are configured.
    #[error(
        "{registry} requires authentication; log in with `docker login {registry}` (banger reads ~/.docker/config.json)"
    )]
    AuthRequired {
        /// The registry.
        registry: String,
    },
    /// The token endpoint is not usable.
    #[error("{registry}: token realm {realm:?} is not usable: {why}")]
    BadRealm {
        /// The registry.
        registry: String,
        /// The realm URL.
        realm: String,
        /// Why.
        why: &'static str,
    },
    /// The token endpoint's reply has no token.
    #[error("{url}: the token reply holds no token")]
    NoToken {
        /// The token URL.
        url: String,
    },
    /// A manifest's content differs from the digest asked for or announced.
    #[error("the manifest from {url} has digest {actual}, expected {expected}")]
    ManifestDigest {
        /// The URL.
        url: String,
        /// Expected.
        expected: Digest,
        /// Received.
        actual: Digest,
    },
}

/// Whether plain HTTP may be used for `registry` (`host[:port]`):
/// loopback hosts and the ones in `insecure` (matched as written, with or
/// without port).
pub fn plain_http_allowed(registry: &str, insecure: &[String]) -> bool {
    let host = host_without_port(registry);
    let loopback = host == "localhost"
        || host
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback());
    loopback
        || insecure
            .iter()
            .any(|entry| entry == registry || entry == host)
}

#[derive(Debug, Clone)]
enum Authorization {
    None,
    Basic(String),
    Bearer(String),
}

/// A client for one repository of one registry.
pub struct Registry {
    agent: ureq::Agent,
    base: String,
    reference: ImageRef,
    credentials: Option<Credentials>,
    insecure: Vec<String>,
    authorization: Authorization,
}

/// A fetched manifest or index document.
#[derive(Debug, Clone)]
pub struct FetchedDocument {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Their digest (verified against what was asked for).
    pub digest: Digest,
}

fn challenge_params(header: &str) -> Vec<(String, String)> {
    // key="value" pairs, comma-separated; values may hold commas.
    let mut params = Vec::new();
    let mut rest = header;
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.split_once('"') {
                Some((value, next)) => (value.to_owned(), next),
                None => (quoted.to_owned(), ""),
            }
        } else {
            match after.split_once(',') {
                Some((value, next)) => (value.trim().to_owned(), next),
                None => (after.trim().to_owned(), ""),
            }
        };
        params.push((key, value));
        rest = next;
    }
    params
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

impl Registry {
    /// A client for `reference`'s repository. `credentials` come from the
    /// Docker config; `insecure` lists registries allowed over plain HTTP.
    pub fn new(
        reference: &ImageRef,
        credentials: Option<Credentials>,
        insecure: &[String],
    ) -> Self {
        let scheme = if plain_http_allowed(&reference.registry, insecure) {
            "http"
        } else {
            "https"
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .user_agent(format!("banger/{}", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            agent: ureq::Agent::new_with_config(config),
            base: format!("{scheme}://{}", reference.api_host()),
            reference: reference.clone(),
            credentials,
            insecure: insecure.to_vec(),
            authorization: Authorization::None,
        }
    }

    fn url(&self, kind: &str, reference: &str) -> String {
        format!(
            "{}/v2/{}/{kind}/{reference}",
            self.base, self.reference.repository
        )
    }

    fn send(
        &self,
        url: &str,
        accept: Option<&str>,
    ) -> Result<ureq::http::Response<ureq::Body>, RegistryError> {
        let mut request = self.agent.get(url);
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        request = match &self.authorization {
            Authorization::None => request,
            Authorization::Basic(value) | Authorization::Bearer(value) => {
                request.header("Authorization", value)
            }
        };
        request.call().map_err(|source| RegistryError::Http {
            url: url.to_owned(),
            source: Box::new(source),
        })
    }

    /// GETs `url`, authenticating once on a 401 challenge.
    fn get(
        &mut self,
        url: &str,
        accept: Option<&str>,
    ) -> Result<ureq::http::Response<ureq::Body>, RegistryError> {
        let response = self.send(url, accept)?;
        if response.status() != 401 {
            return check_status(url, response);
        }
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned();
        self.authenticate(&challenge)?;
        let response = self.send(url, accept)?;
        if response.status() == 401 {
            return Err(match self.credentials {
                None => RegistryError::AuthRequired {
                    registry: self.reference.registry.clone(),
                },
                Some(_) => RegistryError::Status {
                    url: url.to_owned(),
                    status: 401,
                    hint: "; the credentials in ~/.docker/config.json were refused",
                },
            });
        }
        check_status(url, response)
    }

    fn basic_value(&self) -> Option<String> {
        use base64::Engine as _;
        self.credentials.as_ref().map(|credentials| {
            let pair = format!("{}:{}", credentials.username, credentials.password);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        })
    }

    fn authenticate(&mut self, challenge: &str) -> Result<(), RegistryError> {
        let registry = self.reference.registry.clone();
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let value = self
                .basic_value()
                .ok_or(RegistryError::AuthRequired { registry })?;
            self.authorization = Authorization::Basic(value);
            return Ok(());
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(RegistryError::AuthRequired { registry });
        }
        let params = challenge_params(params);
        let param = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let realm = param("realm").unwrap_or_default();
        let bad_realm = |why| RegistryError::BadRealm {
            registry: registry.clone(),
            realm: realm.clone(),
            why,
        };
        let realm_host = realm
            .strip_prefix("https://")
            .map(|rest| (true, rest))
            .or_else(|| realm.strip_prefix("http://").map(|rest| (false, rest)));
        let Some((https, rest)) = realm_host else {
            return Err(bad_realm("not an http(s) URL"));
        };
        let host = rest.split(['/', '?']).next().unwrap_or_default();
        if !https && !plain_http_allowed(host, &self.insecure) {
            return Err(bad_realm(
                "plain HTTP to a host that is neither loopback nor in insecure_registries",
            ));
        }
        let scope = param("scope")
            .unwrap_or_else(|| format!("repository:{}:pull", self.reference.repository));
        let mut url = realm.clone();
        url.push(if url.contains('?') { '&' } else { '?' });
        if let Some(service) = param("service") {
            url.push_str(&format!("service={}&", encode(&service)));
        }
        url.push_str(&format!("scope={}", encode(&scope)));
        let mut request = self.agent.get(&url);
        if let Some(basic) = self.basic_value() {
            request = request.header("Authorization", basic);
        }
        let response = request.call().map_err(|source| RegistryError::Http {
            url: url.clone(),
            source: Box::new(source),
        })?;
        if response.status() == 401 || response.status() == 403 {
            return Err(match self.credentials {
                None => RegistryError::AuthRequired { registry },
                Some(_) => RegistryError::Status {
                    url,
                    status: response.status().as_u16(),
                    hint: "; the credentials in ~/.docker/config.json were refused",
                },
            });
        }
        let response = check_status(&url, response)?;
        let bytes = read_document(&url, response)?;
        #[derive(serde::Deserialize)]
        struct TokenReply {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let reply: TokenReply = serde_json::from_slice(&bytes)
            .map_err(|_| RegistryError::NoToken { url: url.clone() })?;
        let token = reply
            .token
            .or(reply.access_token)
            .filter(|token| !token.is_empty())
            .ok_or(RegistryError::NoToken { url })?;
        self.authorization = Authorization::Bearer(format!("Bearer {token}"));
        Ok(())
    }

    /// The manifest or index `reference` (a tag or digest), verified
    /// against the digest asked for or the `Docker-Content-Digest` header.
    pub fn manifest(&mut self, reference: &str) -> Result<FetchedDocument, RegistryError> {
        let url = self.url("manifests", reference);
        let response = self.get(&url, Some(&manifest_accept()))?;
        let announced = response
            .headers()
            .get("docker-content-digest")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| Digest::parse(value).ok());
        let bytes = read_document(&url, response)?;
        let actual = Digest::of(&bytes);
        let expected = Digest::parse(reference).ok().or(announced);
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(RegistryError::ManifestDigest {
                url,
                expected,
                actual,
            });
        }
        Ok(FetchedDocument {
            bytes,
            digest: actual,
        })
    }

    /// A reader of blob `digest` (the caller verifies it while reading).
    pub fn blob(&mut self, digest: &Digest) -> Result<impl Read + use<>, RegistryError> {
        let url = self.url("blobs", &digest.to_string());
        let response = self.get(&url, None)?;
        Ok(response.into_body().into_reader())
    }

    /// A small blob (a config), read whole and verified.
    pub fn small_blob(&mut self, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        let url = self.url("blobs", &digest.to_string());
        let response = self.get(&url, None)?;
        let bytes = read_document(&url, response)?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(RegistryError::ManifestDigest {
                url,
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }
}

fn check_status(
    url: &str,
    response: ureq::http::Response<ureq::Body>,
) -> Result<ureq::http::Response<ureq::Body>, RegistryError> {
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(response);
    }
    let hint = match status {
        404 => "; no such image, tag or blob",
        403 => "; access denied",
        429 => "; rate limited, try again later",
        _ => "",
    };
    Err(RegistryError::Status {
        url: url.to_owned(),
        status,
        hint,
    })
}

fn read_document(
    url: &str,
    response: ureq::http::Response<ureq::Body>,
) -> Result<Vec<u8>, RegistryError> {
    response
        .into_body()
        .into_with_config()
        .limit(MAX_DOCUMENT_BYTES)
        .read_to_vec()
        .map_err(|source| RegistryError::Http {
            url: url.to_owned(),
            source: Box::new(source),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_and_listed() {
        assert!(plain_http_allowed("127.0.0.1:5000", &[]));
        assert!(plain_http_allowed("127.9.9.9", &[]));
        assert!(plain_http_allowed("localhost:5000", &[]));
        assert!(plain_http_allowed("[::1]:5000", &[]));
        assert!(!plain_http_allowed("registry.lan:5000", &[]));
        assert!(plain_http_allowed(
            "registry.lan:5000",
            &["registry.lan:5000".into()]
        ));
        assert!(plain_http_allowed("registry.lan", &["registry.lan".into()]));
        assert!(!plain_http_allowed(
            "10.0.0.1:5000",
            &["10.0.0.1:5001".into()]
        ));
        assert!(!plain_http_allowed("docker.io", &[]));
    }

    #[test]
    fn parses_bearer_challenges() {
        let params = challenge_params(
            r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        );
        assert_eq!(
            params,
            [
                (
                    "realm".to_owned(),
                    "https://auth.docker.io/token".to_owned()
                ),
                ("service".to_owned(), "registry.docker.io".to_owned()),
                (
                    "scope".to_owned(),
                    "repository:library/alpine:pull,push".to_owned()
                ),
            ]
        );
        assert_eq!(encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
    }
}
