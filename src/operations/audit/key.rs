//! The server's Ed25519 signing key: `<data_dir>/audit_signing_key`, 32 random bytes in hex,
//! created (mode 0600) on first use, like the JWT secret.
//!
//! The same key signs checkpoints and export manifests, so an auditor who has recorded the
//! public key once (`careflow audit key`) can check both offline. On PostgreSQL each node
//! has its own data dir and so its own key; every checkpoint carries the key that signed it.

use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::RngCore;

use super::AuditError;
use crate::config::Config;
use crate::secret_file;

/// Where the signing key lives.
pub fn key_path(config: &Config) -> PathBuf {
    config.data_dir.join("audit_signing_key")
}

/// The signing key, created when absent.
///
/// [`secret_file::load_or_create`] makes two processes starting at once agree on one key.
///
/// # Errors
/// [`AuditError::File`] when the data dir or the file cannot be read or written;
/// [`AuditError::Format`] when the file does not hold 64 hex digits.
pub fn load_or_create(config: &Config) -> Result<SigningKey, AuditError> {
    let path = key_path(config);
    let text = secret_file::load_or_create(&path, || {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        hex::encode(seed)
    })
    .map_err(|e| AuditError::file(&path, e))?;
    parse_seed(&path, &text)
}

/// The signing key if the file exists.
///
/// # Errors
/// As [`load_or_create`].
pub fn load(path: &Path) -> Result<Option<SigningKey>, AuditError> {
    match secret_file::read(path).map_err(|e| AuditError::file(path, e))? {
        Some(text) => parse_seed(path, &text).map(Some),
        None => Ok(None),
    }
}

fn parse_seed(path: &Path, text: &str) -> Result<SigningKey, AuditError> {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text, &mut seed)
        .map_err(|_| AuditError::Format(format!("{} is not 64 hex digits", path.display())))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Parses a public key given as 64 hex digits.
///
/// # Errors
/// [`AuditError::Format`].
pub fn parse_public(text: &str) -> Result<VerifyingKey, AuditError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes)
        .map_err(|_| AuditError::Format(format!("public key {text:?} is not 64 hex digits")))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| AuditError::Format(format!("{text:?} is not an Ed25519 public key")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = std::collections::BTreeMap::new();
        env.insert(
            "CAREFLOW_DATA_DIR".to_string(),
            dir.path().join("data").display().to_string(),
        );
        let config = Config::from_sources(None, None, &env).unwrap();
        let first = load_or_create(&config).unwrap();
        let second = load_or_create(&config).unwrap();
        assert_eq!(first.to_bytes(), second.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key_path(&config))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let public = hex::encode(first.verifying_key().to_bytes());
        assert_eq!(parse_public(&public).unwrap(), first.verifying_key());
        assert!(parse_public("zz").is_err());
    }
}
