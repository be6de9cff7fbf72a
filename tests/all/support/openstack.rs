//! The OpenStack emulator (`tests/emulators/openstack_cloud.py`: Keystone v3, Nova 2.1,
//! Glance v2 on one port), started for a test and stopped when it is dropped. No vendor
//! emulator exists; this one is proven against openstacksdk
//! (`scheduling::emulators`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Where the emulators live.
pub fn emulators_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/emulators")
}

/// A running OpenStack emulator.
pub struct OpenStackCloud {
    child: Child,
    /// `http://127.0.0.1:<port>`: Keystone at `/identity/v3`, the rest from its catalog.
    pub url: String,
}

impl OpenStackCloud {
    pub fn start() -> OpenStackCloud {
        let mut child = Command::new("python3")
            .arg(emulators_dir().join("openstack_cloud.py"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the OpenStack emulator (python3)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("the emulator's first line");
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the OpenStack emulator said {line:?}"))
            .to_string();
        OpenStackCloud {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl OpenStackCloud {
    /// Tells the emulator to fail (see its module documentation for the faults).
    pub async fn faults(&self, faults: serde_json::Value) {
        let answer = reqwest::Client::new()
            .post(format!("{}/_emulator/faults", self.url))
            .json(&faults)
            .send()
            .await
            .expect("the emulator answers");
        assert!(answer.status().is_success(), "{:?}", answer.text().await);
    }

    /// Every server the cloud holds, as its operator sees them.
    pub async fn servers(&self) -> Vec<serde_json::Value> {
        let all: serde_json::Value = reqwest::get(format!("{}/_emulator/servers", self.url))
            .await
            .expect("the emulator answers")
            .json()
            .await
            .expect("JSON");
        all["servers"].as_array().cloned().unwrap_or_default()
    }

    /// How many requests of `what` (`"METHOD pattern"`, as the emulator counts them) the
    /// cloud has seen.
    pub async fn seen(&self, what: &str) -> u64 {
        let seen: serde_json::Value = reqwest::get(format!("{}/_emulator/seen", self.url))
            .await
            .expect("the emulator answers")
            .json()
            .await
            .expect("JSON");
        seen[what].as_u64().unwrap_or(0)
    }
}

impl Drop for OpenStackCloud {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
