//! The plugin kinds and the `berth:plugin` package versions this host serves, and how a
//! component's exports name both.

use std::fmt;

/// The package every world belongs to.
pub const PACKAGE: &str = "berth:plugin";

/// Package versions this host loads plugins for, oldest first. A version leaves this list
/// only in a release that says so; plugins built for it are then refused by name.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.1.0", "0.2.0", "0.3.0"];

/// What a plugin decides, which fixes the world it is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Creates, lists and retires machines on one kind of cluster.
    CloudProvider,
    /// Plans which instance sends what to whom.
    ReplicationStrategy,
    /// Turns a host's facts into idempotent set-up actions.
    HostInit,
}

impl Kind {
    /// Every kind, in a stable order.
    pub const ALL: [Kind; 3] = [
        Kind::CloudProvider,
        Kind::ReplicationStrategy,
        Kind::HostInit,
    ];

    /// The world's name in the WIT package.
    pub fn world(self) -> &'static str {
        match self {
            Kind::CloudProvider => "cloud-provider",
            Kind::ReplicationStrategy => "replication-strategy",
            Kind::HostInit => "host-init",
        }
    }

    /// The interface only this kind exports; a component's kind is read from it.
    pub fn main_export(self) -> &'static str {
        match self {
            Kind::CloudProvider => "provider",
            Kind::ReplicationStrategy => "strategy",
            Kind::HostInit => "init-step",
        }
    }

    /// Interfaces of the package this kind may import. Anything else from the package is
    /// refused at load time.
    pub fn allowed_imports(self) -> &'static [&'static str] {
        match self {
            Kind::CloudProvider => &["types", "host", "http", "secrets"],
            Kind::ReplicationStrategy | Kind::HostInit => &["types", "host"],
        }
    }

    /// Parses a world name.
    pub fn from_world(world: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.world() == world)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.world())
    }
}

/// A fully qualified interface name from a component's imports or exports, split up:
/// `berth:plugin/strategy@0.1.0` is package `berth:plugin`, interface `strategy`,
/// version `0.1.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceName<'a> {
    pub package: &'a str,
    pub interface: &'a str,
    pub version: Option<&'a str>,
}

impl<'a> InterfaceName<'a> {
    /// Splits `namespace:package/interface[@version]`; `None` for a plain name (a function
    /// or an unqualified instance), which a world of ours never uses.
    pub fn parse(name: &'a str) -> Option<Self> {
        let (path, version) = match name.split_once('@') {
            Some((path, version)) => (path, Some(version)),
            None => (name, None),
        };
        let (package, interface) = path.split_once('/')?;
        if !package.contains(':') || interface.is_empty() {
            return None;
        }
        Some(InterfaceName {
            package,
            interface,
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_split_into_package_interface_and_version() {
        assert_eq!(
            InterfaceName::parse("berth:plugin/strategy@0.1.0"),
            Some(InterfaceName {
                package: "berth:plugin",
                interface: "strategy",
                version: Some("0.1.0")
            })
        );
        assert_eq!(
            InterfaceName::parse("wasi:io/streams@0.2.6").map(|n| n.interface),
            Some("streams")
        );
        assert_eq!(InterfaceName::parse("plain-function"), None);
        assert_eq!(InterfaceName::parse("nopackage/x"), None);
    }

    #[test]
    fn every_kind_round_trips_through_its_world_name() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_world(kind.world()), Some(kind));
        }
        assert_eq!(Kind::from_world("unknown"), None);
    }
}
