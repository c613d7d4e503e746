//! The kubelet rotates its client certificate before it expires, on a two-node lab whose
//! signers issue certificates lasting a minute (kubeadm's `controllerManager.extraArgs`
//! `cluster-signing-duration: 60s`): n2's agent
//! asks for a new one as `system:node:<n2>` (auto-approved as `selfnodeclient`), the
//! `kubelet-client-current.pem` link moves to the new pair, and the agent, not restarted, goes
//! on renewing its Lease and stays Ready past the first certificate's expiry.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster, is_ready};
use ekube_tests::wait_for;

const LAB: &str = "ekrot";
const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// The notBefore and notAfter of the certificate in the PEM file at `path`.
fn validity(path: &Path) -> Result<(SystemTime, SystemTime)> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ekube_api::client_cert::pem_validity(&pem)
        .with_context(|| format!("{} holds no certificate", path.display()))
}

#[test]
fn the_kubelet_renews_its_client_certificate_before_it_expires() -> Result<()> {
    let c = LabCluster::start(
        LAB,
        2,
        ClusterOptions {
            controller_manager_args: &["cluster-signing-duration=60s"],
            ..Default::default()
        },
    )?;
    let n2 = c.node_name("n2");
    let pem = c
        .lab
        .host("n2")?
        .dir
        .join("data/kubelet/pki/kubelet-client-current.pem");
    let first = std::fs::read_to_string(&pem)?;
    let (not_before, not_after) = validity(&pem)?;
    let life = not_after.duration_since(not_before)?;
    ensure!(
        life <= Duration::from_secs(70),
        "n2's first certificate lasts {life:?}, not the signing duration"
    );
    let agent = c.lab.pids("n2", "agent");

    // A renewal requested by the node itself, auto-approved and signed.
    let me = format!("system:node:{n2}");
    c.wait(
        Duration::from_secs(90),
        &format!("an approved, signed CSR requested by {me}"),
        |c| {
            Ok(c.list("csr", &[])?.iter().any(|r| {
                r["spec"]["signerName"] == SIGNER
                    && r["spec"]["username"] == me.as_str()
                    && r["status"]["certificate"].is_string()
                    && r["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Approved" && c["reason"] == "AutoApproved")
            }))
        },
    )?;
    wait_for(
        Duration::from_secs(30),
        "kubelet-client-current.pem to change",
        || Ok(std::fs::read_to_string(&pem)? != first),
    )?;
    let (_, renewed_until) = validity(&pem)?;
    ensure!(
        renewed_until > not_after,
        "the new certificate ends no later"
    );
    ensure!(
        std::fs::symlink_metadata(&pem)?.file_type().is_symlink(),
        "kubelet-client-current.pem is a link to a dated pair"
    );

    // Past the first certificate's expiry the same agent still renews its Lease and is Ready.
    let wait = not_after
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    std::thread::sleep(wait + Duration::from_secs(5));
    let renew_time = |c: &LabCluster| -> Result<String> {
        let lease: serde_json::Value = serde_json::from_str(&c.kubectl(&[
            "get",
            "lease",
            &n2,
            "-n",
            "kube-node-lease",
            "-o",
            "json",
        ])?)?;
        Ok(lease["spec"]["renewTime"].to_string())
    };
    let agent_log = || {
        let log = std::fs::read_to_string(c.lab.log_path("n2", "agent")?)?;
        anyhow::Ok(log)
    };
    let expired_at = renew_time(&c)?;
    c.wait(
        Duration::from_secs(30),
        "n2's Lease renewed after its first certificate expired",
        |c| Ok(renew_time(c)? != expired_at),
    )
    .with_context(|| {
        // What the agent did about its certificate, and its last words.
        let log = agent_log().unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let mut shown: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.contains("certificate"))
            .filter(|l| !l.contains("has expired"))
            .collect();
        shown.extend(lines.iter().rev().take(10).rev());
        format!("n2's agent log:\n{}", shown.join("\n"))
    })?;
    ensure!(is_ready(&c.get("node", &n2)?), "n2 is not Ready");
    ensure!(
        c.lab.pids("n2", "agent") == agent,
        "n2's agent was restarted"
    );
    let log = agent_log()?;
    ensure!(
        log.contains("client certificate rotated") && log.contains("reconnecting with it"),
        "n2's agent log shows no rotation taken up by its clients"
    );
    // No request went out on a connection (or a resumed TLS session) of an expired certificate.
    ensure!(
        !log.contains("the client certificate has expired"),
        "n2's agent used an expired certificate after the rotation"
    );
    Ok(())
}
