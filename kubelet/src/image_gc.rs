//! Image garbage collection, as the upstream kubelet's image manager does it: when the image
//! filesystem is fuller than `--image-gc-high-threshold` percent, images no container uses
//! (running or exited) are removed, least recently used first, until usage is back under
//! `--image-gc-low-threshold`. An image is kept at least `--minimum-image-ttl-duration` after
//! the kubelet first saw it, so that one pulled for a container about to be created is not
//! taken first. When not enough can be freed, the Node gets upstream's `FreeDiskSpaceFailed`
//! warning event.
//!
//! Pinned images are never removed. The runtime refuses to remove an image a container uses,
//! so a container created between the look at the containers and the removal keeps its image.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ekube_api::events::{EventType, Recorder};
use k8s_openapi::api::core::v1::ObjectReference;

use super::Ctx;
use crate::cri;

/// What triggers a collection and how far it goes.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Usage (percent) at which to collect; 100 turns collection off.
    pub high: u8,
    /// Usage (percent) a collection frees down to.
    pub low: u8,
    /// Youngest an unused image may be to go.
    pub min_age: Duration,
}

impl Policy {
    /// Checks the thresholds as upstream's kubelet does at start.
    pub fn check(&self) -> Result<(), String> {
        if self.high < 100 && self.low >= self.high {
            return Err(format!(
                "--image-gc-low-threshold ({}) must be less than --image-gc-high-threshold ({})",
                self.low, self.high
            ));
        }
        Ok(())
    }

    /// Bytes to free on a filesystem of `capacity` bytes with `available` free; zero below the
    /// high threshold.
    pub fn bytes_to_free(&self, capacity: u64, available: u64) -> u64 {
        if self.high >= 100 || capacity == 0 {
            return 0;
        }
        let used_percent = 100 - (available.min(capacity) * 100 / capacity);
        if used_percent < u64::from(self.high) {
            return 0;
        }
        (capacity * (100 - u64::from(self.low)) / 100).saturating_sub(available)
    }
}

/// When the kubelet first saw an image and last saw a container use it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    first: Instant,
    last_used: Option<Instant>,
}

/// An image that may go, with its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub size: u64,
}

/// The image records a collector keeps between passes.
#[derive(Debug, Default)]
pub struct Tracker {
    seen: HashMap<String, Seen>,
}

impl Tracker {
    /// Notes the images present (`id` → size) and those in use at `now`; returns the unused
    /// images old enough to go, least recently used (then oldest seen) first.
    pub fn observe(
        &mut self,
        images: &[(String, u64)],
        in_use: &HashSet<String>,
        now: Instant,
        min_age: Duration,
    ) -> Vec<Candidate> {
        let present: HashSet<&String> = images.iter().map(|(id, _)| id).collect();
        self.seen.retain(|id, _| present.contains(id));
        for (id, _) in images {
            let seen = self.seen.entry(id.clone()).or_insert(Seen {
                first: now,
                last_used: None,
            });
            if in_use.contains(id) {
                seen.last_used = Some(now);
            }
        }
        let mut out: Vec<(Seen, Candidate)> = images
            .iter()
            .filter(|(id, _)| !in_use.contains(id))
            .filter_map(|(id, size)| {
                let seen = self.seen[id];
                (now.duration_since(seen.first) >= min_age).then(|| {
                    (
                        seen,
                        Candidate {
                            id: id.clone(),
                            size: *size,
                        },
                    )
                })
            })
            .collect();
        out.sort_by_key(|(seen, c)| {
            (
                seen.last_used.unwrap_or(seen.first),
                seen.first,
                c.id.clone(),
            )
        });
        out.into_iter().map(|(_, c)| c).collect()
    }
}

/// Capacity and available bytes of the filesystem holding `path`.
fn filesystem(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid C string and `st` a zeroed out-parameter statvfs fills.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        st
    };
    let block = st.f_frsize as u64;
    Ok((st.f_blocks as u64 * block, st.f_bavail as u64 * block))
}

