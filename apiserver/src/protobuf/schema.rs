//! The message tables: field numbers and JSON names from the upstream `generated.proto` files.

use super::{Field, Message, Ty};

// ---- kinds ----

/// The top-level kinds [`decode`] accepts, by apiVersion and kind.
pub(super) static KINDS: &[(&str, &str, &Message)] = &[
    ("v1", "ConfigMap", &CONFIG_MAP),
    ("v1", "Secret", &SECRET),
    ("v1", "Namespace", &NAMESPACE),
    ("v1", "ServiceAccount", &SERVICE_ACCOUNT),
    ("v1", "Service", &SERVICE),
    ("v1", "Pod", &POD),
    ("v1", "ResourceQuota", &RESOURCE_QUOTA),
    ("apps/v1", "Deployment", &DEPLOYMENT),
    ("batch/v1", "Job", &JOB),
    ("batch/v1", "CronJob", &CRON_JOB),
    ("policy/v1", "Eviction", &EVICTION),
    ("policy/v1", "PodDisruptionBudget", &POD_DISRUPTION_BUDGET),
    (
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        &CERTIFICATE_SIGNING_REQUEST,
    ),
    ("authentication.k8s.io/v1", "TokenRequest", &TOKEN_REQUEST),
    (
        "authentication.k8s.io/v1",
        "SelfSubjectReview",
        &SELF_SUBJECT_REVIEW,
    ),
    (
        "authorization.k8s.io/v1",
        "SubjectAccessReview",
        &SUBJECT_ACCESS_REVIEW,
    ),
    (
        "authorization.k8s.io/v1",
        "LocalSubjectAccessReview",
        &LOCAL_SUBJECT_ACCESS_REVIEW,
    ),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        &SELF_SUBJECT_ACCESS_REVIEW,
    ),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectRulesReview",
        &SELF_SUBJECT_RULES_REVIEW,
    ),
    ("rbac.authorization.k8s.io/v1", "Role", &ROLE),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", &CLUSTER_ROLE),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", &ROLE_BINDING),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        &CLUSTER_ROLE_BINDING,
    ),
    ("autoscaling/v1", "Scale", &SCALE),
    ("scheduling.k8s.io/v1", "PriorityClass", &PRIORITY_CLASS),
    ("networking.k8s.io/v1", "Ingress", &INGRESS),
    ("coordination.k8s.io/v1", "Lease", &LEASE),
];

// Message tables. Field numbers follow k8s.io/api and k8s.io/apimachinery `generated.proto`;
// JSON names and `keep` follow the Go struct tags.

// ---- meta/v1 ----

pub(super) static CONDITION: Message = Message::new(
    "Condition",
    &[
        Field::one(1, "type", Ty::Str).keep(),
        Field::one(2, "status", Ty::Str).keep(),
        Field::one(3, "observedGeneration", Ty::Int64),
        Field::one(4, "lastTransitionTime", Ty::Time),
        Field::one(5, "reason", Ty::Str).keep(),
        Field::one(6, "message", Ty::Str).keep(),
    ],
);
pub(super) static DELETE_OPTIONS: Message = Message::new(
    "DeleteOptions",
    &[
        Field::one(1, "gracePeriodSeconds", Ty::Int64).keep(),
        Field::one(2, "preconditions", Ty::Msg(&PRECONDITIONS)),
        Field::one(3, "orphanDependents", Ty::Bool).keep(),
        Field::one(4, "propagationPolicy", Ty::Str).keep(),
        Field::rep(5, "dryRun", Ty::Str),
        Field::one(
            6,
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            Ty::Bool,
        )
        .keep(),
    ],
);
pub(super) static LABEL_SELECTOR: Message = Message::new(
    "LabelSelector",
    &[
        Field::map(1, "matchLabels", Ty::Str),
        Field::rep(2, "matchExpressions", Ty::Msg(&LABEL_SELECTOR_REQUIREMENT)),
    ],
);
pub(super) static LABEL_SELECTOR_REQUIREMENT: Message = Message::new(
    "LabelSelectorRequirement",
    &[
        Field::one(1, "key", Ty::Str).keep(),
        Field::one(2, "operator", Ty::Str).keep(),
        Field::rep(3, "values", Ty::Str),
    ],
);
pub(super) static MANAGED_FIELDS_ENTRY: Message = Message::new(
    "ManagedFieldsEntry",
    &[
        Field::one(1, "manager", Ty::Str),
        Field::one(2, "operation", Ty::Str),
        Field::one(3, "apiVersion", Ty::Str),
        Field::one(4, "time", Ty::Time),
        Field::one(6, "fieldsType", Ty::Str),
        Field::one(7, "fieldsV1", Ty::Raw),
        Field::one(8, "subresource", Ty::Str),
    ],
);
pub(super) static OBJECT_META: Message = Message::new(
    "ObjectMeta",
    &[
        Field::one(1, "name", Ty::Str),
        Field::one(2, "generateName", Ty::Str),
        Field::one(3, "namespace", Ty::Str),
        Field::one(4, "selfLink", Ty::Str),
        Field::one(5, "uid", Ty::Str),
        Field::one(6, "resourceVersion", Ty::Str),
        Field::one(7, "generation", Ty::Int64),
        Field::one(8, "creationTimestamp", Ty::Time),
        Field::one(9, "deletionTimestamp", Ty::Time),
        Field::one(10, "deletionGracePeriodSeconds", Ty::Int64).keep(),
        Field::map(11, "labels", Ty::Str),
        Field::map(12, "annotations", Ty::Str),
        Field::rep(13, "ownerReferences", Ty::Msg(&OWNER_REFERENCE)),
        Field::rep(14, "finalizers", Ty::Str),
        Field::rep(17, "managedFields", Ty::Msg(&MANAGED_FIELDS_ENTRY)),
    ],
);
pub(super) static OWNER_REFERENCE: Message = Message::new(
    "OwnerReference",
    &[
        Field::one(5, "apiVersion", Ty::Str).keep(),
        Field::one(1, "kind", Ty::Str).keep(),
        Field::one(3, "name", Ty::Str).keep(),
        Field::one(4, "uid", Ty::Str).keep(),
        Field::one(6, "controller", Ty::Bool).keep(),
        Field::one(7, "blockOwnerDeletion", Ty::Bool).keep(),
    ],
);
pub(super) static PRECONDITIONS: Message = Message::new(
    "Preconditions",
    &[
        Field::one(1, "uid", Ty::Str).keep(),
        Field::one(2, "resourceVersion", Ty::Str).keep(),
    ],
);

// ---- core/v1 ----

