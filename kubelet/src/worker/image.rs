//! A container's image: made present as its `imagePullPolicy` says (pull failures back off,
//! shown as ErrImagePull then ImagePullBackOff), the `imageID` its status shows, and the user
//! the image runs as.

use std::time::Instant;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::Worker;
use super::container::{BACKOFF, MAX_BACKOFF};
use crate::cri;
use crate::pull_secrets;
use crate::status::View;

impl Worker {
    /// Makes the container's image present as its pull policy says; returns what `imageID`
    /// shows (`<registry>/<repository>@<manifest digest>`, or the image ID without one).
    pub(super) async fn pull(&mut self, pod: &Pod, c: &Container) -> Result<String, View> {
        let image = c.image.clone().unwrap_or_default();
        let reference = match crate::runtime::reference::normalize(&image) {
            Ok(r) => r,
            Err(e) => {
                // Upstream's wording, reason and event for an unparsable image.
                let msg = format!("Failed to apply default image tag {image:?}: {e}");
                self.event(pod, "Warning", "InspectFailed", msg.clone())
                    .await;
                return Err(self.set_waiting(&c.name, "InvalidImageName", msg, MAX_BACKOFF));
            }
        };
        let mut ic = self.ctx.ic.clone();
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            if image.ends_with(":latest") || !image.rsplit('/').next().unwrap_or("").contains(':') {
                "Always".into()
            } else {
                "IfNotPresent".into()
            }
        });
        let spec = cri::ImageSpec {
            image: image.clone(),
            ..Default::default()
        };
        let present = ic
            .image_status(cri::ImageStatusRequest {
                image: Some(spec.clone()),
                verbose: false,
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().image);
        if policy == "Never" || (policy == "IfNotPresent" && present.is_some()) {
            return match present {
                Some(i) => Ok(shown_image_id(i, &image)),
                None => {
                    let msg = format!(
                        "Container image \"{image}\" is not present with pull policy of Never"
                    );
                    self.event(pod, "Warning", "ErrImageNeverPull", msg.clone())
                        .await;
                    Err(self.set_waiting(&c.name, "ErrImageNeverPull", msg, BACKOFF))
                }
            };
        }
        self.event(
            pod,
            "Normal",
            "Pulling",
            format!("Pulling image \"{image}\""),
        )
        .await;
        let started = Instant::now();
        let auth = pull_secrets::credentials(&self.ctx.client, pod, reference.registry()).await;
        match ic
            .pull_image(cri::PullImageRequest {
                image: Some(spec.clone()),
                auth,
                sandbox_config: None,
            })
            .await
        {
            Ok(r) => {
                self.containers
                    .entry(c.name.clone())
                    .or_default()
                    .pull_failures = 0;
                self.event(
                    pod,
                    "Normal",
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {:.3}s",
                        started.elapsed().as_secs_f64()
                    ),
                )
                .await;
                let id = r.into_inner().image_ref;
                let pulled = ic
                    .image_status(cri::ImageStatusRequest {
                        image: Some(spec),
                        verbose: false,
                    })
                    .await
                    .ok()
                    .and_then(|r| r.into_inner().image);
                Ok(pulled.map(|i| shown_image_id(i, &image)).unwrap_or(id))
            }
            Err(e) => {
                let t = self.containers.entry(c.name.clone()).or_default();
                t.pull_failures += 1;
                let backoff =
                    (BACKOFF * 2u32.pow(t.pull_failures.saturating_sub(1).min(5))).min(MAX_BACKOFF);
                let msg = format!("Failed to pull image \"{image}\": {}", e.message());
                self.event(pod, "Warning", "Failed", msg.clone()).await;
                self.event(pod, "Warning", "Failed", "Error: ErrImagePull".into())
                    .await;
                // Shown as ErrImagePull now, as ImagePullBackOff while the back-off runs.
                let view = self.set_waiting(&c.name, "ErrImagePull", msg, backoff);
                self.containers
                    .entry(c.name.clone())
                    .or_default()
                    .pull_failed_at = Some(Instant::now());
                Err(view)
            }
        }
    }

    /// The uid the image runs as, or its user name when that is not numeric, as the runtime
    /// reports them (neither: root).
    pub(super) async fn image_user(&self, c: &Container) -> Result<(Option<i64>, String), String> {
        let image = c.image.clone().unwrap_or_default();
        let status = self
            .ctx
            .ic
            .clone()
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .map_err(|e| format!("reading the user of image {image:?}: {}", e.message()))?
            .into_inner()
            .image
            .ok_or_else(|| format!("image {image:?} is not present"))?;
        Ok((status.uid.map(|u| u.value), status.username))
    }
}

/// The `imageID` shown for a container of `image` started as `name`: the image's repo digest
/// in `name`'s repository (an image pulled from two registries has one per registry), else its
/// first one, else its ID.
fn shown_image_id(image: cri::Image, name: &str) -> String {
    crate::runtime::reference::repo_digest_for(&image.repo_digests, name)
        .cloned()
        .unwrap_or(image.id)
}
