//! `chassis completions SHELL`: a completion script for bash, zsh or fish.

// Arguments of `chassis completions`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The shell: bash, zsh or fish
    shell: Shell,
}

/// The shells chassis writes completions for.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Prints the completion script of `command` (the whole CLI) for the shell.
pub(crate) fn run(mut command: clap::Command, args: Args) -> anyhow::Result<u8> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "chassis", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Ok(crate::exit::COMPLETED)
}