pub(super) static AFFINITY: Message = Message::new(
    "Affinity",
    &[
        Field::one(1, "nodeAffinity", Ty::Msg(&NODE_AFFINITY)),
        Field::one(2, "podAffinity", Ty::Msg(&POD_AFFINITY)),
        Field::one(3, "podAntiAffinity", Ty::Msg(&POD_ANTI_AFFINITY)),
    ],
);
pub(super) static APP_ARMOR_PROFILE: Message = Message::new(
    "AppArmorProfile",
    &[
        Field::one(1, "type", Ty::Str).keep(),
        Field::one(2, "localhostProfile", Ty::Str).keep(),
    ],
);
pub(super) static CAPABILITIES: Message = Message::new(
    "Capabilities",
    &[
        Field::rep(1, "add", Ty::Str),
        Field::rep(2, "drop", Ty::Str),
    ],
);
pub(super) static CLIENT_IP_CONFIG: Message = Message::new(
    "ClientIPConfig",
    &[Field::one(1, "timeoutSeconds", Ty::Int32).keep()],
);
pub(super) static CONFIG_MAP: Message = Message::new(
    "ConfigMap",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(4, "immutable", Ty::Bool).keep(),
        Field::map(2, "data", Ty::Str),
        Field::map(3, "binaryData", Ty::Bytes),
    ],
);
pub(super) static CONFIG_MAP_ENV_SOURCE: Message = Message::new(
    "ConfigMapEnvSource",
    &[
        Field::one(1, "", Ty::Inline(&LOCAL_OBJECT_REFERENCE)),
        Field::one(2, "optional", Ty::Bool).keep(),
    ],
);
pub(super) static CONFIG_MAP_KEY_SELECTOR: Message = Message::new(
    "ConfigMapKeySelector",
    &[
        Field::one(1, "", Ty::Inline(&LOCAL_OBJECT_REFERENCE)),
        Field::one(2, "key", Ty::Str).keep(),
        Field::one(3, "optional", Ty::Bool).keep(),
    ],
);
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
// Not covered: restartPolicyRules, volumeDevices.
pub(super) static CONTAINER: Message = Message::new(
    "Container",
    &[
        Field::one(1, "name", Ty::Str).keep(),
        Field::one(2, "image", Ty::Str),
        Field::rep(3, "command", Ty::Str),
        Field::rep(4, "args", Ty::Str),
        Field::one(5, "workingDir", Ty::Str),
        Field::rep(6, "ports", Ty::Msg(&CONTAINER_PORT)),
        Field::rep(19, "envFrom", Ty::Msg(&ENV_FROM_SOURCE)),
        Field::rep(7, "env", Ty::Msg(&ENV_VAR)),
        Field::one(8, "resources", Ty::Msg(&RESOURCE_REQUIREMENTS)),
        Field::rep(23, "resizePolicy", Ty::Msg(&CONTAINER_RESIZE_POLICY)),
        Field::one(24, "restartPolicy", Ty::Str).keep(),
        Field::rep(9, "volumeMounts", Ty::Msg(&VOLUME_MOUNT)),
        Field::one(10, "livenessProbe", Ty::Msg(&PROBE)),
        Field::one(11, "readinessProbe", Ty::Msg(&PROBE)),
        Field::one(22, "startupProbe", Ty::Msg(&PROBE)),
        Field::one(12, "lifecycle", Ty::Msg(&LIFECYCLE)),
        Field::one(13, "terminationMessagePath", Ty::Str),
        Field::one(20, "terminationMessagePolicy", Ty::Str),
        Field::one(14, "imagePullPolicy", Ty::Str),
        Field::one(15, "securityContext", Ty::Msg(&SECURITY_CONTEXT)),
        Field::one(16, "stdin", Ty::Bool),
        Field::one(17, "stdinOnce", Ty::Bool),
        Field::one(18, "tty", Ty::Bool),
    ],
);
pub(super) static CONTAINER_PORT: Message = Message::new(
    "ContainerPort",
    &[
        Field::one(1, "name", Ty::Str),
        Field::one(2, "hostPort", Ty::Int32),
        Field::one(3, "containerPort", Ty::Int32).keep(),
        Field::one(4, "protocol", Ty::Str),
        Field::one(5, "hostIP", Ty::Str),
    ],
);
pub(super) static CONTAINER_RESIZE_POLICY: Message = Message::new(
    "ContainerResizePolicy",
    &[
        Field::one(1, "resourceName", Ty::Str).keep(),
        Field::one(2, "restartPolicy", Ty::Str).keep(),
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
pub(super) static ENV_FROM_SOURCE: Message = Message::new(
    "EnvFromSource",
    &[
        Field::one(1, "prefix", Ty::Str),
        Field::one(2, "configMapRef", Ty::Msg(&CONFIG_MAP_ENV_SOURCE)),
        Field::one(3, "secretRef", Ty::Msg(&SECRET_ENV_SOURCE)),
    ],
);
pub(super) static ENV_VAR: Message = Message::new(
    "EnvVar",
    &[
        Field::one(1, "name", Ty::Str).keep(),
        Field::one(2, "value", Ty::Str),
        Field::one(3, "valueFrom", Ty::Msg(&ENV_VAR_SOURCE)),
    ],
);
// Not covered: fileKeyRef.
pub(super) static ENV_VAR_SOURCE: Message = Message::new(
    "EnvVarSource",
    &[
        Field::one(1, "fieldRef", Ty::Msg(&OBJECT_FIELD_SELECTOR)),
        Field::one(2, "resourceFieldRef", Ty::Msg(&RESOURCE_FIELD_SELECTOR)),
        Field::one(3, "configMapKeyRef", Ty::Msg(&CONFIG_MAP_KEY_SELECTOR)),
        Field::one(4, "secretKeyRef", Ty::Msg(&SECRET_KEY_SELECTOR)),
    ],
);
pub(super) static EXEC_ACTION: Message =
    Message::new("ExecAction", &[Field::rep(1, "command", Ty::Str)]);
pub(super) static GRPC_ACTION: Message = Message::new(
    "GRPCAction",
    &[
        Field::one(1, "port", Ty::Int32).keep(),
        Field::one(2, "service", Ty::Str).keep(),
        Field::one(3, "mode", Ty::Str).keep(),
    ],
);
pub(super) static HTTP_GET_ACTION: Message = Message::new(
    "HTTPGetAction",
    &[
        Field::one(1, "path", Ty::Str),
        Field::one(2, "port", Ty::IntOrString),
        Field::one(3, "host", Ty::Str),
        Field::one(4, "scheme", Ty::Str),
        Field::rep(5, "httpHeaders", Ty::Msg(&HTTP_HEADER)),
        Field::one(6, "protocol", Ty::Str).keep(),
    ],
);
pub(super) static HTTP_HEADER: Message = Message::new(
    "HTTPHeader",
    &[
        Field::one(1, "name", Ty::Str).keep(),
        Field::one(2, "value", Ty::Str).keep(),
    ],
);
pub(super) static HOST_ALIAS: Message = Message::new(
    "HostAlias",
    &[
        Field::one(1, "ip", Ty::Str).keep(),
        Field::rep(2, "hostnames", Ty::Str),
    ],
);
pub(super) static HOST_IP: Message = Message::new("HostIP", &[Field::one(1, "ip", Ty::Str).keep()]);
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
pub(super) static LIFECYCLE: Message = Message::new(
    "Lifecycle",
    &[
        Field::one(1, "postStart", Ty::Msg(&LIFECYCLE_HANDLER)),
        Field::one(2, "preStop", Ty::Msg(&LIFECYCLE_HANDLER)),
        Field::one(3, "stopSignal", Ty::Str).keep(),
    ],
);
pub(super) static LIFECYCLE_HANDLER: Message = Message::new(
    "LifecycleHandler",
    &[
        Field::one(1, "exec", Ty::Msg(&EXEC_ACTION)),
        Field::one(2, "httpGet", Ty::Msg(&HTTP_GET_ACTION)),
        Field::one(3, "tcpSocket", Ty::Msg(&TCP_SOCKET_ACTION)),
        Field::one(4, "sleep", Ty::Msg(&SLEEP_ACTION)),
    ],
);
pub(super) static LOAD_BALANCER_INGRESS: Message = Message::new(
    "LoadBalancerIngress",
    &[
        Field::one(1, "ip", Ty::Str),
        Field::one(2, "hostname", Ty::Str),
        Field::one(3, "ipMode", Ty::Str).keep(),
        Field::rep(4, "ports", Ty::Msg(&PORT_STATUS)),
    ],
);
pub(super) static LOAD_BALANCER_STATUS: Message = Message::new(
    "LoadBalancerStatus",
    &[Field::rep(1, "ingress", Ty::Msg(&LOAD_BALANCER_INGRESS))],
);
pub(super) static LOCAL_OBJECT_REFERENCE: Message =
    Message::new("LocalObjectReference", &[Field::one(1, "name", Ty::Str)]);
pub(super) static NAMESPACE: Message = Message::new(
    "Namespace",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&NAMESPACE_SPEC)),
        Field::one(3, "status", Ty::Msg(&NAMESPACE_STATUS)),
    ],
);
pub(super) static NAMESPACE_CONDITION: Message = Message::new(
    "NamespaceCondition",
    &[
        Field::one(1, "type", Ty::Str).keep(),
        Field::one(2, "status", Ty::Str).keep(),
        Field::one(4, "lastTransitionTime", Ty::Time),
        Field::one(5, "reason", Ty::Str),
        Field::one(6, "message", Ty::Str),
    ],
);
pub(super) static NAMESPACE_SPEC: Message =
    Message::new("NamespaceSpec", &[Field::rep(1, "finalizers", Ty::Str)]);
