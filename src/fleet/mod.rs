//! The fleet ledger: rate windows, quotas, reservations and the cost ledger
//! kept in Redis for every Envoy replica, reached through webdis (an HTTP
//! front end to Redis) because a proxy-wasm filter has no sockets.
//!
//! This module is plain data in, data out: [`keys`] names the keys,
//! [`scripts`] holds the Lua scripts (from `fleet/`) and their SHA-1s,
//! [`request`] builds the HTTP request of an admit, settle or spend call,
//! [`reply`] turns webdis's answer into a typed result. The filter sends the
//! request with `dispatch_http_call` and feeds the answer back; [`outbox`]
//! holds the settlements waiting to be sent. Semantics and
//! failure handling are in docs/fleet.md.

pub mod decide;
pub mod feedback;
pub mod keys;
pub mod outbox;
pub mod reply;
pub mod request;
pub mod rollout;
pub mod scripts;

pub use decide::{admit_outcome, retry_delay_ms, settle_outcome, AdmitOutcome, SettleOutcome};
pub use outbox::{invocation, Outbox, SettleJob, SettleKind};
pub use reply::{
    parse_admission, parse_settlement, parse_spend, Admission, Admitted, QuotaAlert, Refused, RefusedBy, Settlement,
    Spend, StoreFailure,
};
pub use request::{
    reservation_id, AdmitCall, Charge, Invocation, LedgerEntry, ScriptCall, SettleCall, SpendCall, StoreRequest,
};
pub use scripts::{Script, ScriptNames};
