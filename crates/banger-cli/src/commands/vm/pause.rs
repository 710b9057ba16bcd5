//! `vm pause` and `vm resume`.

use std::process::ExitCode;

use banger_api::VmName;
use banger_config::Paths;

use super::for_each;
use crate::output;

/// Pauses each VM; prints how much memory was saved.
pub async fn pause(paths: &Paths, names: Vec<VmName>) -> anyhow::Result<ExitCode> {
    let client = super::super::connect(paths).await?;
    for_each(&client, names, |client, name| async move {
        let vm = client.pause_vm(&name).await?;
        let saved = vm
            .saved_memory_bytes
            .map(|bytes| format!(" ({} MiB of memory saved)", bytes >> 20))
            .unwrap_or_default();
        Ok(format!("{} is {}{saved}", vm.name, vm.state))
    })
    .await
}

/// Resumes each VM and waits for SSH.
pub async fn resume(paths: &Paths, names: Vec<VmName>) -> anyhow::Result<ExitCode> {
    let client = super::super::connect(paths).await?;
    let several = names.len() > 1;
    for_each(&client, names, move |client, name| async move {
        let vm = client
            .resume_vm(&name, &mut |progress| {
                if !several {
                    output::progress_line(progress);
                }
            })
            .await?;
        Ok(format!("resumed {} ({})", vm.name, vm.ip))
    })
    .await
}
