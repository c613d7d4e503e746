//! The processes `ekube init` and `ekube join` leave running where PID 1 is not systemd:
//! `ekube <subcommand> …` detached in its own process group, its output appended to
//! `<log-dir>/<name>.log`, its PID in `<run-dir>/<name>.pid`.

use std::ffi::OsString;
use std::path::PathBuf;

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
        Ok(pid)
    }
}
