//! The `oci-client` crate as a second real client: push and pull, chunked and monolithic.

use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::support::*;

fn oci(monolithic: bool) -> Client {
    install_crypto();
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        use_monolithic_push: monolithic,
        ..ClientConfig::default()
    })
}

async fn push_and_pull(monolithic: bool) {
    let berth = Berth::start();
    let client = oci(monolithic);
    let reference: Reference = format!("{}/team/ocic:v1", berth.addr).parse().unwrap();
    let layers = vec![
        ImageLayer::oci_v1_gzip(bytes(100, 3 * 1024 * 1024 + 5), None),
        ImageLayer::oci_v1_gzip(bytes(101, 10), None),
    ];
    let config = Config::oci_v1(br#"{"architecture":"amd64","os":"linux"}"#.to_vec(), None);
    client
        .push(&reference, &layers, config.clone(), &admin_auth(), None)
        .await
        .expect("push");

    let pulled = client
        .pull(
            &reference,
            &admin_auth(),
            vec![oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE],
        )
        .await
        .expect("pull");
    assert_eq!(pulled.layers.len(), 2);
    let mut got: Vec<String> = pulled.layers.iter().map(|l| sha256(&l.data)).collect();
    let mut want: Vec<String> = layers.iter().map(|l| sha256(&l.data)).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "pulled layers differ from pushed ones");
    assert!(pulled.config.data == config.data, "pulled config differs");
    let tags = client
        .list_tags(&reference, &admin_auth(), None, None)
        .await
        .unwrap();
    assert_eq!(tags.tags, vec!["v1".to_owned()]);
}

#[tokio::test]
async fn oci_client_pushes_and_pulls_with_chunked_uploads() {
    push_and_pull(false).await;
}

#[tokio::test]
async fn oci_client_pushes_and_pulls_with_monolithic_uploads() {
    push_and_pull(true).await;
}

#[tokio::test]
async fn oci_client_streams_a_chunked_blob_and_reads_it_back() {
    let berth = Berth::start();
    let client = oci(false);
    let reference: Reference = format!("{}/team/stream:v1", berth.addr).parse().unwrap();
    let data = bytes(102, 20 * 1024 * 1024 + 3);
    let chunks: Vec<oci_client::errors::Result<bytes::Bytes>> = data
        .chunks(1 << 20)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    client
        .store_auth_if_needed(reference.resolve_registry(), &admin_auth())
        .await;
    let pushed = client
        .push_blob_stream_chunked(&reference, futures::stream::iter(chunks))
        .await
        .expect("stream push");
    assert_eq!(pushed.blob_digest, sha256(&data));
    assert_eq!(pushed.size, data.len() as u64);

    let layer = oci_client::manifest::OciDescriptor {
        digest: pushed.blob_digest.clone(),
        size: data.len() as i64,
        ..Default::default()
    };
    let mut stream = client
        .pull_blob_stream(&reference, &layer)
        .await
        .expect("pull stream");
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert!(got == data, "pulled blob differs");
}

fn admin_auth() -> RegistryAuth {
    RegistryAuth::Basic("admin".into(), ADMIN_PASSWORD.into())
}
