//! `smolvm`: the builder command. Each subcommand lives in its own module.
use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod kernel_cmd;

// Image commands: build, inspect, verify (exit 1 with `smolvm: <error>` on failure).
mod app;
mod atomic;
mod build;
mod closure;
mod container;
mod error;
mod identity;
mod inspect;
mod json;
mod kernel_file;
mod layers;
mod output;
mod progress;
mod rekernel;
mod rootfs;
mod services;
mod staging;
mod tar;
mod verify;
mod warm;

// Distribution and trust: keygen, sign, push, pull.
mod credential_helper;
mod credentials;
mod registry;
mod signing;

fn report(result: error::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smolvm: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Parser)]
#[command(name = "smolvm", version, about = "Turn an app and its root filesystem into one self-contained VM executable")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Kernel(kernel_cmd::KernelArgs),
    /// Build an image: rootfs + entry + kernel + stub + init -> one executable file.
    Build(Box<build::BuildArgs>),
    /// Show an image's sections, manifest and kernel.
    Inspect(inspect::InspectArgs),
    /// Check every section's digests and the signature; names the damaged section.
    Verify(verify::VerifyArgs),
    /// Swap an image's kernel (e.g. for a CVE fix) keeping every other section byte-identical.
    Rekernel(rekernel::RekernelArgs),
    /// Run an image to its safe point and write a warm image that resumes there (docs/WARM.md).
    ///
    /// First slice: the guest must ask for its snapshot (port 0xf5); smol-init does not yet, so
    /// Linux images cannot be made warm. Needs /dev/kvm that runs the guest.
    Warm(warm::WarmArgs),
    /// Make an Ed25519 key pair for signing images: KEY (secret) and KEY.pub.
    Keygen(signing::KeygenArgs),
    /// Sign an image in place with a key from `smolvm keygen`.
    Sign(signing::SignArgs),
    /// Upload an image to an OCI registry as an artifact (REGISTRY/REPO:TAG).
    ///
    /// Credentials, the first found wins (the Docker CLI's order):
    /// `--username NAME --password-stdin`; else, in `$DOCKER_CONFIG/config.json`
    /// (default `~/.docker/config.json`), the registry's `credHelpers` entry, else
    /// `credsStore` (each names a helper: the program `docker-credential-NAME` on
    /// PATH, run as `docker-credential-NAME get`, given 30 s; a helper with no
    /// credentials for the registry means none); else the registry's `auths`
    /// entry; else none (anonymous). Helper secrets are never printed; identity
    /// tokens (browser/SSO logins) are not supported.
    Push(registry::PushArgs),
    /// Download an image from an OCI registry, check it like `verify`, write it atomically.
    ///
    /// Credentials, the first found wins (the Docker CLI's order):
    /// `--username NAME --password-stdin`; else, in `$DOCKER_CONFIG/config.json`
    /// (default `~/.docker/config.json`), the registry's `credHelpers` entry, else
    /// `credsStore` (each names a helper: the program `docker-credential-NAME` on
    /// PATH, run as `docker-credential-NAME get`, given 30 s; a helper with no
    /// credentials for the registry means none); else the registry's `auths`
    /// entry; else none (anonymous). Helper secrets are never printed; identity
    /// tokens (browser/SSO logins) are not supported.
    Pull(registry::PullArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Kernel(args) => kernel_cmd::run(args),
        Command::Build(args) => report(build::run(&args)),
        Command::Inspect(args) => report(inspect::run(&args)),
        Command::Verify(args) => report(verify::run(&args)),
        Command::Rekernel(args) => report(rekernel::run(&args)),
        Command::Warm(args) => report(warm::run(&args)),
        Command::Keygen(args) => report(signing::keygen(&args)),
        Command::Sign(args) => report(signing::sign(&args)),
        Command::Push(args) => report(registry::push(&args)),
        Command::Pull(args) => report(registry::pull(&args)),
    }
}
