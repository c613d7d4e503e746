//! The apiserver's request body decoders: JSON, YAML and protobuf objects, the three patch
//! media types applied to a stored Pod, and server-side apply. The first byte picks the
//! decoder, the rest is the body. Whatever the bytes, each gives a value or an error.

#![no_main]

use ekube_apiserver::handler::{apply_patch, parse_object};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

const PATCHES: [&str; 3] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let Some(pods) = ekube_api::resources::find("", "v1", "pods") else {
        return;
    };
    let stored = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx", "env": [{"name": "A", "value": "1"}]}]},
    });
    match pick % 7 {
        0 => drop(parse_object(body, "application/json")),
        1 => drop(parse_object(body, "application/yaml")),
        2 => drop(parse_object(body, "application/vnd.kubernetes.protobuf")),
        n @ 3..=5 => {
            let mut target = stored;
            drop(apply_patch(pods, PATCHES[usize::from(n - 3)], &mut target, body));
        }
        _ => {
            if let Ok(applied) = parse_object(body, "application/apply-patch+yaml") {
                drop(ekube_apiserver::apply::apply(
                    pods,
                    Some(&stored),
                    &applied,
                    "fuzz",
                    false,
                ));
            }
        }
    }
});
