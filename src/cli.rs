//! The command line: one subcommand per way of running Offside.

use clap::{Parser, Subcommand};

/// Offside: recognises pirated re-streams of broadcasts and acts on them.
#[derive(Debug, Parser)]
#[command(name = "offside", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {}

/// Parses the command line and runs the chosen subcommand.
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}
