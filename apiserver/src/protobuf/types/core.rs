//! Conversions for core/v1: pods with their containers and volumes, services, config maps, secrets,
//! namespaces, service accounts and quotas.

use crate::protobuf::convert::convert;

convert! { api::core::v1 =>
    ConfigMap { binary_data, data, immutable: keep, metadata }
    Secret { data, immutable: keep, metadata, string_data, type_ <- r#type }
    Namespace { metadata, spec, status }
    NamespaceSpec { finalizers }
    NamespaceStatus { conditions, phase }
    NamespaceCondition { last_transition_time, message, reason, status, type_ <- r#type }
    ServiceAccount { automount_service_account_token: keep, image_pull_secrets, metadata, secrets }
    LocalObjectReference { name }
    ObjectReference { api_version, field_path, kind, name, namespace, resource_version, uid }
    Service { metadata, spec, status }
    ServiceSpec {
        allocate_load_balancer_node_ports: keep, cluster_ip, cluster_ips, external_ips,
        external_name, external_traffic_policy, health_check_node_port, internal_traffic_policy:
        keep, ip_families, ip_family_policy: keep, load_balancer_class: keep, load_balancer_ip,
        load_balancer_source_ranges, ports, publish_not_ready_addresses, selector,
        session_affinity, session_affinity_config, traffic_distribution: keep, type_ <- r#type
    }
    ServicePort { app_protocol: keep, name, node_port, port, protocol, target_port }
    SessionAffinityConfig { client_ip }
    ClientIPConfig as ClientIpConfig { timeout_seconds: keep }
    ServiceStatus { conditions, load_balancer }
    LoadBalancerStatus { ingress }
    LoadBalancerIngress { hostname, ip, ip_mode: keep, ports }
    PortStatus { error: keep, port, protocol }
    Pod { metadata, spec, status }
    PodSpec {
        active_deadline_seconds: keep, affinity, automount_service_account_token: keep, containers,
        dns_config, dns_policy, enable_service_links: keep, ephemeral_containers,
        eviction_responders: none, host_aliases, host_ipc, host_network, host_pid, host_users:
        keep, hostname, hostname_override: keep, image_pull_secrets, init_containers, node_name,
        node_selector, os, overhead, preemption_policy: keep, priority: keep, priority_class_name,
        readiness_gates, resource_claims, resources, restart_policy, runtime_class_name: keep,
        scheduler_name, scheduling_gates, scheduling_group: none, security_context,
        service_account, service_account_name, set_hostname_as_fqdn: keep, share_process_namespace:
        keep, subdomain, termination_grace_period_seconds: keep, tolerations,
        topology_spread_constraints, volumes
    }
    Affinity { node_affinity, pod_affinity, pod_anti_affinity }
    NodeAffinity {
        preferred_during_scheduling_ignored_during_execution,
        required_during_scheduling_ignored_during_execution
    }
    PreferredSchedulingTerm { preference, weight }
    NodeSelectorTerm { match_expressions, match_fields }
    NodeSelectorRequirement { key, operator, values }
    NodeSelector { node_selector_terms }
    PodAffinity {
        preferred_during_scheduling_ignored_during_execution,
        required_during_scheduling_ignored_during_execution
    }
    WeightedPodAffinityTerm { pod_affinity_term, weight }
    PodAffinityTerm {
        label_selector, match_label_keys, mismatch_label_keys, namespace_selector, namespaces,
        topology_key
    }
    PodAntiAffinity {
        preferred_during_scheduling_ignored_during_execution,
        required_during_scheduling_ignored_during_execution
    }
    Container {
        args, command, env, env_from, image, image_pull_policy, lifecycle, liveness_probe, name,
        ports, readiness_probe, resize_policy, resources, restart_policy: keep,
        restart_policy_rules, security_context, startup_probe, stdin, stdin_once,
        termination_message_path, termination_message_policy, tty, volume_devices, volume_mounts,
        working_dir
    }
    EnvVar { name, value, value_from }
    EnvVarSource { config_map_key_ref, field_ref, file_key_ref, resource_field_ref, secret_key_ref }
    ConfigMapKeySelector { key, optional: keep, ..local_object_reference { name } }
    ObjectFieldSelector { api_version, field_path }
    FileKeySelector { key, optional: keep, path, volume_name }
    ResourceFieldSelector { container_name, divisor, resource }
    SecretKeySelector { key, optional: keep, ..local_object_reference { name } }
    EnvFromSource { config_map_ref, prefix, secret_ref }
    ConfigMapEnvSource { optional: keep, ..local_object_reference { name } }
    SecretEnvSource { optional: keep, ..local_object_reference { name } }
    Lifecycle { post_start, pre_stop, stop_signal: keep }
    LifecycleHandler { exec, http_get, sleep, tcp_socket }
    ExecAction { command }
    HTTPGetAction as HttpGetAction { host, http_headers, path, port, protocol: none, scheme }
    HTTPHeader as HttpHeader { name, value }
    SleepAction { seconds }
    TCPSocketAction as TcpSocketAction { host, port }
    Probe {
        failure_threshold, initial_delay_seconds, period_seconds, success_threshold,
        termination_grace_period_seconds: keep, timeout_seconds, ..handler { exec, grpc, http_get,
        tcp_socket }
    }
    GRPCAction as GrpcAction { mode: none, port, service }
    ContainerPort { container_port, host_ip, host_port, name, protocol }
    ContainerResizePolicy { resource_name, restart_policy }
    ResourceRequirements { claims, limits, requests }
    ResourceClaim { name, request }
    ContainerRestartRule { action, exit_codes }
    ContainerRestartRuleOnExitCodes { operator, values }
    SecurityContext {
        allow_privilege_escalation: keep, app_armor_profile, capabilities, privileged: keep,
        proc_mount: keep, read_only_root_filesystem: keep, run_as_group: keep, run_as_non_root:
        keep, run_as_user: keep, se_linux_options, seccomp_profile, windows_options
    }
    AppArmorProfile { localhost_profile: keep, type_ <- r#type }
    Capabilities { add, drop }
    SELinuxOptions as SeLinuxOptions { level, role, type_ <- r#type, user }
    SeccompProfile { localhost_profile: keep, type_ <- r#type }
    WindowsSecurityContextOptions {
        gmsa_credential_spec, gmsa_credential_spec_name, host_process: keep, run_as_user_name
    }
    VolumeDevice { device_path, name }
    VolumeMount {
        bind_mount_options: none, mount_path, mount_propagation: keep, name, read_only,
        recursive_read_only: keep, sub_path, sub_path_expr
    }
    PodDNSConfig as PodDnsConfig { nameservers, options, searches }
    PodDNSConfigOption as PodDnsConfigOption { name, value: keep }
    EphemeralContainer {
        target_container_name, ..ephemeral_container_common { args, command, env, env_from, image,
        image_pull_policy, lifecycle, liveness_probe, name, ports, readiness_probe, resize_policy,
        resources, restart_policy, restart_policy_rules, security_context, startup_probe, stdin:
        keep, stdin_once: keep, termination_message_path, termination_message_policy, tty: keep,
        volume_devices, volume_mounts, working_dir }
    }
    HostAlias { hostnames, ip }
    PodOS as PodOs { name }
    PodReadinessGate { condition_type }
    PodResourceClaim { name, resource_claim_name, resource_claim_template_name }
    PodSchedulingGate { name }
    PodSecurityContext {
        app_armor_profile, fs_group: keep, fs_group_change_policy: keep, run_as_group: keep,
        run_as_non_root: keep, run_as_user: keep, se_linux_change_policy: keep, se_linux_options,
        seccomp_profile, supplemental_groups, supplemental_groups_policy: keep, sysctls,
        windows_options
    }
    Sysctl { name, value }
    Toleration { effect, key, operator, toleration_seconds: keep, value }
    TopologySpreadConstraint {
        label_selector, match_label_keys, max_skew, min_domains: keep, node_affinity_policy: keep,
        node_taints_policy: keep, topology_key, when_unsatisfiable
    }
    Volume {
        name, ..volume_source { aws_elastic_block_store, azure_disk, azure_file, cephfs, cinder,
        config_map, csi, downward_api, empty_dir, ephemeral, fc, flex_volume, flocker,
        gce_persistent_disk, git_repo, glusterfs, host_path, image, iscsi, nfs,
        persistent_volume_claim, photon_persistent_disk, portworx_volume, projected, quobyte, rbd,
        scale_io, secret, storageos, vsphere_volume }
    }
    AWSElasticBlockStoreVolumeSource as AwsElasticBlockStoreVolumeSource {
        fs_type, partition: keep, read_only: keep, volume_id
    }
    AzureDiskVolumeSource { caching_mode, disk_name, disk_uri, fs_type, kind, read_only: keep }
    AzureFileVolumeSource { read_only: keep, secret_name, share_name }
    CephFSVolumeSource as CephFsVolumeSource {
        monitors, path, read_only: keep, secret_file, secret_ref, user
    }
    CinderVolumeSource { fs_type, read_only: keep, secret_ref, volume_id }
    ConfigMapVolumeSource {
        default_mode: keep, default_user: none, items, optional: keep, ..local_object_reference {
        name }
    }
    KeyToPath { key, mode: keep, path, user: none }
    CSIVolumeSource { driver, fs_type, node_publish_secret_ref, read_only: keep, volume_attributes }
    DownwardAPIVolumeSource { default_mode: keep, default_user: none, items }
    DownwardAPIVolumeFile { field_ref, mode: keep, path, resource_field_ref, user: none }
    EmptyDirVolumeSource { medium, mode: none, size_limit }
    EphemeralVolumeSource { volume_claim_template }
    PersistentVolumeClaimTemplate { metadata, spec }
    PersistentVolumeClaimSpec {
        access_modes, data_source, data_source_ref, resources, selector, storage_class_name,
        volume_attributes_class_name, volume_mode, volume_name
    }
    TypedLocalObjectReference { api_group, kind, name }
    TypedObjectReference { api_group, kind, name, namespace }
    VolumeResourceRequirements { limits, requests }
    FCVolumeSource as FcVolumeSource {
        fs_type, lun: keep, read_only: keep, target_wwns <- target_ww_ns, wwids
    }
    FlexVolumeSource { driver, fs_type, options, read_only: keep, secret_ref }
    FlockerVolumeSource { dataset_name, dataset_uuid }
    GCEPersistentDiskVolumeSource as GcePersistentDiskVolumeSource {
        fs_type, partition: keep, pd_name, read_only: keep
    }
    GitRepoVolumeSource { directory, repository, revision }
    GlusterfsVolumeSource { endpoints, path, read_only: keep }
    HostPathVolumeSource { path, type_ <- r#type: keep }
    ImageVolumeSource { pull_policy, reference }
    ISCSIVolumeSource as IscsiVolumeSource {
        chap_auth_discovery: keep, chap_auth_session: keep, fs_type, initiator_name, iqn,
        iscsi_interface, lun, portals, read_only: keep, secret_ref, target_portal
    }
    NFSVolumeSource as NfsVolumeSource { path, read_only: keep, server }
    PersistentVolumeClaimVolumeSource { claim_name, read_only }
    PhotonPersistentDiskVolumeSource { fs_type, pd_id }
    PortworxVolumeSource { fs_type, read_only: keep, volume_id }
    ProjectedVolumeSource { default_mode: keep, default_user: none, sources }
    VolumeProjection {
        cluster_trust_bundle, config_map, downward_api, pod_certificate, secret,
        service_account_token
    }
    ClusterTrustBundleProjection {
        label_selector, name, optional: keep, path, signer_name, user: none
    }
    ConfigMapProjection { items, optional: keep, ..local_object_reference { name } }
    DownwardAPIProjection { items }
    PodCertificateProjection {
        certificate_chain_path, credential_bundle_path, key_path, key_type, max_expiration_seconds:
        keep, signer_name, user: none, user_annotations
    }
    SecretProjection { items, optional: keep, ..local_object_reference { name } }
    ServiceAccountTokenProjection { audience, expiration_seconds: keep, path, user: none }
    QuobyteVolumeSource { group, read_only: keep, registry, tenant, user, volume }
    RBDVolumeSource as RbdVolumeSource {
        fs_type, image, keyring, monitors, pool, read_only: keep, secret_ref, user
    }
    ScaleIOVolumeSource as ScaleIoVolumeSource {
        fs_type, gateway, protection_domain, read_only: keep, secret_ref, ssl_enabled: keep,
        storage_mode, storage_pool, system, volume_name
    }
    SecretVolumeSource { default_mode: keep, default_user: none, items, optional: keep, secret_name }
    StorageOSVolumeSource as StorageOsVolumeSource {
        fs_type, read_only: keep, secret_ref, volume_name, volume_namespace
    }
    VsphereVirtualDiskVolumeSource { fs_type, storage_policy_id, storage_policy_name, volume_path }
    PodStatus {
        allocated_resources, conditions, container_statuses, ephemeral_container_statuses,
        extended_resource_claim_status, host_ip, host_ips, init_container_statuses, message,
        node_allocatable_resource_claim_statuses: none, nominated_node_name, observed_generation,
        phase, pod_ip, pod_ips, qos_class, reason, resize, resource_claim_statuses, resources,
        start_time, volume_health: none
    }
    PodCondition {
        last_probe_time, last_transition_time, message, observed_generation, reason, status, type_
        <- r#type
    }
    ContainerStatus {
        allocated_resources, allocated_resources_status, container_id, image, image_id, last_state,
        name, ready, resources, restart_count, started: keep, state, stop_signal, user,
        volume_mounts
    }
    ResourceStatus { name, resources }
    ResourceHealth { health, message: none, resource_id }
    ContainerState { running, terminated, waiting }
    ContainerStateRunning { started_at }
    ContainerStateTerminated {
        container_id, exit_code, finished_at, message, reason, signal: keep, started_at
    }
    ContainerStateWaiting { message, reason }
    ContainerUser { linux }
    LinuxContainerUser { gid, supplemental_groups, uid }
    VolumeMountStatus { mount_path, name, read_only: keep, recursive_read_only, volume_status: none }
    PodExtendedResourceClaimStatus { request_mappings, resource_claim_name }
    ContainerExtendedResourceRequest { container_name, request_name, resource_name }
    HostIP as HostIp { ip }
    PodIP as PodIp { ip }
    PodResourceClaimStatus { name, resource_claim_name }
    ResourceQuota { metadata, spec, status }
    ResourceQuotaSpec { hard, scope_selector, scopes }
    ScopeSelector { match_expressions }
    ScopedResourceSelectorRequirement { operator, scope_name, values }
    ResourceQuotaStatus { hard, used }
    PodTemplateSpec { metadata, spec }
}
