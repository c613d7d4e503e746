//! Prometheus metric families shared by every component: counters, gauges and histograms with
//! label values, rendered in the text exposition format 0.0.4 that `/metrics` endpoints serve.
//!
//! A family is a name, a help text, fixed label names and a map of label values to a series,
//! behind one mutex; a static family costs nothing until first used. Series render in the
//! order of their label values, labels in the order they were declared (upstream's client
//! sorts label names, so families that mirror upstream series declare theirs sorted), and a
//! histogram's `le` label last. A family without labels always renders its one series, zero
//! before the first observation, as Prometheus' client does.

use std::fmt::{Display, Write};
use std::sync::{Mutex, MutexGuard};

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `# HELP` and `# TYPE` lines of a family.
pub fn write_header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line: `name{label="value",…} value`.
pub fn write_sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape_label_value(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A float as the exposition format writes it: `+Inf`, `-Inf`, `NaN`, else the shortest
/// decimal that reads back as the same number (`1`, `0.005`, `11.5`).
pub fn format_float(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v.is_nan() {
        "NaN".into()
    } else {
        v.to_string()
    }
}

/// A help text with `\` and line feeds escaped.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A label value with `\`, `"` and line feeds escaped.
pub fn escape_label_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The series of a family: label values and state, sorted by the values, so a series that
/// exists is found by binary search without building a key (label values are allocated only
/// when a series is first seen).
type Series<S> = Vec<(Vec<String>, S)>;

/// Name, help and label names of a family, and its series by label values.
struct Family<S> {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    series: Mutex<Series<S>>,
}

impl<S> Family<S> {
    const fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self {
            name,
            help,
            labels,
            series: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Series<S>> {
        // A panic while holding the lock leaves whole numbers behind; keep counting.
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check(&self, values: &[&str]) {
        assert_eq!(
            values.len(),
            self.labels.len(),
            "metric {} has labels {:?}, given values {values:?}",
            self.name,
            self.labels
        );
    }

    /// Where the series of `values` is, or would be inserted.
    fn find(series: &Series<S>, values: &[&str]) -> Result<usize, usize> {
        series.binary_search_by(|(k, _)| k.iter().map(String::as_str).cmp(values.iter().copied()))
    }

    /// Reads the series of `values`, if it exists.
    fn read<R>(&self, values: &[&str], f: impl FnOnce(&S) -> R) -> Option<R> {
        self.check(values);
        let series = self.lock();
        Self::find(&series, values).ok().map(|i| f(&series[i].1))
    }

    fn ensure(&self, values: &[&str])
    where
        S: Default,
    {
        self.with(values, |_| ());
    }

    fn with<R>(&self, values: &[&str], f: impl FnOnce(&mut S) -> R) -> R
    where
        S: Default,
    {
        self.check(values);
        let mut series = self.lock();
        let i = Self::find(&series, values).unwrap_or_else(|i| {
            let owned = values.iter().map(|v| v.to_string()).collect();
            series.insert(i, (owned, S::default()));
            i
        });
        f(&mut series[i].1)
    }

    /// Pairs of label name and value, with `extra` appended.
    fn pairs<'a>(
        &'a self,
        values: &'a [String],
        extra: Option<(&'a str, &'a str)>,
    ) -> Vec<(&'a str, &'a str)> {
        self.labels
            .iter()
            .copied()
            .zip(values.iter().map(String::as_str))
            .chain(extra)
            .collect()
    }

    /// The series to render: the stored ones, or one default series for a family without
    /// labels.
    fn render_each(
        &self,
        out: &mut String,
        kind: &str,
        mut each: impl FnMut(&mut String, &[String], &S),
    ) where
        S: Default,
    {
        write_header(out, self.name, self.help, kind);
        let series = self.lock();
        if series.is_empty() && self.labels.is_empty() {
            each(out, &[], &S::default());
        }
        for (values, s) in series.iter() {
            each(out, values, s);
        }
    }
}

/// A counter family: whole numbers that only go up.
pub struct CounterVec(Family<u64>);

impl CounterVec {
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self(Family::new(name, help, labels))
    }

    /// Creates the series at zero, so it renders before its first increment.
    pub fn ensure(&self, values: &[&str]) {
        self.0.ensure(values);
    }

    pub fn inc(&self, values: &[&str]) {
        self.inc_by(values, 1);
    }

    pub fn inc_by(&self, values: &[&str], n: u64) {
        self.0.with(values, |c| *c += n);
    }

    /// The series' count (0 if it was never incremented).
    pub fn get(&self, values: &[&str]) -> u64 {
        self.0.read(values, |c| *c).unwrap_or(0)
    }

    pub fn render(&self, out: &mut String) {
        self.0.render_each(out, "counter", |out, values, n| {
            write_sample(out, self.0.name, &self.0.pairs(values, None), n);
        });
    }
}

/// A gauge family: values that go up and down, or are set when scraped.
pub struct GaugeVec(Family<f64>);

impl GaugeVec {
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self(Family::new(name, help, labels))
    }

    pub fn set(&self, values: &[&str], v: f64) {
        self.0.with(values, |g| *g = v);
    }

    pub fn add(&self, values: &[&str], v: f64) {
        self.0.with(values, |g| *g += v);
    }

    pub fn get(&self, values: &[&str]) -> f64 {
        self.0.read(values, |g| *g).unwrap_or(0.0)
    }

    pub fn render(&self, out: &mut String) {
        self.0.render_each(out, "gauge", |out, values, v| {
            write_sample(
                out,
                self.0.name,
                &self.0.pairs(values, None),
                format_float(*v),
            );
        });
    }
}

