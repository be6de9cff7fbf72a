//! One primary to replicas: the star, docker-registry as a peer, filters and namespace
//! mapping, indexes with their children and referrers, schedules, TLS endpoints.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn star_one_primary_to_three_replicas_converges_and_sends_each_blob_once_per_link() {
    let primary = Berth::start();
    let replicas = [Berth::start(), Berth::start(), Berth::start()];
    for (i, r) in replicas.iter().enumerate() {
        berth_endpoint(&primary, &format!("r{i}"), &r.url).await;
    }
    let health = api(
        &primary,
        reqwest::Method::POST,
        "/api/v1/replication/endpoints/r0/check",
        None,
    )
    .await;
    assert_eq!(health["healthy"], true, "{health}");
    create_policy(
        &primary,
        json!({"name": "fan-out", "endpoints": ["r0", "r1", "r2"], "on_change": true}),
    )
    .await;

    // Five images over two shared base layers, pushed to two repositories.
    let http = client();
    let base_layers = vec![bytes(1000, 300_000), bytes(1001, 200_000)];
    let mut images = Vec::new();
    let mut distinct = std::collections::BTreeSet::new();
    for i in 0..5u64 {
        let repo = if i % 2 == 0 {
            "team/app"
        } else {
            "team/tools/builder"
        };
        let tag = format!("v{i}");
        let (digest, blobs) = push_layered(&http, &primary.url, repo, &tag, &base_layers, i).await;
        images.push((repo, tag, digest));
        distinct.extend(blobs);
    }

    for replica in &replicas {
        for (repo, tag, digest) in &images {
            resolves_to(&replica.url, repo, tag, Some(digest)).await;
        }
    }
    // Byte for byte: the manifests (so the digests) and every blob.
    for replica in &replicas {
        for (repo, tag, _) in &images {
            assert_eq!(
                manifest_bytes(&http, &replica.url, repo, tag).await,
                manifest_bytes(&http, &primary.url, repo, tag).await
            );
        }
    }
    let (_, blobs) = push_layered(&http, &primary.url, "team/app", "probe", &base_layers, 0).await;
    for d in &blobs {
        assert_eq!(
            blob_bytes(&http, &replicas[2].url, "team/app", d).await,
            blob_bytes(&http, &primary.url, "team/app", d).await
        );
    }

    // Every job succeeded, and over all of them each distinct blob crossed each link once:
    // blobs shared between images and repositories were skipped or mounted, not resent.
    eventually("the change jobs are over", || async {
        all_jobs(&primary)
            .await
            .iter()
            .all(|j| j["status"] == "succeeded")
    })
    .await;
    let jobs = all_jobs(&primary).await;
    let sent: u64 = jobs
        .iter()
        .map(|j| j["progress"]["blobs_copied"].as_u64().unwrap())
        .sum();
    // The probe image added one config and one layer of its own (seed 0 equals v0's, so
    // nothing new but its tag).
    assert_eq!(sent, distinct.len() as u64 * 3, "{jobs:#?}");

    // A manual run now finds everything there and sends nothing.
    let id = run_policy(&primary, "fan-out").await;
    let done = finished(&primary, id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["progress"]["blobs_copied"], 0, "{done:#}");
    assert_eq!(done["progress"]["bytes"], 0, "{done:#}");
    assert_eq!(
        done["tasks"]["total"],
        6 * 3,
        "six tags to three replicas: {done:#}"
    );
    assert_eq!(done["plan"]["strategy"], "star");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_and_pull_from_docker_registry() {
    let berth = Berth::start();
    let registry = DockerRegistry::start();
    let http = client();
    let open = anonymous_client();
    api(
        &berth,
        reqwest::Method::POST,
        "/api/v1/replication/endpoints",
        Some(json!({"name": "dist", "kind": "distribution", "url": registry.url})),
    )
    .await;

    // Push: berth → docker-registry.
    let (digest, _) = push_image(&http, &berth.url, "team/app", "v1", 1).await;
    create_policy(&berth, json!({"name": "out", "endpoints": ["dist"]})).await;
    let done = finished(&berth, run_policy(&berth, "out").await).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(
        resolve(&open, &registry.url, "team/app", "v1")
            .await
            .as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(
        manifest_bytes(&open, &registry.url, "team/app", "v1").await,
        manifest_bytes(&http, &berth.url, "team/app", "v1").await
    );

    // Pull: docker-registry → berth, into another namespace.
    let (other, _) = push_image(&open, &registry.url, "upstream/base", "1.0", 7).await;
    berth.create_project("mirror", false);
    create_policy(
        &berth,
        json!({"name": "in", "mode": "pull", "endpoints": ["dist"],
               "filters": {"repository": "upstream/**"}, "destination_namespace": "mirror"}),
    )
    .await;
    let done = finished(&berth, run_policy(&berth, "in").await).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(
        resolve(&http, &berth.url, "mirror/base", "1.0")
            .await
            .as_deref(),
        Some(other.as_str())
    );
    assert_eq!(
        done["tasks"]["total"], 1,
        "the filter keeps team/app out: {done:#}"
    );

    // What was pulled in is not pushed back to where it came from by the push policy
    // that follows changes.
    api(
        &berth,
        reqwest::Method::PATCH,
        "/api/v1/replication/policies/out",
        Some(json!({"on_change": true})),
    )
    .await;
    let again = finished(&berth, run_policy(&berth, "in").await).await;
    assert_eq!(again["status"], "succeeded");
    let jobs = api(
        &berth,
        reqwest::Method::GET,
        "/api/v1/replication/jobs?policy=out",
        None,
    )
    .await;
    assert_eq!(
        jobs.as_array().unwrap().len(),
        1,
        "only the manual run: {jobs:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_namespace_mapping_and_deletions_follow_changes() {
    let primary = Berth::start();
    let replica = Berth::start();
    replica.create_project("mirror", false);
    berth_endpoint(&primary, "replica", &replica.url).await;
    create_policy(
        &primary,
        json!({"name": "releases", "endpoints": ["replica"], "on_change": true,
               "replicate_deletions": true,
               "filters": {"project": "team", "repository": "team/app*", "tag": "v*"},
               "destination_namespace": "mirror"}),
    )
    .await;
    let http = client();
    let (v1, _) = push_image(&http, &primary.url, "team/app", "v1", 1).await;
    push_image(&http, &primary.url, "team/app", "latest", 2).await; // tag filtered out
    push_image(&http, &primary.url, "team/other", "v1", 3).await; // repository filtered out
    push_image(&http, &primary.url, "alpha/app", "v1", 4).await; // project filtered out
    let (v2, _) = push_image(&http, &primary.url, "team/app", "v2", 5).await;
    for (tag, digest) in [("v1", &v1), ("v2", &v2)] {
        resolves_to(&replica.url, "mirror/app", tag, Some(digest)).await;
    }
    // Let every job end, then check that nothing filtered out arrived.
    eventually("jobs are over", || async {
        all_jobs(&primary)
            .await
            .iter()
            .all(|j| j["status"] == "succeeded")
    })
    .await;
    assert_eq!(
        resolve(&http, &replica.url, "mirror/app", "latest").await,
        None
    );
    for repo in [
        "mirror/other",
        "team/app",
        "team/other",
        "alpha/app",
        "mirror/app",
    ] {
        if repo == "mirror/app" {
            continue;
        }
        assert_eq!(
            resolve(&http, &replica.url, repo, "v1").await,
            None,
            "{repo}"
        );
    }

    // A tag moved on the primary moves on the replica; a deleted tag is deleted there.
    let (moved, _) = push_image(&http, &primary.url, "team/app", "v1", 9).await;
    resolves_to(&replica.url, "mirror/app", "v1", Some(&moved)).await;
    let r = http
        .delete(format!("{}/v2/team/app/manifests/v2", primary.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    resolves_to(&replica.url, "mirror/app", "v2", None).await;
    // The manifest v2 named is still there by digest: only the tag was deleted.
    assert_eq!(
        resolve(&http, &replica.url, "mirror/app", &v2)
            .await
            .as_deref(),
        Some(v2.as_str())
    );
    // Deleting a manifest by digest deletes it there too.
    let r = http
        .delete(format!("{}/v2/team/app/manifests/{v2}", primary.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    resolves_to(&replica.url, "mirror/app", &v2, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_brings_its_children_referrers_follow_their_subject_schedules_fire_and_old_jobs_go()
 {
    let primary = Berth::start_configured(&[], &[("BERTH_REPLICATION__MAX_FINISHED_JOBS", "3")]);
    let replica = Berth::start();
    berth_endpoint(&primary, "replica", &replica.url).await;
    let http = client();
    // An index of two images, tagged; a signature whose subject is the index, untagged.
    let mut children = Vec::new();
    for seed in [1u64, 2] {
        let (digest, bytes) = push_image(
            &http,
            &primary.url,
            "team/multi",
            &format!("arch{seed}"),
            seed,
        )
        .await;
        children.push(
            json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                             "digest": digest, "size": bytes.len(),
                             "platform": {"architecture": format!("arch{seed}"), "os": "linux"}}),
        );
    }
    // Untag the children, so only the index (and its referrer) can bring them.
    for seed in [1u64, 2] {
        let r = http
            .delete(format!(
                "{}/v2/team/multi/manifests/arch{seed}",
                primary.url
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let index = serde_json::to_vec(&json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": children}))
    .unwrap();
    put_manifest(
        &http,
        &primary.url,
        "team/multi",
        "all",
        "application/vnd.oci.image.index.v1+json",
        &index,
    )
    .await;
    let empty = b"{}".to_vec();
    push_blob(&http, &primary.url, "team/multi", &empty).await;
    let signature_payload = bytes(77, 256);
    push_blob(&http, &primary.url, "team/multi", &signature_payload).await;
    let signature = serde_json::to_vec(&json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(&empty), "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sha256(&signature_payload), "size": 256}],
        "subject": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha256(&index), "size": index.len()}})).unwrap();
    put_manifest(
        &http,
        &primary.url,
        "team/multi",
        &sha256(&signature),
        "application/vnd.oci.image.manifest.v1+json",
        &signature,
    )
    .await;

    // A policy that runs every second: the schedule is the only trigger.
    create_policy(
        &primary,
        json!({"name": "nightly", "endpoints": ["replica"], "schedule": "* * * * * *",
               "filters": {"repository": "team/multi"}}),
    )
    .await;
    eventually("the schedule fires and the job succeeds", || async {
        all_jobs(&primary)
            .await
            .iter()
            .any(|j| j["trigger"]["type"] == "schedule" && j["status"] == "succeeded")
    })
    .await;
    assert_eq!(
        resolve(&http, &replica.url, "team/multi", "all")
            .await
            .as_deref(),
        Some(sha256(&index).as_str())
    );
    for child in &children {
        let d = child["digest"].as_str().unwrap();
        assert_eq!(
            resolve(&http, &replica.url, "team/multi", d)
                .await
                .as_deref(),
            Some(d)
        );
    }
    let referrers: Value = http
        .get(format!(
            "{}/v2/team/multi/referrers/{}",
            replica.url,
            sha256(&index)
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        referrers["manifests"][0]["digest"],
        sha256(&signature),
        "{referrers}"
    );
    assert_eq!(
        manifest_bytes(&http, &replica.url, "team/multi", &sha256(&signature)).await,
        signature
    );

    // It keeps firing; at most three finished jobs are kept.
    eventually("old jobs are removed", || async {
        let ids: Vec<u64> = all_jobs(&primary)
            .await
            .iter()
            .map(|j| j["id"].as_u64().unwrap())
            .collect();
        ids.first().is_some_and(|newest| *newest >= 5) && ids.len() <= 4
    })
    .await;
    let r = client()
        .get(format!("{}/api/v1/replication/jobs/1", primary.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the first job is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_endpoints_tags_left_alone_without_override_and_cancelling_a_running_job() {
    // A replica serving TLS with a certificate no system trusts.
    let tmp = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    std::fs::write(tmp.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(tmp.path().join("key.pem"), &key_pem).unwrap();
    let secure = Berth::start_with(&[
        "--tls-cert",
        tmp.path().join("cert.pem").to_str().unwrap(),
        "--tls-key",
        tmp.path().join("key.pem").to_str().unwrap(),
    ]);
    install_crypto();
    let https = {
        use base64::Engine;
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"));
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Basic {basic}").parse().unwrap(),
        );
        reqwest::Client::builder()
            .default_headers(headers)
            .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
            .build()
            .unwrap()
    };
    let r = https
        .post(format!("{}/api/v1/projects", secure.url))
        .json(&json!({"name": "team"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let primary = Berth::start_configured(&[], QUICK_RETRIES);
    berth_endpoint(&primary, "secure", &secure.url).await;
    let check = api(
        &primary,
        reqwest::Method::POST,
        "/api/v1/replication/endpoints/secure/check",
        None,
    )
    .await;
    assert_eq!(check["healthy"], false, "{check}");
    assert!(
        check["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("certificate"),
        "{check}"
    );
    api(
        &primary,
        reqwest::Method::PATCH,
        "/api/v1/replication/endpoints/secure",
        Some(json!({"ca_cert": cert_pem})),
    )
    .await;
    let check = api(
        &primary,
        reqwest::Method::POST,
        "/api/v1/replication/endpoints/secure/check",
        None,
    )
    .await;
    assert_eq!(check["healthy"], true, "{check}");

    // Without override, a destination tag that points elsewhere is left alone, and the
    // task says so.
    let http = client();
    let (v1, _) = push_image(&http, &primary.url, "team/app", "v1", 1).await;
    push_image(&http, &primary.url, "team/app", "v2", 2).await;
    let (theirs, _) = push_image(&https, &secure.url, "team/app", "v2", 3).await;
    create_policy(
        &primary,
        json!({"name": "keep", "endpoints": ["secure"], "override_existing": false}),
    )
    .await;
    let done = finished(&primary, run_policy(&primary, "keep").await).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(
        resolve(&https, &secure.url, "team/app", "v1")
            .await
            .as_deref(),
        Some(v1.as_str())
    );
    assert_eq!(
        resolve(&https, &secure.url, "team/app", "v2")
            .await
            .as_deref(),
        Some(theirs.as_str())
    );
    let notes: Vec<&str> = done["task_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["note"].as_str())
        .collect();
    assert!(notes.iter().any(|n| n.contains("left alone")), "{done:#}");

    // A job cancelled while it runs stops: what had not run is cancelled, and it is
    // final.
    let slow_replica = Berth::start();
    let proxy = FaultyProxy::start(&slow_replica.addr, Fault::Slow(400)).await;
    berth_endpoint(&primary, "slow", &format!("http://{}", proxy.addr)).await;
    for i in 0..10u64 {
        push_image(&http, &primary.url, "team/many", &format!("t{i}"), 100 + i).await;
    }
    create_policy(
        &primary,
        json!({"name": "bulk", "endpoints": ["slow"], "concurrency": 1}),
    )
    .await;
    let id = run_policy(&primary, "bulk").await;
    eventually("the job runs", || async {
        job(&primary, id).await["status"] == "running"
    })
    .await;
    let cancelled = api(
        &primary,
        reqwest::Method::POST,
        &format!("/api/v1/replication/jobs/{id}/cancel"),
        None,
    )
    .await;
    assert_eq!(cancelled["status"], "cancelled");
    let done = finished(&primary, id).await;
    assert_eq!(done["status"], "cancelled", "{done:#}");
    assert!(
        done["tasks"]["cancelled"].as_u64().unwrap() >= 5,
        "{done:#}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        job(&primary, id).await["status"],
        "cancelled",
        "a cancelled job stays cancelled"
    );
}
