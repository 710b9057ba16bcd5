//! Verified, cached npm tarball downloads.
//!
//! Tarballs are cached by content: `<cache>/<sha512 hex>.tgz`, so a pin
//! change never reuses a stale file and two builds sharing the cache agree.
//! A cached file is verified again before use (a damaged one is downloaded
//! anew); a download streams into a temporary name while its sha512 is
//! computed and only a matching file is renamed into place.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha512};

use super::{Integrity, NpmPackage, Plan, ProvisionError, io};

/// The public npm registry.
pub const DEFAULT_REGISTRY: &str = "https://registry.npmjs.org";

/// The tarball URL of `package` in `registry`, as npm lays it out:
/// `<registry>/<name>/-/<name without scope>-<version>.tgz`.
pub fn tarball_url(registry: &str, package: &NpmPackage) -> String {
    let base = package
        .name
        .rsplit_once('/')
        .map_or(package.name.as_str(), |(_, base)| base);
    format!(
        "{}/{}/-/{base}-{}.tgz",
        registry.trim_end_matches('/'),
        package.name,
        package.version
    )
}

/// The system's CA bundle: npm and apt trust it, and so must banger (a
/// machine behind a TLS-inspecting proxy has the proxy's CA only there).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// An HTTP agent trusting the system's CAs (`$SSL_CERT_FILE`, else
/// [`SYSTEM_CA_BUNDLE`]); Mozilla's roots when neither holds a certificate.
fn agent() -> ureq::Agent {
    use std::time::Duration;
    use ureq::tls::{PemItem, RootCerts, TlsConfig};
    let bundle = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
    let certs: Vec<_> = fs_err::read(&bundle)
        .map(|pem| {
            ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(cert)) => Some(cert.to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let roots = if certs.is_empty() {
        RootCerts::WebPki
    } else {
        RootCerts::new_with_certs(&certs)
    };
    let config = ureq::Agent::config_builder()
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .user_agent(format!("banger/{}", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::new_with_config(config)
}

fn sha512_of(
    reader: &mut dyn Read,
    mut sink: Option<&mut fs_err::File>,
) -> std::io::Result<Integrity> {
    let mut hasher = Sha512::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        if let Some(file) = sink.as_deref_mut() {
            file.write_all(&buffer[..read])?;
        }
    }
    let digest: [u8; 64] = hasher.finalize().into();
    Ok(Integrity(digest))
}

/// Whether `path` exists and hashes to `integrity`.
fn cached_ok(path: &Path, integrity: &Integrity) -> Result<bool, ProvisionError> {
    let mut file = match fs_err::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(io("open", path)(error)),
    };
    let actual = sha512_of(&mut file, None).map_err(io("read", path))?;
    Ok(&actual == integrity)
}

fn download(registry: &str, package: &NpmPackage, dest: &Path) -> Result<(), ProvisionError> {
    let url = tarball_url(registry, package);
    let mut reader: Box<dyn Read> = match url.strip_prefix("file://") {
        Some(path) => Box::new(fs_err::File::open(path).map_err(io("open", Path::new(path)))?),
        None => {
            let response = agent()
                .get(&url)
                .call()
                .map_err(|source| ProvisionError::Download {
                    package: package.id(),
                    url: url.clone(),
                    source: Box::new(source),
                })?;
            Box::new(response.into_body().into_reader())
        }
    };
    let temp = dest.with_extension(format!("partial-{}", std::process::id()));
    let result = (|| {
        let mut file = fs_err::File::create(&temp).map_err(io("create", &temp))?;
        let actual = sha512_of(&mut reader, Some(&mut file)).map_err(io("download into", &temp))?;
        if actual != package.integrity {
            return Err(ProvisionError::IntegrityMismatch {
                package: package.id(),
                url: url.clone(),
                expected: package.integrity.to_string(),
                actual: actual.to_string(),
            });
        }
        file.sync_all().map_err(io("sync", &temp))?;
        fs_err::rename(&temp, dest).map_err(io("rename into", dest))
    })();
    if result.is_err() {
        let _ = fs_err::remove_file(&temp);
    }
    result
}

/// Makes sure every tarball of `plan` is in `cache` (verified), downloading
/// what is missing from `registry`. Returns the cached paths in
/// [`Plan::packages`] order. `progress(message)` hears about downloads.
pub fn fetch(
    plan: &Plan,
    registry: &str,
    cache: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<PathBuf>, ProvisionError> {
    if !crate::download::is_allowed_url(registry) {
        return Err(ProvisionError::RegistryUrl {
            url: registry.to_owned(),
        });
    }
    fs_err::create_dir_all(cache).map_err(io("create", cache))?;
    let mut paths = Vec::new();
    let (mut cached, mut fetched) = (0usize, 0usize);
    for package in plan.packages() {
        let path = cache.join(format!("{}.tgz", package.integrity.hex()));
        if cached_ok(&path, &package.integrity)? {
            cached += 1;
        } else {
            let _ = fs_err::remove_file(&path);
            if package.path.matches("node_modules/").count() == 1 {
                progress(&format!("downloading {}", package.id()));
            }
            download(registry, package, &path)?;
            fetched += 1;
        }
        paths.push(path);
    }
    progress(&format!(
        "{} npm tarballs verified ({cached} from the cache, {fetched} downloaded)",
        cached + fetched
    ));
    Ok(paths)
}
