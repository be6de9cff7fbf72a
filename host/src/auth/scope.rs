//! Docker token scopes: `repository:team/app:pull,push`, `registry:catalog:*`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One requested or granted scope (the `access` entries of a token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Resource type: `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Resource name: a repository, or `catalog`.
    pub name: String,
    /// Actions: `pull`, `push`, `delete`, `*`.
    pub actions: Vec<String>,
}

impl Scope {
    /// Parses `type[(class)]:name:actions`. The name may itself contain `:` (never in
    /// berth's grammar, but the spec allows it), so type and actions are split off the ends.
    pub fn parse(s: &str) -> Option<Scope> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let kind = kind.split('(').next().unwrap_or(kind);
        if kind.is_empty() || name.is_empty() || s.len() > 1024 {
            return None;
        }
        let actions = actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        Some(Scope {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions,
        })
    }

    /// A repository scope.
    pub fn repository(name: &str, actions: &[&str]) -> Scope {
        Scope {
            kind: "repository".into(),
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// Whether this grant covers `action` on `kind:name`.
    pub fn covers(&self, kind: &str, name: &str, action: &str) -> bool {
        self.kind == kind
            && self.name == name
            && self.actions.iter().any(|a| a == action || a == "*")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_docker_sends() {
        let s = Scope::parse("repository:team/app:pull,push").unwrap();
        assert_eq!(s, Scope::repository("team/app", &["pull", "push"]));
        assert_eq!(s.to_string(), "repository:team/app:pull,push");
        let c = Scope::parse("registry:catalog:*").unwrap();
        assert!(c.covers("registry", "catalog", "anything"));
        let classed = Scope::parse("repository(plugin):team/p:pull").unwrap();
        assert_eq!(classed.kind, "repository");
        assert!(Scope::parse("nonsense").is_none());
        assert!(Scope::parse("repository::pull").is_none());
    }
}