pub(super) static NAMESPACE_STATUS: Message = Message::new(
    "NamespaceStatus",
    &[
        Field::one(1, "phase", Ty::Str),
        Field::rep(2, "conditions", Ty::Msg(&NAMESPACE_CONDITION)),
    ],
);
pub(super) static NODE_AFFINITY: Message = Message::new(
    "NodeAffinity",
    &[
        Field::one(
            1,
            "requiredDuringSchedulingIgnoredDuringExecution",
            Ty::Msg(&NODE_SELECTOR),
        ),
        Field::rep(
            2,
            "preferredDuringSchedulingIgnoredDuringExecution",
            Ty::Msg(&PREFERRED_SCHEDULING_TERM),
        ),
    ],
);
pub(super) static NODE_SELECTOR: Message = Message::new(
    "NodeSelector",
    &[Field::rep(1, "nodeSelectorTerms", Ty::Msg(&NODE_SELECTOR_TERM)).keep()],
);
pub(super) static NODE_SELECTOR_REQUIREMENT: Message = Message::new(
    "NodeSelectorRequirement",
    &[
        Field::one(1, "key", Ty::Str).keep(),
        Field::one(2, "operator", Ty::Str).keep(),
        Field::rep(3, "values", Ty::Str),
    ],
);
pub(super) static NODE_SELECTOR_TERM: Message = Message::new(
    "NodeSelectorTerm",
    &[
        Field::rep(1, "matchExpressions", Ty::Msg(&NODE_SELECTOR_REQUIREMENT)),
        Field::rep(2, "matchFields", Ty::Msg(&NODE_SELECTOR_REQUIREMENT)),
    ],
);
pub(super) static OBJECT_FIELD_SELECTOR: Message = Message::new(
    "ObjectFieldSelector",
    &[
        Field::one(1, "apiVersion", Ty::Str),
        Field::one(2, "fieldPath", Ty::Str).keep(),
    ],
);
pub(super) static OBJECT_REFERENCE: Message = Message::new(
    "ObjectReference",
    &[
        Field::one(1, "kind", Ty::Str),
        Field::one(2, "namespace", Ty::Str),
        Field::one(3, "name", Ty::Str),
        Field::one(4, "uid", Ty::Str),
        Field::one(5, "apiVersion", Ty::Str),
        Field::one(6, "resourceVersion", Ty::Str),
        Field::one(7, "fieldPath", Ty::Str),
    ],
);
pub(super) static PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE: Message = Message::new(
    "PersistentVolumeClaimVolumeSource",
    &[
        Field::one(1, "claimName", Ty::Str).keep(),
        Field::one(2, "readOnly", Ty::Bool),
    ],
);
pub(super) static POD: Message = Message::new(
    "Pod",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&POD_SPEC)),
        Field::one(3, "status", Ty::Msg(&POD_STATUS)),
    ],
);
pub(super) static POD_AFFINITY: Message = Message::new(
    "PodAffinity",
    &[
        Field::rep(
            1,
            "requiredDuringSchedulingIgnoredDuringExecution",
            Ty::Msg(&POD_AFFINITY_TERM),
        ),
        Field::rep(
            2,
            "preferredDuringSchedulingIgnoredDuringExecution",
            Ty::Msg(&WEIGHTED_POD_AFFINITY_TERM),
        ),
    ],
);
pub(super) static POD_AFFINITY_TERM: Message = Message::new(
    "PodAffinityTerm",
    &[
        Field::one(1, "labelSelector", Ty::Msg(&LABEL_SELECTOR)),
        Field::rep(2, "namespaces", Ty::Str),
        Field::one(3, "topologyKey", Ty::Str).keep(),
        Field::one(4, "namespaceSelector", Ty::Msg(&LABEL_SELECTOR)),
        Field::rep(5, "matchLabelKeys", Ty::Str),
        Field::rep(6, "mismatchLabelKeys", Ty::Str),
    ],
);
pub(super) static POD_ANTI_AFFINITY: Message = Message::new(
    "PodAntiAffinity",
    &[
        Field::rep(
            1,
            "requiredDuringSchedulingIgnoredDuringExecution",
            Ty::Msg(&POD_AFFINITY_TERM),
        ),
        Field::rep(
            2,
            "preferredDuringSchedulingIgnoredDuringExecution",
            Ty::Msg(&WEIGHTED_POD_AFFINITY_TERM),
        ),
    ],
);
pub(super) static POD_CONDITION: Message = Message::new(
    "PodCondition",
    &[
        Field::one(1, "type", Ty::Str).keep(),
        Field::one(7, "observedGeneration", Ty::Int64),
        Field::one(2, "status", Ty::Str).keep(),
        Field::one(3, "lastProbeTime", Ty::Time),
        Field::one(4, "lastTransitionTime", Ty::Time),
        Field::one(5, "reason", Ty::Str),
        Field::one(6, "message", Ty::Str),
    ],
);
pub(super) static POD_DNS_CONFIG: Message = Message::new(
    "PodDNSConfig",
    &[
        Field::rep(1, "nameservers", Ty::Str),
        Field::rep(2, "searches", Ty::Str),
        Field::rep(3, "options", Ty::Msg(&POD_DNS_CONFIG_OPTION)),
    ],
);
pub(super) static POD_DNS_CONFIG_OPTION: Message = Message::new(
    "PodDNSConfigOption",
    &[
        Field::one(1, "name", Ty::Str),
        Field::one(2, "value", Ty::Str).keep(),
    ],
);
pub(super) static POD_IP: Message = Message::new("PodIP", &[Field::one(1, "ip", Ty::Str).keep()]);
pub(super) static POD_OS: Message = Message::new("PodOS", &[Field::one(1, "name", Ty::Str).keep()]);
pub(super) static POD_READINESS_GATE: Message = Message::new(
    "PodReadinessGate",
    &[Field::one(1, "conditionType", Ty::Str).keep()],
);
// Not covered: windowsOptions.
pub(super) static POD_SECURITY_CONTEXT: Message = Message::new(
    "PodSecurityContext",
    &[
        Field::one(1, "seLinuxOptions", Ty::Msg(&SE_LINUX_OPTIONS)),
        Field::one(2, "runAsUser", Ty::Int64).keep(),
        Field::one(6, "runAsGroup", Ty::Int64).keep(),
        Field::one(3, "runAsNonRoot", Ty::Bool).keep(),
        Field::rep(4, "supplementalGroups", Ty::Int64),
        Field::one(12, "supplementalGroupsPolicy", Ty::Str).keep(),
        Field::one(5, "fsGroup", Ty::Int64).keep(),
        Field::rep(7, "sysctls", Ty::Msg(&SYSCTL)),
        Field::one(9, "fsGroupChangePolicy", Ty::Str).keep(),
        Field::one(10, "seccompProfile", Ty::Msg(&SECCOMP_PROFILE)),
        Field::one(11, "appArmorProfile", Ty::Msg(&APP_ARMOR_PROFILE)),
        Field::one(13, "seLinuxChangePolicy", Ty::Str).keep(),
    ],
);
// Not covered: ephemeralContainers, schedulingGates, resourceClaims, schedulingGroup,
// evictionResponders.
pub(super) static POD_SPEC: Message = Message::new(
    "PodSpec",
    &[
        Field::rep(1, "volumes", Ty::Msg(&VOLUME)),
        Field::rep(20, "initContainers", Ty::Msg(&CONTAINER)),
        Field::rep(2, "containers", Ty::Msg(&CONTAINER)).keep(),
        Field::one(3, "restartPolicy", Ty::Str),
        Field::one(4, "terminationGracePeriodSeconds", Ty::Int64).keep(),
        Field::one(5, "activeDeadlineSeconds", Ty::Int64).keep(),
        Field::one(6, "dnsPolicy", Ty::Str),
        Field::map(7, "nodeSelector", Ty::Str),
        Field::one(8, "serviceAccountName", Ty::Str),
        Field::one(9, "serviceAccount", Ty::Str),
        Field::one(21, "automountServiceAccountToken", Ty::Bool).keep(),
        Field::one(10, "nodeName", Ty::Str),
        Field::one(11, "hostNetwork", Ty::Bool),
        Field::one(12, "hostPID", Ty::Bool),
        Field::one(13, "hostIPC", Ty::Bool),
        Field::one(27, "shareProcessNamespace", Ty::Bool).keep(),
        Field::one(14, "securityContext", Ty::Msg(&POD_SECURITY_CONTEXT)),
        Field::rep(15, "imagePullSecrets", Ty::Msg(&LOCAL_OBJECT_REFERENCE)),
        Field::one(16, "hostname", Ty::Str),
        Field::one(17, "subdomain", Ty::Str),
        Field::one(18, "affinity", Ty::Msg(&AFFINITY)),
        Field::one(19, "schedulerName", Ty::Str),
        Field::rep(22, "tolerations", Ty::Msg(&TOLERATION)),
        Field::rep(23, "hostAliases", Ty::Msg(&HOST_ALIAS)),
        Field::one(24, "priorityClassName", Ty::Str),
        Field::one(25, "priority", Ty::Int32).keep(),
        Field::one(26, "dnsConfig", Ty::Msg(&POD_DNS_CONFIG)),
        Field::rep(28, "readinessGates", Ty::Msg(&POD_READINESS_GATE)),
        Field::one(29, "runtimeClassName", Ty::Str).keep(),
        Field::one(30, "enableServiceLinks", Ty::Bool).keep(),
        Field::one(31, "preemptionPolicy", Ty::Str).keep(),
        Field::map(32, "overhead", Ty::Quantity),
        Field::rep(
            33,
            "topologySpreadConstraints",
            Ty::Msg(&TOPOLOGY_SPREAD_CONSTRAINT),
        ),
        Field::one(35, "setHostnameAsFQDN", Ty::Bool).keep(),
        Field::one(36, "os", Ty::Msg(&POD_OS)),
        Field::one(37, "hostUsers", Ty::Bool).keep(),
        Field::one(40, "resources", Ty::Msg(&RESOURCE_REQUIREMENTS)),
        Field::one(41, "hostnameOverride", Ty::Str).keep(),
    ],
);
// Not covered: initContainerStatuses, containerStatuses, ephemeralContainerStatuses,
// resourceClaimStatuses, extendedResourceClaimStatus, nodeAllocatableResourceClaimStatuses,
// volumeHealth.
pub(super) static POD_STATUS: Message = Message::new(
    "PodStatus",
    &[
        Field::one(17, "observedGeneration", Ty::Int64),
        Field::one(1, "phase", Ty::Str),
        Field::rep(2, "conditions", Ty::Msg(&POD_CONDITION)),
        Field::one(3, "message", Ty::Str),
        Field::one(4, "reason", Ty::Str),
        Field::one(11, "nominatedNodeName", Ty::Str),
        Field::one(5, "hostIP", Ty::Str),
        Field::rep(16, "hostIPs", Ty::Msg(&HOST_IP)),
        Field::one(6, "podIP", Ty::Str),
        Field::rep(12, "podIPs", Ty::Msg(&POD_IP)),
        Field::one(7, "startTime", Ty::Time),
        Field::one(9, "qosClass", Ty::Str),
        Field::one(14, "resize", Ty::Str),
        Field::map(19, "allocatedResources", Ty::Quantity),
        Field::one(20, "resources", Ty::Msg(&RESOURCE_REQUIREMENTS)),
    ],
);
pub(super) static POD_TEMPLATE_SPEC: Message = Message::new(
    "PodTemplateSpec",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&POD_SPEC)),
    ],
);
pub(super) static PORT_STATUS: Message = Message::new(
    "PortStatus",
    &[
        Field::one(1, "port", Ty::Int32).keep(),
        Field::one(2, "protocol", Ty::Str).keep(),
        Field::one(3, "error", Ty::Str).keep(),
    ],
);
pub(super) static PREFERRED_SCHEDULING_TERM: Message = Message::new(
    "PreferredSchedulingTerm",
    &[
        Field::one(1, "weight", Ty::Int32).keep(),
        Field::one(2, "preference", Ty::Msg(&NODE_SELECTOR_TERM)),
    ],
);
pub(super) static PROBE: Message = Message::new(
    "Probe",
    &[
        Field::one(1, "", Ty::Inline(&PROBE_HANDLER)),
        Field::one(2, "initialDelaySeconds", Ty::Int32),
        Field::one(3, "timeoutSeconds", Ty::Int32),
        Field::one(4, "periodSeconds", Ty::Int32),
        Field::one(5, "successThreshold", Ty::Int32),
        Field::one(6, "failureThreshold", Ty::Int32),
        Field::one(7, "terminationGracePeriodSeconds", Ty::Int64).keep(),
    ],
);
pub(super) static PROBE_HANDLER: Message = Message::new(
    "ProbeHandler",
    &[
        Field::one(1, "exec", Ty::Msg(&EXEC_ACTION)),
        Field::one(2, "httpGet", Ty::Msg(&HTTP_GET_ACTION)),
        Field::one(3, "tcpSocket", Ty::Msg(&TCP_SOCKET_ACTION)),
        Field::one(4, "grpc", Ty::Msg(&GRPC_ACTION)),
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
pub(super) static RESOURCE_CLAIM: Message = Message::new(
    "ResourceClaim",
    &[
        Field::one(1, "name", Ty::Str).keep(),
        Field::one(2, "request", Ty::Str),
    ],
);
pub(super) static RESOURCE_FIELD_SELECTOR: Message = Message::new(
    "ResourceFieldSelector",
    &[
        Field::one(1, "containerName", Ty::Str),
        Field::one(2, "resource", Ty::Str).keep(),
        Field::one(3, "divisor", Ty::Quantity),
    ],
);
pub(super) static RESOURCE_QUOTA: Message = Message::new(
    "ResourceQuota",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&RESOURCE_QUOTA_SPEC)),
        Field::one(3, "status", Ty::Msg(&RESOURCE_QUOTA_STATUS)),
    ],
);
pub(super) static RESOURCE_QUOTA_SPEC: Message = Message::new(
    "ResourceQuotaSpec",
    &[
        Field::map(1, "hard", Ty::Quantity),
        Field::rep(2, "scopes", Ty::Str),
        Field::one(3, "scopeSelector", Ty::Msg(&SCOPE_SELECTOR)),
    ],
);
pub(super) static RESOURCE_QUOTA_STATUS: Message = Message::new(
    "ResourceQuotaStatus",
    &[
        Field::map(1, "hard", Ty::Quantity),
        Field::map(2, "used", Ty::Quantity),
    ],
);
pub(super) static RESOURCE_REQUIREMENTS: Message = Message::new(
    "ResourceRequirements",
    &[
        Field::map(1, "limits", Ty::Quantity),
        Field::map(2, "requests", Ty::Quantity),
        Field::rep(3, "claims", Ty::Msg(&RESOURCE_CLAIM)),
    ],
);
pub(super) static SE_LINUX_OPTIONS: Message = Message::new(
    "SELinuxOptions",
    &[
        Field::one(1, "user", Ty::Str),
        Field::one(2, "role", Ty::Str),
        Field::one(3, "type", Ty::Str),
        Field::one(4, "level", Ty::Str),
    ],
);
pub(super) static SCOPE_SELECTOR: Message = Message::new(
    "ScopeSelector",
    &[Field::rep(
        1,
        "matchExpressions",
        Ty::Msg(&SCOPED_RESOURCE_SELECTOR_REQUIREMENT),
    )],
);
pub(super) static SCOPED_RESOURCE_SELECTOR_REQUIREMENT: Message = Message::new(
    "ScopedResourceSelectorRequirement",
    &[
        Field::one(1, "scopeName", Ty::Str).keep(),
        Field::one(2, "operator", Ty::Str).keep(),
        Field::rep(3, "values", Ty::Str),
    ],
);
pub(super) static SECCOMP_PROFILE: Message = Message::new(
    "SeccompProfile",
    &[
        Field::one(1, "type", Ty::Str).keep(),
        Field::one(2, "localhostProfile", Ty::Str).keep(),
    ],
);
pub(super) static SECRET: Message = Message::new(
    "Secret",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(5, "immutable", Ty::Bool).keep(),
        Field::map(2, "data", Ty::Bytes),
        Field::map(4, "stringData", Ty::Str),
        Field::one(3, "type", Ty::Str),
    ],
);
pub(super) static SECRET_ENV_SOURCE: Message = Message::new(
    "SecretEnvSource",
    &[
        Field::one(1, "", Ty::Inline(&LOCAL_OBJECT_REFERENCE)),
        Field::one(2, "optional", Ty::Bool).keep(),
    ],
);
pub(super) static SECRET_KEY_SELECTOR: Message = Message::new(
    "SecretKeySelector",
    &[
        Field::one(1, "", Ty::Inline(&LOCAL_OBJECT_REFERENCE)),
        Field::one(2, "key", Ty::Str).keep(),
        Field::one(3, "optional", Ty::Bool).keep(),
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
// Not covered: windowsOptions.
pub(super) static SECURITY_CONTEXT: Message = Message::new(
    "SecurityContext",
    &[
        Field::one(1, "capabilities", Ty::Msg(&CAPABILITIES)),
        Field::one(2, "privileged", Ty::Bool).keep(),
        Field::one(3, "seLinuxOptions", Ty::Msg(&SE_LINUX_OPTIONS)),
        Field::one(4, "runAsUser", Ty::Int64).keep(),
        Field::one(8, "runAsGroup", Ty::Int64).keep(),
        Field::one(5, "runAsNonRoot", Ty::Bool).keep(),
        Field::one(6, "readOnlyRootFilesystem", Ty::Bool).keep(),
        Field::one(7, "allowPrivilegeEscalation", Ty::Bool).keep(),
        Field::one(9, "procMount", Ty::Str).keep(),
        Field::one(11, "seccompProfile", Ty::Msg(&SECCOMP_PROFILE)),
        Field::one(12, "appArmorProfile", Ty::Msg(&APP_ARMOR_PROFILE)),
    ],
);
pub(super) static SERVICE: Message = Message::new(
    "Service",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&SERVICE_SPEC)),
        Field::one(3, "status", Ty::Msg(&SERVICE_STATUS)),
    ],
);
pub(super) static SERVICE_ACCOUNT: Message = Message::new(
    "ServiceAccount",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::rep(2, "secrets", Ty::Msg(&OBJECT_REFERENCE)),
        Field::rep(3, "imagePullSecrets", Ty::Msg(&LOCAL_OBJECT_REFERENCE)),
        Field::one(4, "automountServiceAccountToken", Ty::Bool).keep(),
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
pub(super) static SERVICE_PORT: Message = Message::new(
    "ServicePort",
    &[
        Field::one(1, "name", Ty::Str),
        Field::one(2, "protocol", Ty::Str),
        Field::one(6, "appProtocol", Ty::Str).keep(),
        Field::one(3, "port", Ty::Int32).keep(),
        Field::one(4, "targetPort", Ty::IntOrString),
        Field::one(5, "nodePort", Ty::Int32),
    ],
);
pub(super) static SERVICE_SPEC: Message = Message::new(
    "ServiceSpec",
    &[
        Field::rep(1, "ports", Ty::Msg(&SERVICE_PORT)),
        Field::map(2, "selector", Ty::Str),
        Field::one(3, "clusterIP", Ty::Str),
        Field::rep(18, "clusterIPs", Ty::Str),
        Field::one(4, "type", Ty::Str),
        Field::rep(5, "externalIPs", Ty::Str),
        Field::one(7, "sessionAffinity", Ty::Str),
        Field::one(8, "loadBalancerIP", Ty::Str),
        Field::rep(9, "loadBalancerSourceRanges", Ty::Str),
        Field::one(10, "externalName", Ty::Str),
        Field::one(11, "externalTrafficPolicy", Ty::Str),
        Field::one(12, "healthCheckNodePort", Ty::Int32),
        Field::one(13, "publishNotReadyAddresses", Ty::Bool),
        Field::one(
            14,
            "sessionAffinityConfig",
            Ty::Msg(&SESSION_AFFINITY_CONFIG),
        ),
        Field::rep(19, "ipFamilies", Ty::Str),
        Field::one(17, "ipFamilyPolicy", Ty::Str).keep(),
        Field::one(20, "allocateLoadBalancerNodePorts", Ty::Bool).keep(),
        Field::one(21, "loadBalancerClass", Ty::Str).keep(),
        Field::one(22, "internalTrafficPolicy", Ty::Str).keep(),
        Field::one(23, "trafficDistribution", Ty::Str).keep(),
    ],
);
pub(super) static SERVICE_STATUS: Message = Message::new(
    "ServiceStatus",
    &[
        Field::one(1, "loadBalancer", Ty::Msg(&LOAD_BALANCER_STATUS)),
        Field::rep(2, "conditions", Ty::Msg(&CONDITION)),
    ],
);
pub(super) static SESSION_AFFINITY_CONFIG: Message = Message::new(
    "SessionAffinityConfig",
    &[Field::one(1, "clientIP", Ty::Msg(&CLIENT_IP_CONFIG))],
);
pub(super) static SLEEP_ACTION: Message =
    Message::new("SleepAction", &[Field::one(1, "seconds", Ty::Int64).keep()]);
pub(super) static SYSCTL: Message = Message::new(
    "Sysctl",
    &[
        Field::one(1, "name", Ty::Str).keep(),
        Field::one(2, "value", Ty::Str).keep(),
    ],
);
pub(super) static TCP_SOCKET_ACTION: Message = Message::new(
    "TCPSocketAction",
    &[
        Field::one(1, "port", Ty::IntOrString),
        Field::one(2, "host", Ty::Str),
    ],
);
pub(super) static TOLERATION: Message = Message::new(
    "Toleration",
    &[
        Field::one(1, "key", Ty::Str),
        Field::one(2, "operator", Ty::Str),
        Field::one(3, "value", Ty::Str),
        Field::one(4, "effect", Ty::Str),
        Field::one(5, "tolerationSeconds", Ty::Int64).keep(),
    ],
);
pub(super) static TOPOLOGY_SPREAD_CONSTRAINT: Message = Message::new(
    "TopologySpreadConstraint",
    &[
        Field::one(1, "maxSkew", Ty::Int32).keep(),
        Field::one(2, "topologyKey", Ty::Str).keep(),
        Field::one(3, "whenUnsatisfiable", Ty::Str).keep(),
        Field::one(4, "labelSelector", Ty::Msg(&LABEL_SELECTOR)),
        Field::one(5, "minDomains", Ty::Int32).keep(),
        Field::one(6, "nodeAffinityPolicy", Ty::Str).keep(),
        Field::one(7, "nodeTaintsPolicy", Ty::Str).keep(),
        Field::rep(8, "matchLabelKeys", Ty::Str),
    ],
);
pub(super) static VOLUME: Message = Message::new(
    "Volume",
    &[
        Field::one(1, "name", Ty::Str).keep(),
        Field::one(2, "", Ty::Inline(&VOLUME_SOURCE)),
    ],
);
pub(super) static VOLUME_MOUNT: Message = Message::new(
    "VolumeMount",
    &[
        Field::one(1, "name", Ty::Str).keep(),
        Field::one(2, "readOnly", Ty::Bool),
        Field::one(7, "recursiveReadOnly", Ty::Str).keep(),
        Field::one(3, "mountPath", Ty::Str).keep(),
        Field::one(4, "subPath", Ty::Str),
        Field::one(5, "mountPropagation", Ty::Str).keep(),
        Field::one(6, "subPathExpr", Ty::Str),
        Field::rep(8, "bindMountOptions", Ty::Str),
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
pub(super) static WEIGHTED_POD_AFFINITY_TERM: Message = Message::new(
    "WeightedPodAffinityTerm",
    &[
        Field::one(1, "weight", Ty::Int32).keep(),
        Field::one(2, "podAffinityTerm", Ty::Msg(&POD_AFFINITY_TERM)),
    ],
);

// ---- apps/v1 ----

pub(super) static DEPLOYMENT: Message = Message::new(
    "Deployment",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&DEPLOYMENT_SPEC)),
        Field::one(3, "status", Ty::Msg(&DEPLOYMENT_STATUS)),
    ],
);
pub(super) static DEPLOYMENT_CONDITION: Message = Message::new(
    "DeploymentCondition",
    &[
        Field::one(1, "type", Ty::Str).keep(),
        Field::one(2, "status", Ty::Str).keep(),
        Field::one(6, "lastUpdateTime", Ty::Time),
        Field::one(7, "lastTransitionTime", Ty::Time),
        Field::one(4, "reason", Ty::Str),
        Field::one(5, "message", Ty::Str),
    ],
);
pub(super) static DEPLOYMENT_SPEC: Message = Message::new(
    "DeploymentSpec",
    &[
        Field::one(1, "replicas", Ty::Int32).keep(),
        Field::one(2, "selector", Ty::Msg(&LABEL_SELECTOR)),
        Field::one(3, "template", Ty::Msg(&POD_TEMPLATE_SPEC)),
        Field::one(4, "strategy", Ty::Msg(&DEPLOYMENT_STRATEGY)),
        Field::one(5, "minReadySeconds", Ty::Int32),
        Field::one(6, "revisionHistoryLimit", Ty::Int32).keep(),
        Field::one(7, "paused", Ty::Bool),
        Field::one(9, "progressDeadlineSeconds", Ty::Int32).keep(),
    ],
);
pub(super) static DEPLOYMENT_STATUS: Message = Message::new(
    "DeploymentStatus",
    &[
        Field::one(1, "observedGeneration", Ty::Int64),
        Field::one(2, "replicas", Ty::Int32),
        Field::one(3, "updatedReplicas", Ty::Int32),
        Field::one(7, "readyReplicas", Ty::Int32),
        Field::one(4, "availableReplicas", Ty::Int32),
        Field::one(5, "unavailableReplicas", Ty::Int32),
        Field::one(9, "terminatingReplicas", Ty::Int32).keep(),
        Field::rep(6, "conditions", Ty::Msg(&DEPLOYMENT_CONDITION)),
        Field::one(8, "collisionCount", Ty::Int32).keep(),
    ],
);
pub(super) static DEPLOYMENT_STRATEGY: Message = Message::new(
    "DeploymentStrategy",
    &[
        Field::one(1, "type", Ty::Str),
        Field::one(2, "rollingUpdate", Ty::Msg(&ROLLING_UPDATE_DEPLOYMENT)),
    ],
);
pub(super) static ROLLING_UPDATE_DEPLOYMENT: Message = Message::new(
    "RollingUpdateDeployment",
    &[
        Field::one(1, "maxUnavailable", Ty::IntOrString),
        Field::one(2, "maxSurge", Ty::IntOrString),
    ],
);

