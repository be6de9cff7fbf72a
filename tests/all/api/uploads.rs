//! Blob uploads and downloads: monolithic, chunked, streamed, ranged, mounted, refused.

use super::*;

#[tokio::test]
async fn monolithic_push_then_pull_with_all_headers() {
    let berth = Berth::start();
    let http = client();
    let data = bytes(1, 100_000);
    let digest = push_blob(&http, &berth.url, "team/app", &data).await;

    let head = http
        .head(berth.v2(&format!("team/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "100000");
    assert_eq!(head.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(head.headers()["etag"], format!("\"{digest}\"").as_str());

    let get = http
        .get(berth.v2(&format!("team/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.headers()["content-type"], "application/octet-stream");
    assert_eq!(get.bytes().await.unwrap().as_ref(), data.as_slice());
}

#[tokio::test]
async fn range_requests_on_blobs() {
    let berth = Berth::start();
    let http = client();
    let data = bytes(2, 10_000);
    let digest = push_blob(&http, &berth.url, "team/app", &data).await;
    let url = berth.v2(&format!("team/app/blobs/{digest}"));

    let r = http
        .get(&url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 100-199/10000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[100..200]);

    let r = http
        .get(&url)
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[9990..]);

    let r = http
        .get(&url)
        .header("range", "bytes=20000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */10000");
}

#[tokio::test]
async fn chunked_upload_with_out_of_order_chunk_and_status() {
    let berth = Berth::start();
    let http = client();
    let data = bytes(3, 300_000);
    let digest = sha256(&data);

    let r = http
        .post(berth.v2("team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/v2/team/app/blobs/uploads/"));
    assert_eq!(r.headers()["range"], "0-0");
    let upload = format!("{}{location}", berth.url);

    let r = http
        .patch(&upload)
        .header("content-range", "0-99999")
        .header("content-length", "100000")
        .body(data[..100_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["range"], "0-99999");

    // A chunk that does not start where the last one ended: 416 with the current range.
    let r = http
        .patch(&upload)
        .header("content-range", "150000-199999")
        .body(data[150_000..200_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["range"], "0-99999");
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_INVALID");

    // A malformed Content-Range: 416 too, and nothing changes.
    let r = http
        .patch(&upload)
        .header("content-range", "bogus")
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);

    let r = http.get(&upload).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-99999");

    let r = http
        .patch(&upload)
        .header("content-range", "100000-199999")
        .body(data[100_000..200_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // The last chunk rides on the PUT.
    let r = http
        .put(format!("{upload}?digest={digest}"))
        .header("content-range", "200000-299999")
        .body(data[200_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["location"],
        format!("/v2/team/app/blobs/{digest}").as_str()
    );
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());

    let got = http
        .get(berth.v2(&format!("team/app/blobs/{digest}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), data.as_slice());
    // The session is gone once closed.
    assert_eq!(http.get(&upload).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn a_streamed_patch_with_transfer_encoding_chunked_as_docker_sends_it() {
    let berth = Berth::start();
    let http = client();
    let data = bytes(4, 2 * 1024 * 1024 + 17);
    let digest = sha256(&data);
    let r = http
        .post(berth.v2("team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let upload = format!("{}{}", berth.url, r.headers()["location"].to_str().unwrap());
    // A stream body has no Content-Length: reqwest sends it chunked.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(65_536).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let r = http.patch(&upload).body(body).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.headers()["range"],
        format!("0-{}", data.len() - 1).as_str()
    );
    let r = http
        .put(format!("{upload}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn digest_mismatch_stores_nothing() {
    let berth = Berth::start();
    let http = client();
    let wrong = sha256(b"something else");
    let r = http
        .post(berth.v2(&format!("team/app/blobs/uploads/?digest={wrong}")))
        .body(b"payload".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    for d in [wrong, sha256(b"payload")] {
        assert_eq!(
            http.head(berth.v2(&format!("team/app/blobs/{d}")))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
    }
    // Closing a session with the wrong digest discards it.
    let r = http
        .post(berth.v2("team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let upload = format!("{}{}", berth.url, r.headers()["location"].to_str().unwrap());
    let r = http
        .put(format!("{upload}?digest={}", sha256(b"x")))
        .body(b"y".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    assert_eq!(http.get(&upload).send().await.unwrap().status(), 404);
    // A malformed digest is DIGEST_INVALID too.
    let r = http
        .put(format!("{upload}?digest=sha256:nothex"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
}

#[tokio::test]
async fn upload_sessions_can_be_cancelled_and_unknown_ones_are_refused() {
    let berth = Berth::start();
    let http = client();
    let r = http
        .post(berth.v2("team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let upload = format!("{}{}", berth.url, r.headers()["location"].to_str().unwrap());
    assert_eq!(http.delete(&upload).send().await.unwrap().status(), 204);
    let r = http.patch(&upload).body(vec![1u8; 3]).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    let r = http
        .get(berth.v2("team/app/blobs/uploads/00000000-0000-0000-0000-000000000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    // A session belongs to its repository.
    let r = http
        .post(berth.v2("team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let id = r.headers()["docker-upload-uuid"]
        .to_str()
        .unwrap()
        .to_owned();
    let r = http
        .get(berth.v2(&format!("team/other/blobs/uploads/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    // Ids that are not ours never reach the filesystem.
    let r = http
        .patch(berth.v2("team/app/blobs/uploads/..%2F..%2Fberth.redb"))
        .body(vec![1u8])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn cross_repository_mount_and_fallback() {
    let berth = Berth::start();
    let http = client();
    let data = bytes(30, 5000);
    let digest = push_blob(&http, &berth.url, "team/src", &data).await;
    // Not yet visible in the destination.
    assert_eq!(
        http.head(berth.v2(&format!("team/dst/blobs/{digest}")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let r = http
        .post(berth.v2(&format!(
            "team/dst/blobs/uploads/?mount={digest}&from=team/src"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["location"],
        format!("/v2/team/dst/blobs/{digest}").as_str()
    );
    assert_eq!(
        http.get(berth.v2(&format!("team/dst/blobs/{digest}")))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        data.as_slice()
    );
    // From a repository that does not hold it: a normal session instead.
    let r = http
        .post(berth.v2(&format!(
            "team/dst2/blobs/uploads/?mount={digest}&from=team/nowhere"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/v2/team/dst2/blobs/uploads/")
    );
}

#[tokio::test]
async fn oversized_blobs_are_refused_and_earlier_chunks_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("berth.toml");
    std::fs::write(&cfg, "[registry]\nmax_blob_bytes = 1000\n").unwrap();
    let berth = Berth::start_with(&["--config", cfg.to_str().unwrap()]);
    let http = client();
    let r = http
        .post(berth.v2("team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let upload = format!("{}{}", berth.url, r.headers()["location"].to_str().unwrap());
    let r = http
        .patch(&upload)
        .header("content-range", "0-599")
        .body(vec![7u8; 600])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http
        .patch(&upload)
        .header("content-range", "600-1199")
        .body(vec![7u8; 600])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(error_code(r).await, "SIZE_INVALID");
    let r = http.get(&upload).send().await.unwrap();
    assert_eq!(r.headers()["range"], "0-599");
    let r = http
        .put(format!("{upload}?digest={}", sha256(&[7u8; 600])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn sha512_digests_are_accepted_where_the_client_names_them() {
    let berth = Berth::start();
    let http = client();
    use sha2::Digest as _;
    let data = bytes(90, 7000);
    let digest = format!("sha512:{}", hex::encode(sha2::Sha512::digest(&data)));
    let r = http
        .post(berth.v2(&format!("team/app/blobs/uploads/?digest={digest}")))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let got = http
        .get(berth.v2(&format!("team/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(got.bytes().await.unwrap().as_ref(), data.as_slice());
}

#[tokio::test]
async fn idle_upload_sessions_expire_and_active_ones_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("berth.toml");
    std::fs::write(
        &cfg,
        "[registry]\nupload_ttl_secs = 2\nupload_purge_interval_secs = 1\n",
    )
    .unwrap();
    let berth = Berth::start_with(&["--config", cfg.to_str().unwrap()]);
    let http = client();
    let open = |http: reqwest::Client, url: String| async move {
        let r = http.post(url).send().await.unwrap();
        r.headers()["location"].to_str().unwrap().to_owned()
    };
    let idle = format!(
        "{}{}",
        berth.url,
        open(http.clone(), berth.v2("team/app/blobs/uploads/")).await
    );
    let active = format!(
        "{}{}",
        berth.url,
        open(http.clone(), berth.v2("team/app/blobs/uploads/")).await
    );
    let r = http
        .patch(&idle)
        .header("content-range", "0-9")
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // Keep one session busy with a chunk every half second for five seconds.
    for i in 0..10u64 {
        let r = http
            .patch(&active)
            .header("content-range", format!("{}-{}", i * 10, i * 10 + 9))
            .body(vec![2u8; 10])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "an active session must not expire");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let r = http.get(&idle).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(
        http.get(&active).send().await.unwrap().headers()["range"],
        "0-99"
    );
    // The idle session's staging file is gone; the active one's remains.
    assert_eq!(
        std::fs::read_dir(berth.data_dir.join("uploads"))
            .unwrap()
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_memory_stays_flat_while_a_gibibyte_streams_in() {
    let berth = Berth::start();
    let http = client();
    let pid = berth.child_pid();
    let rss_before = peak_rss_kib(pid);
    // Generated on the fly: neither side ever holds the blob.
    const TOTAL: u64 = 1 << 30;
    const CHUNK: usize = 1 << 20;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let producer = tokio::spawn(async move {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        for i in 0..TOTAL / CHUNK as u64 {
            let chunk = bytes(10_000 + i, CHUNK);
            hasher.update(&chunk);
            tx.send(Ok(chunk)).await.unwrap();
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    });
    let r = http
        .post(berth.v2("team/big/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let upload = format!("{}{}", berth.url, r.headers()["location"].to_str().unwrap());
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let r = http.patch(&upload).body(body).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let digest = producer.await.unwrap();
    let r = http
        .put(format!("{upload}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let grown_mib = (peak_rss_kib(pid) - rss_before) / 1024;
    assert!(
        grown_mib < 48,
        "peak RSS grew by {grown_mib} MiB while 1 GiB streamed in"
    );
}
