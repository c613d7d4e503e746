//! Storage kinds: PersistentVolumes and PersistentVolumeClaims (core/v1) and StorageClasses
//! (storage.k8s.io).

use ekube_api::storage::DEFAULT_CLASS;
use serde_json::{Value, json};

use super::{KindColumns, Printer, age_col, at, name_col, or, str_at, string_col};

pub(crate) fn persistent_volume_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col(
                "Capacity",
                0,
                "capacity is the description of the persistent volume's resources and capacity.",
            ),
            string_col(
                "Access Modes",
                0,
                "accessModes contains all ways the volume can be mounted.",
            ),
            string_col(
                "Reclaim Policy",
                0,
                "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
            ),
            string_col(
                "Status",
                0,
                "phase indicates if a volume is available, bound to a claim, or released by a claim.",
            ),
            string_col(
                "Claim",
                0,
                "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
            ),
            string_col(
                "StorageClass",
                0,
                "storageClassName is the name of StorageClass to which this persistent volume belongs.",
            ),
            string_col(
                "VolumeAttributesClass",
                0,
                "VolumeAttributesClass of the persistent volume.",
            ),
            string_col(
                "Reason",
                0,
                "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
            ),
            age_col(),
            string_col(
                "VolumeMode",
                1,
                "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
            ),
        ],
        cells: Printer::persistent_volume,
        conditions: None,
    }
}

pub(crate) fn persistent_volume_claim_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col(
                "Status",
                0,
                "phase represents the current phase of PersistentVolumeClaim.",
            ),
            string_col(
                "Volume",
                0,
                "volumeName is the binding reference to the PersistentVolume backing this claim.",
            ),
            string_col(
                "Capacity",
                0,
                "capacity represents the actual resources of the underlying volume.",
            ),
            string_col(
                "Access Modes",
                0,
                "accessModes contains the actual access modes the volume backing the PVC has.",
            ),
            string_col(
                "StorageClass",
                0,
                "storageClassName is the name of the StorageClass required by the claim.",
            ),
            string_col(
                "VolumeAttributesClass",
                0,
                "volumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim.",
            ),
            age_col(),
            string_col(
                "VolumeMode",
                1,
                "volumeMode defines what type of volume is required by the claim.",
            ),
        ],
        cells: Printer::persistent_volume_claim,
        conditions: None,
    }
}

pub(crate) fn storage_class_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col(
                "Provisioner",
                0,
                "provisioner indicates the type of the provisioner.",
            ),
            string_col(
                "ReclaimPolicy",
                0,
                "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete.",
            ),
            string_col(
                "VolumeBindingMode",
                0,
                "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature.",
            ),
            string_col(
                "AllowVolumeExpansion",
                0,
                "allowVolumeExpansion shows whether the storage class allow volume expand.",
            ),
            age_col(),
        ],
        cells: Printer::storage_class,
        conditions: None,
    }
}

impl Printer {
    fn persistent_volume(&self, pv: &Value) -> Vec<Value> {
        let spec = at(pv, &["spec"]);
        let claim = at(spec, &["claimRef"]);
        let claim = if claim.is_object() {
            format!(
                "{}/{}",
                str_at(claim, &["namespace"]),
                str_at(claim, &["name"])
            )
        } else {
            String::new()
        };
        let class = or(
            str_at(spec, &["storageClassName"]),
            str_at(
                pv,
                &[
                    "metadata",
                    "annotations",
                    "volume.beta.kubernetes.io/storage-class",
                ],
            ),
        );
        let phase = if at(pv, &["metadata", "deletionTimestamp"]).is_string() {
            "Terminating"
        } else {
            str_at(pv, &["status", "phase"])
        };
        vec![
            Self::name(pv),
            json!(quantity(at(spec, &["capacity", "storage"]))),
            json!(access_modes(at(spec, &["accessModes"]))),
            json!(str_at(spec, &["persistentVolumeReclaimPolicy"])),
            json!(phase),
            json!(claim),
            json!(class),
            json!(or(str_at(spec, &["volumeAttributesClassName"]), "<unset>")),
            json!(str_at(pv, &["status", "reason"])),
            self.age(pv),
            json!(or(str_at(spec, &["volumeMode"]), "<unset>")),
        ]
    }

