//! `berth fsck --data-dir PATH [--config FILE] [--repair] [--output json]`.
//!
//! Exit status: 0 when clean (or everything found was repaired), 1 when problems remain.
//! The metadata is where the configuration says (`metadata.backend`): the data
//! directory's redb database, which admits one process at a time, so stop the server
//! first; or PostgreSQL, which a check may read while nodes serve, but stop every node
//! before `--repair`, which removes staging files of uploads it cannot tell from abandoned.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::{Config, Overrides};
use crate::registry::fsck;
use crate::storage::blob::fs::FsBlobStore;
use crate::storage::paths::DataPaths;

/// Flags of `berth fsck`.
#[derive(Debug, Args)]
pub struct FsckArgs {
    /// The data directory to check.
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The configuration file, for where the metadata is (`metadata.*`; the
    /// `BERTH_METADATA__*` environment variables work too).
    #[arg(long, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
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
    let config = Config::load(
        args.config.as_deref(),
        &Overrides {
            data_dir: Some(args.data_dir.clone()),
            ..Overrides::default()
        },
    )?;
    let metadata = crate::server::open_metadata(&config, &paths).map_err(|e| {
        if config.metadata.backend == crate::config::MetadataBackend::Redb {
            e.context("stop the berth server using this data directory first: its metadata database admits one process at a time")
        } else {
            e
        }
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
