//! Secrets (API keys, HMAC secrets) read from files and read again when the file
//! changes, so rotating a key needs no restart: write the new key to the file (a
//! Kubernetes Secret volume does this on update) and the next call uses it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::error::{Error, Result};

/// A secret held in a file: its first line, trimmed.
#[derive(Debug)]
pub struct SecretFile {
    path: PathBuf,
    cached: Mutex<Option<Cached>>,
}

#[derive(Debug, Clone)]
struct Cached {
    modified: Option<SystemTime>,
    len: u64,
    value: String,
}

impl SecretFile {
    /// Opens `path` and reads it once, so a missing or empty file stops start-up.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let s = SecretFile { path: path.as_ref().to_path_buf(), cached: Mutex::new(None) };
        s.get()?;
        Ok(s)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current secret: re-read when the file's modification time or size changed.
    pub fn get(&self) -> Result<String> {
        let error = |problem: String| Error::Secret { path: self.path.display().to_string(), problem };
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| error(format!("{e}; create it with the key on its first line (mode 0600)")))?;
        let (modified, len) = (meta.modified().ok(), meta.len());
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cached.as_ref()
            && c.modified == modified
            && c.len == len
        {
            return Ok(c.value.clone());
        }
        let text = std::fs::read_to_string(&self.path).map_err(|e| error(e.to_string()))?;
        let value = text.lines().next().unwrap_or("").trim().to_string();
        if value.is_empty() {
            return Err(error("is empty; put the key on its first line".into()));
        }
        if cached.is_some() {
            tracing::info!(path = %self.path.display(), "secret file changed; using the new secret");
        }
        *cached = Some(Cached { modified, len, value: value.clone() });
        Ok(value)
    }

    /// Forgets the cached value, so the next [`SecretFile::get`] reads the file even if
    /// its time stamp did not move (after the target refused the key).
    pub fn invalidate(&self) {
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_secret_is_read_again_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        assert!(SecretFile::open(&path).unwrap_err().to_string().contains("create it with the key"));
        std::fs::write(&path, "first\n").unwrap();
        let s = SecretFile::open(&path).unwrap();
        assert_eq!(s.get().unwrap(), "first");
        std::fs::write(&path, "second-and-longer\n").unwrap();
        assert_eq!(s.get().unwrap(), "second-and-longer");
        std::fs::write(&path, "\n").unwrap();
        assert!(s.get().unwrap_err().to_string().contains("is empty"));
    }
}
