//! berth's SSH client against real sshd hosts: pinned host keys (a mismatch refuses),
//! trust on first contact, commands whose every argument arrives as itself, exit codes,
//! signals, stdout and stderr apart, stdin, variables, output limits and time limits, and
//! what a refused, silent or unknown host looks like.

use std::time::{Duration, Instant};

use berth::hostinit::ssh::{self, ClientKey, Command, SshError, Target, Trust};

use crate::support::hosts::Lab;

fn key(text: &str) -> ClientKey {
    ssh::client_key(text).unwrap()
}

/// A key no host knows.
fn stranger() -> ClientKey {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stranger");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    key(&std::fs::read_to_string(path).unwrap())
}

fn root_at(address: String) -> Target {
    Target {
        address,
        user: "root".into(),
    }
}

fn command(argv: &[&str]) -> Command {
    Command {
        argv: argv.iter().map(|a| a.to_string()).collect(),
        timeout: Duration::from_secs(20),
        ..Command::default()
    }
}

const CONNECT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_on_a_pinned_host_exactly_as_given() {
    let lab = Lab::start(1);
    let host = &lab.hosts()[0];
    let client = key(&lab.client_key());
    let connection = ssh::connect(
        &root_at(host.address()),
        &client,
        Trust::Pinned(host.host_key.clone()),
        CONNECT,
    )
    .await
    .unwrap();
    assert_eq!(connection.host_key(), host.host_key);

    let out = connection.run(&command(&["hostname"])).await.unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), host.name);

    // Every argument reaches the program as itself: nothing is read by the remote shell.
    let hostile = [
        "two words",
        "it's",
        "$(touch /tmp/pwned)",
        "`touch /tmp/pwned`",
        "a;touch /tmp/pwned",
        "line\nbreak",
        "*",
        "",
        "ünïcödé",
    ];
    let mut argv = vec!["printf", "%s\\0"];
    argv.extend(hostile);
    let out = connection.run(&command(&argv)).await.unwrap();
    let words: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .split_terminator('\0')
        .map(str::to_owned)
        .collect();
    assert_eq!(words, hostile);
    let (code, _) = lab.ssh(0, "test ! -e /tmp/pwned");
    assert_eq!(code, 0, "an argument was run as a command");

    // Exit codes, stdout and stderr apart, stdin, variables.
    let out = connection
        .run(&command(&["sh", "-c", "echo out; echo err >&2; exit 3"]))
        .await
        .unwrap();
    assert_eq!(
        (out.exit_code, out.stdout.as_slice(), out.stderr.as_slice()),
        (Some(3), &b"out\n"[..], &b"err\n"[..])
    );
    let mut cat = command(&["cat"]);
    cat.stdin = Some(b"fed to stdin\n".to_vec());
    assert_eq!(
        connection.run(&cat).await.unwrap().stdout,
        b"fed to stdin\n"
    );
    let mut env = command(&["printenv", "SITE"]);
    env.env = vec![("SITE".into(), "berth lab; $(x)".into())];
    assert_eq!(
        connection.run(&env).await.unwrap().stdout,
        b"berth lab; $(x)\n"
    );
    // Killed by a signal: no exit code, the signal named.
    let out = connection
        .run(&command(&["sh", "-c", "kill -9 $$"]))
        .await
        .unwrap();
    assert_eq!(out.exit_code, None, "{out:?}");
    assert!(out.signal.as_deref().unwrap().contains("KILL"), "{out:?}");
    // Output past the limit is counted, not kept.
    let out = connection
        .run(&command(&["head", "-c", "3145728", "/dev/zero"]))
        .await
        .unwrap();
    assert_eq!(out.stdout.len(), ssh::OUTPUT_LIMIT);
    assert_eq!(out.dropped, 3 * 1024 * 1024 - ssh::OUTPUT_LIMIT as u64);

    // A command over its time limit is cut off at the limit, and the connection goes on.
    let mut slow = command(&["sleep", "30"]);
    slow.timeout = Duration::from_millis(500);
    let started = Instant::now();
    let refused = connection.run(&slow).await.unwrap_err();
    assert!(matches!(refused, SshError::Timeout { .. }), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(connection.run(&command(&["true"])).await.unwrap().success());

    // Commands side by side on one connection.
    let runs = (0..8).map(|i| {
        let connection = &connection;
        async move {
            let n = i.to_string();
            connection
                .run(&command(&["sh", "-c", "sleep 0.2; echo $0", &n]))
                .await
                .unwrap()
                .stdout
        }
    });
    let outs = futures::future::join_all(runs).await;
    for (i, out) in outs.iter().enumerate() {
        assert_eq!(out, format!("{i}\n").as_bytes());
    }
    connection.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_host_key_a_wrong_client_key_a_refusing_or_silent_host_each_say_so() {
    let mut lab = Lab::start(2);
    let client = key(&lab.client_key());
    let (first, second) = (&lab.hosts()[0], &lab.hosts()[1]);

    // The second host answering where the first's key is pinned: refused, both named.
    let refused = ssh::connect(
        &root_at(second.address()),
        &client,
        Trust::Pinned(first.host_key.clone()),
        CONNECT,
    )
    .await
    .err()
    .expect("a mismatched host key is refused");
    match &refused {
        SshError::HostKeyMismatch {
            pinned, offered, ..
        } => {
            assert_eq!(pinned, &first.host_key);
            assert_eq!(offered, &second.host_key);
        }
        other => panic!("{other}"),
    }

    // First contact learns the key (to pin from then on).
    let learned = ssh::connect(
        &root_at(second.address()),
        &client,
        Trust::FirstContact,
        CONNECT,
    )
    .await
    .unwrap();
    assert_eq!(learned.host_key(), second.host_key);
    learned.close().await;

    // A key the host does not know, and a user it does not have; text that is no key.
    assert!(matches!(
        ssh::client_key("not a key"),
        Err(SshError::BadKey(_))
    ));
    let refused = ssh::connect(
        &root_at(first.address()),
        &stranger(),
        Trust::Pinned(first.host_key.clone()),
        CONNECT,
    )
    .await
    .err()
    .unwrap();
    assert!(
        matches!(refused, SshError::AuthRejected { .. }),
        "{refused}"
    );
    let nobody = Target {
        address: first.address(),
        user: "nobody-here".into(),
    };
    let refused = ssh::connect(
        &nobody,
        &client,
        Trust::Pinned(first.host_key.clone()),
        CONNECT,
    )
    .await
    .err()
    .unwrap();
    assert!(
        matches!(refused, SshError::AuthRejected { .. }),
        "{refused}"
    );

    // sshd down: refused at once.
    let address = first.address();
    let pinned = first.host_key.clone();
    lab.stop_sshd(0);
    let started = Instant::now();
    let refused = ssh::connect(
        &root_at(address.clone()),
        &client,
        Trust::Pinned(pinned.clone()),
        CONNECT,
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(refused, SshError::Unreachable { .. }), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // Something that takes the connection and never speaks SSH: given up at the limit.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_address = silent.local_addr().unwrap().to_string();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let started = Instant::now();
    let refused = ssh::connect(
        &root_at(silent_address),
        &client,
        Trust::FirstContact,
        Duration::from_secs(1),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(refused, SshError::Timeout { .. }), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(3));
    holder.abort();

    // Back up, with its files and its key: pinned, it connects again.
    lab.start_sshd_again(0);
    let again = ssh::connect(&root_at(address), &client, Trust::Pinned(pinned), CONNECT)
        .await
        .unwrap();
    assert!(again.run(&command(&["true"])).await.unwrap().success());
}

/// The hosts are what they claim: their own hostname and root, `net.*` sysctls theirs,
/// the machine's clock, kernel parameters and network left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_hosts_are_isolated_from_the_machine_running_the_tests() {
    let lab = Lab::start(2);
    let (code, out) = lab.ssh(1, "hostname; . /etc/os-release; echo $ID $VERSION_ID");
    assert_eq!((code, out.as_str()), (0, "h2\ndebian 12\n"));
    let before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let (code, _) = lab.ssh(0, "sysctl -w net.ipv4.ip_forward=1");
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        before
    );
    assert_eq!(lab.ssh(0, "cat /proc/sys/net/ipv4/ip_forward").1, "1\n");
    assert_eq!(lab.ssh(1, "cat /proc/sys/net/ipv4/ip_forward").1, "0\n");
    let (code, _) = lab.ssh(0, "sysctl -w vm.swappiness=11");
    assert_ne!(code, 0, "a global kernel parameter must be refused");
    let (code, _) = lab.ssh(0, "date -s 2020-01-01");
    assert_ne!(code, 0, "the clock must be refused");
    // A file written on one host is that host's alone.
    assert_eq!(lab.ssh(0, "echo mine > /etc/berth-mark").0, 0);
    assert_ne!(lab.ssh(1, "test -e /etc/berth-mark").0, 0);
    assert!(!std::path::Path::new("/etc/berth-mark").exists());
}
