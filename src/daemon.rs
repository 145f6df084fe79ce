//! Running in the background and the pid file, for systemd's `Type=forking` and for
//! zero-downtime upgrades.
//!
//! `graphfront run --daemon` starts the server as a new process (not a `fork()` of this one, so
//! no runtime thread or log writer is lost on the way) and returns once that process has
//! written its pid file: systemd then knows the main PID. During an upgrade the new process
//! writes the pid file before it waits for the old one's sockets, so `ExecReload` can send
//! SIGQUIT to the old process next, and systemd follows the pid file to the new one when the
//! old one exits.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::logging::Format;

/// How long `--daemon` waits for the server process to come up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Start `graphfront run` for `config` in the background and wait until it has written
/// `pid_file`. The server keeps this process's stdout and stderr (journald under systemd).
pub fn detach(config: &Path, upgrade: bool, format: Format, pid_file: &Path) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("cannot find the graphfront executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut cmd = Command::new(exe);
    cmd.arg("--log-format")
        .arg(match format {
            Format::Json => "json",
            Format::Text | Format::Auto => "text",
        })
        .arg("run")
        .arg("--config")
        .arg(config);
    if upgrade {
        cmd.arg("--upgrade");
    }
    // Its own process group: a terminal's Ctrl-C for this command does not reach the server.
    cmd.stdin(Stdio::null()).process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start graphfront: {e}");
            return ExitCode::FAILURE;
        }
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if read_pid_file(pid_file) == Some(child.id()) {
            return ExitCode::SUCCESS;
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                eprintln!("graphfront exited before it started ({status})");
                let code = status.code().unwrap_or(1).clamp(1, 255);
                return ExitCode::from(code as u8);
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("cannot watch the graphfront process: {e}");
                return ExitCode::FAILURE;
            }
        }
        if Instant::now() > deadline {
            eprintln!(
                "graphfront did not write {} within {START_TIMEOUT:?}; stopping it",
                pid_file.display()
            );
            let _ = child.kill();
            let _ = child.wait();
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pid a pid file holds, if it holds one.
pub fn read_pid_file(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Write this process's pid to `path` atomically (a reader never sees a partial file).
pub fn write_pid_file(path: &Path) -> std::io::Result<()> {
    let pid = std::process::id();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{pid}"));
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| writeln!(f, "{pid}"))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Remove the pid file on exit, unless a newer process (an upgrade) has taken it over.
pub fn remove_pid_file(path: &Path) {
    if read_pid_file(path) == Some(std::process::id()) {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_round_trip_and_removal_only_by_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("graphfront.pid");
        assert_eq!(read_pid_file(&path), None);
        write_pid_file(&path).unwrap();
        assert_eq!(read_pid_file(&path), Some(std::process::id()));
        remove_pid_file(&path);
        assert!(!path.exists());

        std::fs::write(&path, "1\n").unwrap();
        remove_pid_file(&path);
        assert_eq!(
            read_pid_file(&path),
            Some(1),
            "another process's pid file is kept"
        );
    }
}
