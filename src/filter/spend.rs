//! The router's spend control around one request: authenticate the virtual
//! key, admit the request against its tenant's limits and quotas (reserving
//! its estimate), add `x-ratelimit-*` and usage headers to the answer, and
//! settle to actual usage when the request ends — then send any soft alert
//! it crossed (once per process and period: only the worker whose write set
//! the alert flag in shared data sees it).

use std::time::Duration;

use super::host::{self, HostStore};
use super::metrics::Metrics;
use crate::config::governance::{Governance, Tenant};
use crate::config::{Config, ModelId};
use crate::error::GatewayError;
use crate::govern::admission::{self, Admission, CrossedAlert};
use crate::govern::keys::Identity;
use crate::govern::ledger::Consumption;
use crate::govern::{auth_error, denial_error, rate_limit_headers};
use crate::headers::HeaderMap;
use crate::providers::TokenUsage;
use crate::route::RoutingDecision;
use crate::telemetry::{denial_reason, window_label, Family, Label, Sample};

pub const HEADER_COST: &str = "x-signalbox-cost-usd";
pub const HEADER_INPUT_TOKENS: &str = "x-signalbox-input-tokens";
pub const HEADER_CACHED_TOKENS: &str = "x-signalbox-cached-tokens";
pub const HEADER_OUTPUT_TOKENS: &str = "x-signalbox-output-tokens";

pub struct Spend {
    identity: Identity,
    admission: Option<Admission>,
    /// A test clock from the configured header, if any.
    now_override: Option<u64>,
}

impl Spend {
    /// Checks the virtual key of a request.
    pub fn authenticate(governance: &Governance, headers: &HeaderMap) -> Result<Spend, GatewayError> {
        let identity = governance.keys.authenticate(headers).map_err(auth_error)?;
        let now_override = governance
            .test_clock_header
            .as_deref()
            .and_then(|name| headers.get(name))
            .and_then(|value| value.trim().parse().ok());
        Ok(Spend {
            identity,
            admission: None,
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

    /// Past the soft threshold with a downgrade tier configured.
    pub fn downgrade(&self, governance: &Governance) -> bool {
        let tenant = self.policy(governance);
        tenant.downgrade_tier.is_some() && admission::past_soft_threshold(&HostStore, tenant, self.now())
    }

    /// Reserves the decided request's estimate, or refuses it.
    pub fn admit(
        &mut self,
        config: &Config,
        governance: &Governance,
        decision: &RoutingDecision,
        metrics: &Metrics,
    ) -> Result<(), GatewayError> {
        let estimate = admission::estimate(
            config,
            &decision.models,
            decision.prompt_tokens,
            decision.max_output_tokens,
            decision.choices,
            governance.default_output_reservation,
        );
        match admission::admit(governance, &HostStore, &self.identity, estimate, self.now()) {
            Ok(admission) => {
                self.admission = Some(admission);
                Ok(())
            }
            Err(denial) => {
                let labels = [
                    Label::Tenant(Some(self.identity.tenant)),
                    Label::Fixed("reason", denial_reason(&denial)),
                ];
                metrics.emit(config, &[Sample::new(Family::Rejections, &labels, 1)]);
                Err(denial_error(&self.policy(governance).name, denial))
            }
        }
    }

    /// `x-ratelimit-*` headers, and usage and cost when the tenant may see them.
    pub fn response_headers(
        &self,
        config: &Config,
        governance: &Governance,
        served_by: Option<ModelId>,
        usage: Option<TokenUsage>,
    ) -> Vec<(&'static str, String)> {
        let mut headers = self
            .admission
            .as_ref()
            .and_then(|admission| admission.standing)
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
    /// no attempt reached a provider) and sends the soft alerts this crossed.
    pub fn settle(&mut self, config: &Config, governance: &Governance, consumption: &Consumption, metrics: &Metrics) {
        let Some(admission) = self.admission.take() else { return };
        let now = self.now();
        let (_, alerts) = admission::settle(config, governance, &HostStore, &admission, consumption, now);
        for alert in alerts {
            let labels = [
                Label::Tenant(Some(admission.tenant)),
                Label::Fixed("window", window_label(alert.period)),
            ];
            metrics.emit(config, &[Sample::new(Family::SoftAlerts, &labels, 1)]);
            send_alert(governance, &alert);
        }
    }
}

fn send_alert(governance: &Governance, alert: &CrossedAlert) {
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
