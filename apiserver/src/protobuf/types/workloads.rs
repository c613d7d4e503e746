//! Conversions for apps/v1, batch/v1, policy/v1 and scheduling.k8s.io/v1: deployments, jobs, cron
//! jobs, evictions, disruption budgets and priority classes.

use crate::protobuf::convert::convert;

convert! { api::apps::v1 =>
    Deployment { metadata, spec, status }
    DeploymentSpec {
        min_ready_seconds, paused, progress_deadline_seconds: keep, replicas: keep,
        revision_history_limit: keep, selector, strategy, template
    }
    DeploymentStrategy { rolling_update, type_ <- r#type }
    RollingUpdateDeployment { max_surge, max_unavailable }
    DeploymentStatus {
        available_replicas, collision_count: keep, conditions, observed_generation, ready_replicas,
        replicas, terminating_replicas: keep, unavailable_replicas, updated_replicas
    }
    DeploymentCondition {
        last_transition_time, last_update_time, message, reason, status: keep, type_ <- r#type:
        keep
    }
}

convert! { api::batch::v1 =>
    Job { metadata, spec, status }
    JobSpec {
        active_deadline_seconds: keep, backoff_limit: keep, backoff_limit_per_index: keep,
        completion_mode: keep, completions: keep, managed_by: keep, manual_selector: keep,
        max_failed_indexes: keep, parallelism: keep, pod_failure_policy, pod_replacement_policy:
        keep, scheduling: none, selector, success_policy, suspend: keep, template,
        ttl_seconds_after_finished: keep
    }
    PodFailurePolicy { rules }
    PodFailurePolicyRule { action, on_exit_codes, on_pod_conditions }
    PodFailurePolicyOnExitCodesRequirement { container_name, operator, values }
    PodFailurePolicyOnPodConditionsPattern { status, type_ <- r#type }
    SuccessPolicy { rules }
    SuccessPolicyRule { succeeded_count: keep, succeeded_indexes }
    JobStatus {
        active, completed_indexes, completion_time, conditions, failed, failed_indexes: keep,
        ready: keep, start_time, succeeded, terminating: keep, uncounted_terminated_pods
    }
    JobCondition { last_probe_time, last_transition_time, message, reason, status, type_ <- r#type }
    UncountedTerminatedPods { failed, succeeded }
    CronJob { metadata, spec, status }
    CronJobSpec {
        concurrency_policy, failed_jobs_history_limit: keep, job_template, schedule,
        starting_deadline_seconds: keep, successful_jobs_history_limit: keep, suspend: keep,
        time_zone: keep
    }
    JobTemplateSpec { metadata, spec }
    CronJobStatus { active, last_schedule_time, last_successful_time }
}

convert! { api::policy::v1 =>
    Eviction { delete_options, metadata }
    PodDisruptionBudget { metadata, spec, status }
    PodDisruptionBudgetSpec {
        max_unavailable, min_available, selector, unhealthy_pod_eviction_policy: keep
    }
    PodDisruptionBudgetStatus {
        conditions, current_healthy: keep, desired_healthy: keep, disrupted_pods,
        disruptions_allowed: keep, expected_pods: keep, observed_generation
    }
}

convert! { api::scheduling::v1 =>
    PriorityClass { description, global_default, metadata, preemption_policy: keep, value: keep }
}
