//! Seccomp filters of containers: the built-in `RuntimeDefault` profile, and `Localhost`
//! profiles read from a JSON file, both turned into the OCI spec's `linux.seccomp` for runc.
//!
//! `RuntimeDefault` has the effect of containerd's (and Docker's) default profile: every system
//! call fails with `EPERM` unless it is on the allow-list below. The list keeps what ordinary
//! programs need (files, sockets, processes, signals, time, memory, IPC) and leaves out what
//! reaches the kernel's global state (modules, mounts, namespaces, clocks, keyrings, reboot,
//! BPF, perf, io_uring, `userfaultfd`, `kexec`, swap, quotas). A few calls are allowed only with
//! the capability that makes them meaningful, so that adding `SYS_ADMIN` or `SYS_PTRACE` to a
//! container also opens the calls that capability governs. New namespaces through `clone` are
//! refused without `SYS_ADMIN`, and `clone3` (whose flags a filter cannot read) answers
//! `ENOSYS` so that C libraries fall back to `clone`.
//!
//! Names the host's libseccomp does not know are skipped by runc, so the list may name calls
//! of newer kernels.

use std::collections::HashSet;
use std::path::Path;

use oci_spec::runtime::LinuxSeccomp;
use serde_json::{Value, json};

use super::{Error, Result};

/// Allowed for every container (by name, across the x86 family and arm64).
const ALLOWED: &[&str] = &[
    // files and directories
    "access",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "close",
    "close_range",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "ioctl",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "name_to_handle_at",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "sendfile",
    "sendfile64",
    "setxattr",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "tee",
    "truncate",
    "truncate64",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vmsplice",
    "write",
    "writev",
    "cachestat",
    // asynchronous I/O and event waiting
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "poll",
    "ppoll",
    "ppoll_time64",
    "pselect6",
    "pselect6_time64",
    "select",
    "_newselect",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    // sockets
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socket",
    "socketcall",
    "socketpair",
    // processes, credentials and limits
    "capget",
    "capset",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "vfork",
    "getcpu",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "ugetrlimit",
    "getrusage",
    "getsid",
    "gettid",
    "getuid",
    "getuid32",
    "ioprio_get",
    "ioprio_set",
    "kill",
    "tkill",
    "tgkill",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "prlimit64",
    "process_mrelease",
    "rseq",
    "restart_syscall",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setuid",
    "setuid32",
    "set_robust_list",
    "get_robust_list",
    "set_tid_address",
    "set_thread_area",
    "get_thread_area",
    "wait4",
    "waitid",
    "waitpid",
    "uname",
    "sysinfo",
    "getrandom",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "membarrier",
    // a process may inspect its own children (harmless since Linux 4.8: ptrace no longer
    // slips past seccomp)
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    // signals
    "alarm",
    "pause",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sigaltstack",
    "sigprocmask",
    "sigreturn",
    // time and timers (reading clocks; setting them needs SYS_TIME)
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "gettimeofday",
    "nanosleep",
    "time",
    "times",
    "getitimer",
    "setitimer",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "adjtimex",
    "clock_adjtime",
    "clock_adjtime64",
    // memory
    "brk",
    "madvise",
    "map_shadow_stack",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    "mseal",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "remap_file_pages",
    // futexes
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    // System V and POSIX IPC (in the pod's own IPC namespace)
    "ipc",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    // pipes
    "pipe",
    "pipe2",
];

/// Allowed only on x86: `arch_prctl` sets the TLS base on x86_64, `modify_ldt` serves old
/// 32-bit code (Wine, some JITs).
const ALLOWED_X86: &[&str] = &["arch_prctl", "modify_ldt"];

