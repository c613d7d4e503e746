//! policy/v1: PodDisruptionBudgets.

use serde_json::{Value, json};

use super::{KindColumns, Printer, age_col, at, int_at, integer_col, name_col, string_col};

pub(crate) fn pod_disruption_budget_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col(
                "Min Available",
                0,
                "The minimum number of pods that must be available.",
            ),
            string_col(
                "Max Unavailable",
                0,
                "The maximum number of pods that may be unavailable.",
            ),
            integer_col(
                "Allowed Disruptions",
                0,
                "Calculated number of pods that may be disrupted at this time.",
            ),
            age_col(),
        ],
        cells: Printer::pod_disruption_budget,
        conditions: None,
    }
}

/// An int-or-percent as `IntOrString.String()` prints it, `N/A` when unset.
fn int_or_percent(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => "N/A".into(),
    }
}

impl Printer {
    fn pod_disruption_budget(&self, pdb: &Value) -> Vec<Value> {
        vec![
            Self::name(pdb),
            json!(int_or_percent(at(pdb, &["spec", "minAvailable"]))),
            json!(int_or_percent(at(pdb, &["spec", "maxUnavailable"]))),
            json!(int_at(pdb, &["status", "disruptionsAllowed"])),
            self.age(pdb),
        ]
    }
}

#[cfg(test)]
mod tests {
    use crate::table::test_support::cells;
    use serde_json::json;

    #[test]
    fn pod_disruption_budgets() {
        let pdb = json!({"metadata": {"name": "web"}, "spec": {"minAvailable": 2},
            "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            cells("PodDisruptionBudget", pdb)[1..4],
            [json!("2"), json!("N/A"), json!(1)]
        );
        let pdb = json!({"metadata": {"name": "web"}, "spec": {"maxUnavailable": "25%"}});
        assert_eq!(
            cells("PodDisruptionBudget", pdb)[1..4],
            [json!("N/A"), json!("25%"), json!(0)]
        );
    }
}
