//! The proxy-wasm glue: the only code that talks to Envoy. It reads what the
//! host hands over, calls the core, and applies the plan that comes back.
//! Nothing here decides anything about routing.

mod abi;
mod fleet;
mod host;
mod hostcall_stats;
mod http;
mod metrics;
mod remember;
mod rollouts;
mod root;
mod shadow;
mod shared;
mod spend;
mod unsettled;
mod upstream;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> { Box::new(root::SignalboxRoot::new(context_id)) });
}}