// ---- batch/v1 ----

pub(super) static CRON_JOB: Message = Message::new(
    "CronJob",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&CRON_JOB_SPEC)),
        Field::one(3, "status", Ty::Msg(&CRON_JOB_STATUS)),
    ],
);
pub(super) static CRON_JOB_SPEC: Message = Message::new(
    "CronJobSpec",
    &[
        Field::one(1, "schedule", Ty::Str).keep(),
        Field::one(8, "timeZone", Ty::Str).keep(),
        Field::one(2, "startingDeadlineSeconds", Ty::Int64).keep(),
        Field::one(3, "concurrencyPolicy", Ty::Str),
        Field::one(4, "suspend", Ty::Bool).keep(),
        Field::one(5, "jobTemplate", Ty::Msg(&JOB_TEMPLATE_SPEC)),
        Field::one(6, "successfulJobsHistoryLimit", Ty::Int32).keep(),
        Field::one(7, "failedJobsHistoryLimit", Ty::Int32).keep(),
    ],
);
pub(super) static CRON_JOB_STATUS: Message = Message::new(
    "CronJobStatus",
    &[
        Field::rep(1, "active", Ty::Msg(&OBJECT_REFERENCE)),
        Field::one(4, "lastScheduleTime", Ty::Time),
        Field::one(5, "lastSuccessfulTime", Ty::Time),
    ],
);
pub(super) static JOB: Message = Message::new(
    "Job",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&JOB_SPEC)),
        Field::one(3, "status", Ty::Msg(&JOB_STATUS)),
    ],
);
pub(super) static JOB_CONDITION: Message = Message::new(
    "JobCondition",
    &[
        Field::one(1, "type", Ty::Str).keep(),
        Field::one(2, "status", Ty::Str).keep(),
        Field::one(3, "lastProbeTime", Ty::Time),
        Field::one(4, "lastTransitionTime", Ty::Time),
        Field::one(5, "reason", Ty::Str),
        Field::one(6, "message", Ty::Str),
    ],
);
// Not covered: podFailurePolicy, successPolicy, scheduling.
pub(super) static JOB_SPEC: Message = Message::new(
    "JobSpec",
    &[
        Field::one(1, "parallelism", Ty::Int32).keep(),
        Field::one(2, "completions", Ty::Int32).keep(),
        Field::one(3, "activeDeadlineSeconds", Ty::Int64).keep(),
        Field::one(7, "backoffLimit", Ty::Int32).keep(),
        Field::one(12, "backoffLimitPerIndex", Ty::Int32).keep(),
        Field::one(13, "maxFailedIndexes", Ty::Int32).keep(),
        Field::one(4, "selector", Ty::Msg(&LABEL_SELECTOR)),
        Field::one(5, "manualSelector", Ty::Bool).keep(),
        Field::one(6, "template", Ty::Msg(&POD_TEMPLATE_SPEC)),
        Field::one(8, "ttlSecondsAfterFinished", Ty::Int32).keep(),
        Field::one(9, "completionMode", Ty::Str).keep(),
        Field::one(10, "suspend", Ty::Bool).keep(),
        Field::one(14, "podReplacementPolicy", Ty::Str).keep(),
        Field::one(15, "managedBy", Ty::Str).keep(),
    ],
);
// Not covered: uncountedTerminatedPods.
pub(super) static JOB_STATUS: Message = Message::new(
    "JobStatus",
    &[
        Field::rep(1, "conditions", Ty::Msg(&JOB_CONDITION)),
        Field::one(2, "startTime", Ty::Time),
        Field::one(3, "completionTime", Ty::Time),
        Field::one(4, "active", Ty::Int32),
        Field::one(5, "succeeded", Ty::Int32),
        Field::one(6, "failed", Ty::Int32),
        Field::one(11, "terminating", Ty::Int32).keep(),
        Field::one(7, "completedIndexes", Ty::Str),
        Field::one(10, "failedIndexes", Ty::Str).keep(),
        Field::one(9, "ready", Ty::Int32).keep(),
    ],
);
pub(super) static JOB_TEMPLATE_SPEC: Message = Message::new(
    "JobTemplateSpec",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&JOB_SPEC)),
    ],
);

