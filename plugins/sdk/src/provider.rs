//! The `cloud-provider` world (`berth:plugin@0.3.0`).
//!
//! Every call names the cluster it is about ([`ClusterContext`]): its endpoint, regions,
//! settings, and the names of its credentials, which [`crate::secrets::get`] hands out
//! during that call only. One plugin serves any number of clusters and accounts.

pub use crate::bindings::exports::berth::plugin::provider::{
    Address, AddressKind, ClusterContext, Description, Disk, ErrorKind, HourlyPrice, Image,
    ListRequest, Machine, MachinePage, MachineSpec, MachineState, MachineType, ProviderError,
    PurchaseOption, Region, Zone,
};

use crate::http::{HttpError, ResponseError};
use crate::secrets::SecretError;

/// Implement this, and [`crate::Plugin`], then `export_provider!(YourType)`. Every call is
/// stateless: keep state in the provider's own API (tags, client tokens).
///
/// The host retries only `throttled` and `transient` errors (after `retry-after-ms` when
/// set): choose the kind with that in mind.
pub trait Provider: crate::Plugin {
    fn describe(cluster: ClusterContext) -> Result<Description, ProviderError>;
    fn price(
        cluster: ClusterContext,
        region: String,
        machine_type: String,
        purchase_option: PurchaseOption,
    ) -> Result<HourlyPrice, ProviderError>;
    /// Must be idempotent by `spec.client_token`.
    fn create(cluster: ClusterContext, spec: MachineSpec) -> Result<Machine, ProviderError>;
    fn get(cluster: ClusterContext, region: String, id: String) -> Result<Machine, ProviderError>;
    /// The machines of `ids` that exist. The default asks `get` for each; override it
    /// where the API reads many at once.
    fn get_many(
        cluster: ClusterContext,
        region: String,
        ids: Vec<String>,
    ) -> Result<Vec<Machine>, ProviderError> {
        let mut found = Vec::new();
        for id in ids {
            match Self::get(cluster.clone(), region.clone(), id) {
                Ok(machine) => found.push(machine),
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }
    fn list(cluster: ClusterContext, request: ListRequest) -> Result<MachinePage, ProviderError>;
    /// Succeeds on a machine already running.
    fn start(cluster: ClusterContext, region: String, id: String) -> Result<(), ProviderError>;
    /// Succeeds on a machine already stopped.
    fn stop(cluster: ClusterContext, region: String, id: String) -> Result<(), ProviderError>;
    /// Succeeds on a machine already terminated or gone.
    fn delete(cluster: ClusterContext, region: String, id: String) -> Result<(), ProviderError>;
}

impl ProviderError {
    /// An error of `kind` with a message and nothing else.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            message: message.into(),
            code: None,
            request_id: None,
            retry_after_ms: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// The same error with the provider's code and request id.
    pub fn with_code(mut self, code: Option<String>, request_id: Option<String>) -> Self {
        self.code = code;
        self.request_id = request_id;
        self
    }
}

/// A decimal amount as millionths: `"0.0104"` is 10 400. More than six decimals, a sign,
/// or anything but digits is `None`.
pub fn micros(text: &str) -> Option<u64> {
    let (whole, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > 6
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let fraction: u64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<6}").parse().ok()?
    };
    whole.checked_mul(1_000_000)?.checked_add(fraction)
}

/// Where a listing over several regions stands: which of the regions, and the provider's
/// own page token within it. As a page token it reads `<index>:<token>`.
#[derive(Debug, PartialEq, Eq)]
pub struct RegionPage {
    pub index: usize,
    pub inner: Option<String>,
}

impl RegionPage {
    /// The page `token` names; the first region's first page when none.
    pub fn parse(token: Option<&str>) -> Result<RegionPage, ProviderError> {
        let Some(token) = token else {
            return Ok(RegionPage {
                index: 0,
                inner: None,
            });
        };
        let (index, inner) = token
            .split_once(':')
            .ok_or_else(|| ProviderError::invalid("malformed page token"))?;
        let index = index
            .parse()
            .map_err(|_| ProviderError::invalid("malformed page token"))?;
        Ok(RegionPage {
            index,
            inner: (!inner.is_empty()).then(|| inner.to_string()),
        })
    }

    /// The token of the page after this one, out of `regions`: the provider's `next` in
    /// this region, else the next region's first page, else none.
    pub fn next_token(&self, next: Option<String>, regions: usize) -> Option<String> {
        match next {
            Some(next) => Some(format!("{}:{next}", self.index)),
            None if self.index + 1 < regions => Some(format!("{}:", self.index + 1)),
            None => None,
        }
    }
}

/// The page of a listing a [`ListRequest`] asks for: which region it reads (the request's
/// one, or each of the cluster's in turn) and the provider's own token within it. Every
/// provider's `list` starts from one.
pub struct RegionListing {
    pub region: String,
    pub page: RegionPage,
    regions: usize,
}

impl RegionListing {
    /// The page `request` asks for; `None` when its token points past the last region.
    pub fn of(
        cluster: &ClusterContext,
        request: &ListRequest,
    ) -> Result<Option<RegionListing>, ProviderError> {
        let regions = match &request.region {
            Some(region) => vec![region.clone()],
            None => cluster.regions.clone(),
        };
        let page = RegionPage::parse(request.page_token.as_deref())?;
        Ok(regions
            .get(page.index)
            .cloned()
            .map(|region| RegionListing {
                region,
                page,
                regions: regions.len(),
            }))
    }

