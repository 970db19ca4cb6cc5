//! Typed results from webdis's answers.
//!
//! webdis answers a script with HTTP 200 and `{"EVALSHA": <reply>}` (or
//! `"EVAL"`), where a Lua table becomes a flat JSON array (nested tables
//! would become `null`, so the scripts reply flat) and a Redis error becomes
//! `[false, "<message>"]`, still with status 200. Only a 200 whose body has
//! exactly the shape the script documents decides anything; everything else
//! (503 when Redis is down, 504 or a reset from Envoy on a timeout, 403 from
//! the ACL, an error reply, a short array) is [`StoreFailure::Unavailable`],
//! and NOSCRIPT is [`StoreFailure::NoScript`]: send the call again with EVAL.

use serde_json::Value;

use crate::config::governance::Tenant;
use crate::govern::admission::Denial;
use crate::govern::quota::Amounts;
use crate::govern::window::{RateLimits, RateStanding};

/// Why a call decided nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreFailure {
    /// Redis does not know the script: repeat with `Invocation::WithText`.
    NoScript,
    /// Anything but a well-formed reply; `reason` is for the log.
    Unavailable { reason: String },
}

fn unavailable(reason: impl Into<String>) -> StoreFailure {
    StoreFailure::Unavailable { reason: reason.into() }
}

/// Requests and tokens left in a sliding minute (`None`: no such limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowLeft {
    pub requests: Option<u64>,
    pub tokens: Option<u64>,
}

/// The request is admitted and its estimate reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// Redis's clock when it decided.
    pub now_ms: u64,
    /// Milliseconds until the current minute has rolled over.
    pub reset_ms: u64,
    pub tenant: WindowLeft,
    pub user: WindowLeft,
    /// Highest share of any quota cap used by settled spend, in permille
    /// (compare with `alert_at` to downgrade the tier, as locally).
    pub share_permille: u64,
}

impl Admitted {
    /// The tighter window and where it stands, for `x-ratelimit-*` headers
    /// (the same choice local admission makes).
    pub fn standing(&self, tenant: &Tenant) -> Option<(RateLimits, RateStanding)> {
        let mut tightest: Option<(RateLimits, RateStanding)> = None;
        for (limits, left) in [(tenant.limits, self.tenant), (tenant.user_limits, self.user)] {
            if left == WindowLeft::default() {
                continue;
            }
            let standing = RateStanding {
                requests_remaining: left.requests,
                tokens_remaining: left.tokens,
                reset_ms: self.reset_ms,
            };
            if tightest.is_none_or(|(_, known)| standing.requests_remaining < known.requests_remaining) {
                tightest = Some((limits, standing));
            }
        }
        tightest
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedBy {
    TenantWindow,
    UserWindow,
    /// The quota at this index of the tenant's config.
    Quota(usize),
}

/// The request does not fit; nothing was booked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub now_ms: u64,
    pub by: RefusedBy,
    /// "requests", "tokens" or "cost".
    pub dimension: &'static str,
    /// `None`: the request alone is over a per-minute limit and never fits.
    pub retry_after_ms: Option<u64>,
    /// The refusing window's standing (zero and `None`s for a quota).
    pub reset_ms: u64,
    pub left: WindowLeft,
}

impl Refused {
    /// The same denial local admission gives, for `denial_error`.
    pub fn denial(&self, tenant: &Tenant) -> Option<Denial> {
        let window = |scope: &'static str, limits: RateLimits| Denial::Rate {
            scope,
            retry_after_ms: self.retry_after_ms,
            limits,
            standing: RateStanding {
                requests_remaining: self.left.requests,
                tokens_remaining: self.left.tokens,
                reset_ms: self.reset_ms,
            },
        };
        Some(match self.by {
            RefusedBy::TenantWindow => window("tenant", tenant.limits),
            RefusedBy::UserWindow => window("user", tenant.user_limits),
            RefusedBy::Quota(index) => Denial::Quota {
                period: tenant.quotas.get(index)?.period,
                dimension: self.dimension,
                retry_after_ms: self.retry_after_ms.unwrap_or(0),
            },
        })
    }
}

