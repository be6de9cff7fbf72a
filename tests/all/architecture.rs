//! The invariants of ARCHITECTURE.md that can be read off the sources, checked: module
//! dependencies point one way, storage engines are named only by the storage backends,
//! and each table is reached only by the component that owns it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `host/src`, relative to it, with its code (comment lines dropped:
/// prose may name anything).
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let code: String = std::fs::read_to_string(&path)
                    .unwrap()
                    .lines()
                    .filter(|line| !line.trim_start().starts_with("//"))
                    .collect::<Vec<_>>()
                    .join("\n");
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                out.insert(relative, code);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&src(), &src(), &mut out);
    assert!(out.len() > 50, "found only {} sources", out.len());
    out
}

/// The top-level module a file belongs to: `registry/handlers/blobs.rs` → `registry`.
fn module_of(file: &str) -> &str {
    let first = file.split('/').next().unwrap();
    first.strip_suffix(".rs").unwrap_or(first)
}

/// What each module may use, from ARCHITECTURE.md: `cli`/`server` → `api` → `replication`
/// → `registry` → `auth` → `storage` → `digest`/`names`/`config`; `plugins` beside
/// `registry`, on `storage` alone. The crate root (`lib`, `main`) and the top (`cli`,
/// `server`) may use anything.
const MAY_USE: &[(&str, &[&str])] = &[
    ("allocator", &[]),
    ("supervisor", &[]),
    ("digest", &[]),
    ("names", &["digest"]),
    ("config", &[]),
    ("storage", &["digest", "names", "config"]),
    ("auth", &["storage", "digest", "names", "config"]),
    ("jobs", &["storage", "config"]),
    ("events", &["storage", "config"]),
    ("cost", &["storage", "config"]),
    (
        "hostinit",
        &["plugins", "jobs", "events", "storage", "config"],
    ),
    ("plugins", &["storage", "digest", "names", "config"]),
    (
        "registry",
        &["auth", "events", "storage", "digest", "names", "config"],
    ),
    (
        "replication",
        &[
            "registry", "plugins", "jobs", "events", "auth", "storage", "digest", "names", "config",
        ],
    ),
    (
        "scheduling",
        &[
            "hostinit", "cost", "plugins", "jobs", "events", "auth", "storage", "names", "config",
        ],
    ),
    (
        "api",
        &[
            "scheduling",
            "hostinit",
            "cost",
            "replication",
            "registry",
            "plugins",
            "jobs",
            "events",
            "auth",
            "storage",
            "digest",
            "names",
            "config",
        ],
    ),
];

#[test]
fn module_dependencies_point_one_way() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = MAY_USE
        .iter()
        .map(|(module, uses)| (*module, uses.iter().copied().collect()))
        .collect();
    let unconstrained = ["lib", "main", "cli", "server"];
    let mut violations = Vec::new();
    for (file, code) in sources() {
        let module = module_of(&file);
        if unconstrained.contains(&module) {
            continue;
        }
        let Some(may) = allowed.get(module) else {
            panic!(
                "{file}: module {module} is not in MAY_USE; state where it sits in ARCHITECTURE.md and here"
            );
        };
        for used in code.split("crate::").skip(1) {
            let used: String = used
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if used != module && !may.contains(used.as_str()) {
                violations.push(format!("{file} ({module}) uses crate::{used}"));
            }
        }
    }
    violations.dedup();
    assert!(
        violations.is_empty(),
        "dependencies against ARCHITECTURE.md's direction:\n{}",
        violations.join("\n")
    );
}

/// What names a storage engine, or the redb database under the interface.
const ENGINE_WORDS: &[&str] = &[
    "redb::",
    "use redb",
    "postgres::",
    "r2d2",
    "storage::meta",
    "meta::",
    "Metadata",
    "WriteTransaction",
    "ReadTransaction",
    "TableDefinition",
];

#[test]
fn storage_engines_are_named_only_by_the_storage_backends() {
    let engine_side = |file: &str| {
        file.starts_with("storage/backends")
            || file.starts_with("storage/meta")
            || file == "storage/backends.rs"
            // The interface itself opens the backends; the test stores are built over them.
            || file == "storage/store.rs"
            || file == "storage/testing.rs"
            || file == "storage.rs"
    };
    let mut unexpected = Vec::new();
    for (file, code) in sources() {
        if engine_side(&file) {
            continue;
        }
        if let Some(word) = ENGINE_WORDS.iter().find(|w| contains_word(&code, w)) {
            unexpected.push(format!("{file} names `{word}`"));
        }
    }
    assert!(
        unexpected.is_empty(),
        "only storage's backends name a storage engine; go through storage::store:\n{}",
        unexpected.join("\n")
    );
}

/// Whether `word` occurs in `code` as a whole identifier path (`Metadata`, not
/// `MetadataExt`; `meta::`, not `ReqMeta::`).
fn contains_word(code: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    code.match_indices(word).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + word.len()..].chars().next();
        let joined_before = before.is_some_and(ident);
        let joined_after = word.ends_with(ident) && after.is_some_and(ident);
        !joined_before && !joined_after
    })
}

/// Each table accessor of a transaction, and the folder of the component that owns it.
/// (`tx.registry()` and `tx.events()` are written with their receiver: other types have
/// methods of those names, such as an image reference's `registry()`.)
const OWNERS: &[(&str, &str)] = &[
    (".plugins()", "plugins/"),
    (".auth()", "auth/"),
    (".audit()", "auth/"),
    (".jobs()", "jobs/"),
    (".replication()", "replication/"),
    ("tx.registry()", "registry/"),
    ("tx.events()", "events.rs"),
    (".scheduling()", "scheduling/"),
    // Cost accounting's tables: its ledger service is scheduling's (`scheduling/ledger.rs`);
    // `cost/` is pure computation.
    (".cost()", "scheduling/"),
];

#[test]
fn each_table_is_reached_only_by_its_owner() {
    let mut trespasses = Vec::new();
    for (file, code) in sources() {
        for (accessor, owner) in OWNERS {
            if code.contains(accessor) && !file.starts_with(owner) && !file.starts_with("storage/")
            {
                trespasses.push(format!("{file} calls {accessor}, owned by {owner}"));
            }
        }
    }
    assert!(
        trespasses.is_empty(),
        "a component reaches tables it does not own (ask the owning service instead):\n{}",
        trespasses.join("\n")
    );
}

/// Authorisation is decided in one place: `AccessControl` (`auth/authenticate/authorize.rs`) is the
/// only caller of the permission matrix; the registry, the admin API and listings ask it.
#[test]
fn the_permission_matrix_is_consulted_only_by_access_control() {
    let mut elsewhere = Vec::new();
    for (file, code) in sources() {
        if file == "auth/authenticate/authorize.rs" || file == "auth/access.rs" {
            continue;
        }
        for word in ["access::decide", "decide(", "role_allows"] {
            if contains_word(&code, word) {
                elsewhere.push(format!("{file} calls {word}"));
            }
        }
    }
    assert!(
        elsewhere.is_empty(),
        "ask AccessControl (project_access, repository_access, allows) instead:\n{}",
        elsewhere.join("\n")
    );
}
