//! The few kernel calls aya 0.13 does not expose: creating and pinning cgroup and tcx
//! `bpf_link`s (aya cannot turn a cgroup sock_addr link into a pinnable `FdLink`), reading what
//! a link is attached to, running a packet through a program (`BPF_PROG_TEST_RUN`), listing
//! the IPv4 addresses of this network namespace, making sure a bpffs is mounted, and keeping
//! signals away from a program load.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_LINK_UPDATE: libc::c_long = 29;
/// `BPF_LINK_TYPE_CGROUP` in `bpf_link_info.type`.
const BPF_LINK_TYPE_CGROUP: u32 = 3;
/// `BPF_LINK_TYPE_TCX` in `bpf_link_info.type`.
const BPF_LINK_TYPE_TCX: u32 = 11;
/// `BPF_TCX_INGRESS` in `enum bpf_attach_type`.
pub const BPF_TCX_INGRESS: u32 = 46;
/// `BPF_TCX_EGRESS` in `enum bpf_attach_type`.
pub const BPF_TCX_EGRESS: u32 = 47;
/// `statfs.f_type` of a bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// `union bpf_attr`, large enough for the commands used here; unused bytes stay zero.
#[repr(C, align(8))]
struct Attr([u32; 32]);

impl Attr {
    fn new() -> Self {
        Self([0; 32])
    }

    fn set_u64(&mut self, index: usize, value: u64) {
        self.0[index] = value as u32;
        self.0[index + 1] = (value >> 32) as u32;
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, writable buffer of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut Attr,
            size_of::<Attr>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// `BPF_LINK_CREATE` of a cgroup program: attaches `prog` to `cgroup` for `attach_type`
/// (links on cgroups always allow several programs per hook).
pub fn link_create(
    prog: BorrowedFd<'_>,
    cgroup: BorrowedFd<'_>,
    attach_type: u32,
) -> io::Result<OwnedFd> {
    link_create_raw(prog, cgroup.as_raw_fd() as u32, attach_type)
}

/// `BPF_LINK_CREATE` of a tc program with tcx (kernel 6.6+, no qdisc needed): attaches `prog`
/// to interface `ifindex` for [`BPF_TCX_INGRESS`] or [`BPF_TCX_EGRESS`], after the programs
/// already there.
pub fn link_create_tcx(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    attach_type: u32,
) -> io::Result<OwnedFd> {
    link_create_raw(prog, ifindex, attach_type)
}

/// `target` is a cgroup fd or an ifindex (the same `link_create.target_*` union member).
fn link_create_raw(prog: BorrowedFd<'_>, target: u32, attach_type: u32) -> io::Result<OwnedFd> {
    let mut attr = Attr::new();
    attr.0[0] = prog.as_raw_fd() as u32;
    attr.0[1] = target;
    attr.0[2] = attach_type;
    let fd = bpf(BPF_LINK_CREATE, &mut attr)?;
    // SAFETY: the kernel returned a new file descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `BPF_LINK_UPDATE`: makes `link` run `prog` instead of its current program, atomically (no
/// packet or connect sees neither).
pub fn link_update(link: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = Attr::new();
    attr.0[0] = link.as_raw_fd() as u32;
    attr.0[1] = prog.as_raw_fd() as u32;
    bpf(BPF_LINK_UPDATE, &mut attr).map(drop)
}

/// `BPF_PROG_TEST_RUN` of a tc program: runs `prog` once over the Ethernet frame `data` (in
/// this thread's network namespace; nothing is sent) and returns the program's return value
/// and the frame as the program left it.
pub fn prog_test_run(prog: BorrowedFd<'_>, data: &[u8]) -> io::Result<(u32, Vec<u8>)> {
    // Room for a program that grows the frame (encapsulation); the kernel fails with ENOSPC
    // rather than truncate.
    let mut out = vec![0u8; data.len() + 256];
    let mut attr = Attr::new();
    attr.0[0] = prog.as_raw_fd() as u32;
    attr.0[2] = u32::try_from(data.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    attr.0[3] = out.len() as u32;
    attr.set_u64(4, data.as_ptr() as u64);
    attr.set_u64(6, out.as_mut_ptr() as u64);
    attr.0[8] = 1;
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    out.truncate(attr.0[3] as usize);
    Ok((attr.0[1], out))
}

/// `BPF_OBJ_PIN`: pins a map, program or link at `path` on a bpffs.
pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let path = c_path(path)?;
    let mut attr = Attr::new();
    attr.set_u64(0, path.as_ptr() as u64);
    attr.0[2] = fd.as_raw_fd() as u32;
    bpf(BPF_OBJ_PIN, &mut attr).map(drop)
}

/// `BPF_OBJ_GET`: opens a pinned object.
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let path = c_path(path)?;
    let mut attr = Attr::new();
    attr.set_u64(0, path.as_ptr() as u64);
    let fd = bpf(BPF_OBJ_GET, &mut attr)?;
    // SAFETY: the kernel returned a new file descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The cgroup id and attach type of a cgroup link (`None` if `link` is another kind of link).
pub fn cgroup_link_info(link: BorrowedFd<'_>) -> io::Result<Option<(u64, u32)>> {
    let info = link_info(link)?;
    if info[0] as u32 != BPF_LINK_TYPE_CGROUP {
        return Ok(None);
    }
    Ok(Some((info[2], info[3] as u32)))
}

/// The ifindex and attach type of a tcx link (`None` for other links; ifindex 0 once its
/// interface is gone).
pub fn tcx_link_info(link: BorrowedFd<'_>) -> io::Result<Option<(u32, u32)>> {
    let info = link_info(link)?;
    if info[0] as u32 != BPF_LINK_TYPE_TCX {
        return Ok(None);
    }
    Ok(Some((info[2] as u32, (info[2] >> 32) as u32)))
}

/// The id of the program a link runs.
pub fn link_prog_id(link: BorrowedFd<'_>) -> io::Result<u32> {
    Ok(link_info(link)?[1] as u32)
}

/// The id of a loaded program or map (`struct bpf_prog_info` and `struct bpf_map_info` both
/// begin with type, id).
pub fn object_id(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut info = [0u64; 2];
    obj_info(fd, &mut info)?;
    Ok((info[0] >> 32) as u32)
}

/// The ids of the maps a program uses (`struct bpf_prog_info`: `nr_map_ids` and `map_ids`
/// after type, id, tag, the two lengths, the two instruction pointers, load time and uid).
pub fn prog_map_ids(prog: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut info = [0u64; 8];
    info[6] = (ids.len() as u64) << 32;
    info[7] = ids.as_mut_ptr() as u64;
    obj_info(prog, &mut info)?;
    let count = ((info[6] >> 32) as usize).min(ids.len());
    ids.truncate(count);
    Ok(ids)
}

fn obj_info(fd: BorrowedFd<'_>, info: &mut [u64]) -> io::Result<()> {
    let mut attr = Attr::new();
    attr.0[0] = fd.as_raw_fd() as u32;
    attr.0[1] = size_of_val(info) as u32;
    attr.set_u64(2, info.as_mut_ptr() as u64);
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map(drop)
}

/// struct bpf_link_info: type, id, prog_id, then (8-aligned) the per-type union: cgroup
/// { cgroup_id, attach_type }, tcx { ifindex, attach_type }.
fn link_info(link: BorrowedFd<'_>) -> io::Result<[u64; 12]> {
    let mut info = [0u64; 12];
    obj_info(link, &mut info)?;
    Ok(info)
}

/// Every IPv4 address of this network namespace with its interface name and index
/// (`getifaddrs(3)`, which asks the kernel over netlink: `/sys/class/net` may belong to
/// another namespace).
pub fn ipv4_addrs() -> io::Result<Vec<(String, u32, std::net::Ipv4Addr)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: valid out-pointer; freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null()
            || i32::from(unsafe { (*ifa.ifa_addr).sa_family }) != libc::AF_INET
        {
            continue;
        }
        // SAFETY: an AF_INET address is a sockaddr_in; the name is a C string.
        let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        let Ok(index) = ifindex(&name.to_string_lossy()) else {
            continue;
        };
        out.push((
            name.to_string_lossy().into_owned(),
            index,
            std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
        ));
    }
    // SAFETY: the list getifaddrs allocated.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// The index of interface `name` in this network namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))?;
    // SAFETY: a valid C string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        index => Ok(index),
    }
}

