//! [`Lab`]: bringing a lab up, running processes in it, and tearing it down completely.
//!
//! The guard tears the lab down when dropped (unless [`Lab::detach`]ed, as `cargo xtask lab up`
//! does). Teardown works from the lab's name alone, so it also clears what a crashed run left:
//! processes recorded in the state file (checked against their start time and command line),
//! any other process still living in one of the lab's namespaces or cgroups, the namespaces,
//! the bpffs pin directories, the cgroup subtrees (deepest first), mounts under the lab
//! directory, and the lab directory itself.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{BPFFS, Host, LabConfig, REGISTRY, Role, is_lab_netns, validate_name};
use crate::images::BuiltImage;
use crate::process::{ExecOutput, ProcRecord};
use crate::{Error, Result, cgroup, http, hub, images, io_err, net, process, registry, resolver};

/// Name of the state file in the lab directory.
const STATE_FILE: &str = "state.json";
/// How long processes get between SIGTERM and SIGKILL at teardown.
const GRACE: Duration = Duration::from_secs(5);
/// Default bound for one-shot commands.
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);

/// What the state file records about a lab.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    name: String,
    nodes: usize,
    procs: Vec<ProcRecord>,
}

/// A running lab; tears itself down on drop.
pub struct Lab {
    config: LabConfig,
    hosts: Vec<Host>,
    /// Processes started here: recorded in the state file, reaped at teardown.
    state: Mutex<(State, Vec<Child>)>,
    /// Images pushed to the registry at start-up.
    images: Vec<BuiltImage>,
    /// Whether dropping the guard tears the lab down.
    armed: bool,
}

