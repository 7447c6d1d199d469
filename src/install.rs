//! `--install PATH`: copy this very binary into a volume the workload
//! container shares, so an image without peergate can run `peergate run`.
//! The peergate image is `FROM scratch` (no shell, no `cp`), so the copy is
//! peergate's own: a temporary file beside PATH, mode 0755, synced, then
//! renamed over PATH, so a container that starts meanwhile sees the old
//! binary or the new one, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum InstallError {
    #[error("cannot find this peergate binary to copy: {0}")]
    Own(io::Error),
    #[error(
        "cannot install peergate at {}: {source} (is its directory a writable volume, such as \
         an emptyDir mounted in both containers?)",
        path.display()
    )]
    Write { path: PathBuf, source: io::Error },
}

/// Copies the running binary to `to`; returns its size.
pub fn install_self(to: &Path) -> Result<u64, InstallError> {
    let own = std::env::current_exe().map_err(InstallError::Own)?;
    copy_executable(&own, to)
}

/// Copies `from` to `to` as an executable, atomically.
pub fn copy_executable(from: &Path, to: &Path) -> Result<u64, InstallError> {
    let write = |source| InstallError::Write {
        path: to.to_owned(),
        source,
    };
    let name = to
        .file_name()
        .ok_or_else(|| write(io::Error::other("the path names no file")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = to.with_file_name(tmp_name);
    let result = (|| {
        let mut source = File::open(from)?;
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o755)
            .open(&tmp)?;
        let size = io::copy(&mut source, &mut out)?;
        out.sync_all()?;
        drop(out);
        fs::rename(&tmp, to)?;
        if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(size)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(write)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::handoff::test_dir::TestDir;

    #[test]
    fn the_copy_is_an_executable_replaced_whole() {
        let dir = TestDir::new();
        let from = dir.join("src");
        fs::write(&from, b"#!/bin/sh\necho installed\n").unwrap();
        let to = dir.join("peergate");
        fs::write(&to, b"old").unwrap();
        assert_eq!(copy_executable(&from, &to).unwrap(), 25);
        assert_eq!(fs::read(&to).unwrap(), fs::read(&from).unwrap());
        let mode = fs::metadata(&to).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let out = std::process::Command::new(&to).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "installed\n");
        // Nothing is left beside it.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn a_missing_directory_is_named_and_leaves_nothing() {
        let dir = TestDir::new();
        let to = dir.join("no-such-dir").join("peergate");
        let err = copy_executable(&dir.join("whatever"), &to).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no-such-dir/peergate"), "{text}");
        assert!(text.contains("emptyDir"), "{text}");
        let real = dir.join("src");
        fs::write(&real, b"x").unwrap();
        let err = copy_executable(&real, &to).unwrap_err().to_string();
        assert!(err.contains("No such file"), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
