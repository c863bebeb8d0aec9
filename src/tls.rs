//! TLS for careflow's outgoing connections: the one reader of CA files (PEM), the one crypto
//! provider, and the HTTP client builder the payer and Odoo clients start from.
//!
//! A hospital's payer gateway, its Odoo and its PostgreSQL are often served with certificates
//! of the hospital's own CA, which the system's trust store may not hold. Each takes a CA file
//! (`payer_tls_ca_file`, `odoo_tls_ca_file`, `sslrootcert` in `database_url`); reading it is
//! done here once, so a file that cannot be read or holds no usable certificate is refused the
//! same way everywhere, with its path and the cause.
//!
//! It sits at the crate's top, beside `error_chain`, because its users live in two layers
//! (`outbound` for HTTP, `store` for PostgreSQL).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why a CA file was refused.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// Occurs when the file cannot be opened or read (missing, no permission).
    #[error("the CA file {} cannot be read", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Occurs when the file is not PEM (a section without its END line, bad base64).
    #[error("the CA file {} is not PEM", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// Occurs when the file is PEM but holds no `CERTIFICATE` section (a key alone, say).
    #[error("the CA file {} holds no certificate", path.display())]
    Empty { path: PathBuf },
    /// Occurs when a `CERTIFICATE` section is not an X.509 certificate that can be trusted.
    #[error("the CA file {} holds a certificate that cannot be used as a trust anchor", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// The certificates of a CA file, each checked to be usable as a trust anchor.
#[derive(Debug, Clone)]
pub struct CaCertificates(Vec<CertificateDer<'static>>);

impl CaCertificates {
    /// Reads every `CERTIFICATE` of the PEM file at `path` (other sections are skipped).
    ///
    /// # Errors
    /// [`CaFileError`], naming `path`.
    pub fn read(path: &Path) -> Result<Self, CaFileError> {
        let bytes = std::fs::read(path).map_err(|source| CaFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let certificates = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| match source {
                rustls::pki_types::pem::Error::NoItemsFound => CaFileError::Empty {
                    path: path.to_owned(),
                },
                source => CaFileError::Pem {
                    path: path.to_owned(),
                    source,
                },
            })?;
        if certificates.is_empty() {
            return Err(CaFileError::Empty {
                path: path.to_owned(),
            });
        }
        let mut roots = RootCertStore::empty();
        for certificate in &certificates {
            roots
                .add(certificate.clone())
                .map_err(|source| CaFileError::Invalid {
                    path: path.to_owned(),
                    source,
                })?;
        }
        Ok(Self(certificates))
    }

    /// The certificates as rustls trusts them.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        // Every one was added once in `read`: none is refused here.
        roots.add_parsable_certificates(self.0.iter().cloned());
        roots
    }
}

/// The crypto provider of every TLS connection careflow opens itself: *ring*, the one reqwest
/// uses. Named explicitly because the dependency tree compiles rustls with both *ring* and
/// aws-lc-rs, and rustls then has no process default to pick.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A reqwest client builder that trusts the system's roots and, when `ca_file` is set, the
/// certificates of that file as well (a private CA is added to the roots, it does not replace
/// them). The payer and Odoo clients start from it and add their timeouts.
///
/// # Errors
/// [`CaFileError`] for a CA file that cannot be used.
pub fn http_client(ca_file: Option<&Path>) -> Result<reqwest::ClientBuilder, CaFileError> {
    let mut builder = reqwest::Client::builder();
    if let Some(path) = ca_file {
        let ca = CaCertificates::read(path)?;
        for certificate in &ca.0 {
            let certificate =
                reqwest::Certificate::from_der(certificate.as_ref()).map_err(|error| {
                    CaFileError::Invalid {
                        path: path.to_owned(),
                        source: rustls::Error::General(error.to_string()),
                    }
                })?;
            builder = builder.add_root_certificate(certificate);
        }
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_ca_file_that_cannot_be_used_is_refused_naming_the_file_and_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let error = CaCertificates::read(&missing).unwrap_err();
        assert!(matches!(error, CaFileError::Read { .. }), "{error:?}");
        assert!(
            crate::error_chain::error_chain(&error).contains("missing.pem cannot be read: "),
            "{error}"
        );

        let key_only = write(
            dir.path(),
            "key.pem",
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
        );
        assert!(matches!(
            CaCertificates::read(&key_only),
            Err(CaFileError::Empty { .. })
        ));
        let text = write(dir.path(), "text.pem", "not a certificate\n");
        assert!(matches!(
            CaCertificates::read(&text),
            Err(CaFileError::Empty { .. })
        ));
        let cut = write(dir.path(), "cut.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");
        assert!(matches!(
            CaCertificates::read(&cut),
            Err(CaFileError::Pem { .. })
        ));
        let junk = write(
            dir.path(),
            "junk.pem",
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        );
        let error = CaCertificates::read(&junk).unwrap_err();
        assert!(matches!(error, CaFileError::Invalid { .. }), "{error:?}");
        assert!(http_client(Some(&junk)).is_err());
        assert!(http_client(None).is_ok());
    }
}
