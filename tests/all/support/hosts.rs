//! SSH test hosts: a real `sshd` per host, each in a network namespace of its own with a
//! veth on a bridge (the bridge in a namespace of its own too, so the machine's bridge
//! netfilter settings never see the traffic), a mount namespace with an overlay over a
//! Debian root filesystem built once per run with `debootstrap`, its own hostname, host
//! key and PID namespace. A host may do what a container may: `net.*` sysctls apply; the
//! clock, kernel modules, reboot and the global `/proc/sys` are refused. The machine
//! running the tests is never touched, and everything is torn down when the [`Lab`] is
//! dropped — however the test ends. Needs root, `debootstrap`, `ssh-keygen` and `ssh`
//! (`.ci/run` installs them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

mod images;

pub use images::{package_repository, root_filesystem};

/// The namespaces of every lab are named with this prefix, then this process's id.
const PREFIX: &str = "berth-lab-";

/// A new ed25519 key pair at `path` (and `path.pub`), commented `comment`.
fn new_key(path: &Path, comment: &str) {
    run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            comment,
            "-f",
            &path.to_string_lossy(),
        ],
    );
}

/// Waits until `address` accepts connections (`open`) or refuses them, at most `limit`;
/// `what` names it when it does not.
fn await_port(address: &str, open: bool, limit: Duration, what: impl Fn() -> String) {
    let address: std::net::SocketAddr = address.parse().unwrap();
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() != open
    {
        assert!(Instant::now() < deadline, "{}", what());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `program args`, which must succeed; its stdout.
fn run(program: &str, args: &[&str]) -> String {
    let mut command = Command::new(program);
    command.args(args);
    checked(command, program, args)
}

/// Runs `command` (`program args`, for messages), which must succeed; its stdout.
fn checked(mut command: Command, program: &str, args: &[&str]) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `program args`, whatever comes of it (teardown).
fn try_run(program: &str, args: &[&str]) {
    let _ = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Kills what runs in network namespace `ns`, then deletes it.
fn delete_namespace(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            try_run("kill", &["-9", pid]);
        }
    }
    try_run("ip", &["netns", "del", ns]);
}

/// Deletes the namespaces labs of dead test processes left behind (a test binary killed
/// before its labs were dropped).
fn sweep_leftovers() {
    static SWEPT: OnceLock<()> = OnceLock::new();
    SWEPT.get_or_init(|| {
        let listed = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for line in listed.lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or_default();
            let alive = Path::new("/proc").join(pid).exists();
            if !alive {
                delete_namespace(name);
            }
        }
    });
}

/// One SSH host of a lab.
pub struct TestHost {
    /// `h1`, `h2`…: also its hostname.
    pub name: String,
    /// Its address on the lab's bridge.
    pub ip: String,
    /// Its SSH port.
    pub port: u16,
    /// Its host key's fingerprint, `SHA256:<base64>`.
    pub host_key: String,
    namespace: String,
    dir: PathBuf,
    sshd: Option<Child>,
}

impl TestHost {
    /// `ip:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// What its sshd printed (it runs with `-e`).
    pub fn sshd_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

/// A bridge and the hosts on it.
pub struct Lab {
    tag: String,
    bridge: String,
    subnet: String,
    dir: tempfile::TempDir,
    hosts: Vec<TestHost>,
    /// The lab's apt mirror, where it has one: its directory, port and server.
    mirror: Option<(PathBuf, u16, Option<Child>)>,
}

static LABS: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// A lab of `hosts` hosts, each answering SSH as root with [`Lab::client_key`].
    pub fn start(hosts: usize) -> Lab {
        Lab::start_with_mirror(hosts, &[])
    }

    /// A lab whose hosts install packages from the lab's own apt mirror, served on the
    /// bridge, which holds `packages` and what they need (none: no mirror).
    pub fn start_with_mirror(hosts: usize, packages: &[&str]) -> Lab {
        assert!((1..=200).contains(&hosts));
        let root = root_filesystem();
        sweep_leftovers();
        let number = LABS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{pid}-{number}");
        // Each lab its own /24, so that labs side by side route apart.
        let subnet = format!("10.{}.{}", 64 + (pid % 64), number % 250);
        let bridge = format!("{PREFIX}{tag}-br");
        let dir = tempfile::tempdir().unwrap();
        let mut lab = Lab {
            tag,
            bridge: bridge.clone(),
            subnet: subnet.clone(),
            dir,
            hosts: Vec::new(),
            mirror: None,
        };
        // The bridge, in its namespace, and an uplink from this machine's namespace so
        // the tests (and berth) reach the hosts.
        run("ip", &["netns", "add", &bridge]);
        let in_bridge = |args: &[&str]| {
            let mut all = vec!["-n", bridge.as_str()];
            all.extend_from_slice(args);
            run("ip", &all);
        };
        in_bridge(&["link", "add", "br0", "type", "bridge"]);
        in_bridge(&["link", "set", "br0", "up"]);
        in_bridge(&["link", "set", "lo", "up"]);
        let uplink = lab.uplink();
        run(
            "ip",
            &[
                "link", "add", &uplink, "type", "veth", "peer", "name", "up0", "netns", &bridge,
            ],
        );
        in_bridge(&["link", "set", "up0", "master", "br0", "up"]);
        run(
            "ip",
            &["addr", "add", &format!("{subnet}.1/24"), "dev", &uplink],
        );
        run("ip", &["link", "set", &uplink, "up"]);
        // The client's key, which every host's root accepts.
        let key = lab.dir.path().join("client");
        new_key(&key, "berth-test");
        if !packages.is_empty() {
            let debs = package_repository(packages);
            let port = std::net::TcpListener::bind(format!("{subnet}.1:0"))
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            lab.mirror = Some((debs, port, None));
            lab.start_mirror();
        }
        for i in 1..=hosts {
            let host = lab.make_host(root, i);
            lab.hosts.push(host);
        }
        for i in 0..hosts {
            lab.await_sshd(i);
        }
        lab
    }

