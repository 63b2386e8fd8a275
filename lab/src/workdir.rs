//! Work directories removed on drop.

use std::path::{Path, PathBuf};

use crate::next_number;

/// A directory under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    pub fn new(tag: &str) -> WorkDir {
        let path = std::env::temp_dir().join(format!(
            "xdpgw-{tag}-{}-{}",
            std::process::id(),
            next_number()
        ));
        std::fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        WorkDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("cannot remove {}: {e}", self.path.display());
        }
    }
}
