//! coordination.k8s.io/v1: Leases.

use serde_json::{Value, json};

use super::{KindColumns, Printer, age_col, name_col, str_at, string_col};

pub(crate) fn lease_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col(
                "Holder",
                0,
                "holderIdentity contains the identity of the holder of a current lease.",
            ),
            age_col(),
        ],
        cells: Printer::lease,
        conditions: None,
    }
}

impl Printer {
    fn lease(&self, lease: &Value) -> Vec<Value> {
        vec![
            Self::name(lease),
            json!(str_at(lease, &["spec", "holderIdentity"])),
            self.age(lease),
        ]
    }
}

#[cfg(test)]
mod tests {
    use crate::table::test_support::cells;
    use serde_json::json;

    #[test]
    fn leases() {
        let lease = json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}});
        assert_eq!(cells("Lease", lease)[1], "n1");
    }
}
