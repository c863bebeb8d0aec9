//! A PostgreSQL `database_url`, read once into what a connection needs: tokio-postgres' own
//! settings and the TLS connector its `sslmode` asks for.
//!
//! Every connection careflow opens to PostgreSQL (the event store's pool and writer, the side
//! stores' pools and lock sessions, the audit tools, the bench) is made from a [`PgConnect`],
//! so `sslmode` means the same everywhere. A database across a network must not be read or
//! written in clear text, and a hospital's database is often served with a certificate of its
//! own CA.
//!
//! `sslmode` as libpq defines it (tokio-postgres knows only the first three, so careflow reads
//! `sslmode` and `sslrootcert` itself and hands tokio-postgres the rest of the URL):
//!
//! | sslmode | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (the default) | when the server offers it | not checked; the chain is when `sslrootcert` is given |
//! | `require` | always | not checked; the chain is when `sslrootcert` is given |
//! | `verify-ca` | always | signed by `sslrootcert`'s CAs |
//! | `verify-full` | always | signed by `sslrootcert`'s CAs and issued for the host connected to |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the system's trusted roots;
//! `verify-ca` and `verify-full` need it (libpq's fallback, `~/.postgresql/root.crt`, is a
//! client user's file, not a service's). `allow` and client certificates (`sslcert`,
//! `sslkey`) are not supported and are refused.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::Client;
use tokio_postgres::config::SslMode as WireMode;

use crate::store::postgres::describe_pg_error;
use crate::tls::{CaCertificates, CaFileError};

/// The TLS connector of every PostgreSQL connection (also when `sslmode=disable`: then
/// tokio-postgres never calls it).
pub type PgTls = tokio_postgres_rustls::MakeRustlsConnect;

/// What `sslmode` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, PgUrlError> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(PgUrlError::SslMode(other.to_owned())),
        }
    }

    fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Why a `database_url` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PgUrlError {
    /// Occurs when tokio-postgres cannot parse the URL (its other parameters).
    #[error("database_url is not a PostgreSQL URL")]
    Url(#[source] tokio_postgres::Error),
    /// Occurs on an `sslmode` other than the five supported.
    #[error(
        "database_url: sslmode {0:?} is not supported (use disable, prefer, require, verify-ca or verify-full)"
    )]
    SslMode(String),
    /// Occurs on `verify-ca` or `verify-full` without `sslrootcert`.
    #[error(
        "database_url: sslmode={mode} needs sslrootcert (a PEM file of the CA certificates, or system for the system's trusted roots)"
    )]
    NoRootCert { mode: &'static str },
    /// Occurs when the `sslrootcert` file cannot be used.
    #[error("database_url: sslrootcert cannot be used")]
    RootCert(#[source] CaFileError),
    /// Occurs on `sslrootcert=system` when the system's trust store holds no certificate.
    #[error(
        "database_url: sslrootcert=system, but the system's trusted roots cannot be loaded: {0}"
    )]
    SystemRoots(String),
    /// Occurs when rustls refuses the settings (it has no protocol version to offer).
    #[error("database_url: the TLS settings cannot be built")]
    Tls(#[source] rustls::Error),
}

/// A parsed `database_url` and its TLS connector. Cheap to clone.
#[derive(Clone)]
pub struct PgConnect {
    config: tokio_postgres::Config,
    tls: PgTls,
    mode: SslMode,
}