    /// The provider's own page token within the region.
    pub fn inner(&self) -> Option<&str> {
        self.page.inner.as_deref()
    }

    /// The page of `machines`, given the provider's token of the next page in this region.
    pub fn answer(&self, machines: Vec<Machine>, next: Option<String>) -> MachinePage {
        MachinePage {
            machines,
            next_page_token: self.page.next_token(next, self.regions),
        }
    }
}

impl MachinePage {
    /// No machines, and nothing after.
    pub fn empty() -> MachinePage {
        MachinePage {
            machines: Vec::new(),
            next_page_token: None,
        }
    }
}

/// How a provider bills, for [`HourlyPrice::from_sheet`].
pub struct Billing<'a> {
    pub currency: &'a str,
    /// Usage is billed in steps of this many seconds.
    pub granularity_secs: u32,
    /// Every run is billed for at least this many seconds.
    pub minimum_secs: u32,
}

impl HourlyPrice {
    /// The on-demand price of `machine_type` from the cluster's price sheet: its `prices`
    /// setting, a JSON object of decimal prices per hour by machine type
    /// (`{"m1.small": "0.0104"}`; a number is read by its digits). For providers whose
    /// API has no prices (EC2's Query API, Nova).
    pub fn from_sheet(
        cluster: &ClusterContext,
        machine_type: &str,
        purchase_option: PurchaseOption,
        billing: Billing<'_>,
    ) -> Result<HourlyPrice, ProviderError> {
        if purchase_option != PurchaseOption::OnDemand {
            return Err(ProviderError::new(
                ErrorKind::Unsupported,
                "a price sheet prices on-demand use only",
            ));
        }
        let prices = cluster.setting("prices").ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Unsupported,
                format!(
                    "cluster {} sets no prices; set the setting prices to \
                     {{\"{machine_type}\": \"0.0104\"}} ({} per hour)",
                    cluster.name, billing.currency
                ),
            )
        })?;
        let table: std::collections::BTreeMap<String, serde_json::Value> =
            serde_json::from_str(prices).map_err(|e| {
                ProviderError::invalid(format!("the prices setting is not a JSON object: {e}"))
            })?;
        let text = match table.get(machine_type) {
            Some(serde_json::Value::String(s)) => s.clone(),
            // A number keeps the digits it was written with only as text; take its text.
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => {
                return Err(ProviderError::not_found(format!(
                    "no price for {machine_type} in cluster {}",
                    cluster.name
                )));
            }
        };
        let micros_per_hour = micros(&text)
            .ok_or_else(|| ProviderError::invalid(format!("price {text:?} is not a decimal")))?;
        Ok(HourlyPrice {
            currency: billing.currency.into(),
            micros_per_hour,
            purchase_option,
            granularity_secs: billing.granularity_secs,
            minimum_secs: billing.minimum_secs,
            effective_from: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{RegionPage, micros};

    #[test]
    fn region_pages_walk_each_region_then_the_next() {
        let first = RegionPage::parse(None).unwrap();
        assert_eq!(
            first.next_token(Some("abc".into()), 2),
            Some("0:abc".into())
        );
        assert_eq!(first.next_token(None, 2), Some("1:".into()));
        let second = RegionPage::parse(Some("1:")).unwrap();
        assert_eq!(
            second,
            RegionPage {
                index: 1,
                inner: None
            }
        );
        assert_eq!(second.next_token(None, 2), None);
        let inner = RegionPage::parse(Some("0:a:b")).unwrap();
        assert_eq!(inner.inner.as_deref(), Some("a:b"));
        assert!(RegionPage::parse(Some("x:y")).is_err());
        assert!(RegionPage::parse(Some("nocolon")).is_err());
    }

    #[test]
    fn decimal_prices_read_exactly_as_millionths() {
        assert_eq!(micros("0.0104"), Some(10_400));
        assert_eq!(micros(" 2 "), Some(2_000_000));
        assert_eq!(micros("1.000001"), Some(1_000_001));
        assert_eq!(micros("0.0000001"), None);
        assert_eq!(micros("-1"), None);
        assert_eq!(micros("+1"), None);
        assert_eq!(micros("1e3"), None);
        assert_eq!(micros(".5"), None);
        assert_eq!(micros("18446744073709.551616"), None);
    }
}

impl ClusterContext {
    /// The setting `key`, if the cluster sets it.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A comma-separated setting as its items (none when unset).
    pub fn list_setting(&self, key: &str) -> Vec<String> {
        self.setting(key)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The cluster's first region: where a machine goes when it names none, and where
    /// account-wide questions are asked.
    pub fn home_region(&self) -> Result<String, ProviderError> {
        self.regions
            .first()
            .cloned()
            .ok_or_else(|| ProviderError::invalid(format!("cluster {} names no region", self.name)))
    }

    /// The value of credential `name`, which the cluster must have.
    pub fn credential(&self, name: &str) -> Result<String, ProviderError> {
        if !self.credentials.iter().any(|c| c == name) {
            return Err(ProviderError::new(
                ErrorKind::Auth,
                format!("cluster {} has no credential {name}", self.name),
            ));
        }
        Ok(crate::secrets::get(name)?)
    }
}

impl Machine {
    /// The value of tag `key`, if the machine carries one.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// So `?` works on HTTP calls inside provider functions. An endpoint the admin did not
/// grant is `not-granted` (a missing grant, not credentials the cloud refused); a
/// connection that failed or timed out may pass (`transient`).
impl From<HttpError> for ProviderError {
    fn from(e: HttpError) -> Self {
        let message = crate::http::describe(&e);
        let kind = match e {
            HttpError::NotGranted(_) => ErrorKind::NotGranted,
            HttpError::InvalidRequest(_) => ErrorKind::Invalid,
            HttpError::Connection(_) | HttpError::Timeout => ErrorKind::Transient,
            HttpError::TooLarge(_) => ErrorKind::Other,
        };
        ProviderError::new(kind, message)
    }
}

/// A secret not granted is a missing grant (`not-granted`); one granted without a value
/// leaves the provider without credentials (`auth`).
impl From<SecretError> for ProviderError {
    fn from(e: SecretError) -> Self {
        let message = crate::secrets::describe(&e);
        let kind = match e {
            SecretError::NotGranted(_) => ErrorKind::NotGranted,
            SecretError::NotSet(_) => ErrorKind::Auth,
        };
        ProviderError::new(kind, message)
    }
}

/// A status without a provider-specific reading: 401/403 `auth`, 404 `not-found`, 409
/// `conflict`, 429 `throttled`, 400/422 `invalid`, 5xx `transient`.
impl From<ResponseError> for ProviderError {
    fn from(e: ResponseError) -> Self {
        let kind = match &e {
            ResponseError::Status { status, .. } => match status {
                401 | 403 => ErrorKind::Auth,
                404 => ErrorKind::NotFound,
                409 => ErrorKind::Conflict,
                429 => ErrorKind::Throttled,
                400 | 422 => ErrorKind::Invalid,
                500..=599 => ErrorKind::Transient,
                _ => ErrorKind::Other,
            },
            ResponseError::Decode(_) => ErrorKind::Other,
        };
        ProviderError::new(kind, e.to_string())
    }
}

/// Exports a type implementing [`crate::Plugin`] and [`Provider`] as the component's
/// `cloud-provider` world.
#[macro_export]
macro_rules! export_provider {
    ($ty:ident) => {
        const _: () = {
            use ::std::string::String as __S;
            use $crate::provider as __p;
            type __R<T> = ::core::result::Result<T, __p::ProviderError>;
            impl $crate::bindings::exports::berth::plugin::meta::Guest for $ty {
                fn info() -> $crate::PluginInfo {
                    <$ty as $crate::Plugin>::info()
                }
            }
            impl $crate::bindings::exports::berth::plugin::provider::Guest for $ty {
                fn describe(cluster: __p::ClusterContext) -> __R<__p::Description> {
                    <$ty as __p::Provider>::describe(cluster)
                }
                fn price(
                    cluster: __p::ClusterContext,
                    region: __S,
                    machine_type: __S,
                    purchase_option: __p::PurchaseOption,
                ) -> __R<__p::HourlyPrice> {
                    <$ty as __p::Provider>::price(cluster, region, machine_type, purchase_option)
                }
                fn create(
                    cluster: __p::ClusterContext,
                    spec: __p::MachineSpec,
                ) -> __R<__p::Machine> {
                    <$ty as __p::Provider>::create(cluster, spec)
                }
                fn get(cluster: __p::ClusterContext, region: __S, id: __S) -> __R<__p::Machine> {
                    <$ty as __p::Provider>::get(cluster, region, id)
                }
                fn get_many(
                    cluster: __p::ClusterContext,
                    region: __S,
                    ids: ::std::vec::Vec<__S>,
                ) -> __R<::std::vec::Vec<__p::Machine>> {
                    <$ty as __p::Provider>::get_many(cluster, region, ids)
                }
                fn list(
                    cluster: __p::ClusterContext,
                    request: __p::ListRequest,
                ) -> __R<__p::MachinePage> {
                    <$ty as __p::Provider>::list(cluster, request)
                }
                fn start(cluster: __p::ClusterContext, region: __S, id: __S) -> __R<()> {
                    <$ty as __p::Provider>::start(cluster, region, id)
                }
                fn stop(cluster: __p::ClusterContext, region: __S, id: __S) -> __R<()> {
                    <$ty as __p::Provider>::stop(cluster, region, id)
                }
                fn delete(cluster: __p::ClusterContext, region: __S, id: __S) -> __R<()> {
                    <$ty as __p::Provider>::delete(cluster, region, id)
                }
            }
    $crate::bindings::__export_world!($ty with_types_in $crate::bindings);
        };
    };
}
