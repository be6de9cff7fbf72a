//! The `host-init` world: from a host's facts and the step's parameters, idempotent
//! actions (the host applies them over SSH) and a drift report.

pub use crate::bindings::exports::berth::plugin::init_step::{
    Action, CommandAction, DriftItem, Facts, FileAction, FileFact, InitError, OsInfo,
    PackageAction, PackageFact, Parameter, ParameterKind, ServiceAction, ServiceFact, SysctlAction,
};

/// Implement this, and [`crate::Plugin`], then `export_init_step!(YourType)`.
pub trait InitStep: crate::Plugin {
    /// The parameters the step takes, for validation and `berth plugin inspect`.
    fn parameters() -> Vec<Parameter>;
    /// The actions that bring the host to the desired state; empty when it is there.
    fn plan(facts: Facts, params: Params) -> Result<Vec<Action>, InitError>;
    /// What differs from the desired state, without changing anything.
    fn drift(facts: Facts, params: Params) -> Result<Vec<DriftItem>, InitError>;
}

/// The parameters a step was given, with typed accessors.
#[derive(Debug, Clone, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The raw value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A required value.
    pub fn required(&self, name: &str) -> Result<&str, InitError> {
        self.get(name)
            .ok_or_else(|| InitError::InvalidParameter(format!("{name} is required")))
    }

    /// A comma-separated list (empty when unset).
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A boolean (`true`/`false`), or `default` when unset.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, InitError> {
        match self.get(name) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(InitError::InvalidParameter(format!(
                "{name} must be true or false, not {other:?}"
            ))),
        }
    }

    /// Refuses parameters the step does not declare.
    pub fn only(&self, declared: &[Parameter]) -> Result<(), InitError> {
        for (name, _) in &self.0 {
            if !declared.iter().any(|p| &p.name == name) {
                return Err(InitError::InvalidParameter(format!(
                    "unknown parameter {name}"
                )));
            }
        }
        Ok(())
    }
}

/// Exports a type implementing [`crate::Plugin`] and [`InitStep`] as the component's
/// `host-init` world.
#[macro_export]
macro_rules! export_init_step {
    ($ty:ident) => {
        const _: () = {
            impl $crate::bindings::exports::berth::plugin::meta::Guest for $ty {
                fn info() -> $crate::PluginInfo {
                    <$ty as $crate::Plugin>::info()
                }
            }
            impl $crate::bindings::exports::berth::plugin::init_step::Guest for $ty {
                fn parameters() -> ::std::vec::Vec<$crate::init::Parameter> {
                    <$ty as $crate::init::InitStep>::parameters()
                }
                fn plan(
                    facts: $crate::init::Facts,
                    params: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::init::Action>,
                    $crate::init::InitError,
                > {
                    <$ty as $crate::init::InitStep>::plan(facts, $crate::init::Params(params))
                }
                fn drift(
                    facts: $crate::init::Facts,
                    params: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::init::DriftItem>,
                    $crate::init::InitError,
                > {
                    <$ty as $crate::init::InitStep>::drift(facts, $crate::init::Params(params))
                }
            }
    $crate::bindings::__export_world!($ty with_types_in $crate::bindings);
        };
    };
}
