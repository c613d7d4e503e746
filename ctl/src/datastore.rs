//! `ekube datastore migrate --from <store> --to <store>`: moves a cluster between the embedded
//! sled store and etcd (either way), with the servers stopped. A store is `sled:<data-dir>` (the
//! server's `--data-dir`; the database is its `db`) or etcd client URLs, comma-separated.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ekube_apiserver::storage::etcd::{Endpoints, EtcdStorage};
use ekube_apiserver::storage::sled::SledStorage;
use ekube_apiserver::storage::{Storage, migrate};

#[derive(clap::Args)]
pub struct DatastoreArgs {
    #[command(subcommand)]
    command: DatastoreCommand,
}

#[derive(clap::Subcommand)]
enum DatastoreCommand {
    /// Copy every object from one datastore into another, empty one. Stop the servers using
    /// either first; objects keep their uids, and get the target's resourceVersions.
    Migrate(MigrateArgs),
}

#[derive(clap::Args)]
struct MigrateArgs {
    /// `sled:<data-dir>` or etcd URLs (`https://10.0.0.1:2379,https://10.0.0.2:2379`).
    #[arg(long)]
    from: String,
    /// `sled:<data-dir>` or etcd URLs; must hold no objects.
    #[arg(long)]
    to: String,
    /// The CA (PEM) of the etcd side's serving certificates.
    #[arg(long)]
    datastore_cafile: Option<PathBuf>,
    /// A client certificate (PEM) for the etcd side.
    #[arg(long)]
    datastore_certfile: Option<PathBuf>,
    /// The key (PEM) of `--datastore-certfile`.
    #[arg(long)]
    datastore_keyfile: Option<PathBuf>,
}

pub async fn run(args: DatastoreArgs) -> Result<()> {
    let DatastoreCommand::Migrate(args) = args.command;
    let from = open(&args.from, &args, false).await?;
    let to = open(&args.to, &args, true).await?;
    let copied = migrate::copy(from.as_ref(), to.as_ref())
        .await
        .with_context(|| format!("migrating {} to {}", args.from, args.to))?;
    println!("copied {copied} objects from {} to {}", args.from, args.to);
    Ok(())
}

async fn open(store: &str, args: &MigrateArgs, create: bool) -> Result<Arc<dyn Storage>> {
    if let Some(dir) = store.strip_prefix("sled:") {
        let db = PathBuf::from(dir).join("db");
        if !create && !db.is_dir() {
            bail!("{store}: no sled database at {}", db.display());
        }
        let sled = SledStorage::open(&db, 1024).with_context(|| {
            format!(
                "opening the sled database at {} (is a server still running on it?)",
                db.display()
            )
        })?;
        return Ok(Arc::new(sled));
    }
    let endpoints = Endpoints {
        urls: Endpoints::parse(store).map_err(anyhow::Error::msg)?,
        ca_file: args.datastore_cafile.clone(),
        cert_file: args.datastore_certfile.clone(),
        key_file: args.datastore_keyfile.clone(),
    };
    let etcd = EtcdStorage::connect(&endpoints, Duration::from_secs(10), 1024).await?;
    Ok(Arc::new(etcd))
}
