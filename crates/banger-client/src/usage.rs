//! Client calls for host disk usage (`/v1/usage`) and the prunes that give
//! space back (`/v1/images/prune`, `/v1/kernels/prune`).

use banger_api::paths;
use banger_api::usage::{PruneReport, PruneRequest, UsageReport};
use hyper::Method;

use crate::{ClientError, DaemonClient};

impl DaemonClient {
    /// Host disk usage per VM, image, kernel and cache.
    pub async fn usage(&self) -> Result<UsageReport, ClientError> {
        self.call(Method::GET, paths::USAGE, None::<&()>).await
    }

    /// Removes (or with `dry_run` lists) the managed images no VM uses.
    pub async fn prune_images(&self, request: &PruneRequest) -> Result<PruneReport, ClientError> {
        self.call(Method::POST, paths::IMAGE_PRUNE, Some(request))
            .await
    }

    /// Removes (or with `dry_run` lists) the kernels no image uses.
    pub async fn prune_kernels(&self, request: &PruneRequest) -> Result<PruneReport, ClientError> {
        self.call(Method::POST, paths::KERNEL_PRUNE, Some(request))
            .await
    }
}