    /// The name of the uplink veth in this machine's namespace (at most 15 bytes).
    fn uplink(&self) -> String {
        let hash = self
            .tag
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        format!("bl{hash:08x}")
    }

    fn make_host(&self, root: &Path, i: usize) -> TestHost {
        let name = format!("h{i}");
        let namespace = format!("{PREFIX}{}-{name}", self.tag);
        let dir = self.dir.path().join(&name);
        let upper = dir.join("upper");
        for sub in ["etc/ssh/sshd_config.d", "root/.ssh"] {
            std::fs::create_dir_all(upper.join(sub)).unwrap();
        }
        std::fs::create_dir_all(dir.join("work")).unwrap();
        std::fs::create_dir_all(dir.join("merged")).unwrap();
        let host_key = upper.join("etc/ssh/ssh_host_ed25519_key");
        new_key(&host_key, &name);
        let printed = run(
            "ssh-keygen",
            &[
                "-l",
                "-E",
                "sha256",
                "-f",
                &format!("{}.pub", host_key.display()),
            ],
        );
        let fingerprint = printed.split_whitespace().nth(1).unwrap().to_string();
        std::fs::copy(
            self.dir.path().join("client.pub"),
            upper.join("root/.ssh/authorized_keys"),
        )
        .unwrap();
        run(
            "chmod",
            &["700", &upper.join("root/.ssh").to_string_lossy()],
        );
        if let Some((_, port, _)) = &self.mirror {
            std::fs::create_dir_all(upper.join("etc/apt")).unwrap();
            std::fs::write(
                upper.join("etc/apt/sources.list"),
                format!("deb [trusted=yes] http://{}.1:{port}/ ./\n", self.subnet),
            )
            .unwrap();
        }
        std::fs::write(
            upper.join("etc/ssh/sshd_config.d/berth-test.conf"),
            "UsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             HostKey /etc/ssh/ssh_host_ed25519_key\n",
        )
        .unwrap();
        run("ip", &["netns", "add", &namespace]);
        let veth = format!("v{i}");
        run(
            "ip",
            &[
                "-n",
                &self.bridge,
                "link",
                "add",
                &veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &namespace,
            ],
        );
        run(
            "ip",
            &[
                "-n",
                &self.bridge,
                "link",
                "set",
                &veth,
                "master",
                "br0",
                "up",
            ],
        );
        let ip = format!("{}.{}", self.subnet, 10 + i);
        run("ip", &["-n", &namespace, "link", "set", "lo", "up"]);
        run(
            "ip",
            &[
                "-n",
                &namespace,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ],
        );
        run("ip", &["-n", &namespace, "link", "set", "eth0", "up"]);
        let mut host = TestHost {
            name,
            ip,
            port: 22,
            host_key: fingerprint,
            namespace,
            dir,
            sshd: None,
        };
        self.start_sshd(root, &mut host);
        host
    }

