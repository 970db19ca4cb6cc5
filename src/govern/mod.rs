//! Spend governance: virtual keys mapped to tenants ([`keys`]), rate limits
//! over a sliding minute ([`window`]), daily and monthly quotas and budgets
//! with reservations ([`quota`]).

pub mod keys;
pub mod ledger;
pub mod quota;
pub mod window;