// ---- policy/v1 ----

pub(super) static EVICTION: Message = Message::new(
    "Eviction",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "deleteOptions", Ty::Msg(&DELETE_OPTIONS)),
    ],
);
pub(super) static POD_DISRUPTION_BUDGET: Message = Message::new(
    "PodDisruptionBudget",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&POD_DISRUPTION_BUDGET_SPEC)),
        Field::one(3, "status", Ty::Msg(&POD_DISRUPTION_BUDGET_STATUS)),
    ],
);
pub(super) static POD_DISRUPTION_BUDGET_SPEC: Message = Message::new(
    "PodDisruptionBudgetSpec",
    &[
        Field::one(1, "minAvailable", Ty::IntOrString),
        Field::one(2, "selector", Ty::Msg(&LABEL_SELECTOR)),
        Field::one(3, "maxUnavailable", Ty::IntOrString),
        Field::one(4, "unhealthyPodEvictionPolicy", Ty::Str).keep(),
    ],
);
pub(super) static POD_DISRUPTION_BUDGET_STATUS: Message = Message::new(
    "PodDisruptionBudgetStatus",
    &[
        Field::one(1, "observedGeneration", Ty::Int64),
        Field::map(2, "disruptedPods", Ty::Time),
        Field::one(3, "disruptionsAllowed", Ty::Int32).keep(),
        Field::one(4, "currentHealthy", Ty::Int32).keep(),
        Field::one(5, "desiredHealthy", Ty::Int32).keep(),
        Field::one(6, "expectedPods", Ty::Int32).keep(),
        Field::rep(7, "conditions", Ty::Msg(&CONDITION)),
    ],
);

