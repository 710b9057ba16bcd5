//! `vm_fork`: new VMs from a running (or paused) VM, through the daemon's
//! fork endpoint. The new VMs count as created by this server, so
//! `vm_delete` may delete them.

use std::collections::BTreeSet;

use banger_api::VmName;
use banger_api::snapshots::{ForkNamesError, VmForkRequest};
use serde::Deserialize;
use serde_json::Value;

use super::vm::VmSummary;
use super::{ToolError, Tools, arguments, to_result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForkArgs {
    source: VmName,
    name: VmName,
    count: Option<u32>,
}

/// The names a fork makes (the daemon's rule, `VmForkRequest::names`),
/// checked here so a bad count or a name that grows too long is refused
/// before anything is asked of the daemon.
fn fork_names(name: &VmName, count: Option<u32>) -> Result<Vec<VmName>, ToolError> {
    let request = VmForkRequest {
        name: name.clone(),
        count,
    };
    request.names().map_err(|error| ToolError::BadArgument {
        tool: "vm_fork",
        argument: match error {
            ForkNamesError::Count { .. } => "count",
            ForkNamesError::Name { .. } => "name",
        },
        why: error.to_string(),
    })
}

/// Of the names a fork will make, the ones no VM has yet: only those can
/// become this server's. A taken name is refused by the daemon and stays
/// someone else's.
fn unclaimed(names: &[VmName], existing: &BTreeSet<VmName>) -> Vec<VmName> {
    names
        .iter()
        .filter(|name| !existing.contains(*name))
        .cloned()
        .collect()
}

pub(super) async fn fork(tools: &Tools, args: Value) -> Result<Value, ToolError> {
    let args: ForkArgs = arguments("vm_fork", args)?;
    let names = fork_names(&args.name, args.count)?;
    let client = tools.client().await?;
    let existing: BTreeSet<VmName> = client.vms().await?.into_iter().map(|vm| vm.name).collect();
    let ours = unclaimed(&names, &existing);
    // Known before the daemon answers: forks made before a failed one are
    // kept by the daemon and are this server's to delete.
    for name in &ours {
        tools.remember(name);
    }
    let request = VmForkRequest {
        name: args.name,
        count: args.count,
    };
    let forked = client
        .fork_vm(&args.source, &request, &mut |progress| {
            eprintln!("banger mcp: vm_fork: {}", progress.message);
        })
        .await;
    let forked = match forked {
        Ok(forked) => forked,
        Err(error) => {
            for name in &ours {
                if client.vm(name).await.is_err() {
                    tools.forget(name);
                }
            }
            return Err(error.into());
        }
    };
    for vm in &forked {
        tools.remember(&vm.name);
    }
    let vms: Vec<VmSummary> = forked.iter().map(|vm| VmSummary::new(tools, vm)).collect();
    to_result(serde_json::json!({ "source": args.source, "vms": vms }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_api::snapshots::MAX_FORK_COUNT;

    fn name(text: &str) -> VmName {
        VmName::parse(text).unwrap()
    }

    fn texts(names: &[VmName]) -> Vec<&str> {
        names.iter().map(VmName::as_str).collect()
    }

    #[test]
    fn one_copy_keeps_the_name_and_more_are_numbered() {
        assert_eq!(texts(&fork_names(&name("try"), None).unwrap()), ["try"]);
        assert_eq!(texts(&fork_names(&name("try"), Some(1)).unwrap()), ["try"]);
        assert_eq!(
            texts(&fork_names(&name("agent"), Some(3)).unwrap()),
            ["agent-1", "agent-2", "agent-3"]
        );
        assert_eq!(
            fork_names(&name("a"), Some(MAX_FORK_COUNT)).unwrap().len(),
            16
        );
    }

    #[test]
    fn bad_counts_and_overlong_names_are_invalid_arguments() {
        for count in [0, MAX_FORK_COUNT + 1, u32::MAX] {
            let error = fork_names(&name("try"), Some(count)).unwrap_err();
            assert_eq!(error.code(), "invalid_arguments", "{count}");
        }
        let long = name(&"a".repeat(62));
        let error = fork_names(&long, Some(2)).unwrap_err();
        assert_eq!(error.code(), "invalid_arguments");
        assert!(
            error.message().contains("-1 is not a valid VM name"),
            "{}",
            error.message()
        );
    }

    #[test]
    fn taken_names_are_not_claimed() {
        let names = fork_names(&name("agent"), Some(3)).unwrap();
        let existing = BTreeSet::from([name("agent-2"), name("other")]);
        assert_eq!(texts(&unclaimed(&names, &existing)), ["agent-1", "agent-3"]);
    }

    #[test]
    fn arguments_are_checked() {
        let parsed: ForkArgs = arguments(
            "vm_fork",
            serde_json::json!({"source": "web", "name": "try", "count": 2}),
        )
        .unwrap();
        assert_eq!(parsed.source.as_str(), "web");
        assert_eq!(parsed.count, Some(2));
        for bad in [
            serde_json::json!({"name": "try"}),
            serde_json::json!({"source": "web"}),
            serde_json::json!({"source": "web", "name": "Bad_Name"}),
            serde_json::json!({"source": "web", "name": "try", "count": -1}),
            serde_json::json!({"source": "web", "name": "try", "vm": "web"}),
        ] {
            let error = arguments::<ForkArgs>("vm_fork", bad.clone()).unwrap_err();
            assert_eq!(error.code(), "invalid_arguments", "{bad}");
        }
    }
}
