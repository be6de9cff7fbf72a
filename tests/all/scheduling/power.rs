//! Power control of physical pool hosts: through the built-in `redfish` plugin, against
//! OpenStack's Redfish emulator (`sushy-emulator --fake`, with HTTP Basic logins), read
//! back with OpenStack's Redfish library (`sushy`); and over IPMI 2.0 by berth itself,
//! against OpenIPMI's BMC simulator (`ipmi_sim`), read back with `ipmitool`. An
//! allocated host is powered on before it is probed, a retired one is powered off.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use super::{answering_port, machine_in};
use crate::replication::api;
use crate::support::*;

const SYSTEM: &str = "27946b59-9e44-4fa7-8e91-f3527a1ef094";

/// `sushy-emulator` with one fake system, powered off, behind a login.
struct Bmc {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Bmc {
    fn start() -> Bmc {
        let found = Command::new("sh")
            .args(["-c", "command -v sushy-emulator"])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "sushy-emulator is not installed; install it with `pip install sushy-tools sushy` (.ci/run does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let hashed = Command::new("python3")
            .args([
                "-c",
                "import bcrypt; print(bcrypt.hashpw(b'bmc password', bcrypt.gensalt()).decode())",
            ])
            .output()
            .unwrap();
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(
            &htpasswd,
            format!("root:{}", String::from_utf8(hashed.stdout).unwrap().trim()),
        )
        .unwrap();
        let config = dir.path().join("emulator.conf");
        std::fs::write(
            &config,
            format!(
                "SUSHY_EMULATOR_FAKE_SYSTEMS = [{{'uuid': '{SYSTEM}', 'name': 'node-1', 'power_state': 'Off', 'nics': []}}]\n\
                 SUSHY_EMULATOR_STATE_DIR = '{}'\nSUSHY_EMULATOR_AUTH_FILE = '{}'\n",
                dir.path().join("state").display(),
                htpasswd.display()
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let child = Command::new("sushy-emulator")
            .args(["--fake", "--config"])
            .arg(&config)
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sushy-emulator did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Bmc {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// The system's power state as OpenStack's Redfish library reads it (`On`, `Off`).
    fn power_state(&self) -> String {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sys, sushy\n\
                 s = sushy.Sushy(sys.argv[1] + '/redfish/v1', username='root', password='bmc password')\n\
                 print(s.get_system('/redfish/v1/Systems/' + sys.argv[2]).power_state.value)",
                &self.url,
                SYSTEM,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

impl Drop for Bmc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What every kind of BMC must give: pool `rack` (whose host's BMC takes `power`, with
/// the right password) powers its host on before probing it and off when its machine is
/// retired; pool `rack-wrong` (the wrong password) fails its create with `refusal` in the
/// reason, never the password, and gives the host back. `state` reads the BMC as its own
/// tools do; `on` and `off` are what they say. Answers berth, for the caller's own
/// checks.
struct Scenario<'a> {
    power: serde_json::Value,
    user: &'a str,
    password: &'a str,
    wrong: &'a str,
    refusal: &'a str,
    on: &'a str,
    off: &'a str,
    /// The longest the BMC takes to switch off.
    settle: Duration,
}

async fn powered_pool_host(scenario: Scenario<'_>, state: impl Fn() -> String) -> Berth {
    assert_eq!(state(), scenario.off);
    let berth = Berth::start();
    let port = answering_port();
    for (name, password) in [("rack", scenario.password), ("rack-wrong", scenario.wrong)] {
        api(
            &berth,
            Method::POST,
            "/api/v1/clusters",
            Some(
                json!({"name": name, "provider": "static-pool", "projects": ["team"],
                        "credentials": {"bmc-username": scenario.user, "bmc-password": password}}),
            ),
        )
        .await;
        api(
            &berth,
            Method::POST,
            &format!("/api/v1/clusters/{name}/hosts"),
            Some(
                json!([{"name": "node-1", "address": "127.0.0.1", "ssh_port": port,
                         "cpus": 8, "memory_mib": 16384, "power": scenario.power}]),
            ),
        )
        .await;
    }

    let created = api(
        &berth,
        Method::POST,
        "/api/v1/machines",
        Some(
            json!({"project": "team", "cluster": "rack", "spec": {"cpus": 4, "memory_mib": 8192}}),
        ),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    machine_in(&berth, &id, "online").await;
    assert_eq!(state(), scenario.on);
    let history = api(
        &berth,
        Method::GET,
        &format!("/api/v1/machines/{id}/history"),
        None,
    )
    .await;
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["to"] == "initializing" && t["reason"] == "powered on"),
        "{history:#}"
    );

    // The BMC refuses the other pool's password: its create fails, with the reason, and
    // the host goes back to its pool.
    let refused = api(
        &berth,
        Method::POST,
        "/api/v1/machines",
        Some(json!({"project": "team", "cluster": "rack-wrong", "spec": {"cpus": 4, "memory_mib": 8192}})),
    )
    .await;
    let failed = machine_in(&berth, refused["id"].as_str().unwrap(), "failed").await;
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains(scenario.refusal), "{failed:#}");
    assert!(!reason.contains(scenario.wrong), "{failed:#}");
    let hosts = api(
        &berth,
        Method::GET,
        "/api/v1/clusters/rack-wrong/hosts",
        None,
    )
    .await;
    assert_eq!(hosts[0]["machine"], serde_json::Value::Null, "{hosts:#}");

    // Stopped: the BMC switches the host off, and the host stays the machine's (and
    // its project's, charged as allocated). Started: on again, probed, online.
    let (status, stopping) = super::call(
        &client(),
        &berth,
        Method::POST,
        &format!("/api/v1/machines/{id}/stop"),
        Some(json!({"reason": "weekend"})),
    )
    .await;
    assert_eq!(status, 202, "{stopping}");
    assert_eq!(stopping["state"], "stopping", "{stopping}");
    let stopped = machine_in(&berth, &id, "stopped").await;
    assert_eq!(stopped["reason"], "powered off", "{stopped:#}");
    assert_eq!(state(), scenario.off);
    let hosts = api(&berth, Method::GET, "/api/v1/clusters/rack/hosts", None).await;
    assert_eq!(hosts[0]["machine"], id.as_str(), "{hosts:#}");
    let (status, starting) = super::call(
        &client(),
        &berth,
        Method::POST,
        &format!("/api/v1/machines/{id}/start"),
        None,
    )
    .await;
    assert_eq!(status, 202, "{starting}");
    assert_eq!(starting["state"], "starting", "{starting}");
    machine_in(&berth, &id, "online").await;
    assert_eq!(state(), scenario.on);
    let moves = super::moves(&berth, &id).await;
    assert_eq!(
        moves[moves.len() - 6..],
        [
            "online",
            "stopping",
            "stopped",
            "starting",
            "initializing",
            "online"
        ],
        "{moves:?}"
    );

    // Retired: released and powered off.
    api(
        &berth,
        Method::POST,
        &format!("/api/v1/machines/{id}/retire"),
        Some(json!({})),
    )
    .await;
    machine_in(&berth, &id, "retired").await;
    let deadline = Instant::now() + scenario.settle;
    while state() != scenario.off {
        assert!(Instant::now() < deadline, "the host stayed on");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    berth
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_host_is_powered_on_before_it_serves_and_off_when_released() {
    let bmc = Bmc::start();
    let scenario = Scenario {
        power: json!({"plugin": "redfish", "endpoint": bmc.url, "system": SYSTEM}),
        user: "root",
        password: "bmc password",
        wrong: "not it",
        refusal: "auth",
        on: "On",
        off: "Off",
        // The emulator takes up to 11 s to switch.
        settle: Duration::from_secs(40),
    };
    powered_pool_host(scenario, || bmc.power_state()).await;
}

/// OpenIPMI's BMC simulator (`ipmi_sim`) answering IPMI 2.0 (RMCP+) on a loopback UDP
/// port, with one account (administrator: see `scheduling/ipmi.rs`); its chassis power is a file its control script
/// keeps. Read back with `ipmitool`, the usual IPMI client.
struct IpmiBmc {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

const IPMI_USER: &str = "ops";
const IPMI_PASSWORD: &str = "bmc-pass-1";

impl IpmiBmc {
    fn start() -> IpmiBmc {
        for tool in ["ipmi_sim", "ipmitool"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                found,
                "{tool} is not installed; install Debian's openipmi and ipmitool (.ci/run does)"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .unwrap()
            .port();
        let state = dir.path().join("power");
        std::fs::write(&state, "0").unwrap();
        // ipmi_sim's chassis control: `<mc> get <param>...` prints `param:value` lines,
        // `<mc> set <param> <value>...` sets them.
        let control = dir.path().join("chassis");
        std::fs::write(
            &control,
            format!(
                "#!/bin/sh\nstate='{}'\nshift\nop=$1; shift\n\
                 if [ \"$op\" = get ]; then for p in \"$@\"; do [ \"$p\" = power ] && echo \"power:$(cat \"$state\")\"; done; fi\n\
                 if [ \"$op\" = set ]; then while [ $# -gt 1 ]; do [ \"$1\" = power ] && echo \"$2\" > \"$state\"; shift 2; done; fi\n",
                state.display()
            ),
        )
        .unwrap();
        std::process::Command::new("chmod")
            .args(["+x"])
            .arg(&control)
            .status()
            .unwrap();
        let lan = dir.path().join("lan.conf");
        std::fs::write(
            &lan,
            format!(
                "name \"berth-test\"\nset_working_mc 0x20\n  startlan 1\n    addr 127.0.0.1 {port}\n    priv_limit admin\n\
                 \x20   allowed_auths_callback none md5\n    allowed_auths_user md5\n    allowed_auths_operator md5\n    allowed_auths_admin md5\n\
                 \x20   guid a123456789abcdefa123456789abcdef\n  endlan\n  chassis_control \"{} 0x20\"\n\
                 \x20 user 2 true \"{IPMI_USER}\" \"{IPMI_PASSWORD}\" admin 10 md5\n",
                control.display()
            ),
        )
        .unwrap();
        let emu = dir.path().join("bmc.emu");
        std::fs::write(
            &emu,
            "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n",
        )
        .unwrap();
        let child = Command::new("ipmi_sim")
            .arg("-c")
            .arg(&lan)
            .arg("-f")
            .arg(&emu)
            .arg("-n")
            .arg("-s")
            .arg(dir.path().join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let bmc = IpmiBmc { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while bmc.ipmitool(IPMI_PASSWORD, "status").is_err() {
            assert!(Instant::now() < deadline, "ipmi_sim did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        bmc
    }

    /// `ipmitool chassis power <what>` with `password`: its output, or its error.
    fn ipmitool(&self, password: &str, what: &str) -> Result<String, String> {
        let out = Command::new("ipmitool")
            .args(["-I", "lanplus", "-H", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", IPMI_USER, "-P", password, "-N", "1", "-R", "1"])
            .args(["chassis", "power", what])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    /// `on` or `off`, as ipmitool reads it.
    fn power_state(&self) -> String {
        let status = self.ipmitool(IPMI_PASSWORD, "status").unwrap();
        status.rsplit(' ').next().unwrap().to_string()
    }
}

impl Drop for IpmiBmc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_host_behind_an_ipmi_bmc_is_powered_on_and_off_by_berth() {
    let bmc = IpmiBmc::start();
    // The BMC refuses the wrong password to its usual client too.
    assert!(bmc.ipmitool("not-it-at-all", "status").is_err());
    let scenario = Scenario {
        power: json!({"plugin": "ipmi", "endpoint": format!("127.0.0.1:{}", bmc.port)}),
        user: IPMI_USER,
        password: IPMI_PASSWORD,
        wrong: "not-it-at-all",
        refusal: "refused the pool's bmc-username",
        on: "on",
        off: "off",
        settle: Duration::from_secs(30),
    };
    let berth = powered_pool_host(scenario, || bmc.power_state()).await;

    // An IPMI address is a host and a port, not a URL.
    let (status, problem) = super::call(
        &client(),
        &berth,
        Method::POST,
        "/api/v1/clusters/rack/hosts",
        Some(
            json!([{"name": "node-2", "address": "127.0.0.1", "ssh_port": 22,
                      "cpus": 8, "memory_mib": 16384,
                      "power": {"plugin": "ipmi", "endpoint": "https://10.0.9.5/"}}]),
        ),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
}
