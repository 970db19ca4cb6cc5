//! The router's spend control around one request: authenticate the virtual
//! key, admit the request against its tenant's limits and quotas (reserving
//! its estimate) — in this Envoy's shared data, or in the fleet ledger when
//! one is configured (then at the replica's share of the limits in shared
//! data while the ledger cannot answer, unless the tenant fails closed) —,
//! add `x-ratelimit-*` and usage headers to the answer, and settle to what
//! was consumed when the request ends. Soft alerts go out once per period:
//! only the settlement that set the alert flag sees it.

use std::time::Duration;

use super::fleet::{self, SettleJob, SettleKind};
use super::host::{self, HostStore};
use super::metrics::Metrics;
use crate::config::governance::{Governance, Tenant};
use crate::config::{Config, ModelId};
use crate::error::GatewayError;
use crate::fleet::{AdmitCall, Admitted, Invocation, ScriptCall, ScriptNames, StoreRequest};
use crate::govern::admission::{self, Admission, CrossedAlert, Denial};
use crate::govern::keys::Identity;
use crate::govern::ledger::Consumption;
use crate::govern::quota::Amounts;
use crate::govern::window::{RateLimits, RateStanding};
use crate::govern::{auth_error, denial_error, rate_limit_headers};
use crate::headers::HeaderMap;
use crate::providers::TokenUsage;
use crate::route::RequestPlan;
use crate::telemetry::{denial_reason, window_label, Family, Label, Sample};

pub use crate::contract::{HEADER_CACHED_TOKENS, HEADER_COST, HEADER_INPUT_TOKENS, HEADER_OUTPUT_TOKENS};

/// What an admitted request booked, to settle when it ends.
enum Booked {
    /// In this Envoy's shared data. `fallback`: at the replica's share of
    /// the limits, the fleet ledger being unreachable; the id its unanswered
    /// admission used, under which the ledger is charged later.
    Local {
        admission: Admission,
        fallback: Option<String>,
    },
    /// In the fleet ledger.
    Fleet {
        reservation_id: String,
        standing: Option<(RateLimits, RateStanding)>,
    },
}

pub struct Spend {
    identity: Identity,
    booked: Option<Booked>,
    /// A test clock from the configured header, if any.
    now_override: Option<u64>,
}

impl Spend {
    /// Checks the virtual key of a request.
    pub fn authenticate(governance: &Governance, headers: &HeaderMap) -> Result<Spend, GatewayError> {
        let identity = governance.keys.authenticate(headers).map_err(auth_error)?;
        let now_override = governance.test_now(headers);
        Ok(Spend {
            identity,
            booked: None,
            now_override,
        })
    }

    fn now(&self) -> u64 {
        self.now_override.unwrap_or_else(host::now_ms)
    }

