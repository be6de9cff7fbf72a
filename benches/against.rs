//! `BERTH_BENCH_AGAINST=/path/to/berth cargo bench --bench registry`: this build against
//! another (an earlier commit's `target/release/berth`) on the embedded default, in
//! rounds that alternate which build goes first (see `registry.rs`'s documentation).

use bytes::Bytes;

use super::support::{Server, data, sha256, start_berth, start_berth_binary};
use super::{
    blob_round_trip, client_with, manifest_gets, measure_auth, peak_rss_kib, public_bench_project,
    push_small_image, small_uploads,
};

/// This build against `other`, alternating, on the embedded default (see the module's
/// documentation).
pub fn against(other: &std::path::Path) {
    const BLOB: usize = 256 * 1024 * 1024;
    let rounds: usize = std::env::var("BERTH_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(6);
    let blob = data(BLOB, 43);
    let digest = sha256(&blob);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // [metric][build] -> one figure per round.
    let names = [
        "256 MiB blob upload, MB/s",
        "256 MiB blob download, MB/s",
        "manifest GET, 64 concurrent, req/s",
        "4 KiB blob uploads, 16 concurrent, /s",
        "token issuance, Basic, 16 concurrent, /s",
        "manifest GET, bearer token, 64 concurrent, req/s",
        "peak RSS, MiB (lower is better)",
    ];
    let mut figures = vec![[Vec::new(), Vec::new()]; names.len()];
    for round in 0..rounds {
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for build in order {
            let server = if build == 0 {
                start_berth()
            } else {
                start_berth_binary(other)
            };
            let measured = runtime.block_on(measure_core(&server, &blob, &digest));
            println!(
                "round {round} {}: {}",
                ["this", "other"][build],
                measured
                    .iter()
                    .map(|v| format!("{v:.1}"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            for (metric, value) in measured.into_iter().enumerate() {
                figures[metric][build].push(value);
            }
        }
    }
    let median = |values: &[f64]| {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        }
    };
    println!();
    println!("this build against {} ({rounds} rounds)", other.display());
    println!(
        "| metric | this (median, min–max) | other (median, min–max) | ratio of medians | median of round ratios |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (metric, name) in names.iter().enumerate() {
        let [this, that] = &figures[metric];
        let ratios: Vec<f64> = this.iter().zip(that).map(|(a, b)| a / b).collect();
        let spread = |v: &[f64]| {
            let (lo, hi) = v
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
            format!("{:.1} ({lo:.1}–{hi:.1})", median(v))
        };
        println!(
            "| {name} | {} | {} | {:.3}x | {:.3}x |",
            spread(this),
            spread(that),
            median(this) / median(that),
            median(&ratios)
        );
    }
}

/// The embedded-default figures of one server: blob upload and download (MB/s), manifest
/// GETs and 4 KiB uploads per second, tokens issued and bearer-token manifest GETs per
/// second, peak RSS (MiB).
async fn measure_core(server: &Server, blob: &Bytes, digest: &str) -> Vec<f64> {
    let http = client_with(server.auth.as_deref());
    let base = server.base.clone();
    public_bench_project(&http, &base).await;
    let (upload, download) = blob_round_trip(&http, &base, blob, digest).await;
    push_small_image(&http, &base).await;
    let manifests = manifest_gets(client_with(None), base.clone()).await;
    let small = small_uploads(http.clone(), base.clone()).await;
    let basic = server.auth.as_deref().expect("berth logs in");
    let (tokens, bearer, _) = measure_auth(&base, basic).await;
    let rss = peak_rss_kib(server.child.id()) as f64 / 1024.0;
    vec![upload, download, manifests, small, tokens, bearer, rss]
}
