//! What kind of resource a name in `resources.requests`/`limits` or a node's `capacity` is, as
//! upstream's `pkg/apis/core/helper` decides: native (`cpu`, `memory`, `hugepages-2Mi`,
//! `*kubernetes.io/*`) or extended (`vendor.example/dev`, advertised by a device plugin or by hand).
//!
//! The apiserver validates container resources with these, the scheduler fits pods with them and
//! the CLI sorts them for `describe`, so the three agree on every name.

/// Upstream's `DefaultResourceRequestsPrefix`: quota names (`requests.cpu`), never a container's.
pub const REQUESTS_PREFIX: &str = "requests.";

/// The resources a container may name without a domain (`IsStandardContainerResourceName`).
pub fn is_standard_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || is_hugepages(name)
}

/// `hugepages-<size>` (`IsHugePageResourceName`).
pub fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// A name without a domain, or one in the `kubernetes.io` domain (`IsNativeResource`).
pub fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// Whether requests may be below limits (`IsOvercommitAllowed`): native resources other than
/// huge pages. Extended resources and huge pages are handed out whole, so request equals limit.
pub fn is_overcommit_allowed(name: &str) -> bool {
    is_native(name) && !is_hugepages(name)
}

/// Upstream's `IsExtendedResourceName`: `<domain>/<name>` outside `kubernetes.io`, not a
/// `requests.` quota name, and still a qualified name once prefixed with `requests.` (so its
/// quota, `requests.<name>`, can be written).
pub fn is_extended(name: &str) -> bool {
    if is_native(name) || name.starts_with(REQUESTS_PREFIX) {
        return false;
    }
    let Some((domain, rest)) = format!("{REQUESTS_PREFIX}{name}")
        .split_once('/')
        .map(|(d, r)| (d.to_string(), r.to_string()))
    else {
        return false;
    };
    crate::names::is_dns1123_subdomain(&domain)
        && rest.len() <= 63
        && crate::names::is_qualified_name_part(&rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_names_are_domain_prefixed_outside_kubernetes_io() {
        for good in [
            "vendor.example/dev",
            "example.com/gpu-1",
            "a.b/c_d.e",
            "nvidia.com/gpu",
        ] {
            assert!(is_extended(good), "{good}");
            assert!(!is_native(good) && !is_overcommit_allowed(good), "{good}");
        }
        for bad in [
            "cpu",
            "memory",
            "hugepages-2Mi",
            "nvidia.com",
            "kubernetes.io/dev",
            "example.kubernetes.io/dev",
            "requests.example.com/dev",
            "Vendor.Example/dev",
            "vendor.example/",
            "vendor.example/-dev",
            "vendor.example/a/b",
            "vendor_example/dev",
        ] {
            assert!(!is_extended(bad), "{bad}");
        }
    }

    #[test]
    fn native_names_and_overcommit() {
        for native in [
            "cpu",
            "memory",
            "ephemeral-storage",
            "hugepages-1Gi",
            "x.kubernetes.io/y",
        ] {
            assert!(is_native(native), "{native}");
        }
        assert!(is_overcommit_allowed("cpu") && is_overcommit_allowed("memory"));
        assert!(!is_overcommit_allowed("hugepages-2Mi"));
        assert!(is_standard_container_resource("hugepages-2Mi"));
        assert!(!is_standard_container_resource("pods"));
    }
}