    /// Who is calling (tenant, user, key name).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn policy<'g>(&self, governance: &'g Governance) -> &'g Tenant {
        &governance.tenants[self.identity.tenant]
    }

    /// Past the soft threshold with a downgrade tier configured: in the
    /// fleet, as the ledger last told this VM (it says with every admission).
    pub fn downgrade(&self, governance: &Governance) -> bool {
        let tenant = self.policy(governance);
        if tenant.downgrade_tier.is_none() {
            return false;
        }
        match governance.store {
            Some(_) => fleet::last_share(self.identity.tenant) >= tenant.alert_at,
            None => admission::past_soft_threshold(&HostStore, tenant, self.now()),
        }
    }

    /// What the planned request may consume at most (its reservation).
    pub fn estimate(config: &Config, governance: &Governance, plan: &RequestPlan) -> Amounts {
        let decision = &plan.decision;
        let links: Vec<ModelId> = decision
            .chain
            .iter()
            .filter_map(|&link| config.deployments.get(link))
            .map(|deployment| deployment.model)
            .collect();
        let bounds = admission::Bounds {
            links: &links,
            prompt_tokens: decision.prompt_tokens,
            output_limit: decision.max_output_tokens,
            choices: decision.choices,
            predicted_output: decision.predicted_output_tokens,
            stream: plan.attempts.stream,
            escalation_link: plan.attempts.escalation.map(|escalation| escalation.to_link),
        };
        admission::estimate(config, &bounds, governance.default_output_reservation)
    }

    /// Reserves `estimate` in this Envoy's shared data, or refuses.
    /// `fallback`: the fleet ledger did not answer the admission with this
    /// reservation id; counted at the replica's share of the limits, and
    /// charged to the ledger under that id once the request ends.
    pub fn admit_locally(
        &mut self,
        config: &Config,
        governance: &Governance,
        estimate: Amounts,
        fallback: Option<String>,
        metrics: &Metrics,
    ) -> Result<(), GatewayError> {
        let tenant = self.local_policy(governance, fallback.is_some());
        match admission::admit(tenant, &HostStore, &self.identity, estimate, self.now()) {
            Ok(admission) => {
                self.booked = Some(Booked::Local { admission, fallback });
                Ok(())
            }
            Err(denial) => Err(self.refusal(config, governance, denial, metrics)),
        }
    }

    fn local_policy<'g>(&self, governance: &'g Governance, share: bool) -> &'g Tenant {
        let tenant = self.identity.tenant;
        match governance.local_shares.get(tenant) {
            Some(local_share) if share => local_share,
            _ => &governance.tenants[tenant],
        }
    }

    /// The fleet admission call reserving `estimate` under `reservation_id`.
    pub fn admit_request(
        &self,
        governance: &Governance,
        names: &ScriptNames,
        reservation_id: &str,
        estimate: Amounts,
        invocation: Invocation,
    ) -> Option<StoreRequest> {
        let store = governance.store.as_ref()?;
        let call = AdmitCall {
            tenant: self.policy(governance),
            user: self.identity.user.as_deref(),
            reservation_id,
            ttl_ms: store.reservation_ttl_ms,
            test_clock_ms: self.now_override,
            estimate,
        };
        Some(call.request(names, invocation, &store.authority))
    }

    /// The fleet ledger admitted the request under `reservation_id`.
    pub fn admitted_by_fleet(&mut self, governance: &Governance, reservation_id: String, admitted: &Admitted) {
        let tenant = self.policy(governance);
        fleet::remember_share(self.identity.tenant, admitted.share_permille as f64 / 1000.0);
        self.booked = Some(Booked::Fleet {
            reservation_id,
            standing: admitted.standing(tenant),
        });
    }

    /// The client's error for a refusal, counted in the rejections metric.
    pub fn refusal(&self, config: &Config, governance: &Governance, denial: Denial, metrics: &Metrics) -> GatewayError {
        let labels = [
            Label::Tenant(Some(self.identity.tenant)),
            Label::Fixed("reason", denial_reason(&denial)),
        ];
        metrics.emit(config, &[Sample::new(Family::Rejections, &labels, 1)]);
        denial_error(&self.policy(governance).name, denial)
    }

    /// Forgets a reservation the fleet ledger may have made although its
    /// answer never came (or came too late), for a request that is not
    /// served: settling it with zero amounts releases it without counting
    /// the request, or leaves a tombstone that stops a late admission.
    pub fn release_unanswered(config: &Config, governance: &Governance, identity: &Identity, reservation_id: String) {
        let Some(store) = &governance.store else { return };
        fleet::enqueue(SettleJob::new(
            SettleKind::Release,
            config,
            identity.tenant,
            identity.user.clone(),
            reservation_id,
            &Consumption::default(),
            host::now_ms(),
            store.reservation_ttl_ms,
        ));
    }

    /// `x-ratelimit-*` headers, and usage and cost when the tenant may see them.
    pub fn response_headers(
        &self,
        config: &Config,
        governance: &Governance,
        served_by: Option<ModelId>,
        usage: Option<TokenUsage>,
    ) -> Vec<(&'static str, String)> {
        let standing = match &self.booked {
            Some(Booked::Local { admission, .. }) => admission.standing,
            Some(Booked::Fleet { standing, .. }) => *standing,
            None => None,
        };
        let mut headers = standing
            .map(|(limits, standing)| rate_limit_headers(&limits, &standing))
            .unwrap_or_default();
        if let (true, Some(usage), Some(model)) = (self.policy(governance).show_usage, usage, served_by) {
            let cost = crate::govern::ledger::cost_micros(&config.models[model].price, &usage);
            headers.push((HEADER_COST, format!("{:.6}", cost as f64 / 1e6)));
            headers.push((HEADER_INPUT_TOKENS, usage.prompt_total().to_string()));
            headers.push((HEADER_CACHED_TOKENS, usage.cached_input.to_string()));
            headers.push((HEADER_OUTPUT_TOKENS, usage.output.to_string()));
        }
        headers
    }

    /// Replaces the reservation by what the request consumed (nothing when
    /// no attempt reached a provider): in shared data at once, sending the
    /// soft alerts this crossed; in the fleet ledger through the root's
    /// queue (its answer brings the alerts). A request served on the local
    /// fallback is also charged to the fleet ledger through that queue, so
    /// the ledger has the spend once it is back.
    pub fn settle(&mut self, config: &Config, governance: &Governance, consumption: &Consumption, metrics: &Metrics) {
        match self.booked.take() {
            None => {}
            Some(Booked::Local { admission, fallback }) => {
                let tenant = self.local_policy(governance, fallback.is_some());
                let now = self.now();
                let (_, alerts) = admission::settle(config, tenant, &HostStore, &admission, consumption, now);
                for alert in alerts {
                    raise_alert(config, governance, admission.tenant, &alert, metrics);
                }
                if let Some(reservation_id) = fallback {
                    self.queue_fleet(config, governance, SettleKind::Charge, reservation_id, consumption);
                }
            }
            Some(Booked::Fleet { reservation_id, .. }) => {
                self.queue_fleet(config, governance, SettleKind::Settle, reservation_id, consumption);
            }
        }
    }

    fn queue_fleet(
        &self,
        config: &Config,
        governance: &Governance,
        kind: SettleKind,
        reservation_id: String,
        consumption: &Consumption,
    ) {
        let Some(store) = &governance.store else { return };
        let mut job = SettleJob::new(
            kind,
            config,
            self.identity.tenant,
            self.identity.user.clone(),
            reservation_id,
            consumption,
            host::now_ms(),
            store.reservation_ttl_ms,
        );
        job.test_clock_ms = self.now_override;
        fleet::enqueue(job);
    }
}

