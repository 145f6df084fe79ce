//! What ACME leaves in the state directory, one folder per CA directory so staging and
//! production never mix:
//!
//! ```text
//! <state-dir>/acme/<directory host and path>/account.json         0600
//! <state-dir>/acme/<directory host and path>/account.json.replaced-<time> (one the CA forgot)
//! <state-dir>/acme/<directory host and path>/sites/<site>/cert.pem 0644 (chain, leaf first)
//! <state-dir>/acme/<directory host and path>/sites/<site>/key.pem  0600
//! ```
//!
//! Every file is written to a temporary name in the same folder, flushed, then renamed over the
//! old one, so a crash leaves the old file or the new one, never half of one.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub struct Storage {
    root: PathBuf,
}

impl Storage {
    /// The folder for `directory_url` under `state_dir`.
    pub fn new(state_dir: &Path, directory_url: &str) -> Self {
        let slug: String = directory_url
            .trim_start_matches("https://")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self {
            root: state_dir.join("acme").join(slug),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn account_path(&self) -> PathBuf {
        self.root.join("account.json")
    }

    fn site_dir(&self, site: &str) -> PathBuf {
        self.root.join("sites").join(site)
    }

    pub fn load_account(&self) -> std::io::Result<Option<Vec<u8>>> {
        read_optional(&self.account_path())
    }

    pub fn save_account(&self, json: &[u8]) -> std::io::Result<()> {
        write_atomic(&self.account_path(), json, 0o600)
    }

    /// Move `account.json` aside as `account.json.replaced-<UTC time>` (where it went, if it
    /// was there), so the next order registers a new account.
    pub fn retire_account(&self) -> std::io::Result<Option<PathBuf>> {
        let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        let kept = self.root.join(format!("account.json.replaced-{stamp}"));
        match std::fs::rename(self.account_path(), &kept) {
            Ok(()) => Ok(Some(kept)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The stored chain and key of `site`, PEM.
    pub fn load_certificate(&self, site: &str) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let dir = self.site_dir(site);
        match (
            read_optional(&dir.join("cert.pem"))?,
            read_optional(&dir.join("key.pem"))?,
        ) {
            (Some(c), Some(k)) => Ok(Some((c, k))),
            _ => Ok(None),
        }
    }

    /// Key first: a crash between the two renames leaves a key that does not match the old
    /// chain, which loading refuses (and orders anew), rather than a chain without its key.
    pub fn save_certificate(&self, site: &str, chain: &[u8], key: &[u8]) -> std::io::Result<()> {
        let dir = self.site_dir(site);
        write_atomic(&dir.join("key.pem"), key, 0o600)?;
        write_atomic(&dir.join("cert.pem"), chain, 0o644)
    }
}

fn read_optional(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Write `bytes` to `path` through a temporary file and a rename; folders are created 0700.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().expect("a file inside a folder");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let name = path.file_name().expect("a file name").to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The mode above is filtered by the umask; say it again.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_replaced_whole_with_their_modes() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::new(dir.path(), "https://acme.test:14000/dir");
        assert!(s.root().ends_with("acme/acme.test_14000_dir"));
        assert!(s.load_account().unwrap().is_none());
        s.save_account(b"{}").unwrap();
        let kept = s.retire_account().unwrap().unwrap();
        assert!(s.load_account().unwrap().is_none());
        assert_eq!(std::fs::read(&kept).unwrap(), b"{}");
        assert!(kept.to_string_lossy().contains("account.json.replaced-20"));
        assert!(s.retire_account().unwrap().is_none());
        s.save_account(b"{}").unwrap();
        s.save_certificate("api", b"chain", b"key").unwrap();
        s.save_certificate("api", b"chain2", b"key2").unwrap();
        assert_eq!(
            s.load_certificate("api").unwrap(),
            Some((b"chain2".to_vec(), b"key2".to_vec()))
        );
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(s.root().join("account.json")), 0o600);
        assert_eq!(mode(s.root().join("sites/api/key.pem")), 0o600);
        assert_eq!(mode(s.root().join("sites/api/cert.pem")), 0o644);
        assert_eq!(mode(s.root().join("sites")), 0o700);
        let leftovers: Vec<_> = std::fs::read_dir(s.root().join("sites/api"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
