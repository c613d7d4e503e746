//! StorageObjectInUseProtection: every PersistentVolumeClaim is created with the
//! `kubernetes.io/pvc-protection` finalizer and every PersistentVolume with
//! `kubernetes.io/pv-protection`, as upstream's plugin adds them.
//!
//! The finalizers keep a claim while a pod uses it and a volume while it is bound: deleting
//! either only marks it, and the PVC and PV protection controllers remove the finalizer once
//! nothing uses it any more. Create only; a finalizer a client removes later stays removed.

use ekube_api::storage::{PV_PROTECTION, PVC_PROTECTION};
use serde_json::{Value, json};

use super::{Attributes, Operation};

pub(super) fn admit(attrs: &Attributes<'_>, object: &mut Value) {
    if attrs.operation != Operation::Create || attrs.subresource.is_some() {
        return;
    }
    let finalizer = if attrs.is("", "PersistentVolumeClaim") {
        PVC_PROTECTION
    } else if attrs.is("", "PersistentVolume") {
        PV_PROTECTION
    } else {
        return;
    };
    let meta = crate::defaults::ensure(object, "metadata");
    if !meta.get("finalizers").is_some_and(Value::is_array) {
        meta["finalizers"] = json!([]);
    }
    if let Some(list) = meta["finalizers"].as_array_mut()
        && !list.iter().any(|f| f == finalizer)
    {
        list.push(json!(finalizer));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::admission::tests::attrs;

    fn finalizers(plural: &str, mut obj: Value, op: Operation) -> Value {
        let r = ekube_api::resources::find("", "v1", plural).unwrap();
        admit(&attrs(r, op), &mut obj);
        obj.pointer("/metadata/finalizers")
            .cloned()
            .unwrap_or(Value::Null)
    }

    #[test]
    fn claims_and_volumes_are_protected_on_create() {
        let bare = json!({"metadata": {"name": "data"}});
        assert_eq!(
            finalizers("persistentvolumeclaims", bare.clone(), Operation::Create),
            json!([PVC_PROTECTION])
        );
        assert_eq!(
            finalizers("persistentvolumes", bare.clone(), Operation::Create),
            json!([PV_PROTECTION])
        );
        // Kept once, beside the client's own.
        let mine = json!({"metadata": {"name": "data",
            "finalizers": ["example.com/mine", PVC_PROTECTION]}});
        assert_eq!(
            finalizers("persistentvolumeclaims", mine, Operation::Create),
            json!(["example.com/mine", PVC_PROTECTION])
        );
        // Not on update, and not for other kinds.
        assert_eq!(
            finalizers("persistentvolumeclaims", bare.clone(), Operation::Update),
            Value::Null
        );
        assert_eq!(
            finalizers("configmaps", bare, Operation::Create),
            Value::Null
        );
    }
}
