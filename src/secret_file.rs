//! Secrets careflow generates for itself and keeps in the data dir: the JWT secret
//! (`jwt_secret`), the audit signing key (`audit_signing_key`) and the master key
//! (`master_key`), each created once and readable by the owner only.
//!
//! It sits at the crate's top, beside `config`, because its users live in different layers
//! (`inbound::http::auth`, `operations::audit`, `operations::personal_data`) and none of them
//! may import the others. It owns how such a file is written and read, not what the secret
//! means: each caller generates its own text and parses what it reads back.

use std::io::Write;
use std::path::Path;

/// The trimmed text of the secret file at `path`; `None` when it is missing or empty (a
/// file left empty by a crash counts as absent, so it is created again).
///
/// # Errors
/// The file exists but cannot be read.
pub fn read(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_owned())),
        Ok(_) => Ok(None),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// The secret in `path`, created with `generate()` (mode 0600, its directory too) when
/// absent.
///
/// The text is written under a temporary name, synced, and hard-linked into place: a hard link
/// never replaces a file, so two processes starting at once (`serve` and `token issue`) agree
/// on one secret, the loser reading the winner's, and neither ever reads a half-written file.
///
/// # Errors
/// The directory or the file cannot be created, written or read; `InvalidData` when another
/// process's file is empty.
pub fn load_or_create(path: &Path, generate: impl FnOnce() -> String) -> std::io::Result<String> {
    if let Some(text) = read(path)? {
        return Ok(text);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = generate();
    let temp = path.with_extension(format!("tmp.{}", std::process::id()));
    write_private(&temp, &text)?;
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(text),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            read(path)?.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is empty")
            })
        }
        Err(error) => Err(error),
    }
}

/// Writes `text` to `path`, readable and writable by the owner only (0600 on Unix), and
/// syncs it before the caller links it into place.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_created_once_private_and_read_back_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("secret");
        let first = load_or_create(&path, || "abc".into()).unwrap();
        let second = load_or_create(&path, || unreachable!("the file exists")).unwrap();
        assert_eq!((first.as_str(), second.as_str()), ("abc", "abc"));
        std::fs::write(&path, "  def\n").unwrap();
        assert_eq!(read(&path).unwrap().as_deref(), Some("def"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn an_empty_file_is_absent_but_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "\n").unwrap();
        assert_eq!(read(&path).unwrap(), None);
        let error = load_or_create(&path, || "abc".into()).unwrap_err();
        assert_eq!(error.to_string(), "the file is empty");
    }
}
