//! The cloud emulators berth's provider plugins are tested against, proven by each vendor's
//! own client: when the SDK's calls fail against an emulator, the emulator is wrong, not
//! the plugin.

use std::process::Command;

use crate::support::*;

/// openstacksdk (and keystoneauth1 under it) signs in with a password and with an
/// application credential, lists flavors and images, creates a server and waits until it
/// is ACTIVE, pages a listing, stops, starts and deletes servers and waits until they are
/// gone, sees a server the cloud could not place go ERROR, and is refused a wrong
/// password: `tests/emulators/openstack_sdk_proof.py` against the emulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstacksdk_speaks_to_the_openstack_emulator_as_to_a_cloud() {
    let cloud = OpenStackCloud::start();
    let proof = emulators_dir().join("openstack_sdk_proof.py");
    let found = Command::new("python3")
        .args(["-c", "import openstack"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "openstacksdk is not installed; install it with `pip install openstacksdk` (.ci/run does)"
    );
    let url = cloud.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(proof)
            .arg(url)
            .output()
            .expect("run python3")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "openstacksdk failed against the emulator:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("every call behaved"), "{stdout}");
}