// ---- certificates.k8s.io/v1 ----

pub(super) static CERTIFICATE_SIGNING_REQUEST: Message = Message::new(
    "CertificateSigningRequest",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&CERTIFICATE_SIGNING_REQUEST_SPEC)),
        Field::one(3, "status", Ty::Msg(&CERTIFICATE_SIGNING_REQUEST_STATUS)),
    ],
);
pub(super) static CERTIFICATE_SIGNING_REQUEST_CONDITION: Message = Message::new(
    "CertificateSigningRequestCondition",
    &[
        Field::one(1, "type", Ty::Str).keep(),
        Field::one(6, "status", Ty::Str).keep(),
        Field::one(2, "reason", Ty::Str),
        Field::one(3, "message", Ty::Str),
        Field::one(4, "lastUpdateTime", Ty::Time),
        Field::one(5, "lastTransitionTime", Ty::Time),
    ],
);
pub(super) static CERTIFICATE_SIGNING_REQUEST_SPEC: Message = Message::new(
    "CertificateSigningRequestSpec",
    &[
        Field::one(1, "request", Ty::Bytes).keep(),
        Field::one(7, "signerName", Ty::Str).keep(),
        Field::one(8, "expirationSeconds", Ty::Int32).keep(),
        Field::rep(5, "usages", Ty::Str),
        Field::one(2, "username", Ty::Str),
        Field::one(3, "uid", Ty::Str),
        Field::rep(4, "groups", Ty::Str),
        Field::map(6, "extra", Ty::StrList),
    ],
);
pub(super) static CERTIFICATE_SIGNING_REQUEST_STATUS: Message = Message::new(
    "CertificateSigningRequestStatus",
    &[
        Field::rep(
            1,
            "conditions",
            Ty::Msg(&CERTIFICATE_SIGNING_REQUEST_CONDITION),
        ),
        Field::one(2, "certificate", Ty::Bytes),
    ],
);

