//! The spend view (`spend_path`): this Envoy's shared data, or the fleet
//! ledger, one call per tenant the viewer may see.

use proxy_wasm::types::Action;

use super::{count_store_call, ChatFilter};
use crate::error::GatewayError;
use crate::filter::fleet;
use crate::filter::host::{self, HostStore};
use crate::filter::root::Loaded;
use crate::fleet::{Invocation, ScriptCall, SpendCall};
use crate::govern::keys::TenantId;
use crate::status::{self, TenantSpend, Viewer};

/// The spend view's calls to the fleet ledger, one per visible tenant.
pub(super) struct FleetSpendView {
    waiting: Vec<(u32, TenantId)>,
    gathered: Vec<(TenantId, TenantSpend)>,
    sent_ms: u64,
}

impl ChatFilter {
    /// The spend view: this Envoy's shared data, or the fleet ledger (one
    /// call per tenant the viewer may see, answered once all are in).
    pub(super) fn spend_view(&mut self, state: &Loaded, viewer: Viewer) -> Action {
        let config = &state.config;
        let tenants = status::visible_tenants(config, viewer);
        let Some(governance) = config.governance.as_ref() else {
            return self.reply_json(&status::spend_report(config, host::now_ms(), &[]));
        };
        let (Some(store), Some(names)) = (&governance.store, &state.script_names) else {
            let now = host::now_ms();
            let spends: Vec<(TenantId, TenantSpend)> = tenants
                .into_iter()
                .map(|id| {
                    (
                        id,
                        status::local_spend(config, &HostStore, now, &governance.tenants[id]),
                    )
                })
                .collect();
            return self.reply_json(&status::spend_report(config, now, &spends));
        };
        let mut waiting = Vec::with_capacity(tenants.len());
        for id in tenants {
            let tenant = &governance.tenants[id];
            let lines = status::ledger_lines(config, tenant);
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            let call = SpendCall {
                tenant,
                test_clock_ms: None,
                models: &lines,
            };
            match fleet::send(store, &call.request(names, Invocation::WithText, &store.authority)) {
                Some(token) => waiting.push((token, id)),
                None => return self.reply_error(&GatewayError::LedgerUnavailable),
            }
        }
        if waiting.is_empty() {
            return self.reply_json(&status::spend_report(config, host::now_ms(), &[]));
        }
        self.spend_view = Some(FleetSpendView {
            waiting,
            gathered: Vec::new(),
            sent_ms: host::now_ms(),
        });
        Action::Pause
    }

    /// One tenant's spend came from the fleet ledger.
    pub(super) fn spend_answered(&mut self, state: &Loaded, token: u32, status: u32, body: &[u8]) {
        let config = &state.config;
        let Some(view) = self.spend_view.as_mut() else { return };
        let Some(position) = view.waiting.iter().position(|(waiting, _)| *waiting == token) else {
            return;
        };
        let (_, id) = view.waiting.swap_remove(position);
        let Some(tenant) = config
            .governance
            .as_ref()
            .and_then(|governance| governance.tenants.get(id))
        else {
            self.spend_view = None;
            self.reply_error(&GatewayError::LedgerUnavailable);
            return;
        };
        let lines = status::ledger_lines(config, tenant);
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let parsed = crate::fleet::parse_spend(status, body, tenant.quotas.len(), lines.len());
        count_store_call(
            state,
            "spend",
            if parsed.is_ok() { "ok" } else { "unavailable" },
            host::now_ms().saturating_sub(view.sent_ms),
        );
        let Ok(spend) = parsed else {
            self.spend_view = None;
            self.reply_error(&GatewayError::LedgerUnavailable);
            return;
        };
        view.gathered.push((id, status::fleet_spend(&spend, &lines)));
        if view.waiting.is_empty() {
            let mut gathered = std::mem::take(&mut view.gathered);
            gathered.sort_by_key(|(id, _)| *id);
            self.spend_view = None;
            self.reply_json(&status::spend_report(config, host::now_ms(), &gathered));
        }
    }
}
