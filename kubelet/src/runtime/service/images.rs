//! The CRI ImageService, and what containers need of the image store: an image pinned while a
//! container is created from it, and removal that spares images in use.

use super::*;
use crate::runtime::addon_image;
use crate::runtime::image::ImageRecord;
use crate::runtime::registries::Credential;

impl Runtime {
    /// Finds `name` and pins it until the returned guard drops (after the container is
    /// recorded, or its creation failed).
    pub(super) fn pin_image(&self, name: &str) -> Result<(ImageRecord, Pin)> {
        let mut creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
        let image = self
            .images
            .find(name)
            .ok_or_else(|| Error::NotFound(format!("image {name}")))?;
        let id = image.id.to_string();
        *creating.entry(id.clone()).or_default() += 1;
        let pin = Pin {
            creating: self.creating.clone(),
            id,
        };
        Ok((image, pin))
    }

    /// Removes `name` unless a container (in any state) uses it or one is being created from
    /// it: its layers are the lower layers of those containers' root file systems.
    pub(super) async fn remove_image_named(&self, name: &str) -> Result<()> {
        let record = {
            let creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
            let Some(record) = self.images.find(name) else {
                return Ok(());
            };
            let id = record.id.to_string();
            let user = self
                .state
                .lock()
                .expect("state")
                .containers
                .values()
                .find(|c| c.status.image_id == id)
                .map(|c| c.status.id.clone());
            if let Some(container) = user {
                return Err(Error::InUse(format!(
                    "image {name} is in use by container {container}"
                )));
            }
            if creating.contains_key(&id) {
                return Err(Error::InUse(format!(
                    "image {name} is in use by a container being created"
                )));
            }
            self.images.forget(&record)?;
            record
        };
        self.images.prune(&record).await;
        Ok(())
    }

    pub(super) fn image_of(record: ImageRecord) -> cri::Image {
        let uid = record
            .config
            .user
            .split(':')
            .next()
            .and_then(|u| u.parse::<i64>().ok());
        cri::Image {
            id: record.id.to_string(),
            repo_tags: record.repo_tags.clone(),
            repo_digests: record.repo_digests.clone(),
            size: record.size,
            uid: uid.map(|value| cri::Int64Value { value }),
            username: if uid.is_none() {
                record.config.user.clone()
            } else {
                String::new()
            },
            spec: Some(cri::ImageSpec {
                image: record.id.into(),
                ..Default::default()
            }),
            // The node's own images cannot be pulled again: garbage collection leaves them.
            pinned: record.repo_tags.iter().any(|t| addon_image::is_local(t)),
        }
    }
}

#[tonic::async_trait]
impl cri::image_service_server::ImageService for Runtime {
    async fn list_images(
        &self,
        req: Request<cri::ListImagesRequest>,
    ) -> R<cri::ListImagesResponse> {
        let filter = req
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|i| i.image)
            .filter(|i| !i.is_empty());
        let images = match filter {
            Some(f) => self.images.find(&f).into_iter().collect(),
            None => self.images.list(),
        };
        Ok(Response::new(cri::ListImagesResponse {
            images: images.into_iter().map(Self::image_of).collect(),
        }))
    }

    async fn image_status(
        &self,
        req: Request<cri::ImageStatusRequest>,
    ) -> R<cri::ImageStatusResponse> {
        let image = req.into_inner().image.map(|i| i.image).unwrap_or_default();
        Ok(Response::new(cri::ImageStatusResponse {
            image: self.images.find(&image).map(Self::image_of),
            info: Default::default(),
        }))
    }

    async fn pull_image(&self, req: Request<cri::PullImageRequest>) -> R<cri::PullImageResponse> {
        let req = req.into_inner();
        let image = req.image.map(|i| i.image).unwrap_or_default();
        let secret = match req.auth {
            Some(a) if !a.username.is_empty() => Some(Credential::Basic(a.username, a.password)),
            Some(a) if !a.auth.is_empty() => {
                let (user, password) = crate::runtime::registries::decode_basic(&a.auth)
                    .map_err(|e| Error::InvalidArgument(format!("pull credentials: {e}")))?;
                Some(Credential::Basic(user, password))
            }
            Some(a) if !a.identity_token.is_empty() => {
                Some(Credential::IdentityToken(a.identity_token))
            }
            Some(a) if !a.registry_token.is_empty() => {
                Some(Credential::RegistryToken(a.registry_token))
            }
            _ => None,
        };
        let image_ref = self.images.pull(&image, secret.as_ref()).await?;
        Ok(Response::new(cri::PullImageResponse { image_ref }))
    }

    async fn remove_image(
        &self,
        req: Request<cri::RemoveImageRequest>,
    ) -> R<cri::RemoveImageResponse> {
        let image = req.into_inner().image.map(|i| i.image).unwrap_or_default();
        self.remove_image_named(&image).await?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _: Request<cri::ImageFsInfoRequest>,
    ) -> R<cri::ImageFsInfoResponse> {
        let root = self.images.root().to_owned();
        let walked = root.clone();
        let (bytes, inodes) =
            tokio::task::spawn_blocking(move || crate::runtime::image::disk_usage(&walked))
                .await
                .map_err(|e| tonic::Status::internal(e.to_string()))?;
        let usage = cri::FilesystemUsage {
            timestamp: now_ns(),
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: root.display().to_string(),
            }),
            used_bytes: Some(cri::UInt64Value { value: bytes }),
            inodes_used: Some(cri::UInt64Value { value: inodes }),
        };
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![usage],
            container_filesystems: Vec::new(),
        }))
    }
}
