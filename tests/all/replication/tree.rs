//! Datacenter trees: each blob once per link, and hops that forward while they receive.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datacenter_tree_one_two_four_carries_each_blob_once_per_link() {
    // root → {a, b}; a → {a1, a2}; b → {b1, b2}: seven instances, one per datacenter.
    let root = Berth::start();
    let names = ["a", "b", "a1", "a2", "b1", "b2"];
    let others: Vec<Berth> = names.iter().map(|_| Berth::start()).collect();
    let mut datacenters = vec![json!({"id": "root"})];
    let mut instances = vec![json!({"id": "root", "datacenter": "root"})];
    for (name, berth) in names.iter().zip(&others) {
        berth_endpoint(&root, name, &berth.url).await;
        let parent = if name.len() == 1 {
            "root".to_string()
        } else {
            name[..1].to_string()
        };
        datacenters.push(json!({"id": name, "parent": parent}));
        instances.push(json!({"id": name, "datacenter": name, "endpoint": name}));
    }
    create_policy(
        &root,
        json!({"name": "tree", "strategy": "tree", "endpoints": names,
               "topology": {"datacenters": datacenters, "instances": instances}}),
    )
    .await;
    let http = client();
    let base_layers = vec![bytes(2000, 400_000)];
    let mut images = Vec::new();
    let mut distinct = std::collections::BTreeSet::new();
    for i in 0..4u64 {
        let (digest, blobs) = push_layered(
            &http,
            &root.url,
            "team/app",
            &format!("v{i}"),
            &base_layers,
            i,
        )
        .await;
        images.push(digest);
        distinct.extend(blobs);
    }
    let done = finished(&root, run_policy(&root, "tree").await).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["plan"]["waves"], 2, "{done:#}");
    for berth in &others {
        for (i, digest) in images.iter().enumerate() {
            assert_eq!(
                resolve(&http, &berth.url, "team/app", &format!("v{i}"))
                    .await
                    .as_deref(),
                Some(digest.as_str()),
                "{}",
                berth.url
            );
        }
    }
    // Per link, the blobs sent: every tree edge carries each distinct blob once, and the
    // root sends only to its two children.
    let mut per_link: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for task in done["task_list"].as_array().unwrap() {
        let link = (
            task["source"].as_str().unwrap().to_string(),
            task["target"].as_str().unwrap().to_string(),
        );
        *per_link.entry(link).or_default() += task["progress"]["blobs_copied"].as_u64().unwrap();
    }
    let expected: Vec<(&str, &str)> = vec![
        ("a", "a1"),
        ("a", "a2"),
        ("b", "b1"),
        ("b", "b2"),
        ("root", "a"),
        ("root", "b"),
    ];
    assert_eq!(
        per_link
            .keys()
            .map(|(s, t)| (s.as_str(), t.as_str()))
            .collect::<Vec<_>>(),
        expected
    );
    for (link, sent) in &per_link {
        assert_eq!(*sent, distinct.len() as u64, "{link:?}: {per_link:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hop_forwarding_what_it_still_receives_stops_when_that_transfer_fails() {
    // root → a → a1, where a refuses the push (its project is gone): the hop a → a1,
    // started early to forward as a receives, is stopped instead of waiting it out.
    let root = Berth::start_configured(&[], QUICK_RETRIES);
    let a = Berth::start();
    let a1 = Berth::start();
    let r = client()
        .delete(format!("{}/api/v1/projects/team", a.url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    berth_endpoint(&root, "a", &a.url).await;
    berth_endpoint(&root, "a1", &a1.url).await;
    chain_tree_policy(&root).await;
    push_image(&client(), &root.url, "team/app", "v1", 1).await;
    let done = finished(&root, run_policy(&root, "tree").await).await;
    assert_eq!(done["status"], "failed", "{done:#}");
    let tasks = done["task_list"].as_array().unwrap();
    let hop = |source: &str| tasks.iter().find(|t| t["source"] == source).unwrap();
    assert_eq!(hop("root")["status"], "failed", "{done:#}");
    assert_eq!(hop("a")["status"], "cancelled", "{done:#}");
    assert_eq!(resolve(&client(), &a1.url, "team/app", "v1").await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tree_hop_forwards_a_blob_while_it_still_arrives() {
    let (root, _a, a1, gate, layer, job) = tree_with_a_half_arrived_layer().await;
    gate.set(Gate::Open);
    let done = finished(&root, job).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let r = client()
        .get(a1.v2(&format!("team/app/blobs/{}", sha256(&layer))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap() == layer, "a1's layer differs");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_forwarded_while_it_arrives_is_not_completed_downstream_when_its_upload_fails() {
    // The held upload to a is cut: a never verifies those bytes, so a1, which was
    // forwarded most of them, must not complete the blob from them; the job's retry
    // brings the whole layer through a new connection.
    let (root, a, mut a1, gate, layer, job) = tree_with_a_half_arrived_layer().await;
    let blob = format!("team/app/blobs/{}", sha256(&layer));
    gate.set(Gate::Cut);
    let done = finished(&root, job).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    for berth in [&a, &a1] {
        let r = client().get(berth.v2(&blob)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.bytes().await.unwrap() == layer, "a layer differs");
    }
    assert!(a1.terminate(), "a1 did not stop cleanly");
    let (clean, report) = a1.fsck(false);
    assert!(clean, "{report}");
}
