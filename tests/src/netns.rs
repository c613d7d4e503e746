//! Network namespaces for the end-to-end tests: commands inside them, `ip` that must succeed,
//! and clean-up of namespaces a crashed earlier run left (named `<prefix><pid>-…`).

use std::path::Path;
use std::process::Command;

/// A command that runs its arguments in network namespace `name` through `nsenter`, which
/// keeps the real `/sys` (cgroups, bpffs) unlike `ip netns exec`.
pub fn nsenter(name: &str) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{name}")).arg("--");
    cmd
}

/// Runs `ip <args>`; panics with its error output when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes namespace `name`, if it exists.
pub fn delete(name: &str) {
    let _ = Command::new("ip").args(["netns", "delete", name]).output();
}

/// Whether `name` is `<prefix><pid>-…` of a process that is gone.
pub fn stale(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.split('-').next()?.parse::<u32>().ok())
        .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

/// Deletes the namespaces of earlier runs (see [`stale`]) whose process is gone.
pub fn clear_stale(prefix: &str) {
    for ns in std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = ns.file_name().to_string_lossy().into_owned();
        if stale(prefix, &name) {
            delete(&name);
        }
    }
}
