//! Atomic replacement of the hostfile: readers see the old file or the whole
//! new one, never a prefix.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::HandoffError;

/// Temporary names tried before giving up on finding a free one.
const TEMP_ATTEMPTS: u32 = 64;

/// Distinguishes temporary files of one process (pid distinguishes processes).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Check at startup that `path` can later be written by [`write_atomic`]:
/// it names a file (not a directory, no trailing `/`), its directory exists
/// and is a directory, an existing target is a regular file, and a file can be
/// created in the directory (a temporary file is created and removed again,
/// which catches read-only mounts and missing permissions).
pub fn check_destination(path: &Path) -> Result<(), HandoffError> {
    inspect_destination(path)?;
    let (dir, file_name) = split_destination(path)?;
    let temp = TempFile::create(dir, file_name, path)?;
    temp.remove()
}

/// The part of [`check_destination`] that only looks: `path` names a file,
/// its directory exists, an existing target is a regular file. Creates
/// nothing, so it cannot tell whether the directory is writable
/// (`--dry-run`).
pub fn inspect_destination(path: &Path) -> Result<(), HandoffError> {
    let (dir, _) = split_destination(path)?;
    check_dir(dir, path)?;
    check_target(path)
}

/// Replace `path` with `contents` atomically: write a new file next to it
/// (same directory, so the same filesystem; unique name; created with
/// `O_EXCL`; mode 0644 before umask), fsync it, rename it over `path`, fsync
/// the directory so the rename itself is durable. On any error before the
/// rename the temporary file is removed and `path` is untouched.
///
/// A symbolic link at `path` is replaced by the new file, not followed.
pub fn write_atomic(path: &Path, contents: &str) -> Result<(), HandoffError> {
    let (dir, file_name) = split_destination(path)?;
    check_dir(dir, path)?;
    check_target(path)?;
    replace_with_temp(dir, file_name, path, contents)?;
    sync_dir(dir, path)
}

/// The directory to write in and the file name; `"out"` lives in `"."`.
fn split_destination(path: &Path) -> Result<(&Path, &OsStr), HandoffError> {
    if path.as_os_str().is_empty() {
        return Err(HandoffError::EmptyPath);
    }
    let is_dir = || HandoffError::IsDirectory {
        path: path.to_owned(),
    };
    // `Path::file_name` ignores a trailing slash ("a/b/" -> "b"), but the
    // user who wrote one meant a directory.
    if path.as_os_str().as_encoded_bytes().ends_with(b"/") {
        return Err(is_dir());
    }
    let file_name = path.file_name().ok_or_else(is_dir)?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    Ok((dir, file_name))
}

fn check_dir(dir: &Path, path: &Path) -> Result<(), HandoffError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(HandoffError::NotADirectory {
            path: path.to_owned(),
            dir: dir.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(HandoffError::MissingDirectory {
            path: path.to_owned(),
            dir: dir.to_owned(),
        }),
        // A component of the directory's path is a file.
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Err(HandoffError::NotADirectory {
            path: path.to_owned(),
            dir: dir.to_owned(),
        }),
        Err(source) => Err(HandoffError::Io {
            path: path.to_owned(),
            action: "inspect directory",
            source,
        }),
    }
}

/// An existing target must be a regular file (or a link to one): renaming
/// over a device or FIFO (think `/dev/stdout`) would destroy it.
fn check_target(path: &Path) -> Result<(), HandoffError> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(HandoffError::IsDirectory {
            path: path.to_owned(),
        }),
        Ok(meta) if !meta.is_file() => Err(HandoffError::NotRegularFile {
            path: path.to_owned(),
        }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(HandoffError::Io {
            path: path.to_owned(),
            action: "inspect existing file",
            source,
        }),
    }
}

