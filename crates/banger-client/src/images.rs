//! Client calls of the `/v1/images` resource.

use banger_api::images::{
    ImageBuildRequest, ImageDeleted, ImageInfo, ImagePullRequest, ImageRegisterRequest,
};
use banger_api::operation::Progress;
use banger_api::{ImageName, paths};
use hyper::Method;

use crate::{ClientError, DaemonClient, Operation};

impl DaemonClient {
    /// All images.
    pub async fn images(&self) -> Result<Vec<ImageInfo>, ClientError> {
        self.call(Method::GET, paths::IMAGES, None::<&()>).await
    }

    /// One image.
    pub async fn image(&self, name: &ImageName) -> Result<ImageInfo, ClientError> {
        self.call(Method::GET, &paths::image(name.as_str()), None::<&()>)
            .await
    }

    /// Deletes an image; `force` deletes it even while VMs use it.
    pub async fn delete_image(
        &self,
        name: &ImageName,
        force: bool,
    ) -> Result<ImageDeleted, ClientError> {
        let path = format!("{}?force={force}", paths::image(name.as_str()));
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    /// Registers an unmanaged image.
    pub async fn register_image(
        &self,
        request: &ImageRegisterRequest,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<ImageInfo, ClientError> {
        self.stream(
            Operation::RegisterImage {
                name: request.name.clone(),
            },
            Method::POST,
            paths::IMAGE_REGISTER,
            Some(request),
            on_progress,
        )
        .await
    }

    /// Builds a Debian image.
    pub async fn build_image(
        &self,
        request: &ImageBuildRequest,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<ImageInfo, ClientError> {
        let operation = Operation::BuildImage {
            name: request.name.clone(),
        };
        self.stream(
            operation,
            Method::POST,
            paths::IMAGE_BUILD,
            Some(request),
            on_progress,
        )
        .await
    }

    /// Pulls an OCI image into the managed store.
    pub async fn pull_image(
        &self,
        request: &ImagePullRequest,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<ImageInfo, ClientError> {
        let operation = Operation::PullImage {
            name: request.name.clone(),
        };
        self.stream(
            operation,
            Method::POST,
            paths::IMAGE_PULL,
            Some(request),
            on_progress,
        )
        .await
    }

    /// Copies an unmanaged image into the managed store.
    pub async fn promote_image(
        &self,
        name: &ImageName,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<ImageInfo, ClientError> {
        self.stream(
            Operation::PromoteImage { name: name.clone() },
            Method::POST,
            &paths::image_promote(name.as_str()),
            None::<&()>,
            on_progress,
        )
        .await
    }
}
