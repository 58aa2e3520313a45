//! The TLS client configuration that verifies certificates: the system's trust roots
//! (rustls-native-certs) plus the extra roots of `[smtp.outbound.security] ca_file`. Used towards a
//! smarthost with `tls = "verify"`, for the HTTPS fetch of MTA-STS policies, and towards MX hosts under an
//! MTA-STS policy. (Opportunistic TLS, which verifies nothing, is `tls.rs`'s.)
//!
//! Reading the system's roots costs milliseconds and files, so a configuration is built once per `ca_file`
//! (and its size and modification time, so a replaced file is read again) and shared.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

type Key = Option<(PathBuf, u64, Option<SystemTime>)>;

/// Configurations built so far, by trust set.
type Built = Mutex<Vec<(Key, Arc<rustls::ClientConfig>)>>;

fn cache() -> &'static Built {
    static CACHE: OnceLock<Built> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// The verifying client configuration for these extra roots. The error names the file and the reason.
pub fn verifying_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let key: Key = match ca_file {
        Some(p) => {
            let meta = std::fs::metadata(p).map_err(|e| format!("ca_file {}: {e}", p.display()))?;
            Some((p.to_path_buf(), meta.len(), meta.modified().ok()))
        }
        None => None,
    };
    if let Some((_, c)) = cache().lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(k, _)| *k == key) {
        return Ok(c.clone());
    }
    let mut roots = rustls::RootCertStore::empty();
    // The system's roots; a machine without any still verifies against ca_file.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(p) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(p)
            .map_err(|e| format!("ca_file {}: {e}", p.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("ca_file {}: {e}", p.display()))?;
        if certs.is_empty() {
            return Err(format!("ca_file {}: no certificate in the file", p.display()));
        }
        for c in certs {
            roots.add(c).map_err(|e| format!("ca_file {}: {e}", p.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = Arc::new(config);
    let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
    // A handful of distinct files in a process's life; bounded all the same.
    if c.len() >= 16 {
        c.remove(0);
    }
    c.push((key, config.clone()));
    Ok(config)
}

/// A label of the trust set, for connection-cache keys (connections verified against different roots are
/// never shared).
pub fn label(ca_file: Option<&Path>) -> String {
    ca_file.map(|p| p.display().to_string()).unwrap_or_default()
}
