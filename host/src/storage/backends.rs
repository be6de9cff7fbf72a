//! The backends of the metadata interface ([`super::store`]): each implements every
//! table trait of [`super::tables`] and its own schema migrations. Nothing outside this
//! folder (and `storage::meta`, the redb database it grew from) names redb or SQL.

pub mod postgres;
pub mod redb;
