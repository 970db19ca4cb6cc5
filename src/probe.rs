//! Active probes: a minimal known-good request per deployment, sent on a
//! timer by one VM per process (it holds a lease in shared data), so an
//! outage is noticed before a user hits it and a recovery is noticed while
//! no traffic flows. Probe results feed the same health records as traffic.

use crate::config::{Config, DeploymentId};
use crate::error::GatewayError;
use crate::failure::FailureKind;
use crate::health::AttemptOutcome;
use crate::providers::{self, Operation};
use crate::route::attempts::{call_for, AttemptPlan, NativeApi};

/// Shared-data key of the lease that elects the probing VM.
pub const LEASE_KEY: &str = "signalbox/v1/lease/probes";

/// A request the gateway sends itself (a probe, a shadow call), ready to
/// dispatch to its deployment's cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnRequest {
    pub cluster: String,
    /// Pseudo-headers included (`:method`, `:path`, `:authority`).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The one-link plan of a request the gateway sends itself.
pub fn own_plan(config: &Config, deployment: DeploymentId) -> AttemptPlan {
    AttemptPlan {
        chain: vec![deployment],
        stream: false,
        client_wants_usage: false,
        native: NativeApi::None,
        operation: Operation::ChatCompletions,
        max_tokens: None,
        trials: Vec::new(),
        prompt_tokens: 0,
        output_limit: None,
        choices: 1,
        per_try_timeout_ms: config.resilience.per_try_timeout_ms,
        deadline_at_ms: 0,
        request: 0,
        tier: None,
        escalation: None,
        authority: config.models[config.deployments[deployment].model].cluster.clone(),
    }
}

/// A whole (non-streamed) chat request rewritten for `deployment`'s provider.
pub fn own_request(
    config: &Config,
    deployment: DeploymentId,
    chat_body: &[u8],
    user_agent: &str,
    now_unix_seconds: u64,
) -> Result<OwnRequest, GatewayError> {
    let plan = own_plan(config, deployment);
    let upstream = providers::build_request(&call_for(config, &plan, deployment, now_unix_seconds), chat_body)?;
    let mut headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), upstream.path),
        ("user-agent".to_string(), user_agent.to_string()),
    ];
    if !upstream.headers.iter().any(|(name, _)| name == ":authority") {
        headers.push((":authority".to_string(), plan.authority));
    }
    headers.extend(upstream.headers);
    Ok(OwnRequest {
        cluster: config.models[config.deployments[deployment].model].cluster.clone(),
        headers,
        body: upstream.body,
    })
}

/// The probe for `deployment`: one short user message, one output token,
/// in the provider's own format.
pub fn request(config: &Config, deployment: DeploymentId, now_unix_seconds: u64) -> Result<OwnRequest, GatewayError> {
    let model = &config.models[config.deployments[deployment].model];
    let body = serde_json::json!({
        "model": model.name,
        "messages": [{"role": "user", "content": "ping"}],
        "max_tokens": 1,
    });
    own_request(
        config,
        deployment,
        body.to_string().as_bytes(),
        "signalbox-probe",
        now_unix_seconds,
    )
}

/// What a probe's answer means for health (status 0: no answer).
pub fn outcome(status: u16, latency_ms: u64) -> AttemptOutcome {
    let failure = match status {
        0 => Some(FailureKind::Unreachable),
        status => FailureKind::from_status(status),
    };
    AttemptOutcome {
        failure,
        retry_after_ms: None,
        latency_ms,
        first_token_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample_config;

    #[test]
    fn a_probe_is_a_tiny_request_in_the_providers_format() {
        let config = sample_config();
        let medium = config.models[config.model_named("medium").unwrap()].deployments[0];
        let probe = request(&config, medium, 0).unwrap();
        assert_eq!(probe.cluster, "anthropic");
        let header = |name: &str| {
            probe
                .headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        assert_eq!(header(":path"), Some("/v1/chat/completions"));
        assert_eq!(header(":authority"), Some("anthropic"));
        assert_eq!(header("authorization"), Some("Bearer sk-ant-from-env"));
        let body: serde_json::Value = serde_json::from_slice(&probe.body).unwrap();
        assert_eq!(body["model"], "claude-haiku");
        assert_eq!(body["max_tokens"], 1);
    }

    #[test]
    fn probe_answers_map_to_outcomes() {
        assert_eq!(outcome(200, 30).failure, None);
        assert_eq!(outcome(0, 30).failure, Some(FailureKind::Unreachable));
        assert_eq!(outcome(503, 30).failure, Some(FailureKind::Overloaded));
    }
}
