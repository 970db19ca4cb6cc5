//! The HTTP requests that run a ledger script through webdis.
//!
//! webdis takes a Redis command as a POST body `COMMAND/arg/arg/…`: it
//! splits on `/`, reads a trailing `.json`-like suffix as a reply format and
//! `?` as a query, and percent-decodes each argument. So every byte of an
//! argument but `[A-Za-z0-9_-]` is sent percent-encoded; that covers the
//! `{…}` hash tags in keys and the whole script text of an EVAL.
//!
//! [`AdmitCall`], [`SettleCall`] and [`SpendCall`] hold what one call needs
//! and lay out KEYS and ARGV exactly as the scripts' headers describe.

use crate::config::governance::Tenant;
use crate::govern::quota::{Amounts, Period, Quota};
use crate::govern::window::RateLimits;
use crate::providers::TokenUsage;

use super::keys::tenant_keys;
use super::scripts::{Script, ScriptNames};

/// How the script is named in the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invocation {
    /// EVALSHA with the script's SHA-1: the usual call.
    BySha,
    /// EVAL with the whole text: after Redis answered NOSCRIPT (it restarted
    /// or flushed its scripts); it caches the script for the next EVALSHA.
    WithText,
}

/// One HTTP request for `dispatch_http_call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRequest {
    /// `:method`, `:path`, `:authority`.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// A call of one script: its keys and arguments.
pub trait ScriptCall {
    const SCRIPT: Script;
    fn keys(&self) -> Vec<String>;
    fn arguments(&self) -> Vec<String>;

    /// The POST to webdis at `authority` (the Host its cluster expects).
    fn request(&self, names: &ScriptNames, invocation: Invocation, authority: &str) -> StoreRequest {
        let (command, script) = match invocation {
            Invocation::BySha => ("EVALSHA", names.sha1(Self::SCRIPT)),
            Invocation::WithText => ("EVAL", Self::SCRIPT.text()),
        };
        let keys = self.keys();
        let mut body = command.as_bytes().to_vec();
        let count = keys.len().to_string();
        let arguments = self.arguments();
        let parts = [script, count.as_str()]
            .into_iter()
            .chain(keys.iter().map(String::as_str))
            .chain(arguments.iter().map(String::as_str));
        for part in parts {
            body.push(b'/');
            push_encoded(&mut body, part);
        }
        StoreRequest {
            headers: vec![
                (":method", "POST".to_string()),
                (":path", "/".to_string()),
                (":authority", authority.to_string()),
            ],
            body,
        }
    }
}

fn push_encoded(body: &mut Vec<u8>, argument: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in argument.as_bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            body.push(byte);
        } else {
            body.extend_from_slice(&[b'%', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0x0f)]]);
        }
    }
}

/// -1 stands for "no limit" in the scripts.
fn limit_text(limit: Option<u64>) -> String {
    limit.map_or_else(|| "-1".to_string(), |value| value.to_string())
}

fn clock_text(test_clock_ms: Option<u64>) -> String {
    test_clock_ms.unwrap_or(0).to_string()
}

/// The quota block every script ends its policy with: a count, then per
/// quota its period and caps.
fn push_quotas(arguments: &mut Vec<String>, quotas: &[Quota]) {
    arguments.push(quotas.len().to_string());
    for quota in quotas {
        let period = match quota.period {
            Period::Day => "day",
            Period::Month => "month",
        };
        arguments.push(period.to_string());
        arguments.extend([quota.caps.requests, quota.caps.tokens, quota.caps.cost_micros].map(limit_text));
    }
}

fn push_amounts(arguments: &mut Vec<String>, amounts: Amounts) {
    arguments.extend([amounts.requests, amounts.tokens, amounts.cost_micros].map(|value| value.to_string()));
}