/// Calls allowed when the container holds the capability (name without `CAP_`).
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("SYS_BOOT", &["reboot"]),
    ("SYS_CHROOT", &["chroot"]),
    (
        "SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("SYS_PACCT", &["acct"]),
    ("SYS_PTRACE", &["kcmp", "pidfd_getfd", "process_madvise"]),
    ("SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("SYS_TTY_CONFIG", &["vhangup"]),
    (
        "SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("SYSLOG", &["syslog"]),
    ("BPF", &["bpf"]),
    ("PERFMON", &["perf_event_open"]),
];

/// `personality` values a container may set: Linux, 32-bit Linux, the `uname26` variants,
/// and `0xffffffff` (which only reads the current value).
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The `CLONE_NEW*` flag bits (`CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
/// CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET`): a `clone` without `SYS_ADMIN` must have none.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The seccomp architectures of this host, and whether it is in the x86 family; `None` on
/// hosts the built-in profile has not been written for.
fn host_arches() -> Option<(&'static [&'static str], bool)> {
    match std::env::consts::ARCH {
        "x86_64" => Some((
            &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            true,
        )),
        "aarch64" => Some((&["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"], false)),
        _ => None,
    }
}

fn allow(names: &[&str]) -> Value {
    json!({ "names": names, "action": "SCMP_ACT_ALLOW" })
}

/// The built-in `RuntimeDefault` profile for a container holding `caps` (names without
/// `CAP_`).
pub fn runtime_default(caps: &HashSet<String>) -> Result<LinuxSeccomp> {
    let (arches, x86) = host_arches().ok_or_else(|| {
        Error::InvalidArgument(format!(
            "the RuntimeDefault seccomp profile is not defined for {}; use Unconfined or a \
             Localhost profile",
            std::env::consts::ARCH
        ))
    })?;
    let mut rules = vec![allow(ALLOWED)];
    if x86 {
        rules.push(allow(ALLOWED_X86));
    }
    for value in PERSONALITIES {
        rules.push(json!({
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{ "index": 0, "value": value, "op": "SCMP_CMP_EQ" }],
        }));
    }
    let mut granted: Vec<&str> = BY_CAPABILITY
        .iter()
        .filter(|(cap, _)| caps.contains(*cap))
        .flat_map(|(_, names)| names.iter().copied())
        .collect();
    granted.sort_unstable();
    granted.dedup();
    if !granted.is_empty() {
        rules.push(allow(&granted));
    }
    if !caps.contains("SYS_ADMIN") {
        rules.push(json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{
                "index": 0,
                "value": CLONE_NAMESPACE_FLAGS,
                "valueTwo": 0,
                "op": "SCMP_CMP_MASKED_EQ",
            }],
        }));
        rules.push(json!({
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": ENOSYS,
        }));
    }
    serde_json::from_value(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": arches,
        "syscalls": rules,
    }))
    .map_err(Error::spec)
}

