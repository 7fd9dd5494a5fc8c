//! `cairn generate --out DIR` (hidden): writes shell completions and man pages from the CLI
//! definition, for `scripts/package` to install.
//!
//! A subcommand of the shipped binary rather than a build script: a build.rs would rerun the
//! generators on every build of the CLI, while packaging needs them once, and the pages can
//! never describe another binary than the one they ship with.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use clap_complete::Shell;

#[derive(Args)]
pub struct GenerateCmd {
    /// The folder to write `completions/` (bash, zsh, fish) and `man/` (one page per
    /// subcommand) into; created if missing.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// The completion scripts, each under the file name its shell looks for.
const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "cairn"),
    (Shell::Zsh, "_cairn"),
    (Shell::Fish, "cairn.fish"),
];

pub fn run(cmd: GenerateCmd, cli: clap::Command) -> Result<()> {
    let completions = cmd.out.join("completions");
    let man = cmd.out.join("man");
    for dir in [&completions, &man] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let shown = without_hidden(&cli);
    for (shell, name) in SHELLS {
        write_completion(shown.clone(), shell, &completions.join(name))?;
    }
    // One page per subcommand (cairn-server-run.1, ...): `man cairn-server-run` is how
    // users look up a nested command.
    clap_mangen::generate_to(cli, &man)
        .with_context(|| format!("writing man pages into {}", man.display()))?;
    println!("wrote completions to {}", completions.display());
    println!("wrote man pages to {}", man.display());
    Ok(())
}

/// `cli` without its hidden subcommands (this one), which the completion generators would
/// offer: clap can add subcommands to a command but not take them away, so the top level is
/// built again around the shown ones.
fn without_hidden(cli: &clap::Command) -> clap::Command {
    let mut shown = clap::Command::new("cairn").version(env!("CARGO_PKG_VERSION"));
    if let Some(about) = cli.get_about() {
        shown = shown.about(about.clone());
    }
    shown.subcommands(cli.get_subcommands().filter(|c| !c.is_hide_set()).cloned())
}

fn write_completion(mut cli: clap::Command, shell: Shell, path: &Path) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cli, "cairn", &mut script);
    std::fs::write(path, script).with_context(|| format!("writing {}", path.display()))
}
