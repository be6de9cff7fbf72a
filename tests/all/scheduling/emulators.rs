//! The cloud emulators berth's provider plugins are tested against, proven by each vendor's
//! own client: when the SDK's calls fail against an emulator, the emulator is wrong, not
//! the plugin.

use std::process::Command;

use crate::support::*;

/// Runs `tests/emulators/<proof>` with `argument`; it exits 0, having said "every call
/// behaved", when the vendor's SDK found the emulator to behave as the cloud.
async fn prove(proof: &str, sdk_module: &str, sdk_package: &str, argument: String) {
    let found = Command::new("python3")
        .args(["-c", &format!("import {sdk_module}")])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{sdk_package} is not installed; install it with `pip install {sdk_package}` (.ci/run does)"
    );
    let proof = emulators_dir().join(proof);
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(proof)
            .arg(argument)
            .output()
            .expect("run python3")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{sdk_package} failed against the emulator:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("every call behaved"), "{stdout}");
}

/// openstacksdk (and keystoneauth1 under it) signs in with a password and with an
/// application credential, lists flavors and images, creates a server and waits until it
/// is ACTIVE, pages a listing, stops, starts and deletes servers and waits until they are
/// gone, sees a server the cloud could not place go ERROR, and is refused a wrong
/// password: `tests/emulators/openstack_sdk_proof.py` against the emulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstacksdk_speaks_to_the_openstack_emulator_as_to_a_cloud() {
    let cloud = OpenStackCloud::start();
    prove(
        "openstack_sdk_proof.py",
        "openstack",
        "openstacksdk",
        cloud.url.clone(),
    )
    .await;
}

/// alibabacloud-ecs20140526 (tea-openapi under it, signing with ACS3-HMAC-SHA256) reads
/// regions, zones, instance types, images and a price; runs instances with a client token
/// twice and gets the same ones (a changed request with the same token is refused); waits
/// until they are Running; pages by number and by token, filtered by tag; stops, starts and
/// deletes (with Force while running); and sees ECS's codes for a wrong secret, an unknown
/// key, a request changed after signing, a clock 16 minutes off, throttling and no stock:
/// `tests/emulators/aliyun_ecs_sdk_proof.py` against the emulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alibaba_cloud_sdk_speaks_to_the_ecs_emulator_as_to_ecs() {
    let cloud = EcsCloud::start();
    prove(
        "aliyun_ecs_sdk_proof.py",
        "alibabacloud_ecs20140526",
        "alibabacloud-ecs20140526",
        cloud.address.clone(),
    )
    .await;
}
