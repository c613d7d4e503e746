//! core/v1 volumes: the volume sources a pod may use and the projections of a projected volume.

use super::{
    container::{OBJECT_FIELD_SELECTOR, RESOURCE_FIELD_SELECTOR},
    core::LOCAL_OBJECT_REFERENCE,
};
use crate::protobuf::{Field, Message, Ty};

pub(super) static CONFIG_MAP_PROJECTION: Message = Message::new(
    "ConfigMapProjection",
    &[
        Field::one(1, "", Ty::Inline(&LOCAL_OBJECT_REFERENCE)),
        Field::rep(2, "items", Ty::Msg(&KEY_TO_PATH)),
        Field::one(4, "optional", Ty::Bool).keep(),
    ],
);
pub(super) static CONFIG_MAP_VOLUME_SOURCE: Message = Message::new(
    "ConfigMapVolumeSource",
    &[
        Field::one(1, "", Ty::Inline(&LOCAL_OBJECT_REFERENCE)),
        Field::rep(2, "items", Ty::Msg(&KEY_TO_PATH)),
        Field::one(3, "defaultMode", Ty::Int32).keep(),
        Field::one(4, "optional", Ty::Bool).keep(),
        Field::one(5, "defaultUser", Ty::Int64).keep(),
    ],
);
pub(super) static DOWNWARD_API_PROJECTION: Message = Message::new(
    "DownwardAPIProjection",
    &[Field::rep(1, "items", Ty::Msg(&DOWNWARD_API_VOLUME_FILE))],
);
pub(super) static DOWNWARD_API_VOLUME_FILE: Message = Message::new(
    "DownwardAPIVolumeFile",
    &[
        Field::one(1, "path", Ty::Str).keep(),
        Field::one(2, "fieldRef", Ty::Msg(&OBJECT_FIELD_SELECTOR)),
        Field::one(3, "resourceFieldRef", Ty::Msg(&RESOURCE_FIELD_SELECTOR)),
        Field::one(4, "mode", Ty::Int32).keep(),
        Field::one(5, "user", Ty::Int64).keep(),
    ],
);
pub(super) static DOWNWARD_API_VOLUME_SOURCE: Message = Message::new(
    "DownwardAPIVolumeSource",
    &[
        Field::rep(1, "items", Ty::Msg(&DOWNWARD_API_VOLUME_FILE)),
        Field::one(2, "defaultMode", Ty::Int32).keep(),
        Field::one(3, "defaultUser", Ty::Int64).keep(),
    ],
);
pub(super) static EMPTY_DIR_VOLUME_SOURCE: Message = Message::new(
    "EmptyDirVolumeSource",
    &[
        Field::one(1, "medium", Ty::Str),
        Field::one(2, "sizeLimit", Ty::Quantity),
        Field::one(3, "mode", Ty::Int32).keep(),
    ],
);
pub(super) static HOST_PATH_VOLUME_SOURCE: Message = Message::new(
    "HostPathVolumeSource",
    &[
        Field::one(1, "path", Ty::Str).keep(),
        Field::one(2, "type", Ty::Str).keep(),
    ],
);
pub(super) static KEY_TO_PATH: Message = Message::new(
    "KeyToPath",
    &[
        Field::one(1, "key", Ty::Str).keep(),
        Field::one(2, "path", Ty::Str).keep(),
        Field::one(3, "mode", Ty::Int32).keep(),
        Field::one(4, "user", Ty::Int64).keep(),
    ],
);
pub(super) static PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE: Message = Message::new(
    "PersistentVolumeClaimVolumeSource",
    &[
        Field::one(1, "claimName", Ty::Str).keep(),
        Field::one(2, "readOnly", Ty::Bool),
    ],
);
pub(super) static PROJECTED_VOLUME_SOURCE: Message = Message::new(
    "ProjectedVolumeSource",
    &[
        Field::rep(1, "sources", Ty::Msg(&VOLUME_PROJECTION)).keep(),
        Field::one(2, "defaultMode", Ty::Int32).keep(),
        Field::one(3, "defaultUser", Ty::Int64).keep(),
    ],
);
pub(super) static SECRET_PROJECTION: Message = Message::new(
    "SecretProjection",
    &[
        Field::one(1, "", Ty::Inline(&LOCAL_OBJECT_REFERENCE)),
        Field::rep(2, "items", Ty::Msg(&KEY_TO_PATH)),
        Field::one(4, "optional", Ty::Bool).keep(),
    ],
);
pub(super) static SECRET_VOLUME_SOURCE: Message = Message::new(
    "SecretVolumeSource",
    &[
        Field::one(1, "secretName", Ty::Str),
        Field::rep(2, "items", Ty::Msg(&KEY_TO_PATH)),
        Field::one(3, "defaultMode", Ty::Int32).keep(),
        Field::one(4, "optional", Ty::Bool).keep(),
        Field::one(5, "defaultUser", Ty::Int64).keep(),
    ],
);
pub(super) static SERVICE_ACCOUNT_TOKEN_PROJECTION: Message = Message::new(
    "ServiceAccountTokenProjection",
    &[
        Field::one(1, "audience", Ty::Str),
        Field::one(2, "expirationSeconds", Ty::Int64).keep(),
        Field::one(3, "path", Ty::Str).keep(),
        Field::one(4, "user", Ty::Int64).keep(),
    ],
);
pub(super) static VOLUME: Message = Message::new(
    "Volume",
    &[
        Field::one(1, "name", Ty::Str).keep(),
        Field::one(2, "", Ty::Inline(&VOLUME_SOURCE)),
    ],
);
// Not covered: clusterTrustBundle, podCertificate.
pub(super) static VOLUME_PROJECTION: Message = Message::new(
    "VolumeProjection",
    &[
        Field::one(1, "secret", Ty::Msg(&SECRET_PROJECTION)),
        Field::one(2, "downwardAPI", Ty::Msg(&DOWNWARD_API_PROJECTION)),
        Field::one(3, "configMap", Ty::Msg(&CONFIG_MAP_PROJECTION)),
        Field::one(
            4,
            "serviceAccountToken",
            Ty::Msg(&SERVICE_ACCOUNT_TOKEN_PROJECTION),
        ),
    ],
);
// Not covered: gcePersistentDisk, awsElasticBlockStore, gitRepo, nfs, iscsi, glusterfs, rbd,
// flexVolume, cinder, cephfs, flocker, fc, azureFile, vsphereVolume, quobyte, azureDisk,
// photonPersistentDisk, portworxVolume, scaleIO, storageos, csi, ephemeral, image.
pub(super) static VOLUME_SOURCE: Message = Message::new(
    "VolumeSource",
    &[
        Field::one(1, "hostPath", Ty::Msg(&HOST_PATH_VOLUME_SOURCE)),
        Field::one(2, "emptyDir", Ty::Msg(&EMPTY_DIR_VOLUME_SOURCE)),
        Field::one(6, "secret", Ty::Msg(&SECRET_VOLUME_SOURCE)),
        Field::one(
            10,
            "persistentVolumeClaim",
            Ty::Msg(&PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE),
        ),
        Field::one(16, "downwardAPI", Ty::Msg(&DOWNWARD_API_VOLUME_SOURCE)),
        Field::one(19, "configMap", Ty::Msg(&CONFIG_MAP_VOLUME_SOURCE)),
        Field::one(26, "projected", Ty::Msg(&PROJECTED_VOLUME_SOURCE)),
    ],
);
