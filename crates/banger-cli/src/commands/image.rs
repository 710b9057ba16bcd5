//! `banger image build|pull|register|list|show|delete|promote` (`prune`:
//! space.rs).

mod catalog;
mod pull;

use std::process::ExitCode;

use banger_api::images::{ImageBuildRequest, ImageInfo, ImageRegisterRequest};
use banger_config::Paths;

use super::kernel::human_bytes;
use crate::args::ImageCommand;
use crate::output;
use crate::progress::Reporter;

fn path_text(path: &std::path::Path) -> anyhow::Result<String> {
    Ok(super::absolute(path)?.display().to_string())
}

pub async fn run(command: ImageCommand) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env()?;
    match command {
        ImageCommand::Build(args) => {
            let packages_file = args.packages.as_deref().map(path_text).transpose()?;
            let request = match &args.from_catalog {
                Some(entry) => match catalog::plan(
                    &banger_image::provision::catalog::catalog_image(entry)?,
                    args.name,
                    packages_file,
                    args.size,
                    args.kernel_ref,
                )? {
                    catalog::CatalogPlan::Build(request) => request,
                    catalog::CatalogPlan::Pull { pull, then } => {
                        let client = super::connect(&paths).await?;
                        pull::pull(&client, pull, false).await?;
                        match then {
                            Some(request) => request,
                            None => return Ok(ExitCode::SUCCESS),
                        }
                    }
                },
                None => ImageBuildRequest {
                    suite: args.suite,
                    packages_file,
                    size_bytes: args.size,
                    kernel_ref: args.kernel_ref,
                    minimal: args.minimal,
                    docker: args.docker,
                    from_image: args.from_image,
                    ..ImageBuildRequest::new(args.name.ok_or_else(|| {
                        anyhow::anyhow!("--name is required without --from-catalog")
                    })?)
                },
            };
            let client = super::connect(&paths).await?;
            let mut reporter = Reporter::new();
            let result = client
                .build_image(&request, &mut |progress| reporter.show(progress))
                .await;
            reporter.finish();
            let image = result?;
            eprintln!(
                "image {} is ready ({})",
                image.name,
                human_bytes(image.size_bytes)
            );
        }
        ImageCommand::Pull(args) => {
            let client = super::connect(&paths).await?;
            pull::run(&client, args).await?;
        }
        ImageCommand::Register(args) => {
            let request = ImageRegisterRequest {
                name: args.name,
                rootfs: path_text(&args.rootfs)?,
                work_seed: args.work_seed.as_deref().map(path_text).transpose()?,
                kernel: args.kernel.as_deref().map(path_text).transpose()?,
                kernel_ref: args.kernel_ref,
                initrd: args.initrd.as_deref().map(path_text).transpose()?,
                modules: args.modules.as_deref().map(path_text).transpose()?,
            };
            let client = super::connect(&paths).await?;
            let mut reporter = Reporter::new();
            let result = client
                .register_image(&request, &mut |progress| reporter.show(progress))
                .await;
            reporter.finish();
            let image = result?;
            eprintln!(
                "image {} is registered (unmanaged; its files stay where they are)",
                image.name
            );
        }
        ImageCommand::List(flags) if flags.available => {
            catalog::list_available(flags.json)?;
        }
        ImageCommand::List(flags) => {
            let images = super::connect(&paths).await?.images().await?;
            if flags.json {
                output::json(&images)?;
            } else {
                let mut rows = vec![
                    ["NAME", "MANAGED", "KERNEL", "SIZE", "VMS"]
                        .map(String::from)
                        .to_vec(),
                ];
                for image in images {
                    rows.push(vec![
                        image.name.to_string(),
                        if image.managed { "yes" } else { "no" }.to_owned(),
                        image.kernel.to_string(),
                        human_bytes(image.size_bytes),
                        image.used_by_vms.len().to_string(),
                    ]);
                }
                output::line(&output::sanitize(&output::table(&rows)))?;
            }
        }
        ImageCommand::Show(args) => {
            let image = super::connect(&paths).await?.image(&args.name).await?;
            if args.json {
                output::json(&image)?;
            } else {
                output::line(&output::sanitize(&output::table(&details(&image))))?;
            }
        }
        ImageCommand::Delete(args) => {
            let deleted = super::connect(&paths)
                .await?
                .delete_image(&args.name, args.force)
                .await?;
            for file in &deleted.removed_files {
                eprintln!("removed {file}");
            }
            if !deleted.broken_vms.is_empty() {
                eprintln!(
                    "warning: VM(s) {} used this image and can no longer start; delete them with `banger vm delete`",
                    output::join(&deleted.broken_vms, ", ")
                );
            }
            eprintln!("deleted image {}", deleted.image.name);
        }
        ImageCommand::Prune(args) => {
            return super::space::prune(super::space::PruneTarget::Images, &args).await;
        }
        ImageCommand::Promote(args) => {
            let client = super::connect(&paths).await?;
            let mut reporter = Reporter::new();
            let result = client
                .promote_image(&args.name, &mut |progress| reporter.show(progress))
                .await;
            reporter.finish();
            let image = result?;
            eprintln!(
                "image {} is managed; its files are in banger's store",
                image.name
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn details(image: &ImageInfo) -> Vec<Vec<String>> {
    let optional = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    let mut rows = vec![
        vec!["name".into(), image.name.to_string()],
        vec![
            "managed".into(),
            if image.managed { "yes" } else { "no" }.into(),
        ],
        vec!["rootfs".into(), image.rootfs.clone()],
        vec!["work seed".into(), optional(&image.work_seed)],
        vec!["kernel".into(), image.kernel.to_string()],
        vec!["initrd".into(), optional(&image.initrd)],
        vec!["size".into(), human_bytes(image.size_bytes)],
        vec![
            "vms".into(),
            if image.used_by_vms.is_empty() {
                "-".into()
            } else {
                output::join(&image.used_by_vms, ", ")
            },
        ],
    ];
    if let Some(provision) = &image.provision {
        rows.extend(catalog::provision_rows(provision));
    }
    if let Some(oci) = &image.oci {
        let list = |items: &Option<Vec<String>>| {
            items
                .as_ref()
                .map_or_else(|| "-".to_owned(), |items| format!("{items:?}"))
        };
        rows.extend([
            vec!["source".into(), oci.source.clone()],
            vec!["manifest".into(), optional(&oci.manifest_digest)],
            vec!["config".into(), oci.config_digest.clone()],
            vec!["entrypoint".into(), list(&oci.entrypoint)],
            vec!["cmd".into(), list(&oci.cmd)],
            vec!["workdir".into(), optional(&oci.working_dir)],
            vec!["user".into(), optional(&oci.user)],
        ]);
        for (index, variable) in oci.env.iter().enumerate() {
            let label = if index == 0 { "env" } else { "" };
            rows.push(vec![label.into(), variable.clone()]);
        }
    }
    rows
}
