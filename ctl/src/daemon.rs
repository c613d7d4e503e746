//! The processes `ekube init` and `ekube join` leave running. Where PID 1 is systemd, each is
//! a unit, `ekube-<name>.service` in `/etc/systemd/system`, enabled and started (as kubeadm
//! leaves the kubelet); elsewhere `ekube <subcommand> …` runs detached in its own process
//! group, its output appended to `<log-dir>/<name>.log` and its PID in `<run-dir>/<name>.pid`.
//! Either way its argv is kept in `<run-dir>/<name>.args` (NUL-separated, as
//! `/proc/<pid>/cmdline`), so `ekube reset` can stop it and find what it made.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Where systemd keeps the units an administrator installs.
const UNIT_DIR: &str = "/etc/systemd/system";

/// Whether PID 1 is systemd (sd_booted(3)'s test).
fn systemd_runs() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// A component started by [`Dirs::spawn`], as said to the user.
pub enum Started {
    Process { pid: u32, log: PathBuf },
    Unit(String),
}

impl std::fmt::Display for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Started::Process { pid, log } => write!(f, "pid {pid}, log {}", log.display()),
            Started::Unit(unit) => write!(f, "systemd unit {unit}, log `journalctl -u {unit}`"),
        }
    }
}

fn unit_name(name: &str) -> String {
    format!("ekube-{name}.service")
}

/// The unit running `exe argv` as component `name`. Only the main process is stopped with it
/// (`KillMode=process`): the agent's containers run under shims of their own, which outlive
/// a restart of the agent as they outlive one of a detached agent.
fn unit_file(name: &str, exe: &Path, argv: &[OsString]) -> String {
    // systemd's command-line quoting: each word in double quotes, `\` and `"` escaped, and
    // `%` and `$` doubled so no specifier or variable is expanded.
    let quote = |word: &std::ffi::OsStr| {
        let mut out = String::from("\"");
        for c in word.to_string_lossy().chars() {
            match c {
                '\\' | '"' => out.extend(['\\', c]),
                '%' | '$' => out.extend([c, c]),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    };
    let command: Vec<String> = std::iter::once(exe.as_os_str())
        .chain(argv.iter().map(OsString::as_os_str))
        .map(quote)
        .collect();
    format!(
        "[Unit]\nDescription=ekube {name}\nDocumentation=ekube {name} --help\n\
         Wants=network-online.target\nAfter=network-online.target\n\n\
         [Service]\nExecStart={}\nRestart=always\nRestartSec=5\nKillMode=process\n\
         LimitNOFILE=1048576\n\n[Install]\nWantedBy=multi-user.target\n",
        command.join(" ")
    )
}

fn systemctl(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("systemctl")
        .args(args)
        .output()
        .context("running systemctl")?;
    if !out.status.success() {
        bail!(
            "systemctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

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

    fn unit_path(&self, name: &str) -> PathBuf {
        Path::new(UNIT_DIR).join(unit_name(name))
    }

    /// Starts `ekube <argv>` as `name`: a systemd unit where PID 1 is systemd, else a
    /// detached process.
    pub fn spawn(&self, name: &str, argv: &[OsString]) -> Result<Started> {
        let exe = std::env::current_exe().context("finding this binary")?;
        std::fs::create_dir_all(&self.run_dir)
            .with_context(|| format!("creating {}", self.run_dir.display()))?;
        let args_file = self.args_file(name);
        let recorded: Vec<u8> = argv
            .iter()
            .flat_map(|a| a.as_bytes().iter().copied().chain([0]))
            .collect();
        std::fs::write(&args_file, recorded)
            .with_context(|| format!("writing {}", args_file.display()))?;
        if systemd_runs() {
            let path = self.unit_path(name);
            std::fs::write(&path, unit_file(name, &exe, argv))
                .with_context(|| format!("writing {}", path.display()))?;
            let unit = unit_name(name);
            systemctl(&["daemon-reload"])?;
            systemctl(&["enable", "--now", &unit])?;
            return Ok(Started::Unit(unit));
        }
        self.spawn_process(name, &exe, argv)
    }

    fn spawn_process(&self, name: &str, exe: &Path, argv: &[OsString]) -> Result<Started> {
        use std::os::unix::process::CommandExt;
        std::fs::create_dir_all(&self.log_dir)
            .with_context(|| format!("creating {}", self.log_dir.display()))?;
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
        Ok(Started::Process { pid, log: log_path })
    }

    /// Where to read `name`'s output.
    pub fn log_hint(&self, name: &str) -> String {
        if self.unit_path(name).exists() {
            format!("`journalctl -u {}`", unit_name(name))
        } else {
            self.log_file(name).display().to_string()
        }
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

    /// Stops `name`: its unit, disabled and removed, or the process its pid file names while
    /// that still runs `ekube <argv>` as recorded (a reused PID is left alone): SIGTERM, then
    /// SIGKILL after `grace`. Returns what was stopped.
    pub async fn stop(&self, name: &str, grace: Duration) -> Result<Option<String>> {
        let unit = self.unit_path(name);
        if unit.exists() {
            systemctl(&["disable", "--now", &unit_name(name)])?;
            std::fs::remove_file(&unit).with_context(|| format!("removing {}", unit.display()))?;
            systemctl(&["daemon-reload"])?;
            return Ok(Some(format!("systemd unit {}", unit_name(name))));
        }
        let Ok(text) = std::fs::read_to_string(self.pid_file(name)) else {
            return Ok(None);
        };
        let pid: i32 = text
            .trim()
            .parse()
            .with_context(|| format!("{} holds no PID", self.pid_file(name).display()))?;
        let started = self.recorded(name)?.unwrap_or_default();
        let ours = |pid: i32| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
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
        Ok(Some(format!("pid {pid}")))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_files_quote_every_word_as_systemd_reads_it() {
        let argv: Vec<OsString> = ["agent", "--kubelet-arg", "max-pods=5%", "a \"b\" $HOME\\"]
            .into_iter()
            .map(OsString::from)
            .collect();
        let unit = unit_file("agent", Path::new("/usr/local/bin/ekube"), &argv);
        assert!(
            unit.contains(
                "ExecStart=\"/usr/local/bin/ekube\" \"agent\" \"--kubelet-arg\" \"max-pods=5%%\" \"a \\\"b\\\" $$HOME\\\\\"\n"
            ),
            "{unit}"
        );
        assert!(unit.contains("KillMode=process") && unit.contains("WantedBy=multi-user.target"));
    }
}