/// Runs `f` with every signal blocked on this thread; the mask is restored afterwards (also
/// if `f` panics).
///
/// The verifier gives up with `EAGAIN` when a signal is pending for the loading thread, and a
/// large program takes it hundreds of milliseconds on a busy host: in `ekube agent` the kubelet
/// starting containers sends the process a stream of `SIGCHLD`s, any of which may land on the
/// loading thread. Blocked here, they go to another thread.
pub fn without_signals<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(libc::sigset_t);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: puts back the mask saved below, for this thread only.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
        }
    }
    // SAFETY: `sigset_t` is plain data that sigfillset initialises; pthread_sigmask changes only
    // this thread's mask and stores the previous one, which `Restore` puts back.
    let _restore = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut previous);
        Restore(previous)
    };
    f()
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns()`.
pub fn monotonic_ns() -> u64 {
    // SAFETY: zeroed timespec is a valid out-parameter.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whether `path` is the root of a mounted bpffs.
pub fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c = c_path(path)?;
    // SAFETY: zeroed statfs is a valid out-parameter; `c` is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// Mounts a bpffs at `path` (mode 0700, like systemd does for /sys/fs/bpf).
pub fn mount_bpffs(path: &Path) -> io::Result<()> {
    let target = c_path(path)?;
    let (source, fstype, data) = (c"bpffs", c"bpf", c"mode=700");
    // SAFETY: all pointers are valid C strings.
    let ret = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if ret != 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(signal: libc::c_int) -> bool {
        // SAFETY: reads this thread's mask into a zeroed set.
        unsafe {
            let mut mask: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
            libc::sigismember(&mask, signal) == 1
        }
    }

    #[test]
    fn signals_are_blocked_only_while_loading() {
        assert!(!blocked(libc::SIGCHLD));
        assert!(without_signals(
            || blocked(libc::SIGCHLD) && blocked(libc::SIGTERM)
        ));
        assert!(!blocked(libc::SIGCHLD));
        let panicked = std::panic::catch_unwind(|| without_signals(|| panic!("in the load")));
        assert!(panicked.is_err());
        assert!(!blocked(libc::SIGCHLD), "mask not restored after a panic");
    }
}
