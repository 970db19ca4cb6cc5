//! Spend governance: virtual keys mapped to tenants ([`keys`], a leaf module
//! the configuration also uses), rate limits over a sliding minute
//! ([`window`]), daily and monthly quotas and budgets with reservations
//! ([`quota`]), admission and settlement, the cost ledger.

pub mod account;
pub mod admission;
pub use crate::keys;
pub mod ledger;
pub mod quota;
pub mod window;

use crate::error::GatewayError;
use admission::Denial;
use keys::AuthFailure;
use window::{RateLimits, RateStanding};

/// `12s`, `1m30s`: how OpenAI writes its `x-ratelimit-reset-*` headers.
fn duration_text(ms: u64) -> String {
    let seconds = ms.div_ceil(1000);
    if seconds < 60 {
        format!("{seconds}s")
    } else {
        format!("{}m{}s", seconds / 60, seconds % 60)
    }
}

/// OpenAI-style `x-ratelimit-*` headers for the limits that are set.
pub fn rate_limit_headers(limits: &RateLimits, standing: &RateStanding) -> Vec<(&'static str, String)> {
    let mut headers = Vec::with_capacity(6);
    let reset = duration_text(standing.reset_ms);
    if let (Some(limit), Some(remaining)) = (limits.requests_per_minute, standing.requests_remaining) {
        headers.push(("x-ratelimit-limit-requests", limit.to_string()));
        headers.push(("x-ratelimit-remaining-requests", remaining.to_string()));
        headers.push(("x-ratelimit-reset-requests", reset.clone()));
    }
    if let (Some(limit), Some(remaining)) = (limits.tokens_per_minute, standing.tokens_remaining) {
        headers.push(("x-ratelimit-limit-tokens", limit.to_string()));
        headers.push(("x-ratelimit-remaining-tokens", remaining.to_string()));
        headers.push(("x-ratelimit-reset-tokens", reset));
    }
    headers
}

pub fn auth_error(failure: AuthFailure) -> GatewayError {
    let reason = match failure {
        AuthFailure::Missing => "no key was sent (use `Authorization: Bearer <key>` or `x-api-key`)",
        AuthFailure::Malformed => "the key is malformed",
        AuthFailure::Unknown => "the key is not known",
        AuthFailure::Disabled => "the key is disabled",
    };
    GatewayError::Unauthorized { reason }
}

/// The client's error for a refused admission.
pub fn denial_error(tenant: &str, denial: Denial) -> GatewayError {
    let seconds = |ms: u64| ms.div_ceil(1000).max(1);
    match denial {
        Denial::Rate {
            scope,
            retry_after_ms,
            limits,
            standing,
        } => {
            let message = match retry_after_ms {
                Some(_) => format!("Rate limit reached for {scope} of `{tenant}`: requests or tokens per minute."),
                None => format!("This request alone exceeds the {scope} tokens-per-minute limit of `{tenant}`."),
            };
            GatewayError::RateLimited {
                message,
                retry_after_secs: retry_after_ms.map(seconds),
                headers: rate_limit_headers(&limits, &standing),
            }
        }
        Denial::Quota {
            period,
            dimension,
            retry_after_ms,
        } => GatewayError::QuotaExceeded {
            message: format!(
                "The {} {dimension} budget of `{tenant}` is used up until the period ends.",
                period.name()
            ),
            retry_after_secs: seconds(retry_after_ms),
        },
        Denial::Busy => GatewayError::RateLimited {
            message: "The gateway is too busy to account for this request; retry shortly.".into(),
            retry_after_secs: Some(1),
            headers: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_headers_follow_openai_names() {
        let limits = RateLimits {
            requests_per_minute: Some(60),
            tokens_per_minute: None,
        };
        let standing = RateStanding {
            requests_remaining: Some(59),
            tokens_remaining: None,
            reset_ms: 90_500,
        };
        assert_eq!(
            rate_limit_headers(&limits, &standing),
            vec![
                ("x-ratelimit-limit-requests", "60".to_string()),
                ("x-ratelimit-remaining-requests", "59".to_string()),
                ("x-ratelimit-reset-requests", "1m31s".to_string()),
            ]
        );
    }

    #[test]
    fn denials_become_429s_naming_the_budget() {
        let quota = denial_error(
            "research",
            Denial::Quota {
                period: quota::Period::Month,
                dimension: "cost",
                retry_after_ms: 5_000,
            },
        );
        assert_eq!(quota.status(), 429);
        assert_eq!(quota.code(), "insufficient_quota");
        assert!(quota.to_string().contains("monthly cost budget of `research`"));
        assert_eq!(quota.headers(), vec![("retry-after", "5".to_string())]);
        assert_eq!(auth_error(AuthFailure::Disabled).status(), 401);
    }
}
