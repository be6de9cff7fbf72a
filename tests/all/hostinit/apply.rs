//! Actions applied to a real host, each judged on fresh facts: applied once it changes,
//! applied again it is `ok`; in check mode it shows the diff and touches nothing; what
//! cannot be done where the host runs says so; what fails keeps its output.

use std::time::Duration;

use berth::hostinit::actions::{Action, PackageState};
use berth::hostinit::apply::{self, ActionReport, Mode, Outcome};
use berth::hostinit::facts;
use berth::hostinit::ssh::{self, Connection, Target, Trust};

use crate::support::hosts::Lab;

const LIMIT: Duration = Duration::from_secs(60);

async fn connect(lab: &Lab, i: usize) -> Connection {
    let host = &lab.hosts()[i];
    ssh::connect(
        &Target {
            address: host.address(),
            user: "root".into(),
        },
        &ssh::client_key(&lab.client_key()).unwrap(),
        Trust::Pinned(host.host_key.clone()),
        Duration::from_secs(10),
    )
    .await
    .unwrap()
}

/// `action` in `mode`, on facts gathered just before, as the pipeline will.
async fn run(connection: &Connection, action: &Action, mode: Mode) -> ActionReport {
    let found = facts::gather(connection, &action.facts_needed(), LIMIT)
        .await
        .unwrap();
    apply::apply(connection, &found, action, mode, LIMIT).await
}

