//! What the image store reads from registries and archives: the image config blob, the image
//! manifest, and image references.

#![no_main]

use ekube_kubelet::runtime::image::{ImageConfig, normalize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ImageConfig::parse(data);
    let _ = serde_json::from_slice::<oci_client::manifest::OciImageManifest>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = normalize(text);
    }
});