/// What an admission call decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Admitted(Admitted),
    Refused(Refused),
    /// The reservation id was settled or expired already: nothing booked.
    Closed {
        now_ms: u64,
    },
}

/// A quota whose soft threshold this settlement crossed (once per period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaAlert {
    pub quota: usize,
    pub period_index: u64,
    pub share_permille: u64,
}

/// What a settlement call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Settled {
        now_ms: u64,
        share_permille: u64,
        alerts: Vec<QuotaAlert>,
    },
    /// The reservation had expired and was charged in full; nothing changed.
    Expired { now_ms: u64 },
    /// Settled before (a retry); nothing changed.
    Duplicate { now_ms: u64 },
    /// Never admitted, or long forgotten; nothing changed.
    Unknown { now_ms: u64 },
}

/// One quota in its current period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaSpend {
    pub period_index: u64,
    pub resets_in_ms: u64,
    pub used: Amounts,
    pub reserved: Amounts,
    pub alerted: bool,
}

/// Running totals of one model (cost in micro-USD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpend {
    pub requests: u64,
    pub input: u64,
    pub cached_input: u64,
    pub cache_write: u64,
    pub output: u64,
    pub cost_micros: u64,
    /// Requests whose usage was the gateway's estimate.
    pub estimated: u64,
}

/// Where a tenant stands, for the spend view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spend {
    pub now_ms: u64,
    /// In the order of the tenant's quotas.
    pub quotas: Vec<QuotaSpend>,
    /// In the order of the models asked for.
    pub models: Vec<ModelSpend>,
    /// Reservations that expired unsettled and were charged in full.
    pub expired: Amounts,
}

/// The script's reply array, or why there is none.
pub(super) fn reply_array(status: u32, body: &[u8]) -> Result<Vec<Value>, StoreFailure> {
    if status != 200 {
        return Err(unavailable(format!("webdis answered {status}")));
    }
    let parsed: Value = serde_json::from_slice(body).map_err(|_| unavailable("the reply is not JSON"))?;
    let Value::Object(object) = parsed else {
        return Err(unavailable("the reply is not a JSON object"));
    };
    let mut members = object.into_iter();
    let (Some((command, reply)), None) = (members.next(), members.next()) else {
        return Err(unavailable("the reply does not have exactly one member"));
    };
    if command != "EVALSHA" && command != "EVAL" {
        return Err(unavailable(format!("a reply to {command}")));
    }
    let Value::Array(items) = reply else {
        return Err(unavailable("the script's reply is not an array"));
    };
    if let [Value::Bool(false), Value::String(message)] = items.as_slice() {
        return Err(if message.starts_with("NOSCRIPT") {
            StoreFailure::NoScript
        } else {
            unavailable(format!("Redis error: {message}"))
        });
    }
    Ok(items)
}

/// Reads a flat reply front to back, checking each item's type.
pub(super) struct Items {
    items: std::vec::IntoIter<Value>,
}

impl Items {
    pub(super) fn new(items: Vec<Value>) -> Items {
        Items {
            items: items.into_iter(),
        }
    }

    pub(super) fn string(&mut self) -> Result<String, StoreFailure> {
        match self.items.next() {
            Some(Value::String(text)) => Ok(text),
            other => Err(unavailable(format!("expected a string, got {other:?}"))),
        }
    }

    fn integer(&mut self) -> Result<i64, StoreFailure> {
        match self.items.next().and_then(|value| value.as_i64()) {
            Some(number) => Ok(number),
            None => Err(unavailable("expected an integer")),
        }
    }

    pub(super) fn count(&mut self) -> Result<u64, StoreFailure> {
        u64::try_from(self.integer()?).map_err(|_| unavailable("a negative count"))
    }

