//! batch/v1: Jobs and CronJobs.

use ekube_api::display::human_duration;
use serde_json::{Value, json};

use super::{
    CONTAINERS_DOC, Column, IMAGES_DOC, KindColumns, Printer, age_col, arr_at, at,
    containers_cells, format_label_selector, int_at, integer_col, len_at, name_col, or, parse_time,
    selector_string, str_at, string_col,
};

pub(crate) fn job_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col("Status", 0, "Status of the job."),
            string_col("Completions", 0, "The completion status of the job"),
            string_col("Duration", 0, "Time required to complete the job."),
            age_col(),
            string_col("Containers", 1, CONTAINERS_DOC),
            string_col("Images", 1, IMAGES_DOC),
            string_col(
                "Selector",
                1,
                "A label query over pods that should match the pod count.",
            ),
        ],
        cells: Printer::job,
        conditions: None,
    }
}

pub(crate) fn cron_job_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col(
                "Schedule",
                0,
                "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
            ),
            string_col(
                "Timezone",
                0,
                "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
            ),
            Column {
                ty: "boolean",
                ..string_col(
                    "Suspend",
                    0,
                    "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.",
                )
            },
            integer_col("Active", 0, "A list of pointers to currently running jobs."),
            string_col(
                "Last Schedule",
                0,
                "Information when was the last time the job was successfully scheduled.",
            ),
            age_col(),
            string_col("Containers", 1, CONTAINERS_DOC),
            string_col("Images", 1, IMAGES_DOC),
            string_col(
                "Selector",
                1,
                "A label query over pods that should match the pod count.",
            ),
        ],
        cells: Printer::cron_job,
        conditions: None,
    }
}

impl Printer {
    fn job(&self, job: &Value) -> Vec<Value> {
        let status = at(job, &["status"]);
        let has = |ty: &str| {
            arr_at(status, &["conditions"])
                .iter()
                .any(|c| str_at(c, &["type"]) == ty && str_at(c, &["status"]) == "True")
        };
        let state = if has("Complete") {
            "Complete"
        } else if has("Failed") {
            "Failed"
        } else if at(job, &["metadata", "deletionTimestamp"]).is_string() {
            "Terminating"
        } else if has("Suspended") {
            "Suspended"
        } else if has("FailureTarget") {
            "FailureTarget"
        } else if has("SuccessCriteriaMet") {
            "SuccessCriteriaMet"
        } else {
            "Running"
        };
        let succeeded = int_at(status, &["succeeded"]);
        let completions = match at(job, &["spec", "completions"]).as_i64() {
            Some(c) => format!("{succeeded}/{c}"),
            None => match int_at(job, &["spec", "parallelism"]) {
                p if p > 1 => format!("{succeeded}/1 of {p}"),
                _ => format!("{succeeded}/1"),
            },
        };
        let duration = match (
            parse_time(str_at(status, &["startTime"])),
            parse_time(str_at(status, &["completionTime"])),
        ) {
            (None, _) => String::new(),
            (Some(start), None) => human_duration(self.now.duration_since(start).as_secs()),
            (Some(start), Some(end)) => human_duration(end.duration_since(start).as_secs()),
        };
        let (containers, images) = containers_cells(at(job, &["spec", "template", "spec"]));
        vec![
            Self::name(job),
            json!(state),
            json!(completions),
            json!(duration),
            self.age(job),
            containers,
            images,
            json!(selector_string(at(job, &["spec", "selector"]))),
        ]
    }

    fn cron_job(&self, cj: &Value) -> Vec<Value> {
        let spec = at(cj, &["spec"]);
        let last = str_at(cj, &["status", "lastScheduleTime"]);
        let (containers, images) =
            containers_cells(at(spec, &["jobTemplate", "spec", "template", "spec"]));
        vec![
            Self::name(cj),
            json!(str_at(spec, &["schedule"])),
            json!(or(str_at(spec, &["timeZone"]), "<none>")),
            json!(if at(spec, &["suspend"]).as_bool() == Some(true) {
                "True"
            } else {
                "False"
            }),
            json!(len_at(cj, &["status", "active"])),
            json!(if last.is_empty() {
                "<none>".into()
            } else {
                self.since(last)
            }),
            self.age(cj),
            containers,
            images,
            json!(format_label_selector(at(
                spec,
                &["jobTemplate", "spec", "selector"]
            ))),
        ]
    }
}

#[cfg(test)]
mod tests {
    use crate::table::test_support::cells;
    use serde_json::json;

    #[test]
    fn jobs_and_cronjobs() {
        let job = json!({"metadata": {"name": "pi"}, "spec": {"completions": 1, "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}},
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}}},
            "status": {"succeeded": 1, "startTime": "2024-05-10T11:00:00Z", "completionTime": "2024-05-10T11:00:42Z",
                       "conditions": [{"type": "Complete", "status": "True"}]}});
        let c = cells("Job", job);
        assert_eq!(
            (c[1].as_str(), c[2].as_str(), c[3].as_str()),
            (Some("Complete"), Some("1/1"), Some("42s"))
        );
        assert_eq!(c[7], "batch.kubernetes.io/controller-uid=abc");
        let running = json!({"metadata": {"name": "par"}, "spec": {"parallelism": 3}, "status": {"startTime": "2024-05-10T11:58:30Z"}});
        let c = cells("Job", running);
        assert_eq!(
            (c[1].as_str(), c[2].as_str(), c[3].as_str()),
            (Some("Running"), Some("0/1 of 3"), Some("90s"))
        );
        let cj = json!({"metadata": {"name": "hello"}, "spec": {"schedule": "*/1 * * * *", "suspend": false,
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "hello", "image": "busybox"}]}}}}},
            "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": "2024-05-10T11:59:00Z"}});
        assert_eq!(
            cells("CronJob", cj),
            json!([
                "hello",
                "*/1 * * * *",
                "<none>",
                "False",
                1,
                "60s",
                "<unknown>",
                "hello",
                "busybox",
                "<none>"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
    }
}
