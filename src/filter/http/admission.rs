//! Admission of a planned request under governance: counted in this Envoy's
//! shared data, or by the fleet ledger (the request waits for its answer,
//! and does without it, as the tenant's policy says, when it does not come).

use proxy_wasm::types::Action;

use super::{count_store_call, ChatFilter};
use crate::error::GatewayError;
use crate::filter::fleet;
use crate::filter::host;
use crate::filter::root::Loaded;
use crate::filter::spend::Spend;
use crate::fleet::AdmitOutcome;
use crate::govern::quota::Amounts;
use crate::route::RequestPlan;
use crate::telemetry::{Family, Label, Sample};

/// A planned request waiting for the fleet ledger's admission.
pub(super) struct PendingAdmission {
    plan: RequestPlan,
    estimate: Amounts,
    pub(super) reservation_id: String,
    /// Sent as EVAL (Redis had lost its scripts).
    with_text: bool,
    pub(super) token: u32,
    sent_ms: u64,
}

impl ChatFilter {
    /// Admits a planned request (when governed) and sends it on. With a
    /// fleet ledger the request waits for the ledger's answer.
    pub(super) fn admit(&mut self, state: &Loaded, plan: RequestPlan) -> Action {
        let config = &state.config;
        let (Some(governance), Some(spend)) = (config.governance.as_ref(), self.spend.as_mut()) else {
            return self.apply(plan);
        };
        let estimate = Spend::estimate(config, governance, &plan);
        if governance.store.is_none() {
            return match spend.admit_locally(config, governance, estimate, None, &state.metrics) {
                Ok(()) => self.apply(plan),
                Err(error) => self.reply_error(&error),
            };
        }
        self.pending = Some(PendingAdmission {
            plan,
            estimate,
            reservation_id: state.fresh_reservation_id(),
            with_text: false,
            token: 0,
            sent_ms: host::now_ms(),
        });
        self.send_admission(state)
    }

    /// Sends the pending admission to the fleet ledger; the request waits.
    fn send_admission(&mut self, state: &Loaded) -> Action {
        let config = &state.config;
        let (Some(governance), Some(spend), Some(pending), Some(names)) = (
            config.governance.as_ref(),
            self.spend.as_ref(),
            self.pending.as_mut(),
            state.script_names.as_ref(),
        ) else {
            return self.without_store(state, "no pending admission");
        };
        let invocation = fleet::invocation(pending.with_text);
        let sent = spend
            .admit_request(governance, names, &pending.reservation_id, pending.estimate, invocation)
            .zip(governance.store.as_ref())
            .and_then(|(request, store)| fleet::send(store, &request));
        match sent {
            Some(token) => {
                pending.token = token;
                pending.sent_ms = host::now_ms();
                Action::Pause
            }
            None => self.without_store(state, "the store's cluster cannot be called"),
        }
    }

    /// The fleet ledger did not decide: the tenant's requests are refused
    /// (its budgets fail closed) or counted here at the replica's share.
    /// Any reservation the ledger may still make under the pending id is
    /// released if the request is refused; if it is served, the ledger is
    /// charged under that id when it ends (settling that reservation if a
    /// late admission made one).
    fn without_store(&mut self, state: &Loaded, reason: &str) -> Action {
        let config = &state.config;
        let (Some(governance), Some(spend), Some(pending)) =
            (config.governance.as_ref(), self.spend.as_mut(), self.pending.take())
        else {
            return self.reply_error(&GatewayError::LedgerUnavailable);
        };
        let identity = spend.identity().clone();
        let tenant = spend.policy(governance);
        let refused = tenant.refused_without_store();
        let result = if refused { "refused" } else { "local" };
        let labels = [Label::Tenant(Some(identity.tenant)), Label::Fixed("result", result)];
        state
            .metrics
            .emit(config, &[Sample::new(Family::StoreFallbacks, &labels, 1)]);
        if fleet::should_log(identity.tenant, host::now_ms()) {
            log::warn!(
                "fleet ledger unavailable ({reason}): tenant {}'s requests are {}",
                tenant.name,
                if refused {
                    "refused"
                } else {
                    "counted locally at this replica's share"
                }
            );
        }
        if refused {
            Spend::release_unanswered(config, governance, &identity, pending.reservation_id);
            return self.reply_error(&GatewayError::LedgerUnavailable);
        }
        let fallback = Some(pending.reservation_id.clone());
        match spend.admit_locally(config, governance, pending.estimate, fallback, &state.metrics) {
            Ok(()) => self.apply(pending.plan),
            Err(error) => {
                Spend::release_unanswered(config, governance, &identity, pending.reservation_id);
                self.reply_error(&error)
            }
        }
    }

    /// The admission answer came: route, refuse, resend or do without.
    pub(super) fn admission_answered(&mut self, state: &Loaded, status: u32, body: &[u8]) -> Action {
        let config = &state.config;
        let (Some(governance), Some(spend), Some(pending)) =
            (config.governance.as_ref(), self.spend.as_mut(), self.pending.take())
        else {
            return Action::Pause;
        };
        let outcome = crate::fleet::admit_outcome(status, body, spend.policy(governance), pending.with_text);
        let result = match &outcome {
            AdmitOutcome::Admitted(_) => "admitted",
            AdmitOutcome::Refused(_) => "refused",
            AdmitOutcome::Resend => "noscript",
            AdmitOutcome::StoreDown { .. } => "unavailable",
        };
        count_store_call(state, "admit", result, host::now_ms().saturating_sub(pending.sent_ms));
        match outcome {
            AdmitOutcome::Admitted(admitted) => {
                spend.admitted_by_fleet(governance, pending.reservation_id, &admitted);
                self.apply(pending.plan)
            }
            AdmitOutcome::Refused(denial) => {
                let error = spend.refusal(config, governance, denial, &state.metrics);
                self.reply_error(&error)
            }
            AdmitOutcome::Resend => {
                self.pending = Some(PendingAdmission {
                    with_text: true,
                    ..pending
                });
                self.send_admission(state)
            }
            AdmitOutcome::StoreDown { reason } => {
                self.pending = Some(pending);
                self.without_store(state, &reason)
            }
        }
    }
}