/// Counts a soft alert, logs it and sends it to the configured webhook.
pub fn raise_alert(
    config: &Config,
    governance: &Governance,
    tenant: crate::govern::keys::TenantId,
    alert: &CrossedAlert,
    metrics: &Metrics,
) {
    let labels = [
        Label::Tenant(Some(tenant)),
        Label::Fixed("window", window_label(alert.period)),
    ];
    metrics.emit(config, &[Sample::new(Family::SoftAlerts, &labels, 1)]);
    log::warn!(
        "tenant {} used {:.0}% of its {} quota (soft alert)",
        alert.tenant,
        alert.alert.share * 100.0,
        alert.period.name()
    );
    let Some(sink) = &governance.alerts else { return };
    let body = serde_json::json!({
        "type": "signalbox.soft_limit",
        "tenant": alert.tenant,
        "window": alert.period.name(),
        "period_index": alert.alert.period_index,
        "share": alert.alert.share,
    })
    .to_string();
    let headers = vec![
        (":method", "POST"),
        (":path", sink.path.as_str()),
        (":authority", sink.authority.as_str()),
        ("content-type", "application/json"),
    ];
    host::dispatch(
        &sink.cluster,
        headers,
        body.as_bytes(),
        Duration::from_millis(sink.timeout_ms),
    );
}
