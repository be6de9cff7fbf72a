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

/// What one small upload got acknowledged before the crash.
#[derive(Debug, Clone)]
struct SmallUpload {
    data: Vec<u8>,
    digest: String,
    /// The session's URL, once its PATCH was acknowledged.
    session: Option<String>,
    /// Whether the closing PUT was acknowledged (201).
    created: bool,
}

/// One worker: sessions of POST, PATCH (4 KiB), PUT ?digest, over and over, recording what
/// was acknowledged, until the server dies under it.
async fn small_uploads(
    base: String,
    worker: u64,
    round: u64,
    log: std::sync::Arc<std::sync::Mutex<Vec<SmallUpload>>>,
) {
    let http = client();
    for n in 0.. {
        let data = bytes((round << 40) | (worker << 20) | n, 4096);
        let digest = sha256(&data);
        let index = {
            let mut log = log.lock().unwrap();
            log.push(SmallUpload {
                data: data.clone(),
                digest: digest.clone(),
                session: None,
                created: false,
            });
            log.len() - 1
        };
        let Ok(r) = http
            .post(format!("{base}/v2/team/chaos/blobs/uploads/"))
            .send()
            .await
        else {
            return;
        };
        if r.status() != 202 {
            return;
        }
        let location = format!("{base}{}", r.headers()["location"].to_str().unwrap());
        let Ok(r) = http
            .patch(&location)
            .header("content-range", "0-4095")
            .header("content-type", "application/octet-stream")
            .body(data.clone())
            .send()
            .await
        else {
            return;
        };
        if r.status() != 202 {
            return;
        }
        log.lock().unwrap()[index].session = Some(location.clone());
        let sep = if location.contains('?') { '&' } else { '?' };
        let Ok(r) = http
            .put(format!("{location}{sep}digest={digest}"))
            .send()
            .await
        else {
            return;
        };
        if r.status() != 201 {
            return;
        }
        log.lock().unwrap()[index].created = true;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_while_many_small_uploads_complete_leaves_every_session_whole_or_its_blob_linked() {
    const ROUNDS: u64 = 8;
    const WORKERS: u64 = 16;
    let mut berth = Berth::start();
    let (mut created, mut resumed) = (0usize, 0usize);
    for round in 0..ROUNDS {
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| tokio::spawn(small_uploads(berth.url.clone(), w, round, log.clone())))
            .collect();
        // Vary the moment of the crash from round to round.
        tokio::time::sleep(Duration::from_millis(300 + round * 97 % 400)).await;
        berth.kill9();
        for w in workers {
            let _ = w.await;
        }
        let (ok, report) = berth.fsck(false);
        assert!(ok, "round {round}: fsck after kill -9:\n{report}");
        berth.restart();
        let http = client();
        let uploads = log.lock().unwrap().clone();
        for upload in &uploads {
            let blob = berth.v2(&format!("team/chaos/blobs/{}", upload.digest));
            let present = http.head(&blob).send().await.unwrap().status() == 200;
            if upload.created {
                assert!(
                    present,
                    "round {round}: acknowledged blob {} is gone",
                    upload.digest
                );
                created += 1;
                continue;
            }
            let Some(session) = &upload.session else {
                continue; // nothing of it was acknowledged
            };
            // Its bytes were acknowledged: either the close went through (the answer was
            // lost in the crash) or the session is intact and resumes.
            let status = http.get(session).send().await.unwrap();
            if present {
                assert_eq!(status.status(), 404, "round {round}: {session}");
                continue;
            }
            assert_eq!(
                status.status(),
                204,
                "round {round}: session {session} of acknowledged bytes is gone"
            );
            assert_eq!(status.headers()["range"], "0-4095", "round {round}");
            let sep = if session.contains('?') { '&' } else { '?' };
            let r = http
                .put(format!("{session}{sep}digest={}", upload.digest))
                .send()
                .await
                .unwrap();
            let status = r.status();
            assert_eq!(status, 201, "round {round}: {}", r.text().await.unwrap());
            let got = http.get(&blob).send().await.unwrap().bytes().await.unwrap();
            assert_eq!(got.as_ref(), upload.data.as_slice());
            resumed += 1;
        }
    }
    println!("{created} acknowledged blobs all present, {resumed} sessions resumed after kill -9");
    assert!(created > 0);
    assert_fsck_clean(&mut berth);
}
