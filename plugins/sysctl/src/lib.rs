//! `sysctl`: sets kernel parameters (`values = "net.ipv4.ip_forward=1,vm.swappiness=10"`)
//! now and persists them; reports every parameter whose live value differs.

use berth_plugin_sdk::init::{
    Action, DriftItem, Facts, InitError, InitStep, Parameter, ParameterKind, Params, SysctlAction,
};
use berth_plugin_sdk::{Plugin, PluginInfo, export_init_step};

struct Sysctl;

impl Plugin for Sysctl {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "sysctl".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "kernel parameters, set now and persisted under /etc/sysctl.d".into(),
        }
    }
}

/// `key=value` pairs from the `values` parameter, checked.
fn wanted(params: &Params) -> Result<Vec<(String, String)>, InitError> {
    params.only(&Sysctl::parameters())?;
    let mut pairs = Vec::new();
    for item in params.list("values") {
        let Some((key, value)) = item.split_once('=') else {
            return Err(InitError::InvalidParameter(format!(
                "values: {item:?} is not key=value"
            )));
        };
        let (key, value) = (key.trim(), value.trim());
        let key_ok = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
        if !key_ok {
            return Err(InitError::InvalidParameter(format!(
                "values: {key:?} is not a sysctl key"
            )));
        }
        pairs.push((key.to_string(), value.to_string()));
    }
    if pairs.is_empty() {
        return Err(InitError::InvalidParameter(
            "values is required: key=value[,key=value…]".into(),
        ));
    }
    Ok(pairs)
}

fn live<'a>(facts: &'a Facts, key: &str) -> Option<&'a str> {
    facts
        .sysctl
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Compares as the kernel prints: whitespace between fields is not significant.
fn same(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

impl InitStep for Sysctl {
    fn parameters() -> Vec<Parameter> {
        vec![Parameter {
            name: "values".into(),
            description: "comma-separated key=value kernel parameters".into(),
            kind: ParameterKind::List,
            required: true,
            default: None,
        }]
    }

    fn plan(facts: Facts, params: Params) -> Result<Vec<Action>, InitError> {
        Ok(wanted(&params)?
            .into_iter()
            .filter(|(key, value)| !live(&facts, key).is_some_and(|v| same(v, value)))
            .map(|(key, value)| Action::Sysctl(SysctlAction { key, value }))
            .collect())
    }

    fn drift(facts: Facts, params: Params) -> Result<Vec<DriftItem>, InitError> {
        Ok(wanted(&params)?
            .into_iter()
            .filter_map(|(key, value)| {
                let actual = live(&facts, &key);
                if actual.is_some_and(|v| same(v, &value)) {
                    return None;
                }
                Some(DriftItem {
                    subject: format!("sysctl {key}"),
                    expected: value,
                    actual: actual.unwrap_or("(unset)").to_string(),
                })
            })
            .collect())
    }
}

export_init_step!(Sysctl);