    /// Upstream's `printStorageClass`: the default class's name carries ` (default)`.
    fn storage_class(&self, class: &Value) -> Vec<Value> {
        let mut name = str_at(class, &["metadata", "name"]).to_string();
        if str_at(class, &["metadata", "annotations", DEFAULT_CLASS]) == "true" {
            name.push_str(" (default)");
        }
        vec![
            json!(name),
            json!(str_at(class, &["provisioner"])),
            json!(or(str_at(class, &["reclaimPolicy"]), "Delete")),
            json!(or(str_at(class, &["volumeBindingMode"]), "Immediate")),
            json!(
                at(class, &["allowVolumeExpansion"])
                    .as_bool()
                    .unwrap_or(false)
            ),
            self.age(class),
        ]
    }

    fn persistent_volume_claim(&self, pvc: &Value) -> Vec<Value> {
        let spec = at(pvc, &["spec"]);
        let phase = if at(pvc, &["metadata", "deletionTimestamp"]).is_string() {
            "Terminating"
        } else {
            str_at(pvc, &["status", "phase"])
        };
        let bound = !str_at(spec, &["volumeName"]).is_empty();
        let (capacity, modes) = if bound {
            (
                quantity(at(pvc, &["status", "capacity", "storage"])),
                access_modes(at(pvc, &["status", "accessModes"])),
            )
        } else {
            (String::new(), String::new())
        };
        let class = or(
            str_at(spec, &["storageClassName"]),
            str_at(
                pvc,
                &[
                    "metadata",
                    "annotations",
                    "volume.beta.kubernetes.io/storage-class",
                ],
            ),
        );
        vec![
            Self::name(pvc),
            json!(phase),
            json!(str_at(spec, &["volumeName"])),
            json!(capacity),
            json!(modes),
            json!(class),
            json!(or(str_at(spec, &["volumeAttributesClassName"]), "<unset>")),
            self.age(pvc),
            json!(or(str_at(spec, &["volumeMode"]), "<unset>")),
        ]
    }
}

/// Access modes by their short names (`RWO,ROX`), in the printers' fixed order.
fn access_modes(v: &Value) -> String {
    let modes: Vec<&str> = v
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut out = Vec::new();
    for (mode, short) in [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ] {
        if modes.contains(&mode) {
            out.push(short);
        }
    }
    out.join(",")
}

/// A quantity as stored (already canonical on the server), "" when absent.
fn quantity(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use crate::table::test_support::cells;
    use serde_json::json;

    #[test]
    fn volumes() {
        let pv = json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "local"}, "status": {"phase": "Bound"}});
        assert_eq!(
            cells("PersistentVolume", pv),
            json!([
                "pv1",
                "5Gi",
                "RWO,ROX",
                "Retain",
                "Bound",
                "default/data",
                "local",
                "<unset>",
                "",
                "<unknown>",
                "<unset>"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
    }

    #[test]
    fn classes() {
        let default = json!({"metadata": {"name": "local-path",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "ekube.io/local-path", "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            cells("StorageClass", default),
            [
                json!("local-path (default)"),
                json!("ekube.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false),
                json!("<unknown>"),
            ]
        );
        let other = json!({"metadata": {"name": "manual",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "false"}},
            "provisioner": "kubernetes.io/no-provisioner", "allowVolumeExpansion": true});
        assert_eq!(
            cells("StorageClass", other),
            [
                json!("manual"),
                json!("kubernetes.io/no-provisioner"),
                json!("Delete"),
                json!("Immediate"),
                json!(true),
                json!("<unknown>"),
            ]
        );
    }

    #[test]
    fn claims() {
        let pvc = json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pv1", "storageClassName": "local"},
            "status": {"phase": "Bound", "capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"]}});
        assert_eq!(
            cells("PersistentVolumeClaim", pvc),
            json!([
                "data",
                "Bound",
                "pv1",
                "5Gi",
                "RWO",
                "local",
                "<unset>",
                "<unknown>",
                "<unset>"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
    }
}
