//! The cloud emulators of `tests/emulators` (no vendor emulator exists for OpenStack or
//! Alibaba Cloud ECS), each started for a test and stopped when it is dropped. Each is
//! proven against its vendor's own SDK (`scheduling::emulators`).

use std::io::{BufRead, BufReader};
use std::ops::Deref;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Where the emulators live.
pub fn emulators_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/emulators")
}

/// One running emulator: a Python script that prints `listening on <port>`.
pub struct Emulator {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// `127.0.0.1:<port>`.
    pub address: String,
}

impl Emulator {
    fn start(script: &str) -> Emulator {
        let mut child = Command::new("python3")
            .arg(emulators_dir().join(script))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {script} (python3): {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("the emulator's first line");
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{script} said {line:?}"))
            .to_string();
        Emulator {
            child,
            url: format!("http://127.0.0.1:{port}"),
            address: format!("127.0.0.1:{port}"),
        }
    }

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

    /// How many requests of `what` the cloud has seen (OpenStack counts
    /// `"METHOD pattern"`, ECS counts actions).
    pub async fn seen(&self, what: &str) -> u64 {
        self.inspect("seen").await[what].as_u64().unwrap_or(0)
    }

    /// `GET /_emulator/<what>`.
    async fn inspect(&self, what: &str) -> serde_json::Value {
        reqwest::get(format!("{}/_emulator/{what}", self.url))
            .await
            .expect("the emulator answers")
            .json()
            .await
            .expect("JSON")
    }

    /// The list `what` of `GET /_emulator/<what>`: everything the cloud holds, as its
    /// operator sees it.
    async fn everything(&self, what: &str) -> Vec<serde_json::Value> {
        self.inspect(what).await[what]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The OpenStack emulator (`openstack_cloud.py`: Keystone v3, Nova 2.1, Glance v2 on one
/// port; Keystone at `/identity/v3`, the rest from its catalog).
pub struct OpenStackCloud(Emulator);

impl OpenStackCloud {
    pub fn start() -> OpenStackCloud {
        OpenStackCloud(Emulator::start("openstack_cloud.py"))
    }

    /// Every server of every project.
    pub async fn servers(&self) -> Vec<serde_json::Value> {
        self.0.everything("servers").await
    }

    /// `method path` on Nova (RegionOne) as user `berth` of project team, through the
    /// public API (another client acting behind berth's back): the status and the answer.
    pub async fn nova(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let http = reqwest::Client::new();
        let auth = serde_json::json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "berth", "domain": {"name": "Default"}, "password": "berth-secret"}}},
            "scope": {"project": {"name": "team", "domain": {"name": "Default"}}}}});
        let signed_in = http
            .post(format!("{}/identity/v3/auth/tokens", self.url))
            .json(&auth)
            .send()
            .await
            .expect("Keystone answers");
        let token = signed_in.headers()["x-subject-token"]
            .to_str()
            .unwrap()
            .to_string();
        let mut request = http
            .request(method, format!("{}/compute/v2.1{path}", self.url))
            .header("x-auth-token", token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.expect("Nova answers");
        let status = answer.status().as_u16();
        (
            status,
            answer.json().await.unwrap_or(serde_json::Value::Null),
        )
    }
}

impl Deref for OpenStackCloud {
    type Target = Emulator;
    fn deref(&self) -> &Emulator {
        &self.0
    }
}

/// The Alibaba Cloud ECS emulator (`aliyun_ecs.py`: the RPC API 2014-05-26, signed with
/// ACS3-HMAC-SHA256).
pub struct EcsCloud(Emulator);

impl EcsCloud {
    pub fn start() -> EcsCloud {
        EcsCloud(Emulator::start("aliyun_ecs.py"))
    }

    /// Every instance of every account.
    pub async fn instances(&self) -> Vec<serde_json::Value> {
        self.0.everything("instances").await
    }

    /// A running instance in `region` made behind the API's back, carrying `tags`; its id.
    pub async fn make_behind_the_back(&self, region: &str, tags: serde_json::Value) -> String {
        let made: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/_emulator/instances", self.url))
            .json(&serde_json::json!({"region": region, "tags": tags}))
            .send()
            .await
            .expect("the emulator answers")
            .json()
            .await
            .expect("JSON");
        made["InstanceId"].as_str().expect("an id").to_string()
    }

    /// Releases instance `id` behind the API's back (the console, another tool).
    pub async fn release_behind_the_back(&self, id: &str) {
        let answer = reqwest::Client::new()
            .post(format!("{}/_emulator/release", self.url))
            .json(&serde_json::json!({"InstanceId": id}))
            .send()
            .await
            .expect("the emulator answers");
        assert!(answer.status().is_success(), "no instance {id}");
    }
}

impl Deref for EcsCloud {
    type Target = Emulator;
    fn deref(&self) -> &Emulator {
        &self.0
    }
}
