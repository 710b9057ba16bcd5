//! `banger image list --available` and `image build --from-catalog NAME`:
//! the image catalog embedded in banger (`images/catalog.toml`), read
//! locally (no daemon needed to list it).

use banger_api::images::{ImageBuildRequest, ImageProvision};
use banger_api::{ImageName, KernelName};
use banger_image::provision::catalog::{CatalogBase, CatalogImage, catalog, catalog_image};

use crate::output;

/// Prints the catalog as a table or JSON.
pub fn list_available(json: bool) -> anyhow::Result<()> {
    let images = catalog()?;
    if json {
        return output::json(&images);
    }
    let mut rows = vec![
        ["NAME", "BASE", "KERNEL", "TOOLS", "DOCKER", "DESCRIPTION"]
            .map(String::from)
            .to_vec(),
    ];
    for image in &images {
        rows.push(vec![
            format!(
                "{}{}",
                image.name,
                if image.default { " (default)" } else { "" }
            ),
            base_text(image),
            image.kernel.clone(),
            yes_no(image.provision),
            yes_no(image.docker),
            image.description.clone(),
        ]);
    }
    Ok(output::line(&output::sanitize(&output::table(&rows)))?)
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

fn base_text(image: &CatalogImage) -> String {
    match &image.base {
        CatalogBase::Suite(suite) => format!("debian {suite}"),
        CatalogBase::Oci(reference) => format!("oci {reference}"),
    }
}

/// The build request for catalog entry `entry`, named `name` or after the entry.
pub fn build_request(
    entry: &str,
    name: Option<ImageName>,
    packages_file: Option<String>,
    size_bytes: Option<u64>,
    kernel_ref: Option<KernelName>,
) -> anyhow::Result<ImageBuildRequest> {
    let image = catalog_image(entry)?;
    let suite = match &image.base {
        CatalogBase::Suite(suite) => suite.clone(),
        CatalogBase::Oci(reference) => anyhow::bail!(
            "catalog image {entry} is an OCI image; make it with `banger image pull {reference} --name {}`",
            name.as_ref().map_or(entry, ImageName::as_str)
        ),
    };
    let name = match name {
        Some(name) => name,
        None => ImageName::parse(&image.name)?,
    };
    let kernel_ref = match kernel_ref {
        Some(kernel) => Some(kernel),
        None => Some(KernelName::parse(&image.kernel)?),
    };
    Ok(ImageBuildRequest {
        suite: Some(suite),
        packages_file,
        size_bytes,
        kernel_ref,
        minimal: !image.provision,
        docker: image.docker,
        ..ImageBuildRequest::new(name)
    })
}

/// `image show` rows for a provisioned image's pinned tools.
pub fn provision_rows(provision: &ImageProvision) -> Vec<Vec<String>> {
    let mut rows = vec![vec![
        "provisioned".to_owned(),
        format!(
            "yes{}",
            if provision.docker {
                ", with docker"
            } else {
                ""
            }
        ),
    ]];
    if let Some(base) = &provision.base {
        rows.push(vec![
            "built from".to_owned(),
            format!(
                "image {} (id {}, {}, suite {})",
                base.name, base.id, base.os, base.suite
            ),
        ]);
    }
    for (index, tool) in provision.tools.iter().enumerate() {
        rows.push(vec![
            if index == 0 { "tools" } else { "" }.to_owned(),
            format!(
                "{} {} ({})",
                tool.name,
                tool.version,
                tool.commands.join(", ")
            ),
        ]);
    }
    for (index, package) in provision.debian.iter().enumerate() {
        rows.push(vec![
            if index == 0 { "packages" } else { "" }.to_owned(),
            package.clone(),
        ]);
    }
    rows
}