fn file(content: &str, mode: u32) -> Action {
    Action::File {
        path: "/etc/berth/site.conf".into(),
        content: content.as_bytes().to_vec(),
        mode,
        owner: "root".into(),
        group: "root".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_directories_and_kernel_parameters_converge_and_check_mode_touches_nothing() {
    let lab = Lab::start(1);
    let connection = connect(&lab, 0).await;
    let directory = Action::Directory {
        path: "/etc/berth".into(),
        mode: 0o750,
        owner: "root".into(),
        group: "root".into(),
    };
    // Check mode first: the diff, and nothing made.
    let shown = run(&connection, &directory, Mode::Check).await;
    assert_eq!(shown.outcome, Outcome::Changed, "{shown:?}");
    assert_eq!(shown.diff.as_deref(), Some("+ root:root 0750\n"));
    assert_ne!(lab.ssh(0, "test -d /etc/berth").0, 0);
    assert_eq!(
        run(&connection, &directory, Mode::Apply).await.outcome,
        Outcome::Changed
    );
    assert_eq!(lab.ssh(0, "stat -c '%a %U' /etc/berth").1, "750 root\n");
    assert_eq!(
        run(&connection, &directory, Mode::Apply).await.outcome,
        Outcome::Ok
    );

    let wanted = file("server ntp.site iburst\nmakestep 1 3\n", 0o644);
    let made = run(&connection, &wanted, Mode::Apply).await;
    assert_eq!(made.outcome, Outcome::Changed, "{made:?}");
    assert!(
        made.diff
            .as_deref()
            .unwrap()
            .contains("+server ntp.site iburst"),
        "{made:?}"
    );
    assert_eq!(
        lab.ssh(0, "cat /etc/berth/site.conf").1,
        "server ntp.site iburst\nmakestep 1 3\n"
    );
    // No temporary file is left beside it.
    assert_eq!(lab.ssh(0, "ls -A /etc/berth").1, "site.conf\n");
    assert_eq!(
        run(&connection, &wanted, Mode::Apply).await.outcome,
        Outcome::Ok
    );

    // A hand edit and a chmod: check mode shows both, as a diff, and changes nothing.
    lab.ssh(
        0,
        "echo 'server rogue.example' >> /etc/berth/site.conf; chmod 666 /etc/berth/site.conf",
    );
    let shown = run(&connection, &wanted, Mode::Check).await;
    assert_eq!(shown.outcome, Outcome::Changed);
    let diff = shown.diff.unwrap();
    assert!(
        diff.contains("- root:root 0666\n+ root:root 0644\n"),
        "{diff}"
    );
    assert!(diff.contains("-server rogue.example"), "{diff}");
    assert!(diff.contains("--- /etc/berth/site.conf"), "{diff}");
    assert!(lab.ssh(0, "cat /etc/berth/site.conf").1.contains("rogue"));
    // Applied: put back.
    assert_eq!(
        run(&connection, &wanted, Mode::Apply).await.outcome,
        Outcome::Changed
    );
    assert_eq!(lab.ssh(0, "stat -c %a /etc/berth/site.conf").1, "644\n");
    assert!(!lab.ssh(0, "cat /etc/berth/site.conf").1.contains("rogue"));
    // Only the mode differs: the content is not rewritten.
    lab.ssh(0, "chmod 600 /etc/berth/site.conf");
    let fixed = run(&connection, &wanted, Mode::Apply).await;
    assert_eq!(
        fixed.diff.as_deref(),
        Some("- root:root 0600\n+ root:root 0644\n")
    );
    // Binary content is said to differ, not printed.
    let binary = file("", 0o644);
    let Action::File {
        mut content,
        path,
        mode,
        owner,
        group,
    } = binary
    else {
        unreachable!()
    };
    content.extend_from_slice(&[0xff, 0xfe, 0, 1]);
    let binary = Action::File {
        path,
        content,
        mode,
        owner,
        group,
    };
    let shown = run(&connection, &binary, Mode::Check).await;
    assert!(shown.diff.unwrap().contains("binary content differs"));
    // A directory where a file should be: failed, saying so.
    let misplaced = Action::File {
        path: "/etc/berth".into(),
        content: b"x".to_vec(),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
    };
    let failed = run(&connection, &misplaced, Mode::Apply).await;
    assert_eq!(failed.outcome, Outcome::Failed);
    assert!(failed.message.unwrap().contains("directory"));

    // A per-host kernel parameter: set now and persisted; then ok.
    let somaxconn = Action::Sysctl {
        key: "net.core.somaxconn".into(),
        value: "2048".into(),
    };
    let before = lab.ssh(0, "cat /proc/sys/net/core/somaxconn").1;
    let shown = run(&connection, &somaxconn, Mode::Check).await;
    assert_eq!(
        shown.diff.as_deref(),
        Some(
            format!(
                "- net.core.somaxconn = {}\n+ net.core.somaxconn = 2048\n+ /etc/sysctl.d/90-berth-net.core.somaxconn.conf: net.core.somaxconn = 2048\n",
                before.trim()
            )
            .as_str()
        )
    );
    assert_eq!(lab.ssh(0, "cat /proc/sys/net/core/somaxconn").1, before);
    assert_eq!(
        run(&connection, &somaxconn, Mode::Apply).await.outcome,
        Outcome::Changed
    );
    assert_eq!(lab.ssh(0, "cat /proc/sys/net/core/somaxconn").1, "2048\n");
    assert_eq!(
        lab.ssh(0, "cat /etc/sysctl.d/90-berth-net.core.somaxconn.conf")
            .1,
        "net.core.somaxconn = 2048\n"
    );
    assert_eq!(
        run(&connection, &somaxconn, Mode::Apply).await.outcome,
        Outcome::Ok
    );
    // A value written with tabs or spaces is the same value.
    let rmem = Action::Sysctl {
        key: "net.ipv4.tcp_rmem".into(),
        value: lab
            .ssh(0, "cat /proc/sys/net/ipv4/tcp_rmem")
            .1
            .trim_end()
            .replace('\t', "   "),
    };
    let persisted = run(&connection, &rmem, Mode::Apply).await;
    assert_eq!(persisted.outcome, Outcome::Changed, "{persisted:?}");
    assert!(
        !persisted.diff.unwrap().contains("- net.ipv4"),
        "only the file was missing"
    );
    assert_eq!(
        run(&connection, &rmem, Mode::Apply).await.outcome,
        Outcome::Ok
    );
    // A global parameter inside the host's namespace: persisted, and said it cannot be set.
    let swappiness = Action::Sysctl {
        key: "vm.swappiness".into(),
        value: "7".into(),
    };
    let refused = run(&connection, &swappiness, Mode::Apply).await;
    assert_eq!(refused.outcome, Outcome::CannotApplyHere, "{refused:?}");
    assert!(refused.message.unwrap().contains("persisted"));
    assert_eq!(
        lab.ssh(0, "cat /etc/sysctl.d/90-berth-vm.swappiness.conf")
            .1,
        "vm.swappiness = 7\n"
    );
    let unknown = Action::Sysctl {
        key: "net.berth.nothing".into(),
        value: "1".into(),
    };
    let failed = run(&connection, &unknown, Mode::Apply).await;
    assert_eq!(failed.outcome, Outcome::Failed);
    assert!(failed.message.unwrap().contains("no kernel parameter"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_services_and_packages_say_what_they_did_or_why_not() {
    let lab = Lab::start(1);
    let connection = connect(&lab, 0).await;
    let command = |argv: &[&str], creates: Option<&str>, unless: Option<&[&str]>| Action::Command {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![("SITE".into(), "lab one".into())],
        user: None,
        timeout_secs: 20,
        creates: creates.map(str::to_owned),
        unless: unless.map(|u| u.iter().map(|s| s.to_string()).collect()),
        ok_codes: vec![],
    };
    let marker = command(
        &["sh", "-c", "echo \"$SITE\" > /etc/marker; echo done"],
        Some("/etc/marker"),
        None,
    );
    let shown = run(&connection, &marker, Mode::Check).await;
    assert_eq!(shown.outcome, Outcome::Changed);
    assert_ne!(lab.ssh(0, "test -e /etc/marker").0, 0, "check mode ran it");
    let ran = run(&connection, &marker, Mode::Apply).await;
    assert_eq!(
        (ran.outcome, ran.stdout.as_str()),
        (Outcome::Changed, "done\n")
    );
    assert_eq!(lab.ssh(0, "cat /etc/marker").1, "lab one\n");
    let again = run(&connection, &marker, Mode::Apply).await;
    assert_eq!(again.outcome, Outcome::Ok);
    assert!(again.message.unwrap().contains("/etc/marker exists"));
    // `unless` exiting 0 skips it, in check mode too.
    let guarded = command(&["false"], None, Some(&["test", "-e", "/etc/marker"]));
    assert_eq!(
        run(&connection, &guarded, Mode::Check).await.outcome,
        Outcome::Ok
    );
    // A failure keeps its exit code and output; an expected code is a success.
    let failing = command(
        &["sh", "-c", "echo partial; echo broken >&2; exit 4"],
        None,
        None,
    );
    let failed = run(&connection, &failing, Mode::Apply).await;
    assert_eq!(
        (
            failed.outcome,
            failed.exit_code,
            failed.stdout.as_str(),
            failed.stderr.as_str()
        ),
        (Outcome::Failed, Some(4), "partial\n", "broken\n")
    );
    let Action::Command {
        argv,
        env,
        timeout_secs,
        ..
    } = failing
    else {
        unreachable!()
    };
    let tolerated = Action::Command {
        argv,
        env,
        user: None,
        timeout_secs,
        creates: None,
        unless: None,
        ok_codes: vec![0, 4],
    };
    assert_eq!(
        run(&connection, &tolerated, Mode::Apply).await.outcome,
        Outcome::Changed
    );
    // As another user.
    let as_nobody = Action::Command {
        argv: vec!["id".into(), "-un".into()],
        env: vec![],
        user: Some("nobody".into()),
        timeout_secs: 20,
        creates: None,
        unless: None,
        ok_codes: vec![],
    };
    assert_eq!(
        run(&connection, &as_nobody, Mode::Apply).await.stdout,
        "nobody\n"
    );
    // Over its time limit: failed, saying so.
    let slow = Action::Command {
        argv: vec!["sleep".into(), "30".into()],
        env: vec![],
        user: None,
        timeout_secs: 1,
        creates: None,
        unless: None,
        ok_codes: vec![],
    };
    let cut = run(&connection, &slow, Mode::Apply).await;
    assert_eq!(cut.outcome, Outcome::Failed);
    assert!(cut.message.unwrap().contains("took longer"), "timeout said");

    // No service manager on the host: said, never passed over.
    let service = Action::Service {
        name: "chrony".into(),
        enabled: true,
        running: true,
    };
    let refused = run(&connection, &service, Mode::Apply).await;
    assert_eq!(refused.outcome, Outcome::CannotApplyHere);
    assert!(refused.message.unwrap().contains("no service manager"));

    // An installed package is ok; one that is not there cannot be fetched here (the
    // host reaches no mirror): failed, with apt's words.
    let present = Action::Package {
        name: "openssh-server".into(),
        version: None,
        state: PackageState::Present,
    };
    assert_eq!(
        run(&connection, &present, Mode::Apply).await.outcome,
        Outcome::Ok
    );
    let missing = Action::Package {
        name: "chrony".into(),
        version: None,
        state: PackageState::Present,
    };
    let shown = run(&connection, &missing, Mode::Check).await;
    assert_eq!(shown.diff.as_deref(), Some("+ chrony (latest)\n"));
    let failed = run(&connection, &missing, Mode::Apply).await;
    assert_eq!(failed.outcome, Outcome::Failed, "{failed:?}");
    assert!(!failed.stderr.is_empty(), "{failed:?}");
    // What would be misread by a tool never reaches the host.
    let hostile = Action::Package {
        name: "-oAPT::Update::Pre-Invoke::=touch /tmp/pwned".into(),
        version: None,
        state: PackageState::Present,
    };
    assert_eq!(
        run_unchecked(&connection, &hostile).await.outcome,
        Outcome::Failed
    );
    assert_ne!(lab.ssh(0, "test -e /tmp/pwned").0, 0);
}

/// `action` applied on facts that ask for nothing (its own would be refused first).
async fn run_unchecked(connection: &Connection, action: &Action) -> ActionReport {
    let found = facts::gather(connection, &Default::default(), LIMIT)
        .await
        .unwrap();
    apply::apply(connection, &found, action, Mode::Apply, LIMIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_install_from_the_sites_mirror_and_a_dead_mirror_fails_saying_so() {
    let mut lab = Lab::start_with_mirror(1, &["chrony", "less"]);
    let connection = connect(&lab, 0).await;
    let package = |name: &str, state: PackageState| Action::Package {
        name: name.into(),
        version: None,
        state,
    };
    let chrony = package("chrony", PackageState::Present);
    let shown = run(&connection, &chrony, Mode::Check).await;
    assert_eq!(shown.diff.as_deref(), Some("+ chrony (latest)\n"));
    assert!(!installed(&lab, "chrony"), "check mode installed it");
    let made = run(&connection, &chrony, Mode::Apply).await;
    assert_eq!(made.outcome, Outcome::Changed, "{made:?}");
    assert!(installed(&lab, "chrony"));
    let (code, version) = lab.ssh(0, "dpkg-query -W -f='${Version}' chrony");
    assert_eq!(code, 0);
    assert_eq!(
        run(&connection, &chrony, Mode::Apply).await.outcome,
        Outcome::Ok
    );
    // Pinned to the version it has: ok; to another: apt says it has no such version.
    let pinned = Action::Package {
        name: "chrony".into(),
        version: Some(version.clone()),
        state: PackageState::Present,
    };
    assert_eq!(
        run(&connection, &pinned, Mode::Apply).await.outcome,
        Outcome::Ok
    );

    // The mirror down: the install fails with apt's words, and nothing is half-installed.
    lab.stop_mirror();
    let less = package("less", PackageState::Present);
    let failed = run(&connection, &less, Mode::Apply).await;
    assert_eq!(failed.outcome, Outcome::Failed, "{failed:?}");
    assert!(
        failed.stderr.contains("Failed to fetch") || failed.stderr.contains("Unable to"),
        "{failed:?}"
    );
    assert!(!installed(&lab, "less"));
    // Back up: installed; then removed, and removed again is ok.
    lab.start_mirror();
    assert_eq!(
        run(&connection, &less, Mode::Apply).await.outcome,
        Outcome::Changed
    );
    assert_eq!(lab.ssh(0, "command -v less").0, 0);
    let gone = package("less", PackageState::Absent);
    let removed = run(&connection, &gone, Mode::Apply).await;
    assert_eq!(removed.outcome, Outcome::Changed, "{removed:?}");
    assert!(removed.diff.unwrap().starts_with("- less "));
    assert_eq!(
        run(&connection, &gone, Mode::Apply).await.outcome,
        Outcome::Ok
    );
}

/// Whether dpkg on the lab's first host has `package` installed.
fn installed(lab: &Lab, package: &str) -> bool {
    lab.ssh(
        0,
        &format!("dpkg-query -W -f='${{db:Status-Status}}' {package}"),
    )
    .1 == "installed"
}