/// A temporary file that removes itself unless it was renamed into place.
struct TempFile {
    /// Empty once the file is gone (renamed or removed).
    path: PathBuf,
    /// The hostfile this temporary file is for, for error messages.
    target: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// Create `.<name>.<pid>.<n>.tmp` next to the target with `O_EXCL`,
    /// trying further numbers if a name is taken.
    fn create(dir: &Path, file_name: &OsStr, target: &Path) -> Result<TempFile, HandoffError> {
        let pid = std::process::id();
        let mut last_error = None;
        for _ in 0..TEMP_ATTEMPTS {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let mut name = OsStr::new(".").to_owned();
            name.push(file_name);
            name.push(format!(".{pid}.{n}.tmp"));
            let temp_path = dir.join(name);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&temp_path)
            {
                Ok(file) => {
                    return Ok(TempFile {
                        path: temp_path,
                        target: target.to_owned(),
                        file: Some(file),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
                Err(source) => {
                    return Err(HandoffError::Io {
                        path: target.to_owned(),
                        action: "create temporary file",
                        source,
                    });
                }
            }
        }
        Err(HandoffError::Io {
            path: target.to_owned(),
            action: "create temporary file",
            source: last_error.unwrap_or_else(|| io::ErrorKind::AlreadyExists.into()),
        })
    }

    /// Remove the file now, reporting failure (used by the startup check).
    fn remove(mut self) -> Result<(), HandoffError> {
        self.file = None;
        // Whatever happens, Drop must not try again.
        let path = std::mem::take(&mut self.path);
        fs::remove_file(path).map_err(|source| HandoffError::Io {
            path: self.target.clone(),
            action: "remove temporary file",
            source,
        })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file = None;
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Write, fsync and rename a temporary file over `target`. Any failure drops
/// the [`TempFile`], which removes it.
fn replace_with_temp(
    dir: &Path,
    file_name: &OsStr,
    target: &Path,
    contents: &str,
) -> Result<(), HandoffError> {
    let io_error = |action: &'static str| {
        move |source: io::Error| HandoffError::Io {
            path: target.to_owned(),
            action,
            source,
        }
    };
    let mut temp = TempFile::create(dir, file_name, target)?;
    let file = temp.file.as_mut().expect("a new TempFile holds its file");
    file.write_all(contents.as_bytes())
        .map_err(io_error("write temporary file"))?;
    file.sync_all().map_err(io_error("sync temporary file"))?;
    temp.file = None;
    fs::rename(&temp.path, target).map_err(io_error("rename temporary file into place"))?;
    // Renamed: nothing left to clean up.
    temp.path = PathBuf::new();
    Ok(())
}

/// fsync the directory so the rename survives a crash. Filesystems that
/// cannot sync a directory say EINVAL; the file is in place then, so that is
/// not worth failing the hand-off for.
fn sync_dir(dir: &Path, target: &Path) -> Result<(), HandoffError> {
    let result = File::open(dir).and_then(|d| d.sync_all());
    match result {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
            ) =>
        {
            Ok(())
        }
        Err(source) => Err(HandoffError::Io {
            path: target.to_owned(),
            action: "sync directory",
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
    use std::os::unix::net::UnixListener;

    use super::*;
    use crate::handoff::test_dir::TestDir;

    #[test]
    fn writes_a_new_file_and_leaves_nothing_else() {
        let dir = TestDir::new();
        let target = dir.join("hostfile");
        write_atomic(&target, "a slots=1\nb slots=1\n").expect("write");
        assert_eq!(
            fs::read_to_string(&target).unwrap(),
            "a slots=1\nb slots=1\n"
        );
        assert_eq!(dir.entries(), ["hostfile"]);
        let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o600, 0o600, "owner can read and write: {mode:o}");
        assert_eq!(mode & 0o133, 0, "at most 0644: {mode:o}");
    }

    #[test]
    fn replaces_an_existing_file_by_rename_not_in_place() {
        let dir = TestDir::new();
        let target = dir.join("peers.env");
        fs::write(&target, "old contents, longer than the new ones\n").unwrap();
        let old_inode = fs::metadata(&target).unwrap().ino();
        // A reader that opened the old file keeps seeing all of it: the new
        // contents arrive as a different inode, never as a partial rewrite.
        let reader = fs::File::open(&target).unwrap();
        write_atomic(&target, "new\n").expect("replace");
        assert_eq!(fs::read_to_string(&target).unwrap(), "new\n");
        assert_ne!(fs::metadata(&target).unwrap().ino(), old_inode);
        let mut old = String::new();
        std::io::Read::read_to_string(&mut &reader, &mut old).unwrap();
        assert_eq!(old, "old contents, longer than the new ones\n");
        assert_eq!(dir.entries(), ["peers.env"]);
    }

    #[test]
    fn repeated_writes_leave_no_temporary_files() {
        let dir = TestDir::new();
        let target = dir.join("hosts");
        for i in 0..20 {
            write_atomic(&target, &format!("10.0.0.{i}\tpeer\n")).expect("write");
        }
        assert_eq!(fs::read_to_string(&target).unwrap(), "10.0.0.19\tpeer\n");
        assert_eq!(dir.entries(), ["hosts"]);
    }

    #[test]
    fn a_symlink_at_the_target_is_replaced_not_followed() {
        let dir = TestDir::new();
        let real = dir.join("real");
        let link = dir.join("link");
        fs::write(&real, "untouched\n").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, "new\n").expect("write through link path");
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_file());
        assert_eq!(fs::read_to_string(&link).unwrap(), "new\n");
        assert_eq!(fs::read_to_string(&real).unwrap(), "untouched\n");
    }

    #[test]
    fn missing_directory_is_a_clear_error_and_creates_nothing() {
        let dir = TestDir::new();
        let target = dir.join("absent/hostfile");
        let error = write_atomic(&target, "x\n").unwrap_err();
        assert!(
            matches!(&error, HandoffError::MissingDirectory { dir: d, .. } if d == &dir.join("absent")),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "cannot write hostfile {}: directory {} does not exist",
                target.display(),
                dir.join("absent").display()
            )
        );
        assert_eq!(error.exit_code(), 2);
        assert!(dir.entries().is_empty());
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_an_error() {
        let dir = TestDir::new();
        fs::write(dir.join("plain"), "").unwrap();
        for target in [
            dir.join("plain/hostfile"),
            dir.join("plain/deeper/hostfile"),
        ] {
            let error = write_atomic(&target, "x\n").unwrap_err();
            assert!(
                matches!(error, HandoffError::NotADirectory { .. }),
                "{error:?}"
            );
            assert!(error.to_string().contains("is not a directory"), "{error}");
        }
    }

    #[test]
    fn a_directory_target_is_an_error_and_stays_intact() {
        let dir = TestDir::new();
        let target = dir.join("out");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("keep"), "kept\n").unwrap();
        let trailing_slash = PathBuf::from(format!("{}/", dir.join("new").display()));
        for path in [&target, &trailing_slash, &dir.path().to_path_buf()] {
            let error = write_atomic(path, "x\n").unwrap_err();
            assert!(
                matches!(error, HandoffError::IsDirectory { .. }),
                "{path:?}: {error:?}"
            );
            assert!(error.to_string().contains("it is a directory"), "{error}");
            assert_eq!(error.exit_code(), 2);
        }
        assert_eq!(fs::read_to_string(target.join("keep")).unwrap(), "kept\n");
        assert_eq!(dir.entries(), ["out"]);
    }

    #[test]
    fn a_special_file_target_is_refused() {
        let dir = TestDir::new();
        let socket = dir.join("sock");
        let _listener = UnixListener::bind(&socket).unwrap();
        let error = write_atomic(&socket, "x\n").unwrap_err();
        assert!(
            matches!(error, HandoffError::NotRegularFile { .. }),
            "{error:?}"
        );
        let error = check_destination(&socket).unwrap_err();
        assert!(
            matches!(error, HandoffError::NotRegularFile { .. }),
            "{error:?}"
        );
        assert!(
            fs::symlink_metadata(&socket)
                .unwrap()
                .file_type()
                .is_socket()
        );
        assert_eq!(dir.entries(), ["sock"]);
    }

    #[test]
    fn the_temporary_file_is_removed_when_the_rename_fails() {
        let dir = TestDir::new();
        // Bypass the checks so the failure happens at the last step: rename
        // of a file over a non-empty directory.
        let target = dir.join("busy");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), "").unwrap();
        let error = replace_with_temp(dir.path(), OsStr::new("busy"), &target, "x\n").unwrap_err();
        assert!(
            matches!(
                error,
                HandoffError::Io {
                    action: "rename temporary file into place",
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(dir.entries(), ["busy"]);
    }

    #[test]
    fn temporary_names_are_hidden_unique_and_next_to_the_target() {
        let dir = TestDir::new();
        let target = dir.join("hostfile");
        let first = TempFile::create(dir.path(), OsStr::new("hostfile"), &target).unwrap();
        let second = TempFile::create(dir.path(), OsStr::new("hostfile"), &target).unwrap();
        assert_ne!(first.path, second.path);
        for temp in [&first, &second] {
            assert_eq!(temp.path.parent(), Some(dir.path()));
            let name = temp
                .path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert!(name.starts_with(".hostfile."), "{name}");
            assert!(name.ends_with(".tmp"), "{name}");
        }
        assert_eq!(dir.entries().len(), 2);
        drop(first);
        second.remove().unwrap();
        assert!(dir.entries().is_empty());
    }

    #[test]
    fn check_destination_accepts_new_and_existing_files_without_touching_them() {
        let dir = TestDir::new();
        check_destination(&dir.join("new")).expect("new file in existing directory");
        let existing = dir.join("existing");
        fs::write(&existing, "keep\n").unwrap();
        let inode = fs::metadata(&existing).unwrap().ino();
        check_destination(&existing).expect("existing regular file");
        assert_eq!(fs::read_to_string(&existing).unwrap(), "keep\n");
        assert_eq!(fs::metadata(&existing).unwrap().ino(), inode);
        assert_eq!(dir.entries(), ["existing"]);
    }

    #[test]
    fn check_destination_reports_the_same_errors_as_the_write() {
        let dir = TestDir::new();
        fs::create_dir(dir.join("sub")).unwrap();
        fs::write(dir.join("plain"), "").unwrap();
        type Expected = fn(&HandoffError) -> bool;
        let cases: [(PathBuf, Expected); 4] = [
            (dir.join("absent/hostfile"), |e| {
                matches!(e, HandoffError::MissingDirectory { .. })
            }),
            (dir.join("plain/hostfile"), |e| {
                matches!(e, HandoffError::NotADirectory { .. })
            }),
            (dir.join("sub"), |e| {
                matches!(e, HandoffError::IsDirectory { .. })
            }),
            (PathBuf::from("/"), |e| {
                matches!(e, HandoffError::IsDirectory { .. })
            }),
        ];
        for (path, expected) in cases {
            let error = check_destination(&path).unwrap_err();
            assert!(expected(&error), "{path:?}: {error:?}");
            assert_eq!(error.exit_code(), 2);
            let error = inspect_destination(&path).unwrap_err();
            assert!(expected(&error), "inspect {path:?}: {error:?}");
        }
        assert_eq!(dir.entries(), ["plain", "sub"]);
    }

    #[test]
    fn inspect_destination_leaves_the_directory_untouched() {
        let dir = TestDir::new();
        let mtime = || fs::metadata(dir.path()).unwrap().modified().unwrap();
        let before = mtime();
        // Some file systems keep coarse timestamps: let the clock move on.
        std::thread::sleep(std::time::Duration::from_millis(20));
        inspect_destination(&dir.join("hostfile")).expect("new file in existing directory");
        assert_eq!(mtime(), before, "inspect_destination changed the directory");
        // The control: the full check creates and removes a file there.
        check_destination(&dir.join("hostfile")).expect("writable");
        assert_ne!(
            mtime(),
            before,
            "the full check left no trace to compare with"
        );
        assert!(dir.entries().is_empty());
    }

    #[test]
    fn a_bare_file_name_lives_in_the_current_directory() {
        let (dir, name) = split_destination(Path::new("hostfile")).unwrap();
        assert_eq!((dir, name), (Path::new("."), OsStr::new("hostfile")));
        let (dir, name) = split_destination(Path::new("/etc/mpi/hostfile")).unwrap();
        assert_eq!((dir, name), (Path::new("/etc/mpi"), OsStr::new("hostfile")));
        assert!(split_destination(Path::new("..")).is_err());
        assert!(matches!(
            split_destination(Path::new("")),
            Err(HandoffError::EmptyPath)
        ));
    }
}