    /// -1 is the scripts' "none".
    fn optional(&mut self) -> Result<Option<u64>, StoreFailure> {
        match self.integer()? {
            -1 => Ok(None),
            number => u64::try_from(number)
                .map(Some)
                .map_err(|_| unavailable("a negative count")),
        }
    }

    fn amounts(&mut self) -> Result<Amounts, StoreFailure> {
        Ok(Amounts {
            requests: self.count()?,
            tokens: self.count()?,
            cost_micros: self.count()?,
        })
    }

    fn window(&mut self) -> Result<WindowLeft, StoreFailure> {
        Ok(WindowLeft {
            requests: self.optional()?,
            tokens: self.optional()?,
        })
    }

    /// Every item was read: a longer reply is not the documented shape.
    pub(super) fn finish<T>(mut self, value: T) -> Result<T, StoreFailure> {
        match self.items.next() {
            None => Ok(value),
            Some(_) => Err(unavailable("the reply is longer than its shape")),
        }
    }
}

fn items(status: u32, body: &[u8]) -> Result<(String, u64, Items), StoreFailure> {
    let mut items = Items::new(reply_array(status, body)?);
    let tag = items.string()?;
    let now_ms = items.count()?;
    Ok((tag, now_ms, items))
}

fn dimension(name: &str) -> Result<&'static str, StoreFailure> {
    ["requests", "tokens", "cost"]
        .into_iter()
        .find(|known| *known == name)
        .ok_or_else(|| unavailable(format!("unknown dimension {name}")))
}

/// An admission's answer (`status` and body of webdis's response).
pub fn parse_admission(status: u32, body: &[u8]) -> Result<Admission, StoreFailure> {
    let (tag, now_ms, mut items) = items(status, body)?;
    let admission = match tag.as_str() {
        "admitted" => Admission::Admitted(Admitted {
            now_ms,
            reset_ms: items.count()?,
            tenant: items.window()?,
            user: items.window()?,
            share_permille: items.count()?,
        }),
        "refused" => {
            let scope = items.string()?;
            let quota = items.optional()?;
            let by = match (scope.as_str(), quota) {
                ("tenant", None) => RefusedBy::TenantWindow,
                ("user", None) => RefusedBy::UserWindow,
                ("quota", Some(index)) => {
                    RefusedBy::Quota(usize::try_from(index).map_err(|_| unavailable("a quota index out of range"))?)
                }
                _ => return Err(unavailable(format!("refused by {scope} {quota:?}"))),
            };
            Admission::Refused(Refused {
                now_ms,
                by,
                dimension: dimension(&items.string()?)?,
                retry_after_ms: items.optional()?,
                reset_ms: items.optional()?.unwrap_or(0),
                left: items.window()?,
            })
        }
        "closed" => Admission::Closed { now_ms },
        other => return Err(unavailable(format!("an admission answered {other}"))),
    };
    items.finish(admission)
}

/// A settlement's answer.
pub fn parse_settlement(status: u32, body: &[u8]) -> Result<Settlement, StoreFailure> {
    let (tag, now_ms, mut items) = items(status, body)?;
    let settlement = match tag.as_str() {
        "settled" => {
            let share_permille = items.count()?;
            let count = items.count()?;
            let mut alerts = Vec::new();
            for _ in 0..count {
                alerts.push(QuotaAlert {
                    quota: usize::try_from(items.count()?).map_err(|_| unavailable("a quota index out of range"))?,
                    period_index: items.count()?,
                    share_permille: items.count()?,
                });
            }
            Settlement::Settled {
                now_ms,
                share_permille,
                alerts,
            }
        }
        "expired" => Settlement::Expired { now_ms },
        "duplicate" => Settlement::Duplicate { now_ms },
        "unknown" => Settlement::Unknown { now_ms },
        other => return Err(unavailable(format!("a settlement answered {other}"))),
    };
    items.finish(settlement)
}