/// One histogram series.
#[derive(Debug, Clone, Default)]
struct Buckets {
    /// Observations per bucket, not cumulative (summed when rendered); empty until the first.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// A histogram family with fixed upper bounds; `+Inf` is implied.
pub struct HistogramVec {
    family: Family<Buckets>,
    bounds: &'static [f64],
}

impl HistogramVec {
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        bounds: &'static [f64],
    ) -> Self {
        Self {
            family: Family::new(name, help, labels),
            bounds,
        }
    }

    /// Creates the series empty, so it renders before its first observation.
    pub fn ensure(&self, values: &[&str]) {
        self.family.ensure(values);
    }

    pub fn observe(&self, values: &[&str], v: f64) {
        let bounds = self.bounds;
        self.family.with(values, |b| {
            if b.counts.is_empty() {
                b.counts = vec![0; bounds.len()];
            }
            if let Some(i) = bounds.iter().position(|bound| v <= *bound) {
                b.counts[i] += 1;
            }
            b.sum += v;
            b.count += 1;
        });
    }

    /// The series' number of observations.
    pub fn count(&self, values: &[&str]) -> u64 {
        self.family.read(values, |b| b.count).unwrap_or(0)
    }

    pub fn render(&self, out: &mut String) {
        let name = self.family.name;
        let (bucket, sum, count) = (
            format!("{name}_bucket"),
            format!("{name}_sum"),
            format!("{name}_count"),
        );
        self.family.render_each(out, "histogram", |out, values, b| {
            let mut cumulative = 0;
            for (i, bound) in self.bounds.iter().enumerate() {
                cumulative += b.counts.get(i).copied().unwrap_or(0);
                let le = format_float(*bound);
                let pairs = self.family.pairs(values, Some(("le", &le)));
                write_sample(out, &bucket, &pairs, cumulative);
            }
            let inf = self.family.pairs(values, Some(("le", "+Inf")));
            write_sample(out, &bucket, &inf, b.count);
            let plain = self.family.pairs(values, None);
            write_sample(out, &sum, &plain, format_float(b.sum));
            write_sample(out, &count, &plain, b.count);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_cumulative_buckets_sum_and_count() {
        let h = HistogramVec::new("x_seconds", "X.", &[], &[1.0, 2.5]);
        h.observe(&[], 0.5);
        h.observe(&[], 2.0);
        h.observe(&[], 9.0);
        let mut out = String::new();
        h.render(&mut out);
        assert_eq!(
            out,
            "# HELP x_seconds X.\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{le=\"1\"} 1\nx_seconds_bucket{le=\"2.5\"} 2\n\
             x_seconds_bucket{le=\"+Inf\"} 3\nx_seconds_sum 11.5\nx_seconds_count 3\n"
        );
        assert_eq!(h.count(&[]), 3);
    }

    #[test]
    fn labeled_histogram_puts_le_last_and_keeps_series_apart() {
        static H: HistogramVec =
            HistogramVec::new("req_seconds", "Requests.", &["code", "verb"], &[0.1]);
        H.observe(&["200", "GET"], 0.05);
        H.observe(&["500", "GET"], 1.0);
        H.observe(&["200", "GET"], 0.2);
        let mut out = String::new();
        H.render(&mut out);
        assert_eq!(
            out,
            "# HELP req_seconds Requests.\n# TYPE req_seconds histogram\n\
             req_seconds_bucket{code=\"200\",verb=\"GET\",le=\"0.1\"} 1\n\
             req_seconds_bucket{code=\"200\",verb=\"GET\",le=\"+Inf\"} 2\n\
             req_seconds_sum{code=\"200\",verb=\"GET\"} 0.25\n\
             req_seconds_count{code=\"200\",verb=\"GET\"} 2\n\
             req_seconds_bucket{code=\"500\",verb=\"GET\",le=\"0.1\"} 0\n\
             req_seconds_bucket{code=\"500\",verb=\"GET\",le=\"+Inf\"} 1\n\
             req_seconds_sum{code=\"500\",verb=\"GET\"} 1\n\
             req_seconds_count{code=\"500\",verb=\"GET\"} 1\n"
        );
    }

    #[test]
    fn counters_and_gauges_render_series_in_label_order() {
        let c = CounterVec::new("hits_total", "Hits.", &["path"]);
        c.inc(&["/b"]);
        c.inc_by(&["/a"], 3);
        c.inc(&["/b"]);
        let g = GaugeVec::new("level", "Level.", &[]);
        let mut out = String::new();
        c.render(&mut out);
        g.render(&mut out);
        g.set(&[], 2.5);
        g.add(&[], -1.0);
        g.render(&mut out);
        assert_eq!(
            out,
            "# HELP hits_total Hits.\n# TYPE hits_total counter\n\
             hits_total{path=\"/a\"} 3\nhits_total{path=\"/b\"} 2\n\
             # HELP level Level.\n# TYPE level gauge\nlevel 0\n\
             # HELP level Level.\n# TYPE level gauge\nlevel 1.5\n"
        );
        assert_eq!((c.get(&["/b"]), c.get(&["/c"])), (2, 0));
        assert_eq!(g.get(&[]), 1.5);
    }

    #[test]
    fn labeled_family_without_series_renders_only_its_header() {
        let c = CounterVec::new("none_total", "None yet.", &["x"]);
        let mut out = String::new();
        c.render(&mut out);
        assert_eq!(
            out,
            "# HELP none_total None yet.\n# TYPE none_total counter\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let c = CounterVec::new("esc_total", "Back\\slash\nand newline.", &["v"]);
        c.inc(&["a\"b\\c\nd"]);
        let mut out = String::new();
        c.render(&mut out);
        assert_eq!(
            out,
            "# HELP esc_total Back\\\\slash\\nand newline.\n# TYPE esc_total counter\n\
             esc_total{v=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
    }

    #[test]
    fn floats_use_the_exposition_spellings() {
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(0.005), "0.005");
        assert_eq!(format_float(60.0), "60");
    }

    #[test]
    #[should_panic(expected = "metric m has labels [\"a\"], given values []")]
    fn wrong_number_of_label_values_is_a_clear_panic() {
        CounterVec::new("m", "M.", &["a"]).inc(&[]);
    }
}
