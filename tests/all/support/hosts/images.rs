//! What the lab's hosts are made of, built once and reused by later runs: the Debian root
//! filesystem (debootstrap) and the lab's apt mirror of the packages tests install.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{checked, run};

/// Where the root filesystem is built, once, and reused by later runs.
fn roots_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-hosts")
}

/// The Debian release and the packages of the hosts' root filesystem; a change builds a
/// new one beside the old.
const SUITE: &str = "bookworm";
const PACKAGES: &str = "openssh-server,iproute2,procps";

/// Bumped when what is done to the root after debootstrap changes.
const LAYOUT: &str = "v2";

/// The root filesystem, built on first use (about a minute and 240 MB), read-only after.
pub fn root_filesystem() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        super::super::require_tool("debootstrap", "debootstrap");
        super::super::require_tool("ssh-keygen", "openssh-client");
        let root = roots_dir().join(format!("{SUITE}-{}-{LAYOUT}", PACKAGES.replace(',', "+")));
        if root.join("usr/sbin/sshd").exists() {
            return root;
        }
        std::fs::create_dir_all(roots_dir()).unwrap();
        // Built beside and renamed: a run killed halfway leaves no half a root behind.
        let building = roots_dir().join(format!("building-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&building);
        let mirror = std::env::var("BERTH_TEST_DEBIAN_MIRROR")
            .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
        let out = Command::new("debootstrap")
            .args(["--variant=minbase", &format!("--include={PACKAGES}"), SUITE])
            .arg(&building)
            .arg(&mirror)
            .output()
            .expect("run debootstrap");
        assert!(
            out.status.success(),
            "debootstrap {SUITE} from {mirror} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The hosts reach no Debian mirror, only the lab's (`Lab::start_with_mirror`): the
        // lists of the one debootstrap used go, so apt reads the lab's.
        for entry in std::fs::read_dir(building.join("var/lib/apt/lists")).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::remove_file(path).unwrap();
            }
        }
        // Nothing in the root may start a service when a package is installed.
        std::fs::write(
            building.join("usr/sbin/policy-rc.d"),
            "#!/bin/sh\nexit 101\n",
        )
        .unwrap();
        run(
            "chmod",
            &[
                "755",
                &building.join("usr/sbin/policy-rc.d").to_string_lossy(),
            ],
        );
        match std::fs::rename(&building, &root) {
            Ok(()) => {}
            // Another test process built it meanwhile.
            Err(_) if root.join("usr/sbin/sshd").exists() => {
                let _ = std::fs::remove_dir_all(&building);
            }
            Err(e) => panic!("cannot move the root filesystem into place: {e}"),
        }
        root
    })
}

/// A flat apt repository (`Packages` beside the `.deb`s) of `packages` and everything
/// they depend on that the root filesystem lacks, downloaded once from Debian with the
/// machine's apt tools under a private state directory (the machine's own apt state is
/// never touched), and reused by later runs.
pub fn package_repository(packages: &[&str]) -> PathBuf {
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let root = root_filesystem();
    let mut names: Vec<&str> = packages.to_vec();
    names.sort_unstable();
    let repo = roots_dir().join(format!("repo-{SUITE}-{}", names.join("+")));
    if repo.join("debs/Packages").exists() {
        return repo.join("debs");
    }
    super::super::require_tool("apt-ftparchive", "apt-utils");
    let building = roots_dir().join(format!("building-repo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    for sub in ["lists/partial", "cache/archives/partial", "parts", "debs"] {
        std::fs::create_dir_all(building.join(sub)).unwrap();
    }
    let mirror = std::env::var("BERTH_TEST_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    std::fs::write(
        building.join("sources.list"),
        format!("deb {mirror} {SUITE} main\n"),
    )
    .unwrap();
    let b = building.display().to_string();
    let options: Vec<String> = [
        format!("Dir::Etc::SourceList={b}/sources.list"),
        format!("Dir::Etc::SourceParts={b}/parts"),
        format!("Dir::State::Lists={b}/lists"),
        format!("Dir::Cache={b}/cache"),
        format!("Dir::State::Status={}/var/lib/dpkg/status", root.display()),
        "Debug::NoLocking=1".into(),
    ]
    .into_iter()
    .flat_map(|o| ["-o".to_string(), o])
    .collect();
    let apt = |program: &str, args: &[&str], dir: &Path| {
        let mut command = Command::new(program);
        command.args(&options).args(args).current_dir(dir);
        checked(command, program, args)
    };
    apt("apt-get", &["update", "-q"], &building);
    let mut args = vec![
        "depends",
        "--recurse",
        "--no-recommends",
        "--no-suggests",
        "--no-conflicts",
        "--no-breaks",
        "--no-replaces",
        "--no-enhances",
    ];
    args.extend(names.iter().copied());
    let closure = apt("apt-cache", &args, &building);
    let installed: std::collections::BTreeSet<String> = run(
        "dpkg-query",
        &[
            &format!("--admindir={}/var/lib/dpkg", root.display()),
            "-W",
            "-f",
            "${Package}\n",
        ],
    )
    .lines()
    .map(str::to_owned)
    .collect();
    let mut wanted: Vec<&str> = closure
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with([' ', '<']))
        .filter(|l| !installed.contains(*l))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut args = vec!["download"];
    args.extend(wanted.iter().copied());
    apt("apt-get", &args, &building.join("debs"));
    let index = run(
        "sh",
        &["-c", &format!("cd '{b}/debs' && apt-ftparchive packages .")],
    );
    std::fs::write(building.join("debs/Packages"), index).unwrap();
    for sub in ["lists", "cache", "parts"] {
        let _ = std::fs::remove_dir_all(building.join(sub));
    }
    match std::fs::rename(&building, &repo) {
        Ok(()) => {}
        Err(_) if repo.join("debs/Packages").exists() => {
            let _ = std::fs::remove_dir_all(&building);
        }
        Err(e) => panic!("cannot move the package repository into place: {e}"),
    }
    repo.join("debs")
}
