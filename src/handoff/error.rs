//! Why a hand-off failed, and the exit code each failure maps to.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;

/// Why the hand-off failed. Every message is one line naming the path or the
/// command and, where there is one, the operating system's error.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// `--write-hostfile ""`.
    #[error("hostfile path is empty")]
    EmptyPath,
    /// The destination is (or ends with `/` like) a directory.
    #[error("cannot write hostfile {path}: it is a directory, expected a file path")]
    IsDirectory { path: PathBuf },
    /// The destination exists but is a device, FIFO, socket, ...: replacing
    /// it by rename would destroy it, writing into it would not be atomic.
    #[error("cannot write hostfile {path}: it exists and is not a regular file")]
    NotRegularFile { path: PathBuf },
    /// The directory that should hold the file does not exist.
    #[error("cannot write hostfile {path}: directory {dir} does not exist")]
    MissingDirectory { path: PathBuf, dir: PathBuf },
    /// What should be the directory holding the file is something else.
    #[error("cannot write hostfile {path}: {dir} is not a directory")]
    NotADirectory { path: PathBuf, dir: PathBuf },
    /// A system call on the way failed; `action` says which step.
    #[error("cannot write hostfile {path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// `--` was given with nothing after it.
    #[error("no command given after --")]
    EmptyCommand,
    /// The command (or the interpreter named by its `#!` line) does not
    /// exist. A shell reports this as 127.
    #[error("cannot run {}: {}", program.to_string_lossy(), not_found_detail(program))]
    CommandNotFound { program: OsString },
    /// The command exists but may not be executed (no execute bit, a
    /// directory, a noexec mount). A shell reports this as 126.
    #[error("cannot run {}: {source}", program.to_string_lossy())]
    CommandNotExecutable {
        program: OsString,
        source: io::Error,
    },
    /// Any other reason `execve` refused (not an executable format, argument
    /// list too long, ...). A shell reports these as 126 too.
    #[error("cannot run {}: {source}", program.to_string_lossy())]
    ExecFailed {
        program: OsString,
        source: io::Error,
    },
}

impl HandoffError {
    /// The process exit code for this error, following the shell's
    /// convention for commands: 127 when the command was not found, 126 when
    /// it was found but could not be executed, and peergate's usage or
    /// configuration code 2 for everything else (a hostfile that cannot be
    /// written, an empty command).
    pub fn exit_code(&self) -> u8 {
        match self {
            HandoffError::CommandNotFound { .. } => 127,
            HandoffError::CommandNotExecutable { .. } | HandoffError::ExecFailed { .. } => 126,
            HandoffError::EmptyPath
            | HandoffError::IsDirectory { .. }
            | HandoffError::NotRegularFile { .. }
            | HandoffError::MissingDirectory { .. }
            | HandoffError::NotADirectory { .. }
            | HandoffError::Io { .. }
            | HandoffError::EmptyCommand => 2,
        }
    }
}

/// A name without `/` is looked up in `PATH`; one with `/` is used as is.
/// Either way the kernel also reports a missing `#!` interpreter as "not
/// found", which is a common surprise in minimal images, so say so.
fn not_found_detail(program: &OsString) -> &'static str {
    if program.as_encoded_bytes().contains(&b'/') {
        "no such file (or its #! interpreter is missing)"
    } else {
        "command not found in PATH (or its #! interpreter is missing)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_message_is_one_line_and_names_its_subject() {
        let path = PathBuf::from("/run/peergate/hosts");
        let dir = PathBuf::from("/run/peergate");
        let errors = [
            HandoffError::IsDirectory { path: path.clone() },
            HandoffError::NotRegularFile { path: path.clone() },
            HandoffError::MissingDirectory {
                path: path.clone(),
                dir: dir.clone(),
            },
            HandoffError::NotADirectory {
                path: path.clone(),
                dir,
            },
            HandoffError::Io {
                path,
                action: "sync temporary file",
                source: io::Error::from_raw_os_error(28),
            },
        ];
        for error in &errors {
            let message = error.to_string();
            assert!(!message.contains('\n'), "{message}");
            assert!(message.contains("/run/peergate/hosts"), "{message}");
            assert_eq!(error.exit_code(), 2, "{message}");
        }
        assert!(
            errors[4]
                .to_string()
                .ends_with("sync temporary file: No space left on device (os error 28)")
        );
        assert!(
            errors[2]
                .to_string()
                .contains("directory /run/peergate does not exist")
        );
    }

    #[test]
    fn command_errors_follow_the_shell_exit_codes() {
        let not_found = HandoffError::CommandNotFound {
            program: "mpirun".into(),
        };
        assert_eq!(not_found.exit_code(), 127);
        assert_eq!(
            not_found.to_string(),
            "cannot run mpirun: command not found in PATH (or its #! interpreter is missing)"
        );
        let not_found_path = HandoffError::CommandNotFound {
            program: "./train.sh".into(),
        };
        assert_eq!(
            not_found_path.to_string(),
            "cannot run ./train.sh: no such file (or its #! interpreter is missing)"
        );
        let denied = HandoffError::CommandNotExecutable {
            program: "/data/train".into(),
            source: io::Error::from_raw_os_error(13),
        };
        assert_eq!(denied.exit_code(), 126);
        assert_eq!(
            denied.to_string(),
            "cannot run /data/train: Permission denied (os error 13)"
        );
        let other = HandoffError::ExecFailed {
            program: "/data/blob".into(),
            source: io::Error::from_raw_os_error(8),
        };
        assert_eq!(other.exit_code(), 126);
        assert_eq!(HandoffError::EmptyCommand.exit_code(), 2);
    }
}
