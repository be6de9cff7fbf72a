//! Package versions side by side: plugins built for `berth:plugin@0.1.0` keep loading,
//! answering calls by name, planning replication and serving a cluster's machines on a
//! host whose newest version is 0.3.0, and the built-ins (built with the SDK) are 0.3.0.

use serde_json::json;

use crate::plugins::{invoke, load_ok, plan_request};
use crate::replication::{berth_endpoint, create_policy, resolve, run_policy_and_wait};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_built_for_the_previous_version_keeps_working() {
    let a = Berth::start();
    let b = Berth::start();
    let loaded = load_ok(&a, "berth-test-legacy").await;
    assert_eq!(loaded["world_version"], "0.1.0", "{loaded:#}");
    let star = client()
        .get(format!("{}/api/v1/plugins/star", a.url))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(star["world_version"], "0.3.0", "{star:#}");

    // Called by name, with the same JSON as a 0.3.0 strategy.
    let (status, out) = invoke(&client(), &a.url, "legacy", "plan", plan_request()).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        out["ok"]["waves"][0]["transfers"].as_array().unwrap().len(),
        3,
        "{out}"
    );

    // And planning a real replication job through the typed path.
    berth_endpoint(&a, "b", &b.url).await;
    create_policy(
        &a,
        json!({"name": "old-planner", "endpoints": ["b"], "strategy": "legacy"}),
    )
    .await;
    let http = client();
    let (digest, _) = push_image(&http, &a.url, "team/app", "v1", 11).await;
    let job = run_policy_and_wait(&a, "old-planner").await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["plan"]["strategy"], "legacy");
    assert_eq!(
        resolve(&http, &b.url, "team/app", "v1").await.as_deref(),
        Some(digest.as_str())
    );
}
