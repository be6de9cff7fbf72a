//! Crash safety: `kill -9` a real berth in the middle of writes; after restart nothing
//! acknowledged is lost, nothing half-written is visible, and `berth fsck` is clean.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::support::*;

const MIB: usize = 1024 * 1024;

/// A request body the test feeds by hand, so it can kill the server mid-body.
fn paced_body() -> (mpsc::Sender<Result<Vec<u8>, std::io::Error>>, reqwest::Body) {
    let (tx, rx) = mpsc::channel(4);
    (tx, reqwest::Body::wrap_stream(ReceiverStream::new(rx)))
}

fn assert_fsck_clean(berth: &mut Berth) {
    berth.kill9();
    let (ok, report) = berth.fsck(false);
    assert!(ok, "fsck found problems:\n{report}");
    assert!(report.contains("0 problems"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_a_200_mib_upload_then_resume_from_the_acknowledged_offset() {
    let mut berth = Berth::start();
    let http = client();
    let data = bytes(300, 200 * MIB);
    let digest = sha256(&data);

    let r = http
        .post(berth.v2("team/crash/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    // 64 MiB acknowledged.
    let r = http
        .patch(format!("{}{location}", berth.url))
        .header("content-range", format!("0-{}", 64 * MIB - 1))
        .body(data[..64 * MIB].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // The next chunk is cut by kill -9 after 40 MiB have gone out.
    let (tx, body) = paced_body();
    let url = format!("{}{location}", berth.url);
    let http2 = http.clone();
    let request = tokio::spawn(async move { http2.patch(url).body(body).send().await });
    for piece in data[64 * MIB..104 * MIB].chunks(MIB) {
        tx.send(Ok(piece.to_vec())).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    berth.kill9();
    drop(tx);
    assert!(
        request
            .await
            .unwrap()
            .map(|r| r.status() != 202)
            .unwrap_or(true),
        "an interrupted chunk must not be acknowledged"
    );

    let (ok, report) = berth.fsck(false);
    assert!(ok, "fsck after the crash:\n{report}");

    berth.restart();
    let http = client(); // connections to the old process are dead
    // Half-written content is invisible; the session reports exactly what was acknowledged.
    assert_eq!(
        http.head(berth.v2(&format!("team/crash/blobs/{digest}")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let r = http
        .get(format!("{}{location}", berth.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], format!("0-{}", 64 * MIB - 1).as_str());

    // Resume from there and finish.
    let r = http
        .patch(format!("{}{location}", berth.url))
        .header("content-range", format!("{}-{}", 64 * MIB, 200 * MIB - 1))
        .body(data[64 * MIB..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http
        .put(format!("{}{location}?digest={digest}", berth.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let got = http
        .get(berth.v2(&format!("team/crash/blobs/{digest}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256(&got), digest);
    assert_fsck_clean(&mut berth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_a_monolithic_upload_leaves_nothing_visible() {
    let mut berth = Berth::start();
    let http = client();
    let data = bytes(301, 50 * MIB);
    let digest = sha256(&data);
    let (tx, body) = paced_body();
    let url = berth.v2(&format!("team/crash/blobs/uploads/?digest={digest}"));
    let http2 = http.clone();
    let request = tokio::spawn(async move { http2.post(url).body(body).send().await });
    for piece in data[..30 * MIB].chunks(MIB) {
        tx.send(Ok(piece.to_vec())).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    berth.kill9();
    drop(tx);
    let _ = request.await;
    berth.restart();
    let http = client(); // connections to the old process are dead
    assert_eq!(
        http.head(berth.v2(&format!("team/crash/blobs/{digest}")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // The same upload simply starts again.
    assert_eq!(
        push_blob(&http, &berth.url, "team/crash", &data).await,
        digest
    );
    assert_fsck_clean(&mut berth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_manifest_puts_keeps_every_acknowledged_manifest() {
    let mut berth = Berth::start();
    let http = client();
    let config = b"{\"os\":\"linux\"}".to_vec();
    let layer = bytes(302, 10_000);
    push_blob(&http, &berth.url, "team/crash", &config).await;
    push_blob(&http, &berth.url, "team/crash", &layer).await;

    // Writers PUT distinct manifests (each tagged) as fast as they can until the kill.
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (http, base) = (http.clone(), berth.url.clone());
        let (config, layer) = (config.clone(), layer.clone());
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..10_000u64 {
                let mut m: serde_json::Value =
                    serde_json::from_slice(&image_manifest(&config, &[&layer])).unwrap();
                m["annotations"] = serde_json::json!({"writer": w.to_string(), "n": i.to_string()});
                let body = serde_json::to_vec(&m).unwrap();
                let tag = format!("w{w}-{i}");
                let sent = http
                    .put(format!("{base}/v2/team/crash/manifests/{tag}"))
                    .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 201 => acknowledged.push((tag, body)),
                    _ => break,
                }
            }
            acknowledged
        }));
    }
    // A 4 MiB manifest whose body is still arriving when the server dies.
    let (tx, slow_body) = paced_body();
    let url = berth.v2("team/crash/manifests/half-written");
    let http2 = http.clone();
    let slow = tokio::spawn(async move {
        http2
            .put(url)
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(slow_body)
            .send()
            .await
    });
    tx.send(Ok(b"{\"schemaVersion\":2,".to_vec()))
        .await
        .unwrap();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    berth.kill9();
    drop(tx);
    let _ = slow.await;
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.unwrap());
    }
    assert!(
        acknowledged.len() > 10,
        "the writers should have been acknowledged a few times before the kill"
    );

    let (ok, report) = berth.fsck(false);
    assert!(ok, "fsck after the crash:\n{report}");
    berth.restart();
    let http = client(); // connections to the old process are dead
    for (tag, body) in &acknowledged {
        let r = http
            .get(berth.v2(&format!("team/crash/manifests/{tag}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged manifest {tag} lost");
        assert!(
            r.bytes().await.unwrap().as_ref() == body.as_slice(),
            "manifest {tag} changed"
        );
    }
    assert_eq!(
        http.get(berth.v2("team/crash/manifests/half-written"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_fsck_clean(&mut berth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_upload_in_flight_finish() {
    let mut berth = Berth::start();
    let http = client();
    let data = bytes(303, 8 * MIB);
    let r = http
        .post(berth.v2("team/term/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let upload = format!("{}{}", berth.url, r.headers()["location"].to_str().unwrap());
    let (tx, body) = paced_body();
    let http2 = http.clone();
    let url = upload.clone();
    let request = tokio::spawn(async move { http2.patch(url).body(body).send().await });
    let (first, rest) = data.split_at(4 * MIB);
    tx.send(Ok(first.to_vec())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // SIGTERM while the body is half sent; the rest arrives afterwards.
    let terminated = tokio::task::spawn_blocking(move || {
        let ok = berth.terminate();
        (berth, ok)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(Ok(rest.to_vec())).await.unwrap();
    drop(tx);
    let response = request
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.headers()["range"],
        format!("0-{}", data.len() - 1).as_str()
    );
    let (mut berth, clean_exit) = terminated.await.unwrap();
    assert!(clean_exit, "berth exits 0 on SIGTERM");

    // After a restart the session resumes where the acknowledged bytes end.
    berth.restart();
    let http = client(); // connections to the old process are dead
    let r = http
        .put(format!("{upload}?digest={}", sha256(&data)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}
