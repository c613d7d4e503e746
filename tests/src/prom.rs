//! Histograms read from a component's `/metrics` (Prometheus text format), for the benches
//! that report a component's own view of its latency next to their own measurement.
//!
//! A [`Histogram`] is the sum of every series of one family whose labels match a filter
//! (PromQL's `sum by (le)`); two scrapes subtract to the observations between them, and
//! [`Histogram::quantile`] estimates as PromQL's `histogram_quantile` does: linearly within
//! the bucket the rank falls in.

/// Cumulative bucket counts by upper bound, plus the total count and sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// `(le, cumulative count)`, ascending by `le`, `+Inf` last.
    pub buckets: Vec<(f64, f64)>,
    pub count: f64,
    pub sum: f64,
}

/// One sample: series name, labels (values unescaped), value.
type Sample<'a> = (&'a str, Vec<(&'a str, String)>, f64);

/// The sample of a line: `name{a="x",b="y"} 12` → (name, labels, 12); comments are none.
fn parse_line(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().ok()?,
    };
    let Some((name, rest)) = head.split_once('{') else {
        return Some((head, Vec::new(), value));
    };
    let body = rest.strip_suffix('}')?;
    let mut labels = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.push((key.trim_start_matches(','), value));
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some((name, labels, value))
}

impl Histogram {
    /// Family `name` from `text`, summed over the series whose labels include all of `filter`.
    pub fn parse(text: &str, name: &str, filter: &[(&str, &str)]) -> Self {
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        let mut hist = Self::default();
        let bucket = format!("{name}_bucket");
        let (sum, count) = (format!("{name}_sum"), format!("{name}_count"));
        for (series, labels, value) in text.lines().filter_map(parse_line) {
            let matches = filter
                .iter()
                .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v));
            if !matches {
                continue;
            }
            if series == bucket {
                let Some(le) =
                    labels
                        .iter()
                        .find(|(k, _)| *k == "le")
                        .and_then(|(_, v)| match v.as_str() {
                            "+Inf" => Some(f64::INFINITY),
                            v => v.parse().ok(),
                        })
                else {
                    continue;
                };
                match buckets.iter_mut().find(|(b, _)| *b == le) {
                    Some((_, n)) => *n += value,
                    None => buckets.push((le, value)),
                }
            } else if series == sum {
                hist.sum += value;
            } else if series == count {
                hist.count += value;
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        hist.buckets = buckets;
        hist
    }