/// A `Localhost` profile: the JSON file at `path`, in the OCI form (`defaultAction`,
/// `architectures`, `syscalls`) or Docker's (which adds `archMap` and `name`). Conditional
/// rules (`includes`/`excludes`) are refused rather than applied unconditionally.
pub fn localhost(path: &Path) -> Result<LinuxSeccomp> {
    if !path.is_absolute() {
        return Err(Error::InvalidArgument(format!(
            "seccomp profile path {} is not absolute",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::InvalidArgument(format!(
            "cannot read seccomp profile {}: {e}",
            path.display()
        ))
    })?;
    let invalid =
        |why: String| Error::InvalidArgument(format!("seccomp profile {}: {why}", path.display()));
    let mut profile: Value =
        serde_json::from_str(&text).map_err(|e| invalid(format!("not JSON: {e}")))?;
    normalize(&mut profile).map_err(invalid)?;
    serde_json::from_value(profile).map_err(|e| invalid(e.to_string()))
}

/// Rewrites Docker's form of a profile into the OCI form, in place.
fn normalize(profile: &mut Value) -> Result<(), String> {
    let obj = profile
        .as_object_mut()
        .ok_or("the profile is not a JSON object")?;
    if let Some(map) = obj.remove("archMap")
        && !obj.contains_key("architectures")
    {
        let native = host_arches().map(|(a, _)| a[0]).unwrap_or_default();
        let arches: Vec<Value> = map
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["architecture"] == native)
            .flat_map(|m| {
                std::iter::once(m["architecture"].clone()).chain(
                    m["subArchitectures"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                )
            })
            .collect();
        obj.insert("architectures".into(), Value::Array(arches));
    }
    obj.remove("comment");
    for rule in obj
        .get_mut("syscalls")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let rule = rule
            .as_object_mut()
            .ok_or("a syscall rule is not an object")?;
        for cond in ["includes", "excludes"] {
            if rule
                .remove(cond)
                .is_some_and(|c| c.as_object().is_some_and(|o| !o.is_empty()))
            {
                return Err(format!(
                    "conditional rules (\"{cond}\") are not supported; list the system calls \
                     without conditions"
                ));
            }
        }
        rule.remove("comment");
        if let Some(name) = rule.remove("name") {
            rule.insert("names".into(), json!([name]));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(names: &[&str]) -> HashSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn rules_for(profile: &LinuxSeccomp, name: &str) -> Vec<Value> {
        let json = serde_json::to_value(profile).unwrap();
        json["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["names"].as_array().unwrap().contains(&json!(name)))
            .cloned()
            .collect()
    }

    #[test]
    fn default_profile_denies_unless_listed() {
        let p = runtime_default(&caps(&["CHOWN", "KILL"])).unwrap();
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], EPERM);
        assert!(!rules_for(&p, "read").is_empty());
        assert!(!rules_for(&p, "execve").is_empty());
        for denied in [
            "mount",
            "unshare",
            "setns",
            "bpf",
            "kexec_load",
            "reboot",
            "keyctl",
        ] {
            assert!(rules_for(&p, denied).is_empty(), "{denied} must be denied");
        }
        // clone only without namespace flags, clone3 answers ENOSYS.
        let clone = rules_for(&p, "clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(clone[0]["args"][0]["value"], CLONE_NAMESPACE_FLAGS);
        let clone3 = rules_for(&p, "clone3");
        assert_eq!(clone3[0]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(clone3[0]["errnoRet"], ENOSYS);
        assert_eq!(rules_for(&p, "personality").len(), PERSONALITIES.len());
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(json["architectures"][0], "SCMP_ARCH_X86_64");
            assert!(!rules_for(&p, "arch_prctl").is_empty());
        }
    }

    #[test]
    fn capabilities_open_the_calls_they_govern() {
        let p = runtime_default(&caps(&["SYS_ADMIN", "SYS_TIME"])).unwrap();
        for allowed in ["mount", "unshare", "setns", "clock_settime"] {
            assert!(!rules_for(&p, allowed).is_empty(), "{allowed}");
        }
        // clone is unconditional with SYS_ADMIN.
        let clone = rules_for(&p, "clone");
        assert_eq!(clone.len(), 1);
        assert!(clone[0].get("args").is_none());
        assert!(rules_for(&p, "reboot").is_empty());
    }

    #[test]
    fn localhost_profiles_in_docker_form_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(
            &path,
            r#"{"defaultAction":"SCMP_ACT_LOG","comment":"x",
                "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]}],
                "syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":13,"includes":{}},
                            {"name":"chmod","action":"SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        let p = localhost(&path).unwrap();
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_LOG");
        assert_eq!(json["syscalls"][0]["errnoRet"], 13);
        assert_eq!(json["syscalls"][1]["names"], json!(["chmod"]));
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(
                json["architectures"],
                json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
            );
        }
    }

    #[test]
    fn localhost_profiles_that_cannot_be_honoured_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(
            &path,
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["ptrace"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"4.8"}}]}"#,
        )
        .unwrap();
        let err = localhost(&path).unwrap_err().to_string();
        assert!(err.contains("includes"), "{err}");
        let err = localhost(&dir.path().join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read seccomp profile"), "{err}");
        std::fs::write(&path, "{").unwrap();
        assert!(
            localhost(&path)
                .unwrap_err()
                .to_string()
                .contains("not JSON")
        );
    }
}
