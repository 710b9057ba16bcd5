//! Client calls of the `/v1/kernels` resource.

use banger_api::kernels::{CatalogKernel, KernelImportRequest, KernelInfo, KernelPullRequest};
use banger_api::operation::Progress;
use banger_api::{KernelName, paths};
use hyper::Method;

use crate::{ClientError, DaemonClient, Operation};

impl DaemonClient {
    /// Installed kernels.
    pub async fn kernels(&self) -> Result<Vec<KernelInfo>, ClientError> {
        self.call(Method::GET, paths::KERNELS, None::<&()>).await
    }

    /// The catalog.
    pub async fn kernel_catalog(&self) -> Result<Vec<CatalogKernel>, ClientError> {
        self.call(Method::GET, paths::KERNEL_CATALOG, None::<&()>)
            .await
    }

    /// One installed kernel.
    pub async fn kernel(&self, name: &KernelName) -> Result<KernelInfo, ClientError> {
        self.call(Method::GET, &paths::kernel(name.as_str()), None::<&()>)
            .await
    }

    /// Deletes a kernel.
    pub async fn delete_kernel(&self, name: &KernelName) -> Result<KernelInfo, ClientError> {
        self.call(Method::DELETE, &paths::kernel(name.as_str()), None::<&()>)
            .await
    }

    /// Installs a catalog kernel, reporting progress.
    pub async fn pull_kernel(
        &self,
        name: &KernelName,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<KernelInfo, ClientError> {
        let request = KernelPullRequest { name: name.clone() };
        self.stream(
            Operation::PullKernel { name: name.clone() },
            Method::POST,
            paths::KERNEL_PULL,
            Some(&request),
            on_progress,
        )
        .await
    }

    /// Imports a kernel file, reporting progress.
    pub async fn import_kernel(
        &self,
        request: &KernelImportRequest,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<KernelInfo, ClientError> {
        self.stream(
            Operation::ImportKernel {
                name: request.name.clone(),
            },
            Method::POST,
            paths::KERNEL_IMPORT,
            Some(request),
            on_progress,
        )
        .await
    }
}