/// A reservation id: 32 hex characters from 16 random bytes (the scripts
/// accept 1 to 64 of `[A-Za-z0-9._-]`).
pub fn reservation_id(random: [u8; 16]) -> String {
    random.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Admission of one request: check every window and quota, reserve the estimate.
#[derive(Debug, Clone)]
pub struct AdmitCall<'a> {
    pub tenant: &'a Tenant,
    pub user: Option<&'a str>,
    pub reservation_id: &'a str,
    /// How long the reservation may stay open: the request's deadline plus a
    /// margin. Past it, the next call for the tenant charges it in full.
    pub ttl_ms: u64,
    /// `Some` only where the config sets a test clock; `None`: Redis's clock.
    pub test_clock_ms: Option<u64>,
    pub estimate: Amounts,
}

impl ScriptCall for AdmitCall<'_> {
    const SCRIPT: Script = Script::Admit;

    fn keys(&self) -> Vec<String> {
        tenant_keys(&self.tenant.name, self.user, self.tenant.quotas.len())
    }

    fn arguments(&self) -> Vec<String> {
        // A request without a user has no user window, whatever the limits.
        let user_limits = match self.user {
            Some(_) => self.tenant.user_limits,
            None => RateLimits::default(),
        };
        let mut arguments = vec![
            self.reservation_id.to_string(),
            self.ttl_ms.to_string(),
            clock_text(self.test_clock_ms),
        ];
        push_amounts(&mut arguments, self.estimate);
        for limits in [self.tenant.limits, user_limits] {
            arguments.extend([limits.requests_per_minute, limits.tokens_per_minute].map(limit_text));
        }
        push_quotas(&mut arguments, &self.tenant.quotas);
        arguments
    }
}

/// Settlement of one admitted request: actual usage replaces the estimate.
#[derive(Debug, Clone)]
pub struct SettleCall<'a> {
    pub tenant: &'a Tenant,
    /// The same user as at admission (its window is corrected).
    pub user: Option<&'a str>,
    pub reservation_id: &'a str,
    pub test_clock_ms: Option<u64>,
    /// Requests, tokens and cost to charge (requests: 1 for a request
    /// served; all zero for a release: the request was never served).
    pub actual: Amounts,
    /// Each attempt's part, on its model's ledger (empty: nothing reached a provider).
    pub ledger: &'a [LedgerEntry<'a>],
    pub charge: Charge,
}

/// Whether a settlement has a reservation to replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// The ledger admitted the request (or may have: a release of an
    /// admission whose answer was lost). An unknown id is only tombstoned.
    Reserved,
    /// The request was served on a replica's local fallback: charged without
    /// a reservation (or settling the one a late admission made), to the
    /// minute and period it ended in, `ended_ms_ago` before the call.
    Unreserved { ended_ms_ago: u64 },
}

/// One attempt's part of a settlement, for the cost ledger of its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerEntry<'a> {
    pub model: &'a str,
    pub usage: TokenUsage,
    pub cost_micros: u64,
    /// The provider reported no usage: this is the gateway's estimate.
    pub estimated: bool,
}

impl ScriptCall for SettleCall<'_> {
    const SCRIPT: Script = Script::Settle;

    fn keys(&self) -> Vec<String> {
        tenant_keys(&self.tenant.name, self.user, self.tenant.quotas.len())
    }

    fn arguments(&self) -> Vec<String> {
        let mut arguments = vec![self.reservation_id.to_string(), clock_text(self.test_clock_ms)];
        push_amounts(&mut arguments, self.actual);
        // The scripts compare integers: the alert share in permille.
        arguments.push(((self.tenant.alert_at * 1000.0).round().max(0.0) as u64).to_string());
        push_quotas(&mut arguments, &self.tenant.quotas);
        arguments.push(self.ledger.len().to_string());
        for entry in self.ledger {
            let usage = &entry.usage;
            arguments.push(entry.model.to_string());
            arguments.extend(
                [
                    usage.input,
                    usage.cached_input,
                    usage.cache_write,
                    usage.output,
                    entry.cost_micros,
                    u64::from(entry.estimated),
                ]
                .map(|n| n.to_string()),
            );
        }
        match self.charge {
            Charge::Reserved => arguments.extend(["0", "0", "0", "0"].map(String::from)),
            Charge::Unreserved { ended_ms_ago } => {
                // The windows the tenant (and the user, if any) has, as
                // admission would have booked them.
                let user_window = self.user.is_some() && !self.tenant.user_limits.is_unlimited();
                arguments.push("1".to_string());
                arguments.push(ended_ms_ago.to_string());
                arguments.extend(
                    [!self.tenant.limits.is_unlimited(), user_window].map(|limited| u8::from(limited).to_string()),
                );
            }
        }
        arguments
    }
}