// ---- authentication.k8s.io/v1 ----

pub(super) static BOUND_OBJECT_REFERENCE: Message = Message::new(
    "BoundObjectReference",
    &[
        Field::one(1, "kind", Ty::Str),
        Field::one(2, "apiVersion", Ty::Str),
        Field::one(3, "name", Ty::Str),
        Field::one(4, "uid", Ty::Str),
    ],
);
pub(super) static TOKEN_REQUEST: Message = Message::new(
    "TokenRequest",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&TOKEN_REQUEST_SPEC)),
        Field::one(3, "status", Ty::Msg(&TOKEN_REQUEST_STATUS)),
    ],
);
pub(super) static TOKEN_REQUEST_SPEC: Message = Message::new(
    "TokenRequestSpec",
    &[
        Field::rep(1, "audiences", Ty::Str).keep(),
        Field::one(4, "expirationSeconds", Ty::Int64).keep(),
        Field::one(3, "boundObjectRef", Ty::Msg(&BOUND_OBJECT_REFERENCE)),
        Field::map(5, "attestations", Ty::StrList),
    ],
);
pub(super) static TOKEN_REQUEST_STATUS: Message = Message::new(
    "TokenRequestStatus",
    &[
        Field::one(1, "token", Ty::Str).keep(),
        Field::one(2, "expirationTimestamp", Ty::Time),
    ],
);

/// Requests carry no status; only `userInfo` comes back, in the answer.
pub(super) static SELF_SUBJECT_REVIEW: Message = Message::new(
    "SelfSubjectReview",
    &[Field::one(1, "metadata", Ty::Msg(&OBJECT_META))],
);

// ---- authorization.k8s.io/v1 (request fields only: status is the server's answer) ----

pub(super) static RESOURCE_ATTRIBUTES: Message = Message::new(
    "ResourceAttributes",
    &[
        Field::one(1, "namespace", Ty::Str),
        Field::one(2, "verb", Ty::Str),
        Field::one(3, "group", Ty::Str),
        Field::one(4, "version", Ty::Str),
        Field::one(5, "resource", Ty::Str),
        Field::one(6, "subresource", Ty::Str),
        Field::one(7, "name", Ty::Str),
        // Not covered: fieldSelector (8) and labelSelector (9) attributes.
    ],
);
pub(super) static NON_RESOURCE_ATTRIBUTES: Message = Message::new(
    "NonResourceAttributes",
    &[
        Field::one(1, "path", Ty::Str),
        Field::one(2, "verb", Ty::Str),
    ],
);
pub(super) static SUBJECT_ACCESS_REVIEW_SPEC: Message = Message::new(
    "SubjectAccessReviewSpec",
    &[
        Field::one(1, "resourceAttributes", Ty::Msg(&RESOURCE_ATTRIBUTES)),
        Field::one(
            2,
            "nonResourceAttributes",
            Ty::Msg(&NON_RESOURCE_ATTRIBUTES),
        ),
        Field::one(3, "user", Ty::Str),
        Field::rep(4, "groups", Ty::Str),
        Field::map(5, "extra", Ty::StrList),
        Field::one(6, "uid", Ty::Str),
    ],
);
pub(super) static SUBJECT_ACCESS_REVIEW: Message = Message::new(
    "SubjectAccessReview",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&SUBJECT_ACCESS_REVIEW_SPEC)),
    ],
);
pub(super) static LOCAL_SUBJECT_ACCESS_REVIEW: Message = Message::new(
    "LocalSubjectAccessReview",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&SUBJECT_ACCESS_REVIEW_SPEC)),
    ],
);
pub(super) static SELF_SUBJECT_ACCESS_REVIEW_SPEC: Message = Message::new(
    "SelfSubjectAccessReviewSpec",
    &[
        Field::one(1, "resourceAttributes", Ty::Msg(&RESOURCE_ATTRIBUTES)),
        Field::one(
            2,
            "nonResourceAttributes",
            Ty::Msg(&NON_RESOURCE_ATTRIBUTES),
        ),
    ],
);
pub(super) static SELF_SUBJECT_ACCESS_REVIEW: Message = Message::new(
    "SelfSubjectAccessReview",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&SELF_SUBJECT_ACCESS_REVIEW_SPEC)),
    ],
);
pub(super) static SELF_SUBJECT_RULES_REVIEW_SPEC: Message = Message::new(
    "SelfSubjectRulesReviewSpec",
    &[Field::one(1, "namespace", Ty::Str)],
);
pub(super) static SELF_SUBJECT_RULES_REVIEW: Message = Message::new(
    "SelfSubjectRulesReview",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&SELF_SUBJECT_RULES_REVIEW_SPEC)),
    ],
);

// ---- rbac.authorization.k8s.io/v1 ----

