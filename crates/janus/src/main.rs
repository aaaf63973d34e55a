//! The `janus` command: every k8s-janus component in one binary.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "janus",
    version,
    about = "k8s-janus: just-in-time kubectl exec access for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the AccessRequest CustomResourceDefinition generated from the Rust types.
    Crd,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => print!("{}", janus_api::crd_yaml()?),
    }
    Ok(())
}
