//! Cost accounting (issue 16, under way): what machines cost, exactly. [`money`] holds
//! amounts and the one rounding rule, [`rate`] what a machine costs per hour or per month
//! in each billing phase, [`accrual`] cuts a window into charged pieces of one price and
//! one day, [`sheet`] prices pool hosts and private-cloud flavors where no provider does.
//! The ledger, budgets and reports build on these.

pub mod accrual;
pub mod ledger;
pub mod money;
pub mod rate;
pub mod report;
pub mod sheet;
