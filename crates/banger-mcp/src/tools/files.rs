//! `file_read`, `file_write`, `file_list`: guest files over the system ssh,
//! with small POSIX shell helpers that work with coreutils and busybox.
//! Paths are passed as positional parameters, never spliced into scripts.

use std::time::Duration;

use banger_api::VmName;
use banger_api::vms::VmInfo;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ToolError, Tools, arguments, guest_path, to_result};
use crate::bound::{self, MAX_LIST_ENTRIES, MAX_OUTPUT_BYTES, MAX_WRITE_BYTES};
use crate::remote::{self, RemoteOutput};

/// Default bytes `file_read` returns.
const DEFAULT_READ_BYTES: usize = 256 * 1024;
/// How long a file helper may take.
const FILE_DEADLINE: Duration = Duration::from_secs(60);

/// `$1` path, `$2` first byte (1-based), `$3` byte count: the file's size
/// on the first line, then the bytes.
const READ_SCRIPT: &str = r#"[ -f "$1" ] || { echo "$1 is not a regular file" >&2; exit 2; }
wc -c < "$1" || exit 2
tail -c +"$2" "$1" | head -c "$3""#;

/// `$1` path, `$2` 1 to create parent directories, `$3` 1 to append; the
/// content on stdin.
const WRITE_SCRIPT: &str = r#"if [ "$2" = 1 ]; then mkdir -p "$(dirname "$1")" || exit 2; fi
if [ "$3" = 1 ]; then cat >> "$1"; else cat > "$1"; fi"#;

/// `$1` directory, `$2` most entries: `TYPE|SIZE|MODE|NAME` records ended
/// by NUL, and a `more` record when entries were left out.
const LIST_SCRIPT: &str = r#"[ -d "$1" ] || { echo "$1 is not a directory" >&2; exit 2; }
n=0
for f in "$1"/* "$1"/.[!.]* "$1"/..?*; do
  [ -e "$f" ] || [ -L "$f" ] || continue
  n=$((n+1))
  if [ "$n" -gt "$2" ]; then printf 'more\0'; break; fi
  s=$(stat -c '%F|%s|%a' "$f") || continue
  printf '%s|%s\0' "$s" "${f##*/}"
done"#;

/// Runs a helper script with `params` in `vm`.
async fn helper(
    vm: &VmInfo,
    script: &str,
    params: &[String],
    stdin: Vec<u8>,
    limit: usize,
) -> Result<RemoteOutput, ToolError> {
    let mut argv = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        script.to_owned(),
        "banger-file".to_owned(),
    ];
    argv.extend(params.iter().cloned());
    Ok(remote::run(vm, &argv, stdin, limit, FILE_DEADLINE).await?)
}

