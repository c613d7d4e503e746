//! `cargo xtask images`: builds the test images and pushes them to the lab registry.
//!
//! The images (`busybox:latest`, `web:latest`, `web:v2`) are built from Debian's
//! `busybox-static` into an OCI layout (plus a tar of it for air-gapped import), and the Docker
//! Hub look-alikes (`library/busybox`, `library/nginx`) from Debian packages into another, then
//! pushed to the registry of a running lab, from inside that lab's external namespace.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ekube_lab::DEFAULT_NAME;
use ekube_lab::hub;
use ekube_lab::images::{self, BUSYBOX, DEFAULT_LAYOUT};

#[derive(clap::Args)]
pub struct ImagesArgs {
    /// OCI layout directory to write (its tar goes next to it).
    #[arg(long, default_value = DEFAULT_LAYOUT)]
    out: PathBuf,
    /// OCI layout of the Debian-based Docker Hub look-alikes (built when missing or stale).
    #[arg(long, default_value = hub::DEFAULT_LAYOUT)]
    hub_out: PathBuf,
    /// The static busybox binary to build from.
    #[arg(long, default_value = BUSYBOX)]
    busybox: PathBuf,
    /// Lab whose registry receives the images.
    #[arg(long, default_value = DEFAULT_NAME)]
    name: String,
    /// Only build; do not push.
    #[arg(long)]
    no_push: bool,
}

pub fn run(args: ImagesArgs) -> Result<()> {
    crate::lab::init_tracing();
    let built = images::build(&args.out, &args.busybox)
        .with_context(|| format!("building images into {}", args.out.display()))?;
    let hub_built = hub::ensure(&args.hub_out)
        .with_context(|| format!("building images into {}", args.hub_out.display()))?;
    for image in built.iter().chain(&hub_built) {
        println!("built {}  {}", image.reference(), image.manifest_digest);
    }
    println!(
        "layout {} (archive {})",
        args.out.display(),
        images::archive_path(&args.out).display()
    );
    if args.no_push {
        return Ok(());
    }
    let ext = format!("{}-ext", args.name);
    if !std::path::Path::new("/run/netns").join(&ext).exists() {
        println!(
            "lab {} is not running: not pushed (`cargo xtask lab up` pushes them)",
            args.name
        );
        return Ok(());
    }
    images::push(&ext, &args.out, &built)
        .and_then(|()| images::push(&ext, &args.hub_out, &hub_built))
        .with_context(|| format!("pushing to the registry of lab {}", args.name))?;
    println!("pushed to {}", ekube_lab::REGISTRY);
    Ok(())
}