    /// The observations made after `earlier` was scraped (same family and filter).
    pub fn since(&self, earlier: &Self) -> Self {
        let before = |le: f64| {
            earlier
                .buckets
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, n)| *n)
        };
        Self {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, n)| (le, (n - before(le)).max(0.0)))
                .collect(),
            count: (self.count - earlier.count).max(0.0),
            sum: (self.sum - earlier.sum).max(0.0),
        }
    }

    /// The `q` quantile (0–1) as `histogram_quantile` estimates it, or `None` without
    /// observations. A rank in the `+Inf` bucket answers the largest finite bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let mut lower = (0.0, 0.0);
        for &(le, n) in &self.buckets {
            if n >= rank {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let in_bucket = n - lower.1;
                if in_bucket <= 0.0 {
                    return Some(le);
                }
                return Some(lower.0 + (le - lower.0) * (rank - lower.1) / in_bucket);
            }
            lower = (le, n);
        }
        Some(lower.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP apiserver_request_duration_seconds Response latency
# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_bucket{verb="CREATE",resource="pods",le="0.005"} 10
apiserver_request_duration_seconds_bucket{verb="CREATE",resource="pods",le="0.01"} 30
apiserver_request_duration_seconds_bucket{verb="CREATE",resource="pods",le="0.025"} 40
apiserver_request_duration_seconds_bucket{verb="CREATE",resource="pods",le="+Inf"} 40
apiserver_request_duration_seconds_sum{verb="CREATE",resource="pods"} 0.3
apiserver_request_duration_seconds_count{verb="CREATE",resource="pods"} 40
apiserver_request_duration_seconds_bucket{verb="GET",resource="pods",le="0.005"} 5
apiserver_request_duration_seconds_bucket{verb="GET",resource="pods",le="0.01"} 5
apiserver_request_duration_seconds_bucket{verb="GET",resource="pods",le="0.025"} 5
apiserver_request_duration_seconds_bucket{verb="GET",resource="pods",le="+Inf"} 6
apiserver_request_duration_seconds_sum{verb="GET",resource="pods"} 90.1
apiserver_request_duration_seconds_count{verb="GET",resource="pods"} 6
apiserver_request_total{verb="GET",resource="a \"quoted\", odd",code="200"} 6
"#;

    #[test]
    fn a_filtered_family_sums_its_series() {
        let create = Histogram::parse(
            TEXT,
            "apiserver_request_duration_seconds",
            &[("verb", "CREATE")],
        );
        assert_eq!(
            create.buckets,
            [
                (0.005, 10.0),
                (0.01, 30.0),
                (0.025, 40.0),
                (f64::INFINITY, 40.0)
            ]
        );
        assert_eq!((create.count, create.sum), (40.0, 0.3));
        let all = Histogram::parse(
            TEXT,
            "apiserver_request_duration_seconds",
            &[("resource", "pods")],
        );
        assert_eq!(all.count, 46.0);
        assert_eq!(all.buckets.last(), Some(&(f64::INFINITY, 46.0)));
        let none = Histogram::parse(
            TEXT,
            "apiserver_request_duration_seconds",
            &[("verb", "PATCH")],
        );
        assert_eq!(none.quantile(0.5), None);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let create = Histogram::parse(
            TEXT,
            "apiserver_request_duration_seconds",
            &[("verb", "CREATE")],
        );
        // Rank 20 of 40 falls in (0.005, 0.01], 10 of its 20 observations in.
        assert!((create.quantile(0.5).unwrap() - 0.0075).abs() < 1e-12);
        // Rank 5 in the first bucket, from 0.
        assert!((create.quantile(0.125).unwrap() - 0.0025).abs() < 1e-12);
        assert!((create.quantile(1.0).unwrap() - 0.025).abs() < 1e-12);
        // A rank past every finite bound answers the largest finite one, as PromQL does.
        let get = Histogram::parse(
            TEXT,
            "apiserver_request_duration_seconds",
            &[("verb", "GET")],
        );
        assert_eq!(get.quantile(0.99), Some(0.025));
    }

    #[test]
    fn two_scrapes_subtract_to_what_happened_between() {
        let before = Histogram::parse(
            TEXT,
            "apiserver_request_duration_seconds",
            &[("verb", "CREATE")],
        );
        let later = TEXT.replace("le=\"+Inf\"} 40", "le=\"+Inf\"} 50").replace(
            "count{verb=\"CREATE\",resource=\"pods\"} 40",
            "count{verb=\"CREATE\",resource=\"pods\"} 50",
        );
        let after = Histogram::parse(
            &later,
            "apiserver_request_duration_seconds",
            &[("verb", "CREATE")],
        );
        let between = after.since(&before);
        assert_eq!(between.count, 10.0);
        assert_eq!(between.buckets.last(), Some(&(f64::INFINITY, 10.0)));
        assert_eq!(between.buckets[0], (0.005, 0.0));
        assert_eq!(between.quantile(0.5), Some(0.025));
    }

    #[test]
    fn quoted_label_values_parse() {
        let (name, labels, value) = parse_line(
            r#"apiserver_request_total{verb="GET",resource="a \"quoted\", odd",code="200"} 6"#,
        )
        .unwrap();
        assert_eq!(name, "apiserver_request_total");
        assert_eq!(labels[1], ("resource", "a \"quoted\", odd".to_string()));
        assert_eq!(labels[2], ("code", "200".to_string()));
        assert_eq!(value, 6.0);
        assert_eq!(parse_line("# TYPE x counter"), None);
    }
}
