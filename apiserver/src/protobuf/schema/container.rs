//! core/v1 containers as a pod spec lists them: ports, environment, resources, probes and
//! lifecycle hooks, security contexts (whose profiles the pod-level context shares) and volume
//! mounts.

use super::core::LOCAL_OBJECT_REFERENCE;
use crate::protobuf::{Field, Message, Ty};

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
pub(super) static OBJECT_FIELD_SELECTOR: Message = Message::new(
    "ObjectFieldSelector",
    &[
        Field::one(1, "apiVersion", Ty::Str),
        Field::one(2, "fieldPath", Ty::Str).keep(),
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
pub(super) static SECCOMP_PROFILE: Message = Message::new(
    "SeccompProfile",
    &[
        Field::one(1, "type", Ty::Str).keep(),
        Field::one(2, "localhostProfile", Ty::Str).keep(),
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
pub(super) static SLEEP_ACTION: Message =
    Message::new("SleepAction", &[Field::one(1, "seconds", Ty::Int64).keep()]);
pub(super) static TCP_SOCKET_ACTION: Message = Message::new(
    "TCPSocketAction",
    &[
        Field::one(1, "port", Ty::IntOrString),
        Field::one(2, "host", Ty::Str),
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