impl Lab {
    /// Brings a lab up after clearing whatever a previous run of the same name left behind.
    pub fn up(config: LabConfig) -> Result<Self> {
        config.validate()?;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(Error::Config(
                "the lab needs root (network namespaces, cgroups, bpffs)".into(),
            ));
        }
        check_tools(&config)?;
        Self::teardown(&config.root, &config.name)?;
        let hosts = config.hosts();
        let mut lab = Self {
            state: Mutex::new((
                State {
                    name: config.name.clone(),
                    nodes: config.nodes,
                    procs: Vec::new(),
                },
                Vec::new(),
            )),
            config,
            hosts,
            images: Vec::new(),
            armed: true,
        };
        // On error `lab` is dropped, which tears down what was made so far; the logs go with
        // it, so their tails are shown first.
        if let Err(e) = lab.start() {
            lab.show_logs();
            return Err(e);
        }
        tracing::info!(lab = %lab.config.name, nodes = lab.config.nodes, "lab is up");
        Ok(lab)
    }

    /// Everything `up` does after clearing leftovers.
    fn start(&mut self) -> Result<()> {
        self.create_dirs()?;
        self.save_state()?;
        net::create(&self.hosts)?;
        for h in &self.hosts {
            cgroup::create(&h.cgroup)?;
        }
        ensure_bpffs()?;
        for h in self.hosts.iter().filter(|h| h.is_node()) {
            let pin = h.pin_dir();
            std::fs::create_dir_all(&pin).map_err(io_err("creating pin dir", &pin))?;
        }
        let ext = self.host("ext")?.netns.clone();
        self.spawn("ext", "dnsmasq", &resolver::argv())?;
        resolver::wait_ready(&ext, Duration::from_secs(30))?;
        if self.config.registry {
            let argv = registry::prepare(&self.config.lab_dir())?;
            self.spawn("fab", "registry", &argv)?;
            registry::wait_ready(&self.host("ext")?.netns, REGISTRY, Duration::from_secs(30))?;
        }
        if self.config.auth_registry {
            let argv = registry::prepare_auth(&self.config.lab_dir())?;
            self.spawn("fab", "registry-auth", &argv)?;
            registry::wait_ready(
                &self.host("ext")?.netns,
                crate::AUTH_REGISTRY,
                Duration::from_secs(30),
            )?;
            let argv = registry::prepare_cert(&self.config.lab_dir())?;
            self.spawn("fab", "registry-cert", &argv)?;
            registry::wait_ready(
                &self.host("ext")?.netns,
                crate::CERT_REGISTRY,
                Duration::from_secs(30),
            )?;
        }
        if let Some(layout) = self.config.images.clone() {
            let built = images::ensure(&layout)?;
            images::push(&self.host("ext")?.netns, &layout, &built)?;
            self.images = built;
        }
        if let Some(layout) = self.config.hub_images.clone() {
            let built = hub::ensure(&layout)?;
            let ext = self.host("ext")?.netns.clone();
            images::push(&ext, &layout, &built)?;
            if self.config.auth_registry {
                let busybox: Vec<BuiltImage> = built
                    .iter()
                    .filter(|i| i.name == "library/busybox")
                    .cloned()
                    .collect();
                registry::push_auth(&ext, &layout, &busybox)?;
            }
            self.images.extend(built);
        }
        if self.config.etcd_members > 0 {
            self.start_etcd()?;
        }
        if let Some(server) = self.config.server.clone() {
            let n1 = self.host("n1")?.clone();
            if let Some(template) = &self.config.kubeadm_config {
                let path = n1.dir.join("kubeadm.yaml");
                std::fs::write(&path, crate::config::fill(template, &n1.vars(&self.config)))
                    .map_err(io_err("writing", &path))?;
            }
            let pid = self.spawn("n1", "server", &server.render(&n1.vars(&self.config)))?;
            self.wait_for_kubeconfig(pid)?;
            self.pin_ca(&n1)?;
        }
        if let Some(node) = self.config.node.clone() {
            for h in self.nodes().cloned().collect::<Vec<_>>() {
                let joined = self
                    .config
                    .joined_node
                    .as_ref()
                    .filter(|_| h.dir.join("kubelet.conf").exists());
                let control_plane = match h.role {
                    Role::Node(i) if i > 1 && i <= self.config.control_planes => {
                        self.config.control_plane_node.as_ref()
                    }
                    _ => None,
                };
                if let (Some(_), None) = (control_plane, joined) {
                    self.write_join_config(&h)?;
                }
                let cmd = joined
                    .or(control_plane)
                    .unwrap_or(&node)
                    .render(&h.vars(&self.config));
                self.spawn(&h.short, "agent", &cmd)?;
            }
        }
        Ok(())
    }

    /// Issues the etcd certificates, starts a member on each of the first
    /// [`LabConfig::etcd_members`] nodes and waits until all report healthy.
    fn start_etcd(&mut self) -> Result<()> {
        let members: Vec<Host> = self
            .nodes()
            .take(self.config.etcd_members)
            .cloned()
            .collect();
        let lab_dir = self.config.lab_dir();
        crate::etcd::issue(&lab_dir, &members)?;
        self.config
            .vars
            .extend(crate::etcd::vars(&members, &lab_dir));
        if !self.config.vars.contains_key("cert_key") {
            self.config.vars.insert("cert_key".into(), random_hex(32)?);
        }
        for h in &members {
            let argv = crate::etcd::member_argv(h, &members, &self.config.name, &lab_dir);
            self.spawn(&h.short, "etcd", &argv)?;
        }
        crate::etcd::wait_healthy(self, &members, Duration::from_secs(60))
    }

    /// Writes [`LabConfig::control_plane_join_config`] (if set), filled for `host`, to its
    /// `join.yaml`, readable by root only: it holds the token and the certificate key.
    pub fn write_join_config(&self, host: &Host) -> Result<()> {
        let Some(template) = &self.config.control_plane_join_config else {
            return Ok(());
        };
        let path = host.dir.join("join.yaml");
        let text = crate::config::fill(template, &host.vars(&self.config));
        ekube_api::files::write_atomic(&path, &text, 0o600).map_err(io_err("writing", &path))
    }

    /// Starts the etcd member of node `short` again (on the data it has), e.g. after a test
    /// killed it; returns its PID.
    pub fn restart_etcd_member(&self, short: &str) -> Result<u32> {
        let members = self.etcd_members();
        let host = members
            .iter()
            .find(|h| h.short == short)
            .ok_or_else(|| Error::NoHost(format!("{short} (as an etcd member)")))?;
        let argv =
            crate::etcd::member_argv(host, &members, &self.config.name, &self.config.lab_dir());
        self.spawn(short, "etcd", &argv)
    }

    /// The etcd members of this lab (none unless [`LabConfig::etcd_members`]).
    pub fn etcd_members(&self) -> Vec<Host> {
        self.nodes()
            .take(self.config.etcd_members)
            .cloned()
            .collect()
    }

    /// Logs the last lines of every process log (before a failed start tears them down).
    fn show_logs(&self) {
        for h in &self.hosts {
            let Ok(entries) = std::fs::read_dir(h.log_dir()) else {
                continue;
            };
            for e in entries.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                tracing::error!(log = %e.path().display(), "last lines:\n{tail}");
            }
        }
    }

    /// The lab's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The configuration it was brought up with.
    pub fn config(&self) -> &LabConfig {
        &self.config
    }

    /// Every host: fabric, nodes, external client.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The cluster nodes, in order.
    pub fn nodes(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.is_node())
    }

    /// A host by short name (`fab`, `n1`, `ext`) or namespace name (`<lab>-n1`).
    pub fn host(&self, name: &str) -> Result<&Host> {
        self.hosts
            .iter()
            .find(|h| h.short == name || h.netns == name)
            .ok_or_else(|| Error::NoHost(name.to_owned()))
    }

    /// `host:port` of the registry.
    pub fn registry(&self) -> &'static str {
        REGISTRY
    }

    /// Images pushed at start-up (empty unless [`LabConfig::images`] was set).
    pub fn images(&self) -> &[BuiltImage] {
        &self.images
    }

    /// Where an admin kubeconfig is expected once a server runs (`{kubeconfig}` in templates).
    pub fn kubeconfig(&self) -> PathBuf {
        self.config.kubeconfig()
    }

    /// Adds `{ca_hash}`, the pin of the CA the server wrote under `{dir}/pki` of n1, to the
    /// template variables (when it is there: a server run differently writes it elsewhere).
    fn pin_ca(&mut self, n1: &Host) -> Result<()> {
        let ca = n1.dir.join("pki/ca.crt");
        let Ok(pem) = std::fs::read(&ca) else {
            return Ok(());
        };
        let hash = ekube_api::bootstrap::ca_cert_hash(&pem)
            .map_err(|e| Error::Config(format!("{}: {e}", ca.display())))?;
        self.config.vars.insert("ca_hash".into(), hash);
        Ok(())
    }

    /// Waits until the server has written the admin kubeconfig, naming its log on timeout.
    fn wait_for_kubeconfig(&self, server: u32) -> Result<()> {
        let timeout = self.config.server_timeout;
        let deadline = std::time::Instant::now() + timeout;
        let path = self.kubeconfig();
        while !path.exists() {
            if !process::alive(server) {
                return Err(Error::Command {
                    command: "server".into(),
                    stderr: format!("exited; see {}", self.log_path("n1", "server")?.display()),
                });
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "the server to write {} (see {})",
                        path.display(),
                        self.log_path("n1", "server")?.display()
                    ),
                    secs: timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Log file of process `name` on `host`.
    pub fn log_path(&self, host: &str, name: &str) -> Result<PathBuf> {
        Ok(self.host(host)?.log_dir().join(format!("{name}.log")))
    }

    /// Starts a long-lived process on `host` — in its network namespace and cgroup2 subtree,
    /// output to `<host dir>/logs/<name>.log` — and records its PID. Returns the PID.
    pub fn spawn<S: AsRef<str>>(&self, host: &str, name: &str, argv: &[S]) -> Result<u32> {
        self.spawn_with_env(host, name, argv, &[])
    }

    /// Like [`Lab::spawn`], with `env` added to the process's environment.
    pub fn spawn_with_env<S: AsRef<str>>(
        &self,
        host: &str,
        name: &str,
        argv: &[S],
        env: &[(&str, &str)],
    ) -> Result<u32> {
        let h = self.host(host)?;
        let argv: Vec<String> = argv.iter().map(|s| s.as_ref().to_owned()).collect();
        let log = self.log_path(host, name)?;
        let child = process::spawn(&h.netns, &h.cgroup, &log, &argv, env)?;
        let pid = child.id();
        let mut state = self.state.lock().expect("lab state lock");
        state.0.procs.push(process::record(pid, &h.short, name));
        state.1.push(child);
        write_state(&self.config.lab_dir(), &state.0)?;
        tracing::info!(host = %h.netns, name, pid, log = %log.display(), "started");
        Ok(pid)
    }

    /// Ends one process started by [`Lab::spawn`] (SIGTERM, then SIGKILL after 5 s) and forgets
    /// it, e.g. to restart a component. PIDs the lab did not start are refused.
    pub fn stop(&self, pid: u32) -> Result<()> {
        let mut state = self.state.lock().expect("lab state lock");
        let Some(i) = state.0.procs.iter().position(|r| r.pid == pid) else {
            return Err(self.not_ours(pid));
        };
        let record = state.0.procs.remove(i);
        if process::still_ours(&record) {
            let left = process::end(&[pid], GRACE);
            if !left.is_empty() {
                return Err(Error::Teardown {
                    lab: self.config.name.clone(),
                    left: format!("process {pid}"),
                });
            }
        }
        state.1.retain(|c| c.id() != pid);
        write_state(&self.config.lab_dir(), &state.0)
    }

    /// Ends one process started by [`Lab::spawn`] at once, with SIGKILL, as a crash would (it
    /// cleans nothing up), and forgets it. PIDs the lab did not start are refused.
    pub fn kill(&self, pid: u32) -> Result<()> {
        let mut state = self.state.lock().expect("lab state lock");
        let Some(i) = state.1.iter().position(|c| c.id() == pid) else {
            return Err(self.not_ours(pid));
        };
        let mut child = state.1.remove(i);
        // Through the child handle, which cannot signal a recycled PID.
        let _ = child.kill();
        let _ = child.wait();
        state.0.procs.retain(|r| r.pid != pid);
        write_state(&self.config.lab_dir(), &state.0)
    }

    fn not_ours(&self, pid: u32) -> Error {
        Error::Config(format!(
            "pid {pid} was not started by lab {}",
            self.config.name
        ))
    }

    /// PIDs of the running processes this lab started on `host` under `name` (e.g. `"agent"`,
    /// `"server"`).
    pub fn pids(&self, host: &str, name: &str) -> Vec<u32> {
        let state = self.state.lock().expect("lab state lock");
        state
            .0
            .procs
            .iter()
            .filter(|r| r.host == host && r.name == name && process::still_ours(r))
            .map(|r| r.pid)
            .collect()
    }

    /// Runs a one-shot command in `host`'s network namespace (bounded to 60 s).
    pub fn exec<S: AsRef<str>>(&self, host: &str, argv: &[S]) -> Result<ExecOutput> {
        self.exec_timeout(host, argv, EXEC_TIMEOUT)
    }

    /// Like [`Lab::exec`] with an explicit bound.
    pub fn exec_timeout<S: AsRef<str>>(
        &self,
        host: &str,
        argv: &[S],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        self.exec_with(host, false, argv, timeout)
    }

    /// Like [`Lab::exec_timeout`], in `host`'s cgroup too, where the node's eBPF service load
    /// balancing applies as it does to its pods (a ClusterIP is reachable).
    pub fn exec_in_cgroup<S: AsRef<str>>(
        &self,
        host: &str,
        argv: &[S],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        self.exec_with(host, true, argv, timeout)
    }

    fn exec_with<S: AsRef<str>>(
        &self,
        host: &str,
        in_cgroup: bool,
        argv: &[S],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        let argv: Vec<String> = argv.iter().map(|s| s.as_ref().to_owned()).collect();
        let h = self.host(host)?;
        let cgroup = in_cgroup.then_some(h.cgroup.as_str());
        process::exec(&h.netns, cgroup, &argv, timeout)
    }

    /// One HTTP request from inside `host` (e.g. `ext`), e.g. to the registry or a NodePort.
    pub fn http(
        &self,
        host: &str,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<http::Response> {
        http::request(
            &self.host(host)?.netns,
            method,
            url,
            headers,
            Vec::new(),
            Duration::from_secs(10),
        )
    }

    /// Leaves the lab running when the guard goes away (`lab up`); `lab down` ends it later.
    pub fn detach(mut self) {
        self.armed = false;
    }

    /// Tears the lab down now, reporting anything left behind.
    pub fn down(mut self) -> Result<()> {
        self.armed = false;
        self.reap();
        Self::teardown(&self.config.root, &self.config.name)
    }

    /// Reaps our exited children so none lingers as a zombie.
    fn reap(&self) {
        if let Ok(mut state) = self.state.lock() {
            for child in &mut state.1 {
                let _ = child.try_wait();
            }
        }
    }

    fn create_dirs(&self) -> Result<()> {
        for h in &self.hosts {
            for d in h.dirs() {
                std::fs::create_dir_all(&d).map_err(io_err("creating", &d))?;
            }
            if h.is_node() {
                let path = h.resolv_conf();
                std::fs::write(&path, resolver::node_resolv_conf())
                    .map_err(io_err("writing", &path))?;
            }
            if h.is_node() && self.config.registry {
                let path = h.registries_config();
                let mut yaml = registry::mirror_config(self.config.auth_registry);
                if self.config.auth_registry {
                    yaml.push_str(&registry::cert_config(&self.config.lab_dir()));
                }
                std::fs::write(&path, yaml).map_err(io_err("writing", &path))?;
            }
        }
        Ok(())
    }

    fn save_state(&self) -> Result<()> {
        write_state(
            &self.config.lab_dir(),
            &self.state.lock().expect("lab state lock").0,
        )
    }

    /// Removes the `ekube` pin directory and cgroup parents every lab shares, when no lab uses
    /// them any more. Not part of [`Lab::teardown`]: another lab may be starting at that moment;
    /// call it when no lab can be (`lab down`, the end of a test run).
    pub fn remove_shared_dirs() {
        let _ = std::fs::remove_dir(Path::new(BPFFS).join("ekube"));
        cgroup::remove_if_empty("ekube");
    }

    /// Removes everything lab `name` under `root` made, running or crashed. Succeeds when there
    /// is nothing to remove.
    pub fn teardown(root: &Path, name: &str) -> Result<()> {
        validate_name(name)?;
        let lab_dir = root.join(name);
        let cgroup_top = format!("ekube/{name}");
        let state: Option<State> = std::fs::read(lab_dir.join(STATE_FILE))
            .ok()
            .and_then(|s| serde_json::from_slice(&s).ok());

        // 1. Processes: recorded ones still matching their record, then anything living in the
        //    lab's namespaces or cgroups; twice, for children forked while the first ones ended.
        let mut pids: Vec<u32> = state
            .iter()
            .flat_map(|s| &s.procs)
            .filter(|r| process::still_ours(r))
            .map(|r| r.pid)
            .collect();
        for round in 0..3 {
            let inodes: Vec<u64> = net::lab_namespaces(name)
                .iter()
                .filter_map(|n| net::netns_inode(n))
                .collect();
            pids.extend(process::pids_in_netns(&inodes));
            pids.extend(cgroup::pids_in(&cgroup_top));
            pids.sort_unstable();
            pids.dedup();
            if pids.is_empty() {
                break;
            }
            tracing::debug!(lab = name, round, ?pids, "ending processes");
            let left = process::end(&pids, GRACE);
            if round == 2 && !left.is_empty() {
                return Err(Error::Teardown {
                    lab: name.into(),
                    left: format!("processes {left:?}"),
                });
            }
            pids.clear();
        }

        // 2. Namespaces.
        for ns in net::lab_namespaces(name) {
            net::delete(&ns)?;
        }

        // 3. Pins.
        let pins = Path::new(BPFFS).join("ekube");
        if let Ok(entries) = std::fs::read_dir(&pins) {
            for e in entries.flatten() {
                if e.file_name()
                    .to_str()
                    .is_some_and(|n| is_lab_netns(name, n))
                {
                    std::fs::remove_dir_all(e.path()).map_err(io_err("removing pins", e.path()))?;
                }
            }
        }

        // 4. Cgroups, deepest first.
        let left = cgroup::remove(&cgroup_top);
        if !left.is_empty() {
            return Err(Error::Teardown {
                lab: name.into(),
                left: format!("cgroups {left:?}"),
            });
        }

        // 5. Mounts under the lab directory (e.g. container root file systems), then the directory.
        for mount in mounts_under(&lab_dir) {
            let c = std::ffi::CString::new(mount.as_os_str().as_encoded_bytes())
                .expect("path without NUL");
            // SAFETY: umount2 with a valid C string.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                tracing::warn!(mount = %mount.display(), error = %std::io::Error::last_os_error(), "cannot unmount");
            }
        }
        if lab_dir.exists() {
            std::fs::remove_dir_all(&lab_dir).map_err(io_err("removing", &lab_dir))?;
        }

        let ns_left = net::lab_namespaces(name);
        if !ns_left.is_empty() {
            return Err(Error::Teardown {
                lab: name.into(),
                left: format!("namespaces {ns_left:?}"),
            });
        }
        tracing::info!(lab = name, "lab is down");
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.reap();
        if let Err(e) = Self::teardown(&self.config.root, &self.config.name) {
            tracing::error!(lab = %self.config.name, error = %e, "teardown failed");
            eprintln!("error: tearing down lab {}: {e}", self.config.name);
        }
    }
}

/// Fails early, naming the Debian package, when a tool the lab needs is missing.
fn check_tools(config: &LabConfig) -> Result<()> {
    let mut needed = vec![
        ("/usr/sbin/ip", "/bin/ip", "iproute2"),
        ("/bin/sh", "/usr/bin/sh", "dash"),
        (resolver::BINARY, resolver::BINARY, "dnsmasq-base"),
    ];
    if config.registry {
        needed.push((registry::BINARY, registry::BINARY, "docker-registry"));
    }
    if config.images.is_some() {
        needed.push((images::BUSYBOX, "/usr/bin/busybox", "busybox-static"));
    }
    if config.auth_registry {
        needed.push((registry::HTPASSWD, registry::HTPASSWD, "apache2-utils"));
    }
    if config.etcd_members > 0 {
        needed.push(("/usr/bin/etcd", "/usr/bin/etcd", "etcd-server"));
        needed.push(("/usr/bin/etcdctl", "/usr/bin/etcdctl", "etcd-client"));
    }
    if config.hub_images.is_some() {
        needed.push(("/usr/bin/dpkg-deb", "/bin/dpkg-deb", "dpkg"));
        needed.push(("/usr/bin/apt-get", "/bin/apt-get", "apt"));
    }
    for (a, b, package) in needed {
        if !Path::new(a).exists() && !Path::new(b).exists() {
            return Err(Error::Config(format!(
                "{a} is missing: install the Debian package {package}"
            )));
        }
    }
    Ok(())
}

/// Writes the state file through a rename, so a crash never leaves half of it.
fn write_state(lab_dir: &Path, state: &State) -> Result<()> {
    let path = lab_dir.join(STATE_FILE);
    let tmp = lab_dir.join(format!("{STATE_FILE}.tmp"));
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(state).expect("state is json"),
    )
    .map_err(io_err("writing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err("renaming", &path))
}

/// Mount points at or below `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    mounts.dedup();
    mounts
}

/// Mounts bpffs at [`BPFFS`] unless one is there already.
fn ensure_bpffs() -> Result<()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().expect("bpffs lock");
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounted = info.lines().any(|l| {
        l.split(' ').nth(4) == Some(BPFFS)
            && l.split_once(" - ")
                .is_some_and(|(_, r)| r.starts_with("bpf "))
    });
    if mounted {
        return Ok(());
    }
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let (src, target, fstype) = (c("bpf"), c(BPFFS), c("bpf"));
    // SAFETY: mount(2) with valid C strings and no data.
    if unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    } != 0
    {
        return Err(io_err("mounting bpffs at", BPFFS)(
            std::io::Error::last_os_error(),
        ));
    }
    tracing::info!("mounted bpffs at {BPFFS}");
    Ok(())
}

/// `bytes` random bytes as hex digits.
fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(io_err("reading", "/dev/urandom"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