/// One pass: looks at usage, removes what it may. Returns the bytes removed.
async fn collect(ctx: &Ctx, policy: &Policy, tracker: &mut Tracker) -> Result<u64, String> {
    let mut ic = ctx.ic.clone();
    let mut rc = ctx.rc.clone();
    let fs = ic
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .map_err(|e| format!("image filesystem info: {}", e.message()))?
        .into_inner();
    let mountpoint = fs
        .image_filesystems
        .first()
        .and_then(|f| f.fs_id.as_ref())
        .map(|id| id.mountpoint.clone())
        .ok_or("the runtime reports no image filesystem")?;
    let (capacity, available) =
        filesystem(Path::new(&mountpoint)).map_err(|e| format!("statvfs {mountpoint}: {e}"))?;
    let images: Vec<(String, u64)> = ic
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .map_err(|e| format!("listing images: {}", e.message()))?
        .into_inner()
        .images
        .into_iter()
        .filter(|i| !i.pinned)
        .map(|i| (i.id, i.size))
        .collect();
    let in_use: HashSet<String> = rc
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .map_err(|e| format!("listing containers: {}", e.message()))?
        .into_inner()
        .containers
        .into_iter()
        .map(|c| c.image_id)
        .collect();
    let candidates = tracker.observe(&images, &in_use, Instant::now(), policy.min_age);
    let wanted = policy.bytes_to_free(capacity, available);
    if wanted == 0 {
        return Ok(0);
    }
    let mut freed = 0;
    for c in candidates {
        if freed >= wanted {
            break;
        }
        let removed = ic
            .remove_image(cri::RemoveImageRequest {
                image: Some(cri::ImageSpec {
                    image: c.id.clone(),
                    ..Default::default()
                }),
            })
            .await;
        match removed {
            Ok(_) => {
                tracing::info!(image = %c.id, size = c.size, "image garbage collected");
                freed += c.size;
            }
            // Taken into use since the containers were listed: it stays.
            Err(e) => tracing::info!(image = %c.id, error = %e.message(), "image kept"),
        }
    }
    if freed < wanted {
        return Err(format!(
            "Failed to garbage collect required amount of images. Attempted to free {wanted} \
             bytes, but only found {freed} bytes eligible to free."
        ));
    }
    Ok(freed)
}

/// Collects every `period` until `stop`.
pub(crate) async fn run(
    ctx: Arc<Ctx>,
    policy: Policy,
    period: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    if policy.high >= 100 {
        return;
    }
    let mut tracker = Tracker::default();
    let recorder = Recorder::on_node(ctx.client.clone(), "kubelet", &ctx.node);
    let node = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(ctx.node.clone()),
        uid: Some(ctx.node.clone()),
        ..Default::default()
    };
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        if let Err(message) = collect(&ctx, &policy, &mut tracker).await {
            tracing::warn!(%message, "image garbage collection");
            let reason = if message.starts_with("Failed to garbage collect") {
                "FreeDiskSpaceFailed"
            } else {
                "ImageGCFailed"
            };
            recorder
                .record_ref(node.clone(), EventType::Warning, reason, &message)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn frees_down_to_the_low_threshold_once_past_the_high_one() {
        let p = Policy {
            high: 85,
            low: 80,
            min_age: Duration::ZERO,
        };
        // 84 % used: nothing to do.
        assert_eq!(p.bytes_to_free(100 * GIB, 16 * GIB), 0);
        // 90 % used: back to 80 %, 10 GiB.
        assert_eq!(p.bytes_to_free(100 * GIB, 10 * GIB), 10 * GIB);
        let off = Policy { high: 100, ..p };
        assert_eq!(off.bytes_to_free(100 * GIB, 0), 0);
        assert!(Policy { low: 85, ..p }.check().is_err());
        assert!(p.check().is_ok());
    }

    #[test]
    fn unused_images_go_least_recently_used_first_and_young_ones_stay() {
        let mut t = Tracker::default();
        let start = Instant::now();
        let images = vec![
            ("sha256:a".to_string(), 10),
            ("sha256:b".to_string(), 20),
            ("sha256:c".to_string(), 30),
        ];
        let used = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
        let min_age = Duration::from_secs(60);
        // All new: none old enough yet.
        assert!(
            t.observe(&images, &used(&["sha256:a"]), start, min_age)
                .is_empty()
        );
        // b was used later than c.
        let later = start + Duration::from_secs(30);
        t.observe(&images, &used(&["sha256:b"]), later, min_age);
        let now = start + Duration::from_secs(90);
        let got = t.observe(&images, &used(&["sha256:a"]), now, min_age);
        let ids: Vec<&str> = got.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            ["sha256:c", "sha256:b"],
            "a is in use; c was never used"
        );
        // A removed image is forgotten.
        let got = t.observe(&images[..1], &used(&[]), now, min_age);
        assert_eq!(got.len(), 1);
        assert_eq!(t.seen.len(), 1);
    }
}
