//! Helpers the loopback-server test files share that need the apiserver crate (a
//! dev-dependency, out of the `ekube-tests` library).

use std::path::PathBuf;

use ekube_apiserver::pki;
use ekube_tests::ServerProcess;

/// A kubeconfig for `user` (groups `groups`) with a client certificate from the server's CA,
/// written next to the admin's.
pub fn user_kubeconfig(s: &ServerProcess, user: &str, groups: &[&str]) -> PathBuf {
    let ca = pki::Ca::load_or_create(&s.dir.join("pki")).unwrap();
    let issued = ca.issue(user, groups, &[], false).unwrap();
    let path = s.dir.join(format!("{}.conf", user.replace(':', "-")));
    pki::write_kubeconfig(
        &path,
        &format!("https://127.0.0.1:{}", s.port),
        &ca.cert_pem,
        user,
        &issued,
    )
    .unwrap();
    path
}
