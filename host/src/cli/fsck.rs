//! `berth fsck --data-dir PATH [--repair] [--output json]`.
//!
//! Exit status: 0 when clean (or everything found was repaired), 1 when problems remain.
//! Run it with the server stopped: the metadata database admits one process at a time.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::registry::fsck;
use crate::storage::blob::fs::FsBlobStore;
use crate::storage::paths::DataPaths;
use crate::storage::store::Store;

/// Flags of `berth fsck`.
#[derive(Debug, Args)]
pub struct FsckArgs {
    /// The data directory to check.
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Quarantine corrupt blobs and remove metadata that points at nothing.
    #[arg(long)]
    pub repair: bool,
    /// Output format.
    #[arg(long, value_parser = ["table", "json"], default_value = "table")]
    pub output: String,
}

/// Runs the check and prints the report.
pub fn run(args: &FsckArgs) -> anyhow::Result<ExitCode> {
    if !args.data_dir.is_dir() {
        anyhow::bail!("{} is not a data directory", args.data_dir.display());
    }
    let paths = DataPaths::new(&args.data_dir);
    let metadata = Store::redb_at(&paths.metadata_db()).with_context(|| {
        format!(
            "cannot open {}; stop the berth server using it first",
            paths.metadata_db().display()
        )
    })?;
    let store = FsBlobStore::open(paths)?;
    let report = fsck::check(&metadata, &store, args.repair)?;
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for p in &report.problems {
            match &p.repaired {
                Some(r) => println!(
                    "{:<20} {}  {}  [repaired: {r}]",
                    p.kind, p.subject, p.detail
                ),
                None => println!("{:<20} {}  {}", p.kind, p.subject, p.detail),
            }
        }
        println!(
            "checked {} blobs ({} bytes), {} links, {} manifests, {} tags, {} upload sessions; {} unreferenced blobs, {} unacknowledged staging files; {} problems",
            report.blobs_checked,
            report.bytes_checked,
            report.links_checked,
            report.manifests_checked,
            report.tags_checked,
            report.uploads_checked,
            report.unreferenced_blobs,
            report.unacknowledged_staging_files,
            report.problems.len()
        );
    }
    let unrepaired = report.problems.iter().any(|p| p.repaired.is_none());
    Ok(if unrepaired {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
