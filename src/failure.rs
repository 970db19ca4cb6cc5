//! Why an attempt failed: the one vocabulary providers, health, routing and
//! metrics share, and the one table from an HTTP status to it.

/// Why an attempt failed, as far as routing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// 429 or the provider's throttling error: back off or go elsewhere.
    RateLimited,
    /// 503/529 or the provider's overload error: go elsewhere.
    Overloaded,
    /// Any other provider fault (5xx, unreadable answers, a model or
    /// deployment the provider does not know): another model may serve.
    Server,
    /// No response before the per-try timeout, 408/504 or the provider's
    /// timeout error.
    Timeout,
    /// Connection refused or reset before a response.
    Unreachable,
    /// 401/403: the provider rejects the gateway's credentials.
    Auth,
    /// The prompt does not fit the model: a larger context may serve.
    ContextLength,
    /// The request itself is wrong: no retry will help.
    Client,
}

pub const FAILURE_KINDS: usize = 8;

impl FailureKind {
    pub const ALL: [FailureKind; FAILURE_KINDS] = [
        FailureKind::RateLimited,
        FailureKind::Overloaded,
        FailureKind::Server,
        FailureKind::Timeout,
        FailureKind::Unreachable,
        FailureKind::Auth,
        FailureKind::ContextLength,
        FailureKind::Client,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FailureKind::RateLimited => "rate_limited",
            FailureKind::Overloaded => "overloaded",
            FailureKind::Server => "server_error",
            FailureKind::Timeout => "timeout",
            FailureKind::Unreachable => "unreachable",
            FailureKind::Auth => "auth",
            FailureKind::ContextLength => "context_length",
            FailureKind::Client => "client_error",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Whether this failure says something about the deployment (and so
    /// counts for the breaker and the health score). A malformed request or
    /// an oversized prompt does not.
    pub fn blames_deployment(self) -> bool {
        !matches!(self, FailureKind::Client | FailureKind::ContextLength)
    }

    /// The failure a status code means when the body says nothing more.
    pub fn from_status(status: u16) -> Option<FailureKind> {
        match status {
            200..=399 => None,
            429 => Some(FailureKind::RateLimited),
            401 | 403 => Some(FailureKind::Auth),
            408 | 504 => Some(FailureKind::Timeout),
            503 | 529 => Some(FailureKind::Overloaded),
            500..=599 => Some(FailureKind::Server),
            // The provider does not know the model or deployment: the
            // gateway's configuration is wrong for this model, another may serve.
            404 => Some(FailureKind::Server),
            _ => Some(FailureKind::Client),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FailureKind;

    #[test]
    fn the_status_table() {
        let kind = FailureKind::from_status;
        assert_eq!(kind(200), None);
        assert_eq!(kind(304), None);
        assert_eq!(kind(429), Some(FailureKind::RateLimited));
        assert_eq!(kind(401), Some(FailureKind::Auth));
        assert_eq!(kind(403), Some(FailureKind::Auth));
        assert_eq!(kind(408), Some(FailureKind::Timeout));
        assert_eq!(kind(504), Some(FailureKind::Timeout));
        assert_eq!(kind(503), Some(FailureKind::Overloaded));
        assert_eq!(kind(529), Some(FailureKind::Overloaded));
        assert_eq!(kind(500), Some(FailureKind::Server));
        assert_eq!(
            kind(404),
            Some(FailureKind::Server),
            "a model the provider does not know: another may serve"
        );
        assert_eq!(kind(400), Some(FailureKind::Client));
        assert_eq!(kind(422), Some(FailureKind::Client));
    }

    #[test]
    fn only_failures_the_deployment_caused_count_against_it() {
        let blamed: Vec<_> = FailureKind::ALL
            .into_iter()
            .filter(|kind| kind.blames_deployment())
            .collect();
        assert_eq!(blamed.len(), FailureKind::ALL.len() - 2);
        assert!(!FailureKind::Client.blames_deployment());
        assert!(!FailureKind::ContextLength.blames_deployment());
    }
}
