//! rbac.authorization.k8s.io/v1: RoleBindings and ClusterRoleBindings (Roles and ClusterRoles
//! print the generic columns, as upstream).

use serde_json::{Value, json};

use super::{KindColumns, Printer, age_col, arr_at, name_col, str_at, string_col};

pub(crate) fn role_binding_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col(
                "Role",
                0,
                "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
            ),
            age_col(),
            string_col("Users", 1, "Users in the roleBinding"),
            string_col("Groups", 1, "Groups in the roleBinding"),
            string_col("ServiceAccounts", 1, "ServiceAccounts in the roleBinding"),
        ],
        cells: Printer::role_binding,
        conditions: None,
    }
}

impl Printer {
    fn role_binding(&self, rb: &Value) -> Vec<Value> {
        let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
        for s in arr_at(rb, &["subjects"]) {
            let name = str_at(s, &["name"]);
            match str_at(s, &["kind"]) {
                "User" => users.push(name.to_string()),
                "Group" => groups.push(name.to_string()),
                "ServiceAccount" => sas.push(format!("{}/{name}", str_at(s, &["namespace"]))),
                _ => {}
            }
        }
        vec![
            Self::name(rb),
            json!(format!(
                "{}/{}",
                str_at(rb, &["roleRef", "kind"]),
                str_at(rb, &["roleRef", "name"])
            )),
            self.age(rb),
            json!(users.join(", ")),
            json!(groups.join(", ")),
            json!(sas.join(", ")),
        ]
    }
}

#[cfg(test)]
mod tests {
    use crate::table::test_support::cells;
    use serde_json::json;

    #[test]
    fn role_bindings() {
        let rb = json!({"metadata": {"name": "rb"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"}, {"kind": "ServiceAccount", "namespace": "default", "name": "bot"}]});
        assert_eq!(
            cells("ClusterRoleBinding", rb),
            json!([
                "rb",
                "ClusterRole/view",
                "<unknown>",
                "alice",
                "devs",
                "default/bot"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
    }
}
