//! Upstream's `replica_calculator_test.go` cases, on fixed pods and metrics.

use super::*;

fn now() -> Timestamp {
    "2026-01-01T12:00:00Z".parse().unwrap()
}

/// A running pod, ready for long, requesting `request` milli-units in one container.
fn pod(name: &str, request: i64) -> PodInfo {
    PodInfo {
        name: name.into(),
        phase: "Running".into(),
        deleting: false,
        start_time: Some(now() - Duration::from_secs(3600)),
        ready: Some((true, now() - Duration::from_secs(3500))),
        requests: vec![("app".into(), Some(request))],
    }
}

fn metrics(values: &[(&str, i64)]) -> PodMetrics {
    values
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                PodMetric {
                    value: *v,
                    timestamp: now() - Duration::from_secs(10),
                    window: Duration::from_secs(30),
                },
            )
        })
        .collect()
}

struct Case {
    name: &'static str,
    pods: Vec<PodInfo>,
    metrics: PodMetrics,
    current: i32,
    target: Target,
    want: Result<i32, &'static str>,
    utilization: Option<i32>,
}

fn run(c: Case) {
    let got = calculate(
        &c.pods,
        c.metrics,
        "cpu",
        None,
        c.current,
        c.target,
        Tolerances::default(),
        now(),
    );
    match (&got, c.want) {
        (Ok(p), Ok(want)) => {
            assert_eq!(p.replicas, want, "{}: replicas", c.name);
            if c.utilization.is_some() {
                assert_eq!(p.utilization, c.utilization, "{}: utilization", c.name);
            }
        }
        (Err(e), Err(want)) => assert!(e.contains(want), "{}: error {e:?}", c.name),
        _ => panic!("{}: got {got:?}, want {:?}", c.name, c.want),
    }
}

fn pods(n: usize, request: i64) -> Vec<PodInfo> {
    (0..n).map(|i| pod(&format!("p{i}"), request)).collect()
}

#[test]
fn table() {
    let mut unready = pods(3, 1000);
    unready[2].ready = Some((false, now() - Duration::from_secs(3500)));
    unready[2].start_time = Some(now() - Duration::from_secs(3510));
    let mut pending = pods(3, 1000);
    pending[2].phase = "Pending".into();
    let mut failed_and_deleting = pods(4, 1000);
    failed_and_deleting[2].phase = "Failed".into();
    failed_and_deleting[3].deleting = true;
    let mut initializing = pods(3, 1000);
    // Started a minute ago and ready, but no full metric window since.
    initializing[2].start_time = Some(now() - Duration::from_secs(60));
    initializing[2].ready = Some((true, now() - Duration::from_secs(15)));
    let mut no_request = pods(2, 1000);
    no_request[1].requests = vec![("app".into(), None)];
    let cases = vec![
        Case {
            name: "scale up",
            pods: pods(3, 1000),
            metrics: metrics(&[("p0", 900), ("p1", 1000), ("p2", 1100)]),
            current: 3,
            target: Target::Utilization(40),
            want: Ok(8),
            utilization: Some(100),
        },
        Case {
            name: "scale down",
            pods: pods(5, 1000),
            metrics: metrics(&[
                ("p0", 100),
                ("p1", 300),
                ("p2", 500),
                ("p3", 250),
                ("p4", 250),
            ]),
            current: 5,
            target: Target::Utilization(50),
            want: Ok(3),
            utilization: Some(28),
        },
        Case {
            name: "within tolerance, no change",
            pods: pods(3, 1000),
            metrics: metrics(&[("p0", 1010), ("p1", 1030), ("p2", 1020)]),
            current: 3,
            target: Target::Utilization(100),
            want: Ok(3),
            utilization: Some(102),
        },
        Case {
            name: "missing metrics on scale up count as 0%",
            pods: pods(4, 1000),
            metrics: metrics(&[("p0", 1000), ("p1", 1000), ("p2", 1000)]),
            current: 4,
            target: Target::Utilization(50),
            // ratio 2 on 3 pods; with p3 at 0: 3000/4000 = 75% → 1.5 × 4 = 6.
            want: Ok(6),
            utilization: Some(100),
        },
        Case {
            name: "missing metrics on scale down count as 100%",
            pods: pods(4, 1000),
            metrics: metrics(&[("p0", 100), ("p1", 100), ("p2", 100)]),
            current: 4,
            target: Target::Utilization(50),
            // 300/3000 = 10%; with p3 at 100%: 1300/4000 = 32% → 0.64 × 4 → 3.
            want: Ok(3),
            utilization: Some(10),
        },
        Case {
            name: "missing metrics that would flip the direction keep the scale",
            pods: pods(4, 1000),
            metrics: metrics(&[("p0", 450), ("p1", 450), ("p2", 450)]),
            current: 4,
            target: Target::Utilization(50),
            want: Ok(4),
            utilization: Some(45),
        },
        Case {
            name: "unready pods count as 0% on scale up",
            pods: unready.clone(),
            metrics: metrics(&[("p0", 1000), ("p1", 1000), ("p2", 1000)]),
            current: 3,
            target: Target::Utilization(50),
            // 2000/2000 = 100% on the ready two; with p2 at 0: 2000/3000 = 66% → 1.32 × 3 → 4.
            want: Ok(4),
            utilization: Some(100),
        },
        Case {
            name: "unready pods are left out on scale down",
            pods: unready,
            metrics: metrics(&[("p0", 100), ("p1", 100), ("p2", 1000)]),
            current: 3,
            target: Target::Utilization(50),
            // Only p0, p1: 10% → 0.2 × 2 ready → 1.
            want: Ok(1),
            utilization: Some(10),
        },
        Case {
            name: "pending pods count as unready",
            pods: pending,
            metrics: metrics(&[("p0", 1000), ("p1", 1000)]),
            current: 3,
            target: Target::Utilization(50),
            want: Ok(4),
            utilization: Some(100),
        },
        Case {
            name: "failed and deleting pods are ignored",
            pods: failed_and_deleting,
            metrics: metrics(&[("p0", 1000), ("p1", 1000), ("p2", 5000), ("p3", 5000)]),
            current: 4,
            target: Target::Utilization(100),
            want: Ok(4),
            utilization: Some(100),
        },
        Case {
            name: "cpu of a pod initializing without a full window is unready",
            pods: initializing,
            metrics: metrics(&[("p0", 1000), ("p1", 1000), ("p2", 3000)]),
            current: 3,
            target: Target::Utilization(50),
            want: Ok(4),
            utilization: Some(100),
        },
        Case {
            name: "average value target",
            pods: pods(3, 1000),
            metrics: metrics(&[("p0", 500), ("p1", 600), ("p2", 700)]),
            current: 3,
            target: Target::AverageValue(300),
            want: Ok(6),
            utilization: None,
        },
        Case {
            name: "average value target, missing metric on scale down counts as the target",
            pods: pods(3, 1000),
            metrics: metrics(&[("p0", 50), ("p1", 50)]),
            current: 3,
            target: Target::AverageValue(300),
            // 50/300 on two; with p2 at 300: 400/3 = 133 → 0.443 × 3 → 2.
            want: Ok(2),
            utilization: None,
        },
        Case {
            name: "no pods",
            pods: vec![],
            metrics: metrics(&[]),
            current: 1,
            target: Target::Utilization(50),
            want: Err("no pods returned by selector"),
            utilization: None,
        },
        Case {
            name: "no metrics for ready pods",
            pods: pods(2, 1000),
            metrics: metrics(&[("other", 1)]),
            current: 2,
            target: Target::Utilization(50),
            want: Err("no metrics returned matched known pods"),
            utilization: None,
        },
        Case {
            name: "missing request",
            pods: no_request,
            metrics: metrics(&[("p0", 100), ("p1", 100)]),
            current: 2,
            target: Target::Utilization(50),
            want: Err("missing request for cpu in container app of Pod p1"),
            utilization: None,
        },
    ];
    for c in cases {
        run(c);
    }
}