pub(super) static AGGREGATION_RULE: Message = Message::new(
    "AggregationRule",
    &[Field::rep(
        1,
        "clusterRoleSelectors",
        Ty::Msg(&LABEL_SELECTOR),
    )],
);
pub(super) static CLUSTER_ROLE: Message = Message::new(
    "ClusterRole",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::rep(2, "rules", Ty::Msg(&POLICY_RULE)).keep(),
        Field::one(3, "aggregationRule", Ty::Msg(&AGGREGATION_RULE)),
    ],
);
pub(super) static CLUSTER_ROLE_BINDING: Message = Message::new(
    "ClusterRoleBinding",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::rep(2, "subjects", Ty::Msg(&SUBJECT)),
        Field::one(3, "roleRef", Ty::Msg(&ROLE_REF)),
    ],
);
pub(super) static POLICY_RULE: Message = Message::new(
    "PolicyRule",
    &[
        Field::rep(1, "verbs", Ty::Str).keep(),
        Field::rep(2, "apiGroups", Ty::Str),
        Field::rep(3, "resources", Ty::Str),
        Field::rep(4, "resourceNames", Ty::Str),
        Field::rep(5, "nonResourceURLs", Ty::Str),
    ],
);
pub(super) static ROLE: Message = Message::new(
    "Role",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::rep(2, "rules", Ty::Msg(&POLICY_RULE)).keep(),
    ],
);
pub(super) static ROLE_BINDING: Message = Message::new(
    "RoleBinding",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::rep(2, "subjects", Ty::Msg(&SUBJECT)),
        Field::one(3, "roleRef", Ty::Msg(&ROLE_REF)),
    ],
);
pub(super) static ROLE_REF: Message = Message::new(
    "RoleRef",
    &[
        Field::one(1, "apiGroup", Ty::Str).keep(),
        Field::one(2, "kind", Ty::Str).keep(),
        Field::one(3, "name", Ty::Str).keep(),
    ],
);
pub(super) static SUBJECT: Message = Message::new(
    "Subject",
    &[
        Field::one(1, "kind", Ty::Str).keep(),
        Field::one(2, "apiGroup", Ty::Str),
        Field::one(3, "name", Ty::Str).keep(),
        Field::one(4, "namespace", Ty::Str),
    ],
);

// ---- autoscaling/v1 ----

pub(super) static SCALE: Message = Message::new(
    "Scale",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&SCALE_SPEC)),
        Field::one(3, "status", Ty::Msg(&SCALE_STATUS)),
    ],
);
// `replicas` is `omitempty` in Go, but a JSON-reading server must see an explicit scale to 0.
pub(super) static SCALE_SPEC: Message =
    Message::new("ScaleSpec", &[Field::one(1, "replicas", Ty::Int32).keep()]);
pub(super) static SCALE_STATUS: Message = Message::new(
    "ScaleStatus",
    &[
        Field::one(1, "replicas", Ty::Int32).keep(),
        Field::one(2, "selector", Ty::Str),
    ],
);

// ---- scheduling.k8s.io/v1 ----

pub(super) static PRIORITY_CLASS: Message = Message::new(
    "PriorityClass",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "value", Ty::Int32).keep(),
        Field::one(3, "globalDefault", Ty::Bool),
        Field::one(4, "description", Ty::Str),
        Field::one(5, "preemptionPolicy", Ty::Str).keep(),
    ],
);

// ---- networking.k8s.io/v1 ----

pub(super) static HTTP_INGRESS_PATH: Message = Message::new(
    "HTTPIngressPath",
    &[
        Field::one(1, "path", Ty::Str),
        Field::one(3, "pathType", Ty::Str).keep(),
        Field::one(2, "backend", Ty::Msg(&INGRESS_BACKEND)),
    ],
);
pub(super) static HTTP_INGRESS_RULE_VALUE: Message = Message::new(
    "HTTPIngressRuleValue",
    &[Field::rep(1, "paths", Ty::Msg(&HTTP_INGRESS_PATH)).keep()],
);
pub(super) static INGRESS: Message = Message::new(
    "Ingress",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&INGRESS_SPEC)),
        Field::one(3, "status", Ty::Msg(&INGRESS_STATUS)),
    ],
);
// Not covered: resource.
pub(super) static INGRESS_BACKEND: Message = Message::new(
    "IngressBackend",
    &[Field::one(4, "service", Ty::Msg(&INGRESS_SERVICE_BACKEND))],
);
pub(super) static INGRESS_LOAD_BALANCER_INGRESS: Message = Message::new(
    "IngressLoadBalancerIngress",
    &[
        Field::one(1, "ip", Ty::Str),
        Field::one(2, "hostname", Ty::Str),
        Field::rep(4, "ports", Ty::Msg(&INGRESS_PORT_STATUS)),
    ],
);
pub(super) static INGRESS_LOAD_BALANCER_STATUS: Message = Message::new(
    "IngressLoadBalancerStatus",
    &[Field::rep(
        1,
        "ingress",
        Ty::Msg(&INGRESS_LOAD_BALANCER_INGRESS),
    )],
);
pub(super) static INGRESS_PORT_STATUS: Message = Message::new(
    "IngressPortStatus",
    &[
        Field::one(1, "port", Ty::Int32).keep(),
        Field::one(2, "protocol", Ty::Str).keep(),
        Field::one(3, "error", Ty::Str).keep(),
    ],
);
pub(super) static INGRESS_RULE: Message = Message::new(
    "IngressRule",
    &[
        Field::one(1, "host", Ty::Str),
        Field::one(2, "", Ty::Inline(&INGRESS_RULE_VALUE)),
    ],
);
pub(super) static INGRESS_RULE_VALUE: Message = Message::new(
    "IngressRuleValue",
    &[Field::one(1, "http", Ty::Msg(&HTTP_INGRESS_RULE_VALUE))],
);
pub(super) static INGRESS_SERVICE_BACKEND: Message = Message::new(
    "IngressServiceBackend",
    &[
        Field::one(1, "name", Ty::Str).keep(),
        Field::one(2, "port", Ty::Msg(&SERVICE_BACKEND_PORT)),
    ],
);
pub(super) static INGRESS_SPEC: Message = Message::new(
    "IngressSpec",
    &[
        Field::one(4, "ingressClassName", Ty::Str).keep(),
        Field::one(1, "defaultBackend", Ty::Msg(&INGRESS_BACKEND)),
        Field::rep(2, "tls", Ty::Msg(&INGRESS_TLS)),
        Field::rep(3, "rules", Ty::Msg(&INGRESS_RULE)),
    ],
);
pub(super) static INGRESS_STATUS: Message = Message::new(
    "IngressStatus",
    &[Field::one(
        1,
        "loadBalancer",
        Ty::Msg(&INGRESS_LOAD_BALANCER_STATUS),
    )],
);
pub(super) static INGRESS_TLS: Message = Message::new(
    "IngressTLS",
    &[
        Field::rep(1, "hosts", Ty::Str),
        Field::one(2, "secretName", Ty::Str),
    ],
);
pub(super) static SERVICE_BACKEND_PORT: Message = Message::new(
    "ServiceBackendPort",
    &[
        Field::one(1, "name", Ty::Str),
        Field::one(2, "number", Ty::Int32),
    ],
);

// ---- coordination.k8s.io/v1 ----

pub(super) static LEASE: Message = Message::new(
    "Lease",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&LEASE_SPEC)),
    ],
);
pub(super) static LEASE_SPEC: Message = Message::new(
    "LeaseSpec",
    &[
        Field::one(1, "holderIdentity", Ty::Str).keep(),
        Field::one(2, "leaseDurationSeconds", Ty::Int32).keep(),
        Field::one(3, "acquireTime", Ty::MicroTime),
        Field::one(4, "renewTime", Ty::MicroTime),
        Field::one(5, "leaseTransitions", Ty::Int32).keep(),
        Field::one(6, "strategy", Ty::Str).keep(),
        Field::one(7, "preferredHolder", Ty::Str).keep(),
    ],
);