impl std::fmt::Debug for PgConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio-postgres' `Config` redacts the password itself.
        f.debug_struct("PgConnect")
            .field("config", &self.config)
            .field("sslmode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl PgConnect {
    /// Reads `url` (a `postgres://` URL or `key=value` pairs, as libpq takes), its `sslmode`
    /// and `sslrootcert` included; reads the CA file now, so a bad one is refused before any
    /// connection is tried.
    ///
    /// # Errors
    /// [`PgUrlError`].
    pub fn from_url(url: &str) -> Result<Self, PgUrlError> {
        let TlsParams {
            rest,
            sslmode,
            sslrootcert,
        } = TlsParams::take(url);
        let mode = match sslmode {
            Some(value) => SslMode::parse(&value)?,
            None => SslMode::Prefer,
        };
        let mut config: tokio_postgres::Config = rest.parse().map_err(PgUrlError::Url)?;
        config.ssl_mode(match mode {
            SslMode::Disable => WireMode::Disable,
            SslMode::Prefer => WireMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireMode::Require,
        });
        let roots = match sslrootcert.as_deref() {
            None | Some("") => None,
            Some("system") => Some(system_roots()?),
            Some(path) => Some(
                CaCertificates::read(std::path::Path::new(path))
                    .map_err(PgUrlError::RootCert)?
                    .roots(),
            ),
        };
        let tls = PgTls::new(client_config(mode, roots)?);
        Ok(Self { config, tls, mode })
    }

    /// What `sslmode` asked for.
    pub fn sslmode(&self) -> SslMode {
        self.mode
    }

    /// tokio-postgres' settings, for the caller's own additions (`options`, timeouts, the
    /// application name).
    pub fn config_mut(&mut self) -> &mut tokio_postgres::Config {
        &mut self.config
    }

    /// A connection whose connection task runs on the current Tokio runtime; when it ends
    /// with an error, a warning names `what`.
    ///
    /// # Errors
    /// Connecting fails: the server cannot be reached, refuses the login, or the TLS
    /// handshake fails (a certificate `sslmode` does not accept).
    pub async fn connect(&self, what: &'static str) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(self.tls.clone()).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(error = %describe_pg_error(&error), connection = what, "postgres connection ended");
            }
        });
        Ok(client)
    }

    /// A connection pool's manager on these settings.
    pub fn manager(&self, config: deadpool_postgres::ManagerConfig) -> deadpool_postgres::Manager {
        deadpool_postgres::Manager::from_config(self.config.clone(), self.tls.clone(), config)
    }
}

/// The system's trusted roots (the store reqwest's HTTPS clients use too).
fn system_roots() -> Result<RootCertStore, PgUrlError> {
    let loaded = rustls_native_certs::load_native_certs();
    if loaded.certs.is_empty() {
        let errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
        return Err(PgUrlError::SystemRoots(if errors.is_empty() {
            "none found".to_owned()
        } else {
            errors.join("; ")
        }));
    }
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(loaded.certs);
    Ok(roots)
}

/// The rustls settings `mode` and the roots call for (the table in the module docs).
fn client_config(mode: SslMode, roots: Option<RootCertStore>) -> Result<ClientConfig, PgUrlError> {
    let provider = crate::tls::provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(PgUrlError::Tls)?;
    let roots = match (mode, roots) {
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(PgUrlError::NoRootCert { mode: mode.name() });
        }
        // Chain and host name: rustls' own verifier.
        (SslMode::VerifyFull, Some(roots)) => {
            return Ok(builder.with_root_certificates(roots).with_no_client_auth());
        }
        (_, roots) => roots.map(Arc::new),
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnly { roots, provider }))
        .with_no_client_auth())
}

/// The verifier of every mode but `verify-full`: the chain against `roots` when there are
/// any, never the host name (libpq's `require` and `verify-ca`). The handshake's signatures are
/// always checked, so the server still proves it holds the certificate's key.
#[derive(Debug)]
struct ChainOnly {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let certificate = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &certificate,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A URL with `sslmode` and `sslrootcert` taken out (decoded), the rest left as written.
#[derive(Debug, PartialEq)]
struct TlsParams {
    rest: String,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

impl TlsParams {
    fn take(url: &str) -> Self {
        let mut params = TlsParams {
            rest: url.to_owned(),
            sslmode: None,
            sslrootcert: None,
        };
        // The same test tokio-postgres makes to tell a URL from key=value pairs.
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            params.take_from_query();
        } else {
            params.take_from_pairs();
        }
        params
    }

    fn keep(&mut self, key: &str, value: String) -> bool {
        match key {
            "sslmode" => self.sslmode = Some(value),
            "sslrootcert" => self.sslrootcert = Some(value),
            _ => return false,
        }
        true
    }

    /// `postgres://…?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&…`.
    fn take_from_query(&mut self) {
        let url = std::mem::take(&mut self.rest);
        let Some((base, query)) = url.split_once('?') else {
            self.rest = url;
            return;
        };
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8_lossy()
                .into_owned()
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !self.keep(&decode(key), decode(value)) {
                kept.push(pair);
            }
        }
        self.rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
    }