/// Fails unless the helper exited 0.
fn succeeded(vm: &VmInfo, what: String, output: &RemoteOutput) -> Result<(), ToolError> {
    match output.exit_code {
        Some(0) => Ok(()),
        exit => Err(ToolError::Guest {
            vm: vm.name.clone(),
            what,
            exit: exit.unwrap_or(-1),
            stderr: output.stderr.text.trim_end().to_owned(),
        }),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    vm: VmName,
    path: String,
    #[serde(default)]
    offset: u64,
    max_bytes: Option<u64>,
}

pub(super) async fn read(tools: &Tools, args: Value) -> Result<Value, ToolError> {
    let args: ReadArgs = arguments("file_read", args)?;
    guest_path("file_read", "path", &args.path)?;
    let limit = bound::limit(args.max_bytes, DEFAULT_READ_BYTES);
    let vm = tools.running_vm(&args.vm).await?;
    let params = [
        args.path.clone(),
        args.offset.saturating_add(1).to_string(),
        limit.to_string(),
    ];
    // Room for the size line in front of the content.
    let output = helper(&vm, READ_SCRIPT, &params, Vec::new(), limit + 32).await?;
    succeeded(&vm, format!("reading {}", args.path), &output)?;
    let (size, content) = output
        .stdout
        .text
        .split_once('\n')
        .unwrap_or((&output.stdout.text, ""));
    let size: u64 = size.trim().parse().unwrap_or(0);
    let returned = output.stdout.bytes.saturating_sub(
        u64::try_from(output.stdout.text.find('\n').map_or(0, |end| end + 1)).unwrap_or(0),
    );
    to_result(serde_json::json!({
        "path": args.path,
        "size": size,
        "offset": args.offset,
        "content": content,
        "bytes": returned,
        "truncated": args.offset.saturating_add(returned) < size,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteArgs {
    vm: VmName,
    path: String,
    content: String,
    #[serde(default)]
    append: bool,
    #[serde(default = "super::yes")]
    make_dirs: bool,
}

pub(super) async fn write(tools: &Tools, args: Value) -> Result<Value, ToolError> {
    let args: WriteArgs = arguments("file_write", args)?;
    guest_path("file_write", "path", &args.path)?;
    if args.content.len() > MAX_WRITE_BYTES {
        return Err(ToolError::BadArgument {
            tool: "file_write",
            argument: "content",
            why: format!(
                "{} bytes is more than {MAX_WRITE_BYTES}; copy large trees with workspace_prepare",
                args.content.len()
            ),
        });
    }
    let vm = tools.running_vm(&args.vm).await?;
    let flag = |on: bool| if on { "1" } else { "0" }.to_owned();
    let params = [args.path.clone(), flag(args.make_dirs), flag(args.append)];
    let bytes = args.content.len();
    let output = helper(
        &vm,
        WRITE_SCRIPT,
        &params,
        args.content.into_bytes(),
        64 * 1024,
    )
    .await?;
    succeeded(&vm, format!("writing {}", args.path), &output)?;
    to_result(serde_json::json!({
        "path": args.path,
        "bytes_written": bytes,
        "appended": args.append,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    vm: VmName,
    path: String,
}

/// One directory entry.
#[derive(Debug, PartialEq, Eq, Serialize)]
struct Entry {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    size: u64,
    mode: String,
}

pub(super) async fn list(tools: &Tools, args: Value) -> Result<Value, ToolError> {
    let args: ListArgs = arguments("file_list", args)?;
    guest_path("file_list", "path", &args.path)?;
    let vm = tools.running_vm(&args.vm).await?;
    let params = [args.path.clone(), MAX_LIST_ENTRIES.to_string()];
    let output = helper(&vm, LIST_SCRIPT, &params, Vec::new(), MAX_OUTPUT_BYTES).await?;
    succeeded(&vm, format!("listing {}", args.path), &output)?;
    let (entries, truncated) = parse_listing(&output.stdout.text, output.stdout.truncated);
    to_result(serde_json::json!({
        "path": args.path,
        "entries": entries,
        "truncated": truncated,
    }))
}

/// Parses [`LIST_SCRIPT`]'s records; a record cut by the output bound is
/// dropped.
fn parse_listing(text: &str, cut: bool) -> (Vec<Entry>, bool) {
    let mut records: Vec<&str> = text.split('\0').collect();
    // The text after the last NUL is empty, or a cut record.
    records.pop();
    let mut truncated = cut;
    let mut entries = Vec::new();
    for record in records {
        if record == "more" {
            truncated = true;
            continue;
        }
        let mut parts = record.splitn(4, '|');
        let (Some(kind), Some(size), Some(mode), Some(name)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        entries.push(Entry {
            name: name.to_owned(),
            kind: kind.to_owned(),
            size: size.parse().unwrap_or(0),
            mode: mode.to_owned(),
        });
    }
    (entries, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, params: &[&str], stdin: &[u8]) -> (i32, Vec<u8>) {
        use std::io::Write;
        let mut child = std::process::Command::new("sh")
            .args(["-c", script, "banger-file"])
            .args(params)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let output = child.wait_with_output().unwrap();
        (output.status.code().unwrap(), output.stdout)
    }

    #[test]
    fn the_helpers_write_read_and_list() {
        let temp = tempfile::tempdir().unwrap();
        let file = temp.path().join("a dir/it's.txt");
        let file_arg = file.to_str().unwrap();
        assert_eq!(sh(WRITE_SCRIPT, &[file_arg, "1", "0"], b"hello ").0, 0);
        assert_eq!(sh(WRITE_SCRIPT, &[file_arg, "1", "1"], b"world").0, 0);
        assert_eq!(fs_err::read_to_string(&file).unwrap(), "hello world");

        let (code, out) = sh(READ_SCRIPT, &[file_arg, "7", "3"], b"");
        assert_eq!(code, 0);
        assert_eq!(String::from_utf8(out).unwrap(), "11\nwor");
        assert_eq!(
            sh(READ_SCRIPT, &[temp.path().to_str().unwrap(), "1", "3"], b"").0,
            2
        );

        fs_err::write(temp.path().join(".hidden"), "x").unwrap();
        fs_err::write(temp.path().join("pipe|name"), "").unwrap();
        let dir = temp.path().to_str().unwrap();
        let (code, out) = sh(LIST_SCRIPT, &[dir, "10"], b"");
        assert_eq!(code, 0);
        let (mut entries, truncated) = parse_listing(&String::from_utf8(out).unwrap(), false);
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        assert!(!truncated);
        let names: Vec<(&str, &str)> = entries
            .iter()
            .map(|entry| (entry.name.as_str(), entry.kind.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                (".hidden", "regular file"),
                ("a dir", "directory"),
                ("pipe|name", "regular empty file")
            ]
        );
        let (_, out) = sh(LIST_SCRIPT, &[dir, "2"], b"");
        let (entries, truncated) = parse_listing(&String::from_utf8(out).unwrap(), false);
        assert_eq!(entries.len(), 2);
        assert!(truncated);
    }

    #[test]
    fn a_cut_record_is_dropped() {
        let (entries, truncated) = parse_listing("directory|4096|755|a\0regular file|1", true);
        assert_eq!(entries.len(), 1);
        assert!(truncated);
    }
}
