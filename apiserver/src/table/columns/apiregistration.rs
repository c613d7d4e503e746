//! apiregistration.k8s.io/v1: APIServices, as the aggregator's printer shows them.

use serde_json::{Value, json};

use super::{KindColumns, Printer, age_col, name_col, str_at, string_col};

pub(crate) fn api_service_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col(
                "Service",
                0,
                "The reference to the service that hosts this API endpoint.",
            ),
            string_col("Available", 0, "Whether this service is available."),
            age_col(),
        ],
        cells: Printer::api_service,
        conditions: None,
    }
}

impl Printer {
    fn api_service(&self, svc: &Value) -> Vec<Value> {
        let service = match svc.pointer("/spec/service") {
            Some(s) if s.is_object() => {
                format!("{}/{}", str_at(s, &["namespace"]), str_at(s, &["name"]))
            }
            _ => "Local".to_owned(),
        };
        let available = svc
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Available"));
        let available = match available {
            Some(c) if c["status"] == "True" => "True".to_owned(),
            Some(c) => format!("{} ({})", str_at(c, &["status"]), str_at(c, &["reason"])),
            None => "Unknown".to_owned(),
        };
        vec![
            Self::name(svc),
            json!(service),
            json!(available),
            self.age(svc),
        ]
    }
}

#[cfg(test)]
mod tests {
    use crate::table::test_support::cells;
    use serde_json::json;

    #[test]
    fn local_and_remote_api_services() {
        let local = json!({"metadata": {"name": "v1.apps"}, "spec": {"group": "apps", "version": "v1"},
            "status": {"conditions": [{"type": "Available", "status": "True", "reason": "Local"}]}});
        let row = cells("APIService", local);
        assert_eq!(
            (row[1].as_str(), row[2].as_str()),
            (Some("Local"), Some("True"))
        );
        let remote = json!({"metadata": {"name": "v1beta1.custom.example"},
            "spec": {"service": {"namespace": "kube-system", "name": "custom"}},
            "status": {"conditions": [{"type": "Available", "status": "False", "reason": "Unsupported"}]}});
        let row = cells("APIService", remote);
        assert_eq!(
            (row[1].as_str(), row[2].as_str()),
            (Some("kube-system/custom"), Some("False (Unsupported)"))
        );
    }
}