struct Fixed(Vec<PodInfo>, PodMetrics);

impl MetricsSource for Fixed {
    async fn pods(&self, _: &str, _: &str) -> Result<Vec<PodInfo>, String> {
        Ok(self.0.clone())
    }
    async fn resource_metrics(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: Option<&str>,
    ) -> Result<PodMetrics, String> {
        if self.1.is_empty() {
            return Err("no metrics returned from resource metrics API".into());
        }
        Ok(self.1.clone())
    }
}

#[tokio::test]
async fn through_a_metrics_source() {
    let source = Fixed(pods(2, 500), metrics(&[("p0", 500), ("p1", 500)]));
    let p = resource_replicas(
        &source,
        "ns",
        "app=web",
        "cpu",
        None,
        2,
        Target::Utilization(50),
        Tolerances::default(),
        now(),
    )
    .await
    .unwrap();
    assert_eq!((p.replicas, p.utilization, p.raw), (4, Some(100), 500));
    let empty = Fixed(pods(2, 500), PodMetrics::new());
    let e = resource_replicas(
        &empty,
        "ns",
        "app=web",
        "cpu",
        None,
        2,
        Target::Utilization(50),
        Tolerances::default(),
        now(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e,
        "unable to get metrics for resource cpu: no metrics returned from resource metrics API"
    );
}

#[test]
fn per_direction_tolerances() {
    // 105 % of a 100 % target: within the default 10 %, outside a 1 % scale-up tolerance.
    let m = metrics(&[("p0", 1050), ("p1", 1050)]);
    let tight = Tolerances {
        down: 0.1,
        up: 0.01,
    };
    let calc = |t| {
        calculate(
            &pods(2, 1000),
            m.clone(),
            "cpu",
            None,
            2,
            Target::Utilization(100),
            t,
            now(),
        )
        .unwrap()
        .replicas
    };
    assert_eq!(calc(Tolerances::default()), 2);
    assert_eq!(calc(tight), 3);
}