    /// `host=db sslmode=verify-full sslrootcert='/etc/ca dir/ca.pem'`: values bare or in
    /// single quotes, a backslash escaping the next character, as libpq reads them. Text that
    /// does not follow that shape is left whole for tokio-postgres to refuse.
    fn take_from_pairs(&mut self) {
        let text = std::mem::take(&mut self.rest);
        let mut chars = text.char_indices().peekable();
        let mut kept = String::new();
        loop {
            while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
            let Some(&(start, _)) = chars.peek() else {
                break;
            };
            let mut key = String::new();
            while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace() && *c != '=') {
                key.push(c);
            }
            while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
            if chars.next_if(|(_, c)| *c == '=').is_none() {
                self.rest = text;
                return;
            }
            while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
            let quoted = chars.next_if(|(_, c)| *c == '\'').is_some();
            let mut value = String::new();
            let mut closed = !quoted;
            while let Some((_, c)) = chars.peek().copied() {
                if !quoted && c.is_whitespace() {
                    break;
                }
                chars.next();
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '\'' if quoted => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                self.rest = text;
                return;
            }
            let end = chars.peek().map_or(text.len(), |(index, _)| *index);
            if !self.keep(&key, value) {
                kept.push_str(&text[start..end]);
                kept.push(' ');
            }
        }
        self.rest = kept.trim_end().to_owned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(url: &str) -> (String, Option<String>, Option<String>) {
        let params = TlsParams::take(url);
        (params.rest, params.sslmode, params.sslrootcert)
    }

    #[test]
    fn sslmode_and_sslrootcert_are_taken_from_a_url_and_the_rest_is_left_as_written() {
        assert_eq!(
            taken(
                "postgres://u:p%40ss@db:5432/care?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca%20dir%2Fca.pem"
            ),
            (
                "postgres://u:p%40ss@db:5432/care?application_name=x".into(),
                Some("verify-full".into()),
                Some("/etc/ca dir/ca.pem".into())
            )
        );
        assert_eq!(
            taken("postgresql://db/care?sslmode=require"),
            ("postgresql://db/care".into(), Some("require".into()), None)
        );
        assert_eq!(
            taken("postgres://db/care"),
            ("postgres://db/care".into(), None, None)
        );
    }

    #[test]
    fn sslmode_and_sslrootcert_are_taken_from_key_value_pairs() {
        assert_eq!(
            taken(
                "host=db  sslmode = verify-ca user=care sslrootcert='/etc/ca dir/it\\'s.pem' dbname=x"
            ),
            (
                "host=db user=care dbname=x".into(),
                Some("verify-ca".into()),
                Some("/etc/ca dir/it's.pem".into())
            )
        );
        assert_eq!(
            taken("host=db password='a b'"),
            ("host=db password='a b'".into(), None, None)
        );
        // Not pairs at all: left whole, for tokio-postgres to refuse.
        assert_eq!(taken("host"), ("host".into(), None, None));
        assert_eq!(
            taken("sslmode='require"),
            ("sslmode='require".into(), None, None)
        );
    }

    #[test]
    fn every_libpq_mode_is_read_and_the_wire_mode_follows_it() {
        let wire = |url: &str| {
            let connect = PgConnect::from_url(url).unwrap();
            (connect.sslmode(), connect.config.get_ssl_mode())
        };
        assert_eq!(wire("postgres://db/x"), (SslMode::Prefer, WireMode::Prefer));
        assert_eq!(
            wire("postgres://db/x?sslmode=disable"),
            (SslMode::Disable, WireMode::Disable)
        );
        assert_eq!(
            wire("host=db sslmode=require"),
            (SslMode::Require, WireMode::Require)
        );
        assert_eq!(
            wire("postgres://db/x?sslmode=verify-full&sslrootcert=system"),
            (SslMode::VerifyFull, WireMode::Require)
        );
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_saying_what_to_fix() {
        let refused =
            |url: &str| crate::error_chain::error_chain(&PgConnect::from_url(url).unwrap_err());
        assert!(
            refused("postgres://db/x?sslmode=allow").contains("sslmode \"allow\" is not supported"),
            "{}",
            refused("postgres://db/x?sslmode=allow")
        );
        assert!(refused("postgres://db/x?sslmode=verify-full").contains("needs sslrootcert"));
        assert!(refused("host=db sslmode=verify-ca").contains("needs sslrootcert"));
        let missing =
            refused("postgres://db/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem");
        assert!(
            missing.contains(
                "sslrootcert cannot be used: the CA file /nonexistent/ca.pem cannot be read: "
            ),
            "{missing}"
        );
        assert!(refused("postgres://db/x?sslcert=/c.pem").contains("not a PostgreSQL URL"));
    }
}