/// The spend view of one tenant: its quotas now and its ledger per model.
#[derive(Debug, Clone)]
pub struct SpendCall<'a> {
    pub tenant: &'a Tenant,
    pub test_clock_ms: Option<u64>,
    /// The models whose ledger to read, in the order the reply lists them.
    pub models: &'a [&'a str],
}

impl ScriptCall for SpendCall<'_> {
    const SCRIPT: Script = Script::Spend;

    fn keys(&self) -> Vec<String> {
        tenant_keys(&self.tenant.name, None, self.tenant.quotas.len())
    }

    fn arguments(&self) -> Vec<String> {
        let mut arguments = vec![clock_text(self.test_clock_ms)];
        push_quotas(&mut arguments, &self.tenant.quotas);
        arguments.push(self.models.len().to_string());
        arguments.extend(self.models.iter().map(|model| model.to_string()));
        arguments
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::govern::quota::Caps;

    fn tenant() -> Tenant {
        Tenant {
            name: "re{search}".into(),
            allowed_models: None,
            max_tier: None,
            max_tokens_per_request: None,
            limits: RateLimits {
                requests_per_minute: Some(60),
                tokens_per_minute: None,
            },
            user_limits: RateLimits {
                requests_per_minute: None,
                tokens_per_minute: Some(1_000),
            },
            quotas: vec![Quota {
                period: Period::Month,
                caps: Caps {
                    requests: None,
                    tokens: None,
                    cost_micros: Some(5_000_000),
                },
            }],
            alert_at: 0.8,
            downgrade_tier: None,
            show_usage: false,
            audit_content: false,
            allowed_builtin_tools: Vec::new(),
            guardrails: None,
            shadow: None,
            on_store_failure: (
                crate::config::governance::FailMode::Closed,
                crate::config::governance::FailMode::Local,
            ),
        }
    }

    const ESTIMATE: Amounts = Amounts {
        requests: 1,
        tokens: 300,
        cost_micros: 4_500,
    };

    /// As webdis decodes an argument.
    fn percent_decoded(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut index = 0;
        while index < bytes.len() {
            if bytes[index] == b'%' {
                out.push(u8::from_str_radix(&text[index + 1..index + 3], 16).unwrap());
                index += 3;
            } else {
                out.push(bytes[index]);
                index += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn body_text(request: &StoreRequest) -> &str {
        std::str::from_utf8(&request.body).unwrap()
    }

    #[test]
    fn an_admission_is_one_evalsha_post_with_every_argument_encoded() {
        let tenant = tenant();
        let call = AdmitCall {
            tenant: &tenant,
            user: Some("a/b.c"),
            reservation_id: "0f1e",
            ttl_ms: 90_000,
            test_clock_ms: None,
            estimate: ESTIMATE,
        };
        let names = ScriptNames::compute();
        let request = call.request(&names, Invocation::BySha, "webdis");
        assert_eq!(
            request.headers,
            vec![
                (":method", "POST".to_string()),
                (":path", "/".to_string()),
                (":authority", "webdis".to_string())
            ]
        );
        let expected = format!(
            "EVALSHA/{}/6/sb%3A%7Bre%257Bsearch%257D%7D%3Ares/sb%3A%7Bre%257Bsearch%257D%7D%3Adue/\
             sb%3A%7Bre%257Bsearch%257D%7D%3Aledger/sb%3A%7Bre%257Bsearch%257D%7D%3Arate/\
             sb%3A%7Bre%257Bsearch%257D%7D%3Auser%3Aa%2Fb%2Ec/sb%3A%7Bre%257Bsearch%257D%7D%3Aquota%3A0/\
             0f1e/90000/0/1/300/4500/60/-1/-1/1000/1/month/-1/-1/5000000",
            names.sha1(Script::Admit)
        );
        assert_eq!(body_text(&request), expected);
    }

    #[test]
    fn a_request_without_a_user_has_no_user_window() {
        let tenant = tenant();
        let call = AdmitCall {
            tenant: &tenant,
            user: None,
            reservation_id: "r",
            ttl_ms: 1,
            test_clock_ms: Some(1_795_521_600_000),
            estimate: ESTIMATE,
        };
        let arguments = call.arguments();
        assert_eq!(
            &arguments[2..10],
            ["1795521600000", "1", "300", "4500", "60", "-1", "-1", "-1"]
        );
    }

    #[test]
    fn the_eval_fallback_sends_the_whole_script_encoded() {
        let tenant = tenant();
        let call = SpendCall {
            tenant: &tenant,
            test_clock_ms: None,
            models: &["gpt-4o", "claude 3"],
        };
        let request = call.request(&ScriptNames::compute(), Invocation::WithText, "webdis");
        let body = body_text(&request);
        let script = body.split('/').nth(1).unwrap();
        assert!(script.starts_with("--%20Signalbox%20fleet%20ledger"));
        assert_eq!(percent_decoded(script), Script::Spend.text());
        assert!(body.ends_with("/0/1/month/-1/-1/5000000/2/gpt-4o/claude%203"));
    }

    #[test]
    fn a_settlement_carries_each_attempts_part_and_the_alert_share_in_permille() {
        let tenant = tenant();
        let ledger = [LedgerEntry {
            model: "gpt-4o",
            usage: TokenUsage {
                input: 70,
                cached_input: 10,
                cache_write: 0,
                output: 40,
            },
            cost_micros: 900,
            estimated: true,
        }];
        let call = SettleCall {
            tenant: &tenant,
            user: Some("alice"),
            reservation_id: "r1",
            test_clock_ms: None,
            actual: Amounts {
                requests: 1,
                tokens: 120,
                cost_micros: 900,
            },
            ledger: &ledger,
            charge: Charge::Reserved,
        };
        assert_eq!(
            call.arguments(),
            [
                "r1", "0", "1", "120", "900", "800", "1", "month", "-1", "-1", "5000000", "1", "gpt-4o", "70", "10",
                "0", "40", "900", "1", "0", "0", "0", "0"
            ]
        );
        let unserved = SettleCall { ledger: &[], ..call };
        assert_eq!(&unserved.arguments()[11..], ["0", "0", "0", "0", "0"]);
    }

    #[test]
    fn a_charge_without_reservation_says_when_the_request_ended_and_which_windows_the_tenant_has() {
        let tenant = tenant();
        let call = SettleCall {
            tenant: &tenant,
            user: Some("alice"),
            reservation_id: "r1",
            test_clock_ms: None,
            actual: Amounts {
                requests: 1,
                tokens: 120,
                cost_micros: 900,
            },
            ledger: &[],
            charge: Charge::Unreserved { ended_ms_ago: 4_250 },
        };
        // The tenant limits requests per minute, the user tokens per minute.
        assert_eq!(&call.arguments()[12..], ["1", "4250", "1", "1"]);
        let no_user = SettleCall {
            user: None,
            ..call.clone()
        };
        assert_eq!(&no_user.arguments()[12..], ["1", "4250", "1", "0"]);
        let unlimited = Tenant {
            limits: RateLimits::default(),
            ..tenant.clone()
        };
        let no_windows = SettleCall {
            tenant: &unlimited,
            ..call
        };
        assert_eq!(&no_windows.arguments()[12..], ["1", "4250", "0", "1"]);
    }

    #[test]
    fn reservation_ids_are_hex() {
        assert_eq!(reservation_id([0xab; 16]), "ab".repeat(16));
    }
}
