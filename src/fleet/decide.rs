//! What the filter does with a ledger call's answer, as plain decisions:
//! admit, refuse, send the call again with the script's text (Redis lost
//! its scripts), retry later, or carry on without the store. A call that
//! was already sent with its text and still finds no script is the store
//! misbehaving, not a reason to loop.

use crate::config::governance::Tenant;
use crate::govern::admission::Denial;

use super::reply::{parse_admission, parse_settlement, Admission, Admitted, QuotaAlert, Settlement, StoreFailure};

/// The router's next step after an admission call.
#[derive(Debug, Clone, PartialEq)]
pub enum AdmitOutcome {
    Admitted(Admitted),
    Refused(Denial),
    /// Redis does not know the script: send the same call with EVAL.
    Resend,
    /// No decision (the store is down, slow or answered nonsense).
    StoreDown {
        reason: String,
    },
}

pub fn admit_outcome(status: u32, body: &[u8], tenant: &Tenant, sent_with_text: bool) -> AdmitOutcome {
    match parse_admission(status, body) {
        Ok(Admission::Admitted(admitted)) => AdmitOutcome::Admitted(admitted),
        Ok(Admission::Refused(refused)) => match refused.denial(tenant) {
            Some(denial) => AdmitOutcome::Refused(denial),
            None => AdmitOutcome::StoreDown {
                reason: "a refusal names a quota this tenant does not have".into(),
            },
        },
        // A fresh reservation id is never closed: the store is confused.
        Ok(Admission::Closed { .. }) => AdmitOutcome::StoreDown {
            reason: "the store says a new reservation is closed".into(),
        },
        Err(StoreFailure::NoScript) if !sent_with_text => AdmitOutcome::Resend,
        Err(StoreFailure::NoScript) => AdmitOutcome::StoreDown {
            reason: "no script even after EVAL".into(),
        },
        Err(StoreFailure::Unavailable { reason }) => AdmitOutcome::StoreDown { reason },
    }
}

/// The root's next step after a settlement call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleOutcome {
    /// Nothing more to do; the alerts this settlement crossed, if any.
    Done { alerts: Vec<QuotaAlert>, expired: bool },
    /// Redis does not know the script: send the same call with EVAL.
    Resend,
    /// The store did not answer: try again later (before the reservation
    /// expires; after that the store has charged it in full).
    Retry { reason: String },
}

pub fn settle_outcome(status: u32, body: &[u8], sent_with_text: bool) -> SettleOutcome {
    match parse_settlement(status, body) {
        Ok(Settlement::Settled { alerts, .. }) => SettleOutcome::Done { alerts, expired: false },
        Ok(Settlement::Expired { .. }) => SettleOutcome::Done {
            alerts: Vec::new(),
            expired: true,
        },
        Ok(Settlement::Duplicate { .. } | Settlement::Unknown { .. }) => SettleOutcome::Done {
            alerts: Vec::new(),
            expired: false,
        },
        Err(StoreFailure::NoScript) if !sent_with_text => SettleOutcome::Resend,
        Err(StoreFailure::NoScript) => SettleOutcome::Retry {
            reason: "no script even after EVAL".into(),
        },
        Err(StoreFailure::Unavailable { reason }) => SettleOutcome::Retry { reason },
    }
}

/// How long to wait before retry number `retries` (1-based) of a
/// settlement: doubling from 100 ms, at most 5 s.
pub fn retry_delay_ms(retries: u32) -> u64 {
    100u64.saturating_mul(1 << retries.saturating_sub(1).min(6)).min(5_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::govern::quota::{Caps, Period, Quota};
    use crate::govern::window::RateLimits;

    fn tenant() -> Tenant {
        crate::testing::governed_config()
            .governance
            .map(|governance| governance.tenants[1].clone())
            .unwrap()
    }

    #[test]
    fn an_admission_answer_becomes_the_routers_next_step() {
        let tenant = tenant();
        let admitted = br#"{"EVALSHA":["admitted",1795521600000,60000,1,900,-1,50,0]}"#;
        assert!(matches!(
            admit_outcome(200, admitted, &tenant, false),
            AdmitOutcome::Admitted(_)
        ));
        let refused = br#"{"EVALSHA":["refused",1795521600000,"quota",0,"tokens",43200000,-1,-1,-1]}"#;
        assert!(matches!(
            admit_outcome(200, refused, &tenant, false),
            AdmitOutcome::Refused(Denial::Quota { .. })
        ));
        let noscript = br#"{"EVALSHA":[false,"NOSCRIPT No matching script. Please use EVAL."]}"#;
        assert_eq!(admit_outcome(200, noscript, &tenant, false), AdmitOutcome::Resend);
        assert!(matches!(
            admit_outcome(200, noscript, &tenant, true),
            AdmitOutcome::StoreDown { .. }
        ));
        for (status, body) in [(503, &b""[..]), (504, b"upstream request timeout"), (200, b"{}")] {
            assert!(matches!(
                admit_outcome(status, body, &tenant, false),
                AdmitOutcome::StoreDown { .. }
            ));
        }
        let beyond = Tenant {
            quotas: vec![Quota {
                period: Period::Day,
                caps: Caps::default(),
            }],
            limits: RateLimits::default(),
            ..tenant
        };
        let other_quota = br#"{"EVALSHA":["refused",1795521600000,"quota",3,"tokens",43200000,-1,-1,-1]}"#;
        assert!(matches!(
            admit_outcome(200, other_quota, &beyond, false),
            AdmitOutcome::StoreDown { .. }
        ));
    }

    #[test]
    fn a_settlement_is_done_once_the_store_has_it_and_retried_otherwise() {
        let settled = br#"{"EVAL":["settled",1795521600005,850,1,0,20781,850]}"#;
        assert!(matches!(
            settle_outcome(200, settled, false),
            SettleOutcome::Done { ref alerts, expired: false } if alerts.len() == 1
        ));
        assert!(matches!(
            settle_outcome(200, br#"{"EVALSHA":["expired",5]}"#, false),
            SettleOutcome::Done { expired: true, .. }
        ));
        assert!(matches!(settle_outcome(503, b"", false), SettleOutcome::Retry { .. }));
        let noscript = br#"{"EVALSHA":[false,"NOSCRIPT No matching script. Please use EVAL."]}"#;
        assert_eq!(settle_outcome(200, noscript, false), SettleOutcome::Resend);
        assert_eq!(retry_delay_ms(1), 100);
        assert_eq!(retry_delay_ms(3), 400);
        assert_eq!(retry_delay_ms(30), 5_000);
    }
}
