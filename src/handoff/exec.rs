//! `peergate ... -- COMMAND [ARGS]`: become the workload.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt as _;
use std::process::Command;

use super::error::HandoffError;

/// Replace the current process image with `command` (program and
/// arguments), with `env` added to the inherited environment. The PID stays
/// the same, so signals sent to the pod reach the command directly and its
/// exit status is the container's.
///
/// A program without `/` is looked up in `PATH` (the `PATH` of `env` if it
/// sets one). Signal dispositions that were handled go back to their default
/// (execve does that; Rust also unblocks every signal and restores SIGPIPE),
/// and descriptors opened with close-on-exec (every one the standard library
/// and tokio open) are closed.
///
/// Returns only on failure. [`HandoffError::exit_code`] gives 127 when the
/// command was not found, 126 when it could not be executed, 2 when
/// `command` is empty.
pub fn exec(command: &[OsString], env: &[(String, String)]) -> HandoffError {
    let Some((program, args)) = command.split_first() else {
        return HandoffError::EmptyCommand;
    };
    let error = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .exec();
    classify(program, error)
}

fn classify(program: &OsString, source: io::Error) -> HandoffError {
    let program = program.clone();
    match source.kind() {
        io::ErrorKind::NotFound => HandoffError::CommandNotFound { program },
        io::ErrorKind::PermissionDenied => HandoffError::CommandNotExecutable { program, source },
        _ => HandoffError::ExecFailed { program, source },
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::Path;
    use std::process::Command;

    use super::*;
    use crate::handoff::test_dir::TestDir;

    // Every call to `exec` in these tests names something that cannot be
    // executed, so it returns; a successful exec would replace the test
    // process. The one success test execs in a child process it spawns.

    fn not_executable(dir: &TestDir, name: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        path
    }

    #[test]
    fn an_empty_command_is_a_usage_error() {
        let error = exec(&[], &[]);
        assert!(matches!(error, HandoffError::EmptyCommand), "{error:?}");
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn a_missing_file_is_not_found_127() {
        let dir = TestDir::new();
        let missing = dir.join("no-such-program");
        let error = exec(&[missing.clone().into(), "--flag".into()], &[]);
        assert!(
            matches!(&error, HandoffError::CommandNotFound { program } if Path::new(program) == missing),
            "{error:?}"
        );
        assert_eq!(error.exit_code(), 127);
        assert!(error.to_string().contains("no such file"), "{error}");
    }

    #[test]
    fn a_name_missing_from_path_is_not_found_127() {
        // PATH from `env` points at an empty directory: nothing can be found.
        let dir = TestDir::new();
        let path = dir.path().to_string_lossy().into_owned();
        let error = exec(
            &["peergate-test-no-such-command".into()],
            &[("PATH".to_owned(), path)],
        );
        assert!(
            matches!(error, HandoffError::CommandNotFound { .. }),
            "{error:?}"
        );
        assert_eq!(error.exit_code(), 127);
        assert_eq!(
            error.to_string(),
            "cannot run peergate-test-no-such-command: command not found in PATH \
             (or its #! interpreter is missing)"
        );
    }

    #[test]
    fn a_file_without_execute_permission_is_126() {
        let dir = TestDir::new();
        let script = not_executable(&dir, "train.sh");
        let error = exec(&[script.into()], &[]);
        assert!(
            matches!(error, HandoffError::CommandNotExecutable { .. }),
            "{error:?}"
        );
        assert_eq!(error.exit_code(), 126);
        assert!(error.to_string().contains("Permission denied"), "{error}");
    }

    #[test]
    fn a_non_executable_file_found_in_path_is_126_not_127() {
        let dir = TestDir::new();
        not_executable(&dir, "train");
        let path = dir.path().to_string_lossy().into_owned();
        let error = exec(&["train".into()], &[("PATH".to_owned(), path)]);
        assert!(
            matches!(error, HandoffError::CommandNotExecutable { .. }),
            "{error:?}"
        );
        assert_eq!(error.exit_code(), 126);
    }

    #[test]
    fn a_directory_is_126() {
        let dir = TestDir::new();
        let error = exec(&[dir.path().as_os_str().to_owned()], &[]);
        assert_eq!(error.exit_code(), 126, "{error:?}");
    }

    /// Set in the child process of the test below, which then execs.
    const CHILD_MARKER: &str = "PEERGATE_HANDOFF_TEST_EXEC_CHILD";

    #[test]
    fn exec_keeps_the_pid_sets_the_env_and_passes_the_exit_status() {
        if std::env::var_os(CHILD_MARKER).is_some() {
            // Child: become sh, which reports its PID and environment and
            // exits with a status of its own.
            let error = exec(
                &[
                    "/bin/sh".into(),
                    "-c".into(),
                    "echo \"exec-result $$ $PEERGATE_RANK $PEERGATE_HANDOFF_INHERITED\"; exit 7"
                        .into(),
                ],
                &[("PEERGATE_RANK".to_owned(), "2".to_owned())],
            );
            panic!("exec returned: {error}");
        }
        if !Path::new("/bin/sh").exists() {
            assert!(
                !crate::ci::under_ci(),
                "/bin/sh is missing (required under CI)"
            );
            println!("skipped: no /bin/sh to exec");
            return;
        }
        let child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "handoff::exec::tests::exec_keeps_the_pid_sets_the_env_and_passes_the_exit_status",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_MARKER, "1")
            .env("PEERGATE_HANDOFF_INHERITED", "kept")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the test binary");
        let pid = child.id();
        let output = child.wait_with_output().expect("wait for the child");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(7),
            "the command's exit status\nstdout: {stdout}\nstderr: {stderr}"
        );
        let report = stdout
            .lines()
            // The harness may have written "test ... " on the same line.
            .find_map(|line| line.split_once("exec-result ").map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no report\nstdout: {stdout}\nstderr: {stderr}"));
        assert_eq!(report, format!("{pid} 2 kept"));
    }
}