/// A spend call's answer for a tenant with `quota_count` quotas and
/// `model_count` models asked for.
pub fn parse_spend(status: u32, body: &[u8], quota_count: usize, model_count: usize) -> Result<Spend, StoreFailure> {
    let (tag, now_ms, mut items) = items(status, body)?;
    if tag != "spend" {
        return Err(unavailable(format!("a spend call answered {tag}")));
    }
    let mut quotas = Vec::with_capacity(quota_count);
    for _ in 0..quota_count {
        quotas.push(QuotaSpend {
            period_index: items.count()?,
            resets_in_ms: items.count()?,
            used: items.amounts()?,
            reserved: items.amounts()?,
            alerted: items.count()? != 0,
        });
    }
    let mut models = Vec::with_capacity(model_count);
    for _ in 0..model_count {
        models.push(ModelSpend {
            requests: items.count()?,
            input: items.count()?,
            cached_input: items.count()?,
            cache_write: items.count()?,
            output: items.count()?,
            cost_micros: items.count()?,
            estimated: items.count()?,
        });
    }
    let expired = items.amounts()?;
    items.finish(Spend {
        now_ms,
        quotas,
        models,
        expired,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::govern::quota::{Caps, Period, Quota};

    // Bodies as webdis 0.1.9 sent them in front of Redis 7.0 (tests/test_fleet_store.py).
    const ADMITTED: &[u8] = br#"{"EVALSHA":["admitted",1795521600000,60000,1,900,-1,50,0]}"#;
    const REFUSED_BY_USER: &[u8] = br#"{"EVALSHA":["refused",1795521600000,"user",-1,"tokens",90001,60000,-1,50]}"#;
    const NEVER_FITS: &[u8] = br#"{"EVALSHA":["refused",1795521600000,"tenant",-1,"tokens",-1,60000,3,800]}"#;
    const REFUSED_BY_QUOTA: &[u8] = br#"{"EVALSHA":["refused",1795521600000,"quota",0,"cost",43200000,-1,-1,-1]}"#;
    const SETTLED_WITH_ALERT: &[u8] = br#"{"EVAL":["settled",1795521600005,850,1,0,20781,850]}"#;
    const SPEND: &[u8] =
        br#"{"EVALSHA":["spend",1795521602000,20781,43198000,0,0,0,0,0,0,0,1,50,10,0,30,850,1,1,100,100]}"#;
    const NOSCRIPT: &[u8] = br#"{"EVALSHA":[false,"NOSCRIPT No matching script. Please use EVAL."]}"#;

    fn tenant() -> Tenant {
        Tenant {
            name: "acme".into(),
            allowed_models: None,
            max_tier: None,
            max_tokens_per_request: None,
            limits: RateLimits {
                requests_per_minute: Some(2),
                tokens_per_minute: Some(1_000),
            },
            user_limits: RateLimits {
                requests_per_minute: None,
                tokens_per_minute: Some(150),
            },
            quotas: vec![Quota {
                period: Period::Day,
                caps: Caps {
                    cost_micros: Some(1_000),
                    ..Caps::default()
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

    #[test]
    fn an_admission_reports_both_windows_and_picks_the_tighter_for_headers() {
        let Ok(Admission::Admitted(admitted)) = parse_admission(200, ADMITTED) else {
            panic!("not admitted");
        };
        assert_eq!(
            admitted.tenant,
            WindowLeft {
                requests: Some(1),
                tokens: Some(900)
            }
        );
        assert_eq!(
            admitted.user,
            WindowLeft {
                requests: None,
                tokens: Some(50)
            }
        );
        let (limits, standing) = admitted.standing(&tenant()).unwrap();
        // The user window has no request limit, which sorts first, as locally.
        assert_eq!(limits, tenant().user_limits);
        assert_eq!(standing.tokens_remaining, Some(50));
        assert_eq!(standing.reset_ms, 60_000);
    }

    #[test]
    fn refusals_become_the_denials_local_admission_gives() {
        let tenant = tenant();
        let Ok(Admission::Refused(by_user)) = parse_admission(200, REFUSED_BY_USER) else {
            panic!("not refused");
        };
        assert_eq!(by_user.by, RefusedBy::UserWindow);
        assert!(matches!(
            by_user.denial(&tenant),
            Some(Denial::Rate {
                scope: "user",
                retry_after_ms: Some(90_001),
                ..
            })
        ));
        let Ok(Admission::Refused(never)) = parse_admission(200, NEVER_FITS) else {
            panic!("not refused");
        };
        assert_eq!(never.retry_after_ms, None);
        let Ok(Admission::Refused(by_quota)) = parse_admission(200, REFUSED_BY_QUOTA) else {
            panic!("not refused");
        };
        assert_eq!(
            by_quota.denial(&tenant),
            Some(Denial::Quota {
                period: Period::Day,
                dimension: "cost",
                retry_after_ms: 43_200_000
            })
        );
    }

    #[test]
    fn a_settlement_reports_the_alerts_it_crossed() {
        assert_eq!(
            parse_settlement(200, SETTLED_WITH_ALERT),
            Ok(Settlement::Settled {
                now_ms: 1_795_521_600_005,
                share_permille: 850,
                alerts: vec![QuotaAlert {
                    quota: 0,
                    period_index: 20_781,
                    share_permille: 850
                }],
            })
        );
        assert_eq!(
            parse_settlement(200, br#"{"EVALSHA":["duplicate",5]}"#),
            Ok(Settlement::Duplicate { now_ms: 5 })
        );
    }

    #[test]
    fn the_spend_reply_is_read_by_the_counts_asked_for() {
        let spend = parse_spend(200, SPEND, 1, 1).unwrap();
        assert_eq!(spend.quotas[0].period_index, 20_781);
        assert_eq!(spend.quotas[0].used, Amounts::default());
        assert_eq!(spend.models[0].cost_micros, 850);
        assert_eq!(spend.models[0].cached_input, 10);
        assert_eq!(spend.models[0].estimated, 1);
        assert_eq!(
            spend.expired,
            Amounts {
                requests: 1,
                tokens: 100,
                cost_micros: 100
            }
        );
        assert!(parse_spend(200, SPEND, 1, 2).is_err(), "too short for two models");
        assert!(parse_spend(200, SPEND, 0, 1).is_err(), "too long for no quota");
    }

    #[test]
    fn noscript_asks_for_eval_and_anything_malformed_is_unavailable() {
        assert_eq!(parse_admission(200, NOSCRIPT), Err(StoreFailure::NoScript));
        let unavailable = [
            (503, &b""[..]),
            (504, &b"upstream request timeout"[..]),
            (403, &b""[..]),
            (200, &b"not json"[..]),
            (
                200,
                &br#"{"EVALSHA":[false,"ERR user_script:52: signalbox: missing argument 2"]}"#[..],
            ),
            (200, &br#"{"GET":["admitted",1,60000,1,900,-1,50,0]}"#[..]),
            (200, &br#"{"EVALSHA":["admitted",1,60000,1,900,-1,50]}"#[..]),
            (200, &br#"{"EVALSHA":["admitted",1,60000,1,900,-1,50,0,7]}"#[..]),
            (200, &br#"{"EVALSHA":["admitted",1,60000,null,900,-1,50,0]}"#[..]),
            (200, &br#"{"EVALSHA":["refused",1,"quota",-1,"cost",5,-1,-1,-1]}"#[..]),
            (200, &br#"{"EVALSHA":["refused",1,"tenant",-1,"gold",5,-1,-1,-1]}"#[..]),
            (200, &br#"{"EVALSHA":1,"EVAL":2}"#[..]),
            (200, &br#"{"EVALSHA":["settled",1,-3,0]}"#[..]),
        ];
        for (status, body) in unavailable {
            assert!(
                matches!(parse_admission(status, body), Err(StoreFailure::Unavailable { .. })),
                "{status} {}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(matches!(
            parse_settlement(200, br#"{"EVALSHA":["settled",1,-3,0]}"#),
            Err(StoreFailure::Unavailable { .. })
        ));
    }
}
