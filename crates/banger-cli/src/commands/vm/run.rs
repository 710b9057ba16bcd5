//! `vm run`: create and start a sandbox, then a shell or a command in it,
//! exiting with its status; `--rm` deletes the VM afterwards.

use std::process::ExitCode;

use banger_api::VmName;
use banger_client::ClientError;
use banger_config::Paths;

use super::lifecycle::create_request;
use super::ssh::{exit_code, remind_if_running, run_ssh};
use crate::args::VmRunArgs;
use crate::progress::Reporter;

pub async fn run(paths: &Paths, args: VmRunArgs) -> anyhow::Result<ExitCode> {
    let request = create_request(args.name, &args.resources, false)?;
    let client = super::super::connect(paths).await?;
    let mut reporter = Reporter::new();
    let created = client
        .create_vm(&request, &mut |progress| reporter.show(progress))
        .await;
    reporter.finish();
    let vm = match created {
        Ok(vm) => vm,
        Err(ClientError::Operation { error }) if error.message.contains("SSH did not answer") => {
            if args.rm {
                eprintln!(
                    "note: --rm ignored: the VM is kept so you can inspect why SSH never answered"
                );
            }
            anyhow::bail!("{}", error.message);
        }
        Err(error) => return Err(error.into()),
    };
    let name = VmName::parse(&vm.name)?;
    eprintln!("VM {} is running at {}", vm.name, vm.ip);
    let code = run_ssh(&vm, &args.command).await;
    if args.rm {
        match client.delete_vm(&name, true).await {
            Ok(_) => eprintln!("deleted VM {name}"),
            Err(error) => eprintln!(
                "error: cannot delete VM {name}: {:#}",
                anyhow::Error::from(error)
            ),
        }
    } else if args.command.is_empty() {
        remind_if_running(&client, &name).await;
    }
    Ok(exit_code(code?))
}