    /// Starts host `host`'s sshd: a PID, mount and UTS namespace inside its network
    /// namespace, the overlay root, and sshd as its PID 1.
    fn start_sshd(&self, root: &Path, host: &mut TestHost) {
        let merged = host.dir.join("merged");
        // /proc/sys is read-only but for net.*, as in a container; the clock, modules and
        // reboot are out of the capability bounding set.
        let script = format!(
            "set -e\n\
             mount -t overlay overlay -o lowerdir={root},upperdir={upper},workdir={work} {m}\n\
             mount -t proc proc {m}/proc\n\
             mount --bind {m}/proc/sys {m}/proc/sys\n\
             mount --bind {m}/proc/sys/net {m}/proc/sys/net\n\
             mount -o remount,bind,ro {m}/proc/sys\n\
             mount --rbind /dev {m}/dev\n\
             mount -t sysfs -o ro sysfs {m}/sys\n\
             mount -t tmpfs tmpfs {m}/tmp\n\
             mount -t tmpfs tmpfs {m}/run\n\
             mkdir -p {m}/run/sshd\n\
             hostname {name}\n\
             exec chroot {m} /usr/sbin/sshd -D -e\n",
            root = root.display(),
            upper = host.dir.join("upper").display(),
            work = host.dir.join("work").display(),
            m = merged.display(),
            name = host.name,
        );
        let log = std::fs::File::create(host.dir.join("sshd.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &host.namespace])
            .args([
                "unshare",
                "--mount",
                "--uts",
                "--pid",
                "--fork",
                "--propagation",
                "private",
            ])
            .args([
                "setpriv",
                "--bounding-set",
                "-sys_time,-sys_module,-sys_boot",
                "--",
            ])
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start a test host");
        host.sshd = Some(child);
    }

    /// Waits until host `i` answers on its SSH port.
    fn await_sshd(&self, i: usize) {
        let host = &self.hosts[i];
        await_port(&host.address(), true, Duration::from_secs(20), || {
            format!("test host {} did not start: {}", host.name, host.sshd_log())
        });
    }

    /// Serves the lab's mirror (again), on its port.
    pub fn start_mirror(&mut self) {
        let subnet = self.subnet.clone();
        let Some((debs, port, server)) = &mut self.mirror else {
            panic!("this lab has no mirror");
        };
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                &format!("{subnet}.1"),
            ])
            .arg("--directory")
            .arg(&*debs)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 serves the lab's mirror");
        *server = Some(child);
        await_port(
            &format!("{subnet}.1:{port}"),
            true,
            Duration::from_secs(20),
            || "the lab's mirror did not start".into(),
        );
    }

    /// Takes the lab's mirror down: the hosts' package installs fail as with a dead
    /// mirror.
    pub fn stop_mirror(&mut self) {
        if let Some((_, _, server)) = self.mirror.as_mut()
            && let Some(mut child) = server.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The lab's hosts.
    pub fn hosts(&self) -> &[TestHost] {
        &self.hosts
    }

    /// The private key (OpenSSH format) every host's root accepts.
    pub fn client_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("client")).unwrap()
    }

    /// Stops host `i`'s sshd (and everything in the host): its address stays, and refuses.
    pub fn stop_sshd(&mut self, i: usize) {
        let host = &mut self.hosts[i];
        if let Some(mut child) = host.sshd.take() {
            // `unshare` ignores SIGTERM: kill the host's PID 1, its child, with it.
            if let Ok(out) = Command::new("ip")
                .args(["netns", "pids", &host.namespace])
                .output()
            {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    try_run("kill", &["-9", pid]);
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            // Its listening socket closes once the killed sshd is gone.
            await_port(&host.address(), false, Duration::from_secs(10), || {
                format!("{} still answers", host.name)
            });
        }
    }

    /// Starts host `i`'s sshd again, with the files it had.
    pub fn start_sshd_again(&mut self, i: usize) {
        let root = root_filesystem();
        let mut host = std::mem::replace(
            &mut self.hosts[i],
            TestHost {
                name: String::new(),
                ip: String::new(),
                port: 0,
                host_key: String::new(),
                namespace: String::new(),
                dir: PathBuf::new(),
                sshd: None,
            },
        );
        // The overlay's work directory must be empty for a new mount.
        let _ = std::fs::remove_dir_all(host.dir.join("work"));
        std::fs::create_dir_all(host.dir.join("work")).unwrap();
        self.start_sshd(root, &mut host);
        self.hosts[i] = host;
        self.await_sshd(i);
    }

    /// Runs `command` on host `i` as root with the system's own `ssh` client (the tests'
    /// independent view of a host): its exit code and stdout.
    pub fn ssh(&self, i: usize, command: &str) -> (i32, String) {
        let host = &self.hosts[i];
        let known = self.dir.path().join("known_hosts");
        std::fs::write(
            &known,
            format!(
                "{} {}",
                host.ip,
                std::fs::read_to_string(host.dir.join("upper/etc/ssh/ssh_host_ed25519_key.pub"))
                    .unwrap()
            ),
        )
        .unwrap();
        let out = Command::new("ssh")
            .args(["-i", &self.dir.path().join("client").to_string_lossy()])
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .args(["-o", &format!("UserKnownHostsFile={}", known.display())])
            .args([
                "-p",
                &host.port.to_string(),
                &format!("root@{}", host.ip),
                command,
            ])
            .output()
            .expect("ssh");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_mirror();
        for i in 0..self.hosts.len() {
            self.stop_sshd(i);
        }
        for host in &self.hosts {
            delete_namespace(&host.namespace);
        }
        // The uplink goes with its peer in the bridge's namespace.
        delete_namespace(&self.bridge);
        try_run("ip", &["link", "del", &self.uplink()]);
    }
}
