//! `banger image list --available` and `image build --from-catalog NAME`:
//! the image catalog embedded in banger (`images/catalog.toml`, or the file
//! `$BANGER_IMAGE_CATALOG` names), read locally (no daemon needed to list
//! it). A Debian entry is built; an OCI entry is pulled, then provisioned
//! on (`--from-image`) when the entry says so.

use banger_api::images::{ImageBuildRequest, ImageProvision, ImagePullRequest};
use banger_api::{ImageName, KernelName};
use banger_image::provision::catalog::{CatalogBase, CatalogImage, catalog};

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

/// What `image build --from-catalog ENTRY` does.
#[derive(Debug, PartialEq)]
pub enum CatalogPlan {
    /// A Debian entry: one build.
    Build(ImageBuildRequest),
    /// An OCI entry: a pull, then (when the entry is provisioned) a build on
    /// the pulled image.
    Pull {
        /// The pull (the image itself, or the base of the build).
        pull: ImagePullRequest,
        /// The provisioning build on the pulled base.
        then: Option<ImageBuildRequest>,
    },
}

/// What making catalog entry `image`, named `name` or after the entry,
/// takes. An OCI entry that is provisioned is pulled as `NAME-base` and
/// built on with `--from-image`; one that is not is pulled as `NAME`.
pub fn plan(
    image: &CatalogImage,
    name: Option<ImageName>,
    packages_file: Option<String>,
    size_bytes: Option<u64>,
    kernel_ref: Option<KernelName>,
) -> anyhow::Result<CatalogPlan> {
    let entry = &image.name;
    let name = match name {
        Some(name) => name,
        None => ImageName::parse(&image.name)?,
    };
    let kernel_ref = match kernel_ref {
        Some(kernel) => Some(kernel),
        None => Some(KernelName::parse(&image.kernel)?),
    };
    let reference = match &image.base {
        CatalogBase::Suite(suite) => {
            return Ok(CatalogPlan::Build(ImageBuildRequest {
                suite: Some(suite.clone()),
                packages_file,
                size_bytes,
                kernel_ref,
                minimal: !image.provision,
                docker: image.docker,
                ..ImageBuildRequest::new(name)
            }));
        }
        CatalogBase::Oci(reference) => reference.clone(),
    };
    if !image.provision {
        if packages_file.is_some() || size_bytes.is_some() {
            anyhow::bail!(
                "catalog image {entry} is pulled as it is ({reference}), so --packages and --size do not apply; drop them"
            );
        }
        return Ok(CatalogPlan::Pull {
            pull: pull_request(name, reference, kernel_ref),
            then: None,
        });
    }
    let base = ImageName::parse(&format!("{name}-base")).map_err(|error| {
        anyhow::anyhow!("{error} (the pulled base of catalog image {entry} is named NAME-base: choose a shorter --name)")
    })?;
    Ok(CatalogPlan::Pull {
        pull: pull_request(base.clone(), reference, kernel_ref.clone()),
        then: Some(ImageBuildRequest {
            packages_file,
            size_bytes,
            kernel_ref,
            docker: image.docker,
            from_image: Some(base),
            ..ImageBuildRequest::new(name)
        }),
    })
}

fn pull_request(
    name: ImageName,
    reference: String,
    kernel_ref: Option<KernelName>,
) -> ImagePullRequest {
    ImagePullRequest {
        name,
        reference,
        kernel_ref,
        max_layer_bytes: None,
        max_image_bytes: None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(base: CatalogBase, provision: bool, docker: bool) -> CatalogImage {
        CatalogImage {
            name: "ubuntu-noble".into(),
            description: String::new(),
            base,
            kernel: "generic-6-12".into(),
            provision,
            docker,
            default: false,
        }
    }

    fn name(text: &str) -> ImageName {
        ImageName::parse(text).unwrap()
    }

    #[test]
    fn a_debian_entry_is_one_build() {
        let image = entry(CatalogBase::Suite("bookworm".into()), false, false);
        let CatalogPlan::Build(request) = plan(&image, None, None, Some(1 << 30), None).unwrap()
        else {
            panic!("not a build");
        };
        assert_eq!(request.name, name("ubuntu-noble"));
        assert_eq!(request.suite.as_deref(), Some("bookworm"));
        assert!(request.minimal && request.from_image.is_none());
        assert_eq!(request.size_bytes, Some(1 << 30));
        assert_eq!(request.kernel_ref.unwrap().as_str(), "generic-6-12");
    }

    #[test]
    fn a_provisioned_oci_entry_is_pulled_as_a_base_and_built_on() {
        let image = entry(
            CatalogBase::Oci("docker.io/library/ubuntu:24.04".into()),
            true,
            true,
        );
        let plan = plan(&image, Some(name("dev")), Some("/p".into()), None, None).unwrap();
        let CatalogPlan::Pull {
            pull,
            then: Some(build),
        } = plan
        else {
            panic!("not a pull and a build: {plan:?}");
        };
        assert_eq!(pull.name, name("dev-base"));
        assert_eq!(pull.reference, "docker.io/library/ubuntu:24.04");
        assert_eq!(pull.kernel_ref.unwrap().as_str(), "generic-6-12");
        assert_eq!(build.name, name("dev"));
        assert_eq!(build.from_image, Some(name("dev-base")));
        assert!(build.docker && !build.minimal && build.suite.is_none());
        assert_eq!(build.packages_file.as_deref(), Some("/p"));
    }

    #[test]
    fn a_bare_oci_entry_is_one_pull_and_refuses_build_options() {
        let image = entry(CatalogBase::Oci("oci:/layout:v1".into()), false, false);
        let plan = plan(&image, None, None, None, None).unwrap();
        let CatalogPlan::Pull { pull, then: None } = plan else {
            panic!("not a lone pull: {plan:?}");
        };
        assert_eq!(pull.name, name("ubuntu-noble"));
        assert_eq!(pull.reference, "oci:/layout:v1");
        let error = super::plan(&image, None, Some("/p".into()), None, None).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("--packages and --size do not apply"),
            "{error}"
        );
    }

    #[test]
    fn a_base_name_that_does_not_fit_says_so() {
        let image = entry(CatalogBase::Oci("x".into()), true, false);
        let long = name(&"a".repeat(60));
        let error = plan(&image, Some(long), None, None, None).unwrap_err();
        assert!(
            error.to_string().contains("choose a shorter --name"),
            "{error}"
        );
    }
}
