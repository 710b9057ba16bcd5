//! `banger completions` and `banger man`: completion scripts (clap_complete)
//! and man pages (clap_mangen) generated from the CLI's own grammar, and the
//! same files as `banger system install` puts them in place.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use banger_system::shell_files::{ShellFile, ShellFileKind};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::args::{Cli, CompletionShell, CompletionsArgs, ManArgs};
use crate::output;

/// The name users type, which completions and pages are written for.
const BIN_NAME: &str = "banger";

/// `banger completions SHELL`: the script on stdout.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let script = completion_script(args.shell);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&script)?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `banger man [--out-dir DIR]`: banger.1 on stdout, or every page into DIR
/// (their paths on stdout).
pub fn man(args: &ManArgs) -> anyhow::Result<ExitCode> {
    let pages = man_pages()?;
    match &args.out_dir {
        None => {
            let top = pages
                .iter()
                .find(|page| page.file_name == format!("{BIN_NAME}.1"))
                .context("the generated man pages lack banger.1")?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&top.text)?;
            stdout.flush()?;
        }
        Some(dir) => {
            fs_err::create_dir_all(dir)?;
            for page in &pages {
                let path = dir.join(&page.file_name);
                fs_err::write(&path, &page.text)?;
                output::line(&path.display().to_string())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The completion script for `shell`.
pub fn completion_script(shell: CompletionShell) -> Vec<u8> {
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, BIN_NAME, &mut script);
    script
}

/// One rendered man page.
#[derive(Debug, Clone)]
pub struct ManPage {
    /// `banger.1`, `banger-vm.1`, `banger-vm-create.1`, ...
    pub file_name: String,
    /// The roff source.
    pub text: Vec<u8>,
}

/// banger.1 and one page per (nested) subcommand, as clap_mangen's
/// `generate_to` names them, rendered in memory so the install can write
/// them atomically where it records them.
pub fn man_pages() -> anyhow::Result<Vec<ManPage>> {
    fn render(command: clap::Command, pages: &mut Vec<ManPage>) -> anyhow::Result<()> {
        for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            render(sub.clone(), pages)?;
        }
        let man = clap_mangen::Man::new(command);
        let file_name = man.get_filename();
        let mut text = Vec::new();
        man.render(&mut text)
            .with_context(|| format!("cannot render the man page {file_name}"))?;
        pages.push(ManPage { file_name, text });
        Ok(())
    }
    // As clap_mangen::generate_to: built (so subcommands are named
    // `banger-vm`, ...) and without the `help` pseudo-subcommand.
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let mut pages = Vec::new();
    render(command, &mut pages)?;
    // banger.1 first, then the rest in name order.
    pages.sort_by(|a, b| {
        (a.file_name != format!("{BIN_NAME}.1"), &a.file_name)
            .cmp(&(b.file_name != format!("{BIN_NAME}.1"), &b.file_name))
    });
    Ok(pages)
}

/// Everything `banger system install` puts in place for shells and `man`:
/// the three completion scripts and every man page.
pub fn install_files() -> anyhow::Result<Vec<ShellFile>> {
    let mut files = vec![
        ShellFile::new(
            ShellFileKind::BashCompletion,
            completion_script(CompletionShell::Bash),
        ),
        ShellFile::new(
            ShellFileKind::ZshCompletion,
            completion_script(CompletionShell::Zsh),
        ),
        ShellFile::new(
            ShellFileKind::FishCompletion,
            completion_script(CompletionShell::Fish),
        ),
    ];
    for page in man_pages()? {
        files.push(ShellFile::man_page(&page.file_name, page.text)?);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_real_subcommands() {
        for shell in [
            CompletionShell::Bash,
            CompletionShell::Zsh,
            CompletionShell::Fish,
        ] {
            let script = String::from_utf8(completion_script(shell)).unwrap();
            assert!(!script.trim().is_empty(), "{shell:?}: empty script");
            for word in ["vm", "snapshot", "image", "completions"] {
                assert!(
                    script.contains(word),
                    "{shell:?}: the script does not name `{word}`"
                );
            }
        }
    }

    #[test]
    fn there_is_a_page_per_subcommand() {
        let pages = man_pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|page| page.file_name.as_str()).collect();
        assert_eq!(names[0], "banger.1");
        for name in [
            "banger-vm.1",
            "banger-vm-create.1",
            "banger-vm-snapshot.1",
            "banger-completions.1",
            "banger-man.1",
        ] {
            assert!(names.contains(&name), "no {name} among {names:?}");
        }
        assert!(!names.iter().any(|name| name.ends_with("-help.1")));
        let top = String::from_utf8(pages[0].text.clone()).unwrap();
        assert!(top.starts_with(".ie"), "not roff: {top:.80}");
        assert!(top.contains(".SH SUBCOMMANDS"), "{top}");
        assert!(top.contains("banger\\-vm(1)"), "{top}");
    }

    #[test]
    fn man_renders_the_page_with_its_subcommands() {
        let man = std::path::Path::new("/usr/bin/man");
        if !man.exists() {
            banger_testkit::skip_or_fail("man (package man-db) is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pages = man_pages().unwrap();
        let path = dir.path().join(&pages[0].file_name);
        fs_err::write(&path, &pages[0].text).unwrap();
        let output = std::process::Command::new(man)
            .arg("-l")
            .arg(&path)
            .env("MANWIDTH", "100")
            .env("MANPAGER", "cat")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "man -l failed: {stderr}");
        assert!(
            !stderr.contains("warning"),
            "groff warns about the page: {stderr}"
        );
        let text = String::from_utf8(output.stdout).unwrap();
        assert!(text.contains("NAME"), "{text}");
        assert!(text.contains("SUBCOMMANDS"), "{text}");
        for sub in ["banger-vm(1)", "banger-image(1)", "banger-completions(1)"] {
            assert!(text.contains(sub), "no {sub} in:\n{text}");
        }
    }
}
