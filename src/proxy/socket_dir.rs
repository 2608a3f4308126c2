//! The per-container directory that holds the proxy socket on the host: created before
//! the container (so it can be bind-mounted), removed with everything in it when the
//! execution ends.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::proxy::{ProxyError, SOCKET_NAME};

/// Default base directory for socket directories.
pub fn default_base() -> PathBuf {
    PathBuf::from("/run/code-executor")
}

/// A socket directory; dropping it removes it.
#[derive(Debug)]
pub struct SocketDir {
    path: PathBuf,
}

impl SocketDir {
    /// Creates `<base>/<key>` (mode 0711 for the base, 0755 for the directory: the
    /// sandbox user must be able to reach the socket, no one can list the base).
    pub fn create(base: &Path, key: &str) -> Result<Self, ProxyError> {
        let err = |path: &Path, source| ProxyError::SocketDir {
            path: path.display().to_string(),
            source,
        };
        if !base.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(base)
                .map_err(|e| err(base, e))?;
        }
        std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| err(base, e))?;
        let path = base.join(key);
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .map_err(|e| err(&path, e))?;
        // The umask may have narrowed the mode.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| err(&path, e))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn socket(&self) -> PathBuf {
        self.path.join(SOCKET_NAME)
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove socket directory");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_is_created_reachable_and_removed_on_drop() {
        let base = std::env::temp_dir().join(format!("ce-sockdir-{}", std::process::id()));
        let dir = SocketDir::create(&base, "exec1").unwrap();
        let path = dir.path().to_owned();
        assert!(path.is_dir());
        assert_eq!(
            std::fs::metadata(&base).unwrap().permissions().mode() & 0o777,
            0o711
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o755
        );
        std::fs::write(dir.socket(), b"x").unwrap();
        drop(dir);
        assert!(!path.exists());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn an_existing_directory_is_refused_not_reused() {
        let base = std::env::temp_dir().join(format!("ce-sockdir-dup-{}", std::process::id()));
        let _first = SocketDir::create(&base, "same").unwrap();
        assert!(SocketDir::create(&base, "same").is_err());
        drop(_first);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
