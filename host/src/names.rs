//! Repository names, tags and references, checked against the distribution spec's grammar.
//!
//! A repository name is `<project>/<path…>`: the first component names the project that
//! access control is attached to, so a name without a project is refused here, once.

use std::fmt;

use crate::digest::{Digest, DigestError};

/// Longest repository name accepted; CNCF distribution uses the same bound, and some
/// clients build file paths from names.
pub const MAX_NAME_LEN: usize = 255;

/// Why a name or reference was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// Not in the spec's grammar (uppercase, `..`, percent-escapes, empty components …).
    #[error(
        "invalid repository name {0:?}: components are lowercase letters and digits separated by '.', '_', '__' or '-', joined by '/'"
    )]
    Grammar(String),
    /// Has a single component, so no project.
    #[error("invalid repository name {0:?}: names are <project>/<repository>, e.g. 'team/app'")]
    NoProject(String),
    /// Longer than [`MAX_NAME_LEN`].
    #[error("repository name is {0} characters long; at most 255 are allowed")]
    TooLong(usize),
    /// A tag outside `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
    #[error("invalid tag {0:?}: tags match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    Tag(String),
    /// A reference that looks like a digest but is not a valid one.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A validated repository name, such as `team/app` or `team/tools/builder`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

/// Whether `c` is one path component of the spec's repository-name grammar; project
/// names are exactly such a component.
pub fn component_is_valid(c: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let bytes = c.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if is_alnum(b) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or one or more '-'.
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

impl RepoName {
    /// Parses and validates a repository name.
    pub fn parse(s: &str) -> Result<RepoName, NameError> {
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(s.len()));
        }
        if !s.split('/').all(component_is_valid) {
            return Err(NameError::Grammar(s.chars().take(MAX_NAME_LEN).collect()));
        }
        if !s.contains('/') {
            return Err(NameError::NoProject(s.to_owned()));
        }
        Ok(RepoName(s.to_owned()))
    }

    /// Like [`RepoName::parse`], but a one-component name (`alpine`, valid in the
    /// distribution grammar) is returned instead of refused: the registry's routes take it
    /// so that each request under it can be answered the way that leads a client to the
    /// explanation (see `registry::routes`). Nothing past the routes sees such a name.
    pub fn parse_allowing_one_component(s: &str) -> Result<RepoName, NameError> {
        match RepoName::parse(s) {
            Err(NameError::NoProject(name)) => Ok(RepoName(name)),
            other => other,
        }
    }

    /// Whether the name has a project (every name but those of
    /// [`RepoName::parse_allowing_one_component`]).
    pub fn has_project(&self) -> bool {
        self.0.contains('/')
    }

    /// The project: the first path component.
    pub fn project(&self) -> &str {
        self.0.split('/').next().unwrap_or_default()
    }

    /// The whole name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A validated tag.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Tag(String);

impl Tag {
    /// Parses and validates a tag.
    pub fn parse(s: &str) -> Result<Tag, NameError> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b[1..]
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-');
        if ok {
            Ok(Tag(s.to_owned()))
        } else {
            Err(NameError::Tag(s.chars().take(200).collect()))
        }
    }

    /// The tag text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What follows `/manifests/`: a tag or a digest.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Reference {
    /// A mutable name.
    Tag(Tag),
    /// An immutable content address.
    Digest(Digest),
}

impl Reference {
    /// A reference containing ':' is a digest (tags cannot contain one); anything else is a tag.
    pub fn parse(s: &str) -> Result<Reference, NameError> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(Tag::parse(s)?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_spec_grammar() {
        for ok in [
            "a/b",
            "team/app",
            "team/tools/builder",
            "a0/b-c",
            "a/b__c",
            "a/b---c",
            "a.b/c_d",
        ] {
            assert!(RepoName::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(RepoName::parse("team/tools/x").unwrap().project(), "team");
    }

    #[test]
    fn refuses_names_outside_the_grammar() {
        for bad in [
            "", "A/b", "a/../b", "a/%2e%2e", "a//b", "a/b/", "/a/b", "a/-b", "a/b___c", "a/b..c",
            "a/b_-c",
        ] {
            assert!(
                matches!(RepoName::parse(bad), Err(NameError::Grammar(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            RepoName::parse("alpine"),
            Err(NameError::NoProject(_))
        ));
        let long = format!("a/{}", "b".repeat(300));
        assert!(matches!(RepoName::parse(&long), Err(NameError::TooLong(_))));
    }

    #[test]
    fn tags_and_references() {
        assert!(Tag::parse("v1.2.3-rc_1").is_ok());
        assert!(Tag::parse("_x").is_ok());
        assert!(Tag::parse(".x").is_err());
        assert!(Tag::parse(&"a".repeat(129)).is_err());
        assert!(matches!(Reference::parse("latest"), Ok(Reference::Tag(_))));
        assert!(matches!(
            Reference::parse("sha256:zz"),
            Err(NameError::Digest(_))
        ));
    }
}
