//! The processes `ekube init` and `ekube join` leave running where PID 1 is not systemd:
//! `ekube <subcommand> …` detached in its own process group, its output appended to
//! `<log-dir>/<name>.log`, its PID in `<run-dir>/<name>.pid` and its argv in
//! `<run-dir>/<name>.args` (NUL-separated, as `/proc/<pid>/cmdline`), so `ekube reset` can stop
//! it and find what it made.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Where detached components keep their pid files and logs.
#[derive(Debug, Clone, clap::Args)]
pub struct Dirs {
    /// Where pid files of detached components go.
    #[arg(long, default_value = "/run/ekube")]
    pub run_dir: PathBuf,
    /// Where logs of detached components go.
    #[arg(long, default_value = "/var/log/ekube")]
    pub log_dir: PathBuf,
}

impl Dirs {
    pub fn pid_file(&self, name: &str) -> PathBuf {
        self.run_dir.join(format!("{name}.pid"))
    }

    pub fn log_file(&self, name: &str) -> PathBuf {
        self.log_dir.join(format!("{name}.log"))
    }

    fn args_file(&self, name: &str) -> PathBuf {
        self.run_dir.join(format!("{name}.args"))
    }

    /// Starts `ekube <argv>` detached as `name`; returns its PID.
    pub fn spawn(&self, name: &str, argv: &[OsString]) -> Result<u32> {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe().context("finding this binary")?;
        for dir in [&self.run_dir, &self.log_dir] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let log_path = self.log_file(name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let child = std::process::Command::new(exe)
            .args(argv)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let pid = child.id();
        let pid_file = self.pid_file(name);
        std::fs::write(&pid_file, format!("{pid}\n"))
            .with_context(|| format!("writing {}", pid_file.display()))?;
        let args_file = self.args_file(name);
        let recorded: Vec<u8> = argv
            .iter()
            .flat_map(|a| a.as_bytes().iter().copied().chain([0]))
            .collect();
        std::fs::write(&args_file, recorded)
            .with_context(|| format!("writing {}", args_file.display()))?;
        Ok(pid)
    }

    /// The argv `name` was started with by [`Dirs::spawn`], if it was.
    pub fn recorded(&self, name: &str) -> Result<Option<Vec<OsString>>> {
        let path = self.args_file(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(
                bytes
                    .split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| OsString::from_vec(a.to_vec()))
                    .collect(),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Stops `name` if its pid file names a live process still running `ekube <argv>` as
    /// recorded (a reused PID is left alone): SIGTERM, then SIGKILL after `grace`. Returns
    /// the PID stopped.
    pub async fn stop(&self, name: &str, grace: Duration) -> Result<Option<u32>> {
        let Ok(text) = std::fs::read_to_string(self.pid_file(name)) else {
            return Ok(None);
        };
        let pid: i32 = text
            .trim()
            .parse()
            .with_context(|| format!("{} holds no PID", self.pid_file(name).display()))?;
        let ours = |pid: i32| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let started = self.recorded(name).ok().flatten().unwrap_or_default();
            let running: Vec<&[u8]> = cmdline.split(|b| *b == 0).skip(1).collect();
            started
                .first()
                .is_some_and(|sub| running.first() == Some(&sub.as_bytes()))
        };
        if !ours(pid) {
            return Ok(None);
        }
        // SAFETY: kill(2) on a PID just checked to be this component.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while ours(pid) {
            if Instant::now() > deadline {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Some(pid as u32))
    }

    /// Removes `name`'s pid file, argv record and log; returns the paths removed.
    pub fn forget(&self, name: &str) -> Vec<PathBuf> {
        [
            self.pid_file(name),
            self.args_file(name),
            self.log_file(name),
        ]
        .into_iter()
        .filter(|p| std::fs::remove_file(p).is_ok())
        .collect()
    }
}
