//! `banger kernel list|pull|show|delete|import` (`prune`: space.rs).

use std::process::ExitCode;

use banger_api::kernels::{KernelImportRequest, KernelInfo};
use banger_config::Paths;

use crate::args::KernelCommand;
use crate::output;
use crate::progress::Reporter;

pub async fn run(command: KernelCommand) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env()?;
    match command {
        KernelCommand::List(args) => {
            let client = super::connect(&paths).await?;
            if args.available {
                let entries = client.kernel_catalog().await?;
                if args.json {
                    output::json(&entries)?;
                } else {
                    let mut rows = vec![
                        ["NAME", "INSTALLED", "SOURCE", "DESCRIPTION"]
                            .map(String::from)
                            .to_vec(),
                    ];
                    for entry in entries {
                        let name = if entry.default {
                            format!("{} (default)", entry.name)
                        } else {
                            entry.name
                        };
                        rows.push(vec![
                            name,
                            yes_no(entry.installed),
                            entry.source,
                            entry.description,
                        ]);
                    }
                    output::line(&output::sanitize(&output::table(&rows)))?;
                }
            } else {
                let kernels = client.kernels().await?;
                if args.json {
                    output::json(&kernels)?;
                } else {
                    let mut rows = vec![
                        ["NAME", "VERSION", "SOURCE", "SIZE", "IMAGES"]
                            .map(String::from)
                            .to_vec(),
                    ];
                    for kernel in kernels {
                        rows.push(vec![
                            kernel.name.to_string(),
                            kernel.version,
                            kernel.source,
                            human_bytes(kernel.size_bytes),
                            output::join(&kernel.used_by_images, ","),
                        ]);
                    }
                    output::line(&output::sanitize(&output::table(&rows)))?;
                }
            }
        }
        KernelCommand::Pull(args) => {
            let client = super::connect(&paths).await?;
            let mut reporter = Reporter::new();
            let result = client
                .pull_kernel(&args.name, &mut |progress| reporter.show(progress))
                .await;
            reporter.finish();
            let kernel = result?;
            eprintln!("kernel {} ({}) is installed", kernel.name, kernel.version);
        }
        KernelCommand::Show(args) => {
            let kernel = super::connect(&paths).await?.kernel(&args.name).await?;
            if args.json {
                output::json(&kernel)?;
            } else {
                output::line(&output::sanitize(&output::table(&details(&kernel))))?;
            }
        }
        KernelCommand::Delete(args) => {
            let kernel = super::connect(&paths)
                .await?
                .delete_kernel(&args.name)
                .await?;
            eprintln!(
                "deleted kernel {} and its files in {}",
                kernel.name, kernel.dir
            );
        }
        KernelCommand::Prune(args) => {
            return super::space::prune(super::space::PruneTarget::Kernels, &args).await;
        }
        KernelCommand::Import(args) => {
            let request = KernelImportRequest {
                name: args.name,
                kernel: super::absolute(&args.kernel)?.display().to_string(),
                modules: args
                    .modules
                    .as_deref()
                    .map(super::absolute)
                    .transpose()?
                    .map(|path| path.display().to_string()),
            };
            let client = super::connect(&paths).await?;
            let mut reporter = Reporter::new();
            let result = client
                .import_kernel(&request, &mut |progress| reporter.show(progress))
                .await;
            reporter.finish();
            let kernel = result?;
            eprintln!("kernel {} ({}) is installed", kernel.name, kernel.version);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

fn details(kernel: &KernelInfo) -> Vec<Vec<String>> {
    let optional = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    vec![
        vec!["name".into(), kernel.name.to_string()],
        vec!["version".into(), kernel.version.clone()],
        vec!["source".into(), kernel.source.clone()],
        vec!["dir".into(), kernel.dir.clone()],
        vec!["bzimage".into(), optional(&kernel.bzimage)],
        vec!["vmlinux".into(), optional(&kernel.vmlinux)],
        vec!["initramfs".into(), kernel.initramfs.clone()],
        vec!["modules disk".into(), optional(&kernel.modules_disk)],
        vec!["size".into(), human_bytes(kernel.size_bytes)],
        vec![
            "images".into(),
            if kernel.used_by_images.is_empty() {
                "-".into()
            } else {
                output::join(&kernel.used_by_images, ", ")
            },
        ],
    ]
}

/// `1.5 GiB`-style sizes.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
