//! `vm logs [-f]`: the serial console, through the daemon.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use banger_config::Paths;

use crate::args::VmLogsArgs;

/// How often `-f` asks for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

pub async fn logs(paths: &Paths, args: VmLogsArgs) -> anyhow::Result<ExitCode> {
    let name = args.name;
    let client = super::super::connect(paths).await?;
    let mut offset = 0;
    loop {
        let (bytes, next) = client.vm_console(&name, offset).await?;
        if !bytes.is_empty() {
            // The console is the guest's own output: strip what could drive
            // the terminal (escape sequences), keep text and newlines.
            let text = crate::output::sanitize(&String::from_utf8_lossy(&bytes).replace('\r', ""));
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
        }
        let more = next > offset && !bytes.is_empty();
        offset = next;
        if more {
            continue;
        }
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}
