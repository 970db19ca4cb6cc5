//! What a plan needs to know besides the request: deployment health, the
//! random draw, and the calling tenant's policy (allowed models, tier caps,
//! guardrails, built-in tools).

use crate::config::governance::Tenant;
use crate::config::guardrails::Guardrails;
use crate::config::{Config, ModelId, TierId};
use crate::error::GatewayError;

use super::HealthView;

/// What a plan needs besides the request: health of the deployments and a
/// random draw (for weighted, canary and key choices).
pub struct Situation<'a> {
    pub health: &'a dyn HealthView,
    pub draw: u64,
    /// The calling tenant's policy, when governance is on.
    pub policy: Option<&'a Tenant>,
    /// The tenant is past its soft threshold: route to its downgrade tier.
    pub downgrade: bool,
    /// The guardrails let the request reach this (private) model only.
    pub confined_to: Option<ModelId>,
}

impl<'a> Situation<'a> {
    /// No tenant policy (governance off).
    pub fn open(health: &'a dyn HealthView, draw: u64) -> Situation<'a> {
        Situation {
            health,
            draw,
            policy: None,
            downgrade: false,
            confined_to: None,
        }
    }

    /// A confined request goes to its private model whatever the tenant's
    /// model list says: the operator named that model for the data.
    pub(super) fn allows(&self, model: ModelId) -> bool {
        match self.confined_to {
            Some(private) => model == private,
            None => self.policy.is_none_or(|tenant| tenant.allows(model)),
        }
    }

    /// The tenant's own guardrails, else every request's.
    pub fn guardrails<'c>(&self, config: &'c Config) -> &'c Guardrails
    where
        'a: 'c,
    {
        self.policy
            .and_then(|tenant| tenant.guardrails.as_ref())
            .unwrap_or(&config.guardrails)
    }

    /// OpenAI's built-in tools run their own models and bill outside the
    /// price table: a governed tenant uses only those its policy lists.
    pub(super) fn allows_builtin_tools<'t>(
        &self,
        mut tools: impl Iterator<Item = (&'t str, &'t str)>,
    ) -> Result<(), GatewayError> {
        let Some(tenant) = self.policy else { return Ok(()) };
        match tools.find(|(_, kind)| !tenant.allowed_builtin_tools.iter().any(|allowed| allowed == kind)) {
            Some((param, kind)) => Err(GatewayError::Forbidden {
                message: format!("The built-in tool `{kind}` (`{param}`) is not allowed for this key."),
            }),
            None => Ok(()),
        }
    }

    /// The tenant's hard cap: its `max_tier`, else the strongest tier.
    pub(super) fn max_tier(&self, config: &Config) -> TierId {
        let top = config.tiers.len().saturating_sub(1);
        self.policy.and_then(|tenant| tenant.max_tier).unwrap_or(top).min(top)
    }

    /// The highest tier this request may use, and whether a downgrade set it.
    pub(super) fn ceiling(&self, config: &Config) -> (TierId, bool) {
        let cap = self.max_tier(config);
        match self
            .policy
            .and_then(|tenant| tenant.downgrade_tier)
            .filter(|_| self.downgrade)
        {
            Some(downgrade) if downgrade < cap => (downgrade, true),
            _ => (cap, false),
        }
    }
}
