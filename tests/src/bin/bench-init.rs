//! `cargo xtask bench init`: how long installing takes, measured (issue #15).
//!
//! Each round brings up a fresh two-node lab (`ekbinit`) where nothing runs, and times, from
//! the command's start to the Node being Ready:
//! - `ekube init` on n1 (preflight, certificates, control plane, n1's agent, …);
//! - the join command it printed, run on n2 (discovery, TLS bootstrap, n2's agent);
//! - beside them, on a fresh lab, `ekube server` then `ekube agent` with the admin
//!   kubeconfig on n1, started directly as before init existed.
//!
//! Medians of `--rounds`, side by side.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use ekube_lab::SERVER_CMD;
use ekube_tests::bench::{self, Table, median};
use ekube_tests::cluster::{ClusterOptions, LabCluster, is_ready};
use serde_json::json;

const LAB: &str = "ekbinit";

#[derive(Parser)]
struct Args {
    /// Where the JSON report goes.
    #[arg(default_value = "target/bench")]
    out_dir: PathBuf,
    /// Rounds of each measurement.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// Polls until node `short` of `c` is Ready; the time since `since`.
fn ready_after(c: &LabCluster, short: &str, since: Instant) -> Result<Duration> {
    let name = c.node_name(short);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(node) = c.get("node", &name)
            && is_ready(&node)
        {
            return Ok(since.elapsed());
        }
        ensure!(
            Instant::now() < deadline,
            "node {name} not Ready after 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One round of `ekube init` on n1, then the printed join on n2.
fn init_and_join() -> Result<(Duration, Duration)> {
    let c = LabCluster::bare(LAB, 2, ClusterOptions::default())?;
    let pki = c.lab.host("n1")?.dir.join("pki").display().to_string();
    let argv = c.init_argv(&[
        "--apiserver-advertise-address",
        "192.168.64.10",
        "--node-name",
        &c.node_name("n1"),
        "--cert-dir",
        &pki,
    ])?;
    let started = Instant::now();
    let out = c.lab.exec_timeout("n1", &argv, Duration::from_secs(120))?;
    ensure!(out.success(), "ekube init: {}", out.stderr);
    let init = ready_after(&c, "n1", started)?;
    let join = c.join_argv(&out.stdout, "n2")?;
    let started = Instant::now();
    c.lab.spawn("n2", "agent", &join)?;
    Ok((init, ready_after(&c, "n2", started)?))
}

/// One round of `ekube server` and `ekube agent` (admin kubeconfig) started directly on n1.
fn server_and_agent() -> Result<Duration> {
    let c = LabCluster::bare(LAB, 1, ClusterOptions::default())?;
    let n1 = c.lab.host("n1")?;
    // Where this lab's kubectl looks (n1's directory), not the lab's own admin.conf.
    let admin = n1.dir.join("admin.conf");
    let mut vars = n1.vars(c.lab.config());
    vars.insert("kubeconfig".into(), admin.display().to_string());
    let server = ekube_lab::CmdTemplate::parse(SERVER_CMD).render(&vars);
    let mut agent = vec![
        ekube_tests::ekube_bin().display().to_string(),
        "agent".to_string(),
    ];
    agent.extend(c.agent_flags("n1")?);
    agent.extend(["--kubeconfig".into(), admin.display().to_string()]);
    let started = Instant::now();
    c.lab.spawn("n1", "server", &server)?;
    while !admin.exists() {
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the server wrote no admin kubeconfig"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    c.lab.spawn("n1", "agent", &agent)?;
    ready_after(&c, "n1", started)
}

fn main() -> Result<()> {
    let args = Args::parse();
    bench::require_root("bench init")?;
    let (mut init, mut join, mut direct) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let (i, j) = init_and_join().with_context(|| format!("round {round}: init and join"))?;
        let d = server_and_agent().with_context(|| format!("round {round}: server and agent"))?;
        eprintln!(
            "round {round}: init → Ready {i:.2?}, join → Ready {j:.2?}, server + agent → Ready {d:.2?}"
        );
        init.push(i.as_secs_f64());
        join.push(j.as_secs_f64());
        direct.push(d.as_secs_f64());
    }
    let (init_m, join_m, direct_m) = (median(&init), median(&join), median(&direct));
    let mut table = Table::new(&[
        &format!("command → node Ready, median of {}", args.rounds),
        "seconds",
        "vs server + agent",
    ]);
    table.row(vec![
        "`ekube init` (control plane and n1)".into(),
        format!("{init_m:.2}"),
        bench::ratio(init_m, direct_m),
    ]);
    table.row(vec![
        "`ekube join` (n2: discovery, TLS bootstrap, agent)".into(),
        format!("{join_m:.2}"),
        bench::ratio(join_m, direct_m),
    ]);
    table.row(vec![
        "`ekube server` + `ekube agent` (admin kubeconfig)".into(),
        format!("{direct_m:.2}"),
        bench::ratio(direct_m, direct_m),
    ]);
    print!("{}", table.markdown());
    bench::write_json(
        &args.out_dir,
        "init",
        &json!({
            "bench": "init",
            "rounds": args.rounds,
            "init_to_ready_s": init,
            "join_to_ready_s": join,
            "server_and_agent_to_ready_s": direct,
        }),
    )?;
    Ok(())
}
