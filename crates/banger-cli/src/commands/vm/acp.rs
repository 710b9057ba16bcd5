//! `vm acp`: the Agent Client Protocol on stdio, bridged to `opencode acp`
//! in the guest over ssh (no terminal, so the byte stream stays clean).

use std::process::ExitCode;

use banger_api::VmName;
use banger_config::Paths;
use banger_host::ssh::TtyMode;
use banger_host::ssh::command::shell_quote;

use super::ssh::{exit_code, run_ssh_with};
use crate::args::VmAcpArgs;

/// Directories where installers put `opencode` and tool shims, ahead of the
/// non-login PATH ssh gives a command.
const EXTRA_PATH: &str = "/root/.opencode/bin:/root/.local/bin:/root/.local/share/mise/shims";

pub async fn acp(paths: &Paths, args: VmAcpArgs) -> anyhow::Result<ExitCode> {
    let name = args.vm;
    let client = super::super::connect(paths).await?;
    let vm = client.vm(&name).await?;
    let script = acp_script(&name, args.cwd.as_deref());
    let code = run_ssh_with(&vm, &["sh".into(), "-c".into(), script], TtyMode::Batch).await?;
    Ok(exit_code(code))
}

/// The guest-side script: enter the working directory, check for
/// opencode, then replace the shell with it so stdio is its own.
fn acp_script(vm: &VmName, cwd: Option<&str>) -> String {
    let enter = match cwd {
        Some(cwd) => format!(
            "cd {dir} 2>/dev/null || {{ printf 'banger: no directory %s in VM {vm}\\n' {dir} >&2; exit 1; }}",
            dir = shell_quote(cwd),
        ),
        None => "if [ -d /root/repo ]; then cd /root/repo; else cd /root; fi".to_owned(),
    };
    format!(
        "export PATH={EXTRA_PATH}:$PATH; {enter}; \
         command -v opencode >/dev/null 2>&1 || {{ echo \"banger: opencode is not installed in VM {vm}; install it in the guest (npm install -g opencode-ai) and retry\" >&2; exit 127; }}; \
         exec opencode acp"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_defaults_to_the_repo_and_quotes_a_given_cwd() {
        let vm = VmName::parse("dev").unwrap();
        let default = acp_script(&vm, None);
        assert!(default.contains("if [ -d /root/repo ]; then cd /root/repo; else cd /root; fi"));
        assert!(default.ends_with("exec opencode acp"));
        let given = acp_script(&vm, Some("/root/my dir; rm -rf /"));
        assert!(
            given.contains("cd '/root/my dir; rm -rf /' 2>/dev/null ||"),
            "{given}"
        );
    }

    #[test]
    fn a_missing_cwd_is_named_without_being_evaluated() {
        let vm = VmName::parse("dev").unwrap();
        let script = acp_script(&vm, Some("/nonexistent/$(echo pwned)"));
        let output = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&output.stderr),
            "banger: no directory /nonexistent/$(echo pwned) in VM dev\n"
        );
    }

    #[test]
    fn script_runs_in_a_real_shell() {
        // Without opencode on PATH the script names the fix and exits 127.
        let vm = VmName::parse("dev").unwrap();
        let script = acp_script(&vm, Some("/"));
        let output = std::process::Command::new("sh")
            .args(["-c", &script])
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(127));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("opencode is not installed in VM dev")
        );
    }
}
