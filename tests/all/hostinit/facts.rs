//! Facts gathered from a real host match what the host's own tools say, and only what
//! was asked is gathered.

use std::collections::BTreeSet;
use std::time::Duration;

use berth::hostinit::facts::{self, FactRequest, PackageManager};
use berth::hostinit::ssh::{self, Target, Trust};

use crate::support::hosts::Lab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_are_what_the_hosts_own_tools_say() {
    let lab = Lab::start(1);
    let host = &lab.hosts()[0];
    // Something to find: a file with an awkward name, a sysctl changed.
    assert_eq!(
        lab.ssh(0, "printf 'x=1\\n' > '/etc/odd name'; chmod 600 '/etc/odd name'; sysctl -qw net.core.somaxconn=1234")
            .0,
        0
    );
    let connection = ssh::connect(
        &Target {
            address: host.address(),
            user: "root".into(),
        },
        &ssh::client_key(&lab.client_key()).unwrap(),
        Trust::Pinned(host.host_key.clone()),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let request = FactRequest {
        packages: BTreeSet::from(["openssh-server".into(), "chrony".into()]),
        sysctl: BTreeSet::from(["net.core.somaxconn".into(), "vm.swappiness".into()]),
        services: BTreeSet::from(["ssh".into()]),
        files: BTreeSet::from([
            "/etc/odd name".into(),
            "/etc/ssh".into(),
            "/etc/chrony/chrony.conf".into(),
        ]),
    };
    let found = facts::gather(&connection, &request, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        (found.os_id.as_str(), found.os_version.as_str()),
        ("debian", "12")
    );
    assert_eq!(found.hostname, host.name);
    assert_eq!(found.arch, lab.ssh(0, "uname -m").1.trim());
    assert_eq!(found.kernel, lab.ssh(0, "uname -r").1.trim());
    assert!(!found.systemd, "the test hosts have no systemd");
    assert_eq!(found.package_manager, Some(PackageManager::Apt));
    let sshd_version = lab.ssh(0, "dpkg-query -W -f='${Version}' openssh-server").1;
    assert_eq!(
        found.packages["openssh-server"].as_deref(),
        Some(sshd_version.as_str())
    );
    assert_eq!(found.packages["chrony"], None);
    assert_eq!(found.sysctl["net.core.somaxconn"].as_deref(), Some("1234"));
    assert_eq!(
        found.sysctl["vm.swappiness"].as_deref(),
        Some(lab.ssh(0, "cat /proc/sys/vm/swappiness").1.trim())
    );
    // No service manager: nothing is claimed about services.
    assert!(found.services.is_empty());
    let odd = found.files["/etc/odd name"].as_ref().unwrap();
    assert_eq!(
        odd.sha256.as_deref(),
        Some(
            lab.ssh(0, "sha256sum < '/etc/odd name' | cut -d' ' -f1")
                .1
                .trim()
        )
    );
    assert_eq!((odd.mode, odd.owner.as_str()), (0o600, "root"));
    assert!(found.files["/etc/ssh"].as_ref().unwrap().is_dir());
    assert_eq!(found.files["/etc/chrony/chrony.conf"], None);
    assert_eq!(found.files.len(), 3);
}
