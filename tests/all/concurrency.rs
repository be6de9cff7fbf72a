//! Many clients at once: overlapping layers and one contended tag.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_clients_push_overlapping_layers_and_the_same_tag() {
    let mut berth = Berth::start();
    let http = client();
    let shared = bytes(400, 512 * 1024); // every client pushes this base layer
    let mut tasks = Vec::new();
    for c in 0..32u64 {
        let (http, base, shared) = (http.clone(), berth.url.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let own = bytes(500 + c, 64 * 1024 + c as usize);
            let config = format!("{{\"client\":{c}}}").into_bytes();
            // Half the clients upload in chunks, half monolithically.
            let mut blobs = Vec::new();
            for data in [&shared, &own, &config] {
                if c % 2 == 0 {
                    blobs.push(push_blob(&http, &base, "team/busy", data).await);
                } else {
                    let r = http
                        .post(format!("{base}/v2/team/busy/blobs/uploads/"))
                        .send()
                        .await
                        .unwrap();
                    let upload = format!("{base}{}", r.headers()["location"].to_str().unwrap());
                    let mid = data.len() / 2;
                    let r = http
                        .patch(&upload)
                        .header("content-range", format!("0-{}", mid - 1))
                        .body(data[..mid].to_vec())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                    let r = http
                        .put(format!("{upload}?digest={}", sha256(data)))
                        .header("content-range", format!("{mid}-{}", data.len() - 1))
                        .body(data[mid..].to_vec())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 201);
                    blobs.push(sha256(data));
                }
            }
            let manifest = image_manifest(&config, &[&shared, &own]);
            put_manifest(
                &http,
                &base,
                "team/busy",
                "latest",
                "application/vnd.oci.image.manifest.v1+json",
                &manifest,
            )
            .await;
            (blobs, sha256(&manifest))
        }));
    }
    let mut manifests = Vec::new();
    let mut blobs = Vec::new();
    for t in tasks {
        let (b, m) = t.await.unwrap();
        blobs.extend(b);
        manifests.push(m);
    }
    // The tag points at one of the pushed manifests, and every one is readable by digest.
    let latest = http
        .head(berth.v2("team/busy/manifests/latest"))
        .send()
        .await
        .unwrap();
    let winner = latest.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(manifests.contains(&winner));
    for m in &manifests {
        assert_eq!(
            http.head(berth.v2(&format!("team/busy/manifests/{m}")))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    blobs.sort();
    blobs.dedup();
    assert_eq!(blobs.len(), 1 + 32 + 32);
    for b in &blobs {
        let got = http
            .get(berth.v2(&format!("team/busy/blobs/{b}")))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&sha256(&got), b);
    }
    berth.kill9();
    let (ok, report) = berth.fsck(false);
    assert!(ok && report.contains("0 problems"), "{report}");
}
