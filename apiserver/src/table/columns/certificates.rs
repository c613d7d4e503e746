//! certificates.k8s.io/v1: CertificateSigningRequests.

use ekube_api::display::human_duration;
use serde_json::{Value, json};

use super::{KindColumns, Printer, age_col, arr_at, at, name_col, or, str_at, string_col};

pub(crate) fn certificate_signing_request_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            age_col(),
            string_col(
                "SignerName",
                0,
                "signerName indicates the requested signer, and is a qualified name.",
            ),
            string_col(
                "Requestor",
                0,
                "Name of the user who created the CertificateSigningRequest.",
            ),
            string_col(
                "RequestedDuration",
                0,
                "expirationSeconds is the requested duration of validity of the issued certificate.",
            ),
            string_col("Condition", 0, "The state of the CSR."),
        ],
        cells: Printer::csr,
        conditions: None,
    }
}

impl Printer {
    fn csr(&self, csr: &Value) -> Vec<Value> {
        let has = |ty: &str| {
            arr_at(csr, &["status", "conditions"])
                .iter()
                .any(|c| str_at(c, &["type"]) == ty)
        };
        let mut condition = if has("Denied") {
            "Denied".to_string()
        } else if has("Approved") {
            "Approved".to_string()
        } else {
            "Pending".to_string()
        };
        if has("Failed") {
            condition.push_str(",Failed");
        }
        if !str_at(csr, &["status", "certificate"]).is_empty() {
            condition.push_str(",Issued");
        }
        let duration = match at(csr, &["spec", "expirationSeconds"]).as_i64() {
            Some(secs) => human_duration(secs),
            None => "<none>".into(),
        };
        vec![
            Self::name(csr),
            self.age(csr),
            json!(or(str_at(csr, &["spec", "signerName"]), "<none>")),
            json!(str_at(csr, &["spec", "username"])),
            json!(duration),
            json!(condition),
        ]
    }
}

#[cfg(test)]
mod tests {
    use crate::table::test_support::cells;
    use serde_json::json;

    #[test]
    fn certificate_signing_requests() {
        let csr = json!({"metadata": {"name": "csr-1"}, "spec": {"signerName": "kubernetes.io/kube-apiserver-client", "username": "admin", "expirationSeconds": 86400},
            "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "LS0t"}});
        assert_eq!(
            cells("CertificateSigningRequest", csr)[2..],
            json!([
                "kubernetes.io/kube-apiserver-client",
                "admin",
                "24h",
                "Approved,Issued"
            ])
            .as_array()
            .unwrap()[..]
        );
    }
}
