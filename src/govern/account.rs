//! A tenant's account in shared data: its sliding minute and the current
//! period of each of its quotas, in one record. Admission checks and books
//! them all with one compare-and-swap, and settlement updates them with one
//! more: all or nothing, and two shared-data calls per request for the
//! tenant instead of two per window and per quota.
//!
//! The user's minute stays a record of its own (users are many, and each is
//! booked alongside its tenant's account).

use super::quota::{Amounts, QuotaRecord, SoftAlert};
use super::window::{RateStanding, RateWindow};
use crate::config::governance::Tenant;
use crate::state::codec::{Reader, Writer};
use crate::state::Record;

const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Account {
    pub window: RateWindow,
    /// One per configured quota, in the configuration's order.
    pub quotas: Vec<QuotaRecord>,
}

/// What admission booked in an account, to settle or undo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountBooking {
    /// The minute the tenant's window booked (none without tenant limits).
    pub minute: Option<u64>,
    /// The period each quota booked in, by quota.
    pub periods: Vec<u64>,
}

/// Why an account refused a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Over the tenant's per-minute limits: the wait until the request fits
    /// (`None`: it never does).
    Rate {
        wait_ms: Option<u64>,
        standing: RateStanding,
    },
    /// The quota at `index` is used up in `dimension`.
    Quota { index: usize, dimension: &'static str },
}

impl Account {
    /// The account as `tenant`'s configuration has it: one quota record per
    /// quota (a reload may have added or removed some).
    fn fit(&mut self, tenant: &Tenant) {
        self.quotas.resize(tenant.quotas.len(), QuotaRecord::default());
    }

    /// The record of quota `index` (a fresh one if the account has none).
    pub fn quota(&self, index: usize) -> QuotaRecord {
        self.quotas.get(index).copied().unwrap_or_default()
    }

    /// Books `estimate` in the tenant's window and every quota if it fits
    /// all of them, and says where the window then stands (with tenant
    /// limits); otherwise leaves the account as it was.
    pub fn book(
        &mut self,
        tenant: &Tenant,
        estimate: Amounts,
        now_ms: u64,
    ) -> Result<(AccountBooking, Option<RateStanding>), Refusal> {
        let mut next = self.clone();
        next.fit(tenant);
        let mut booking = AccountBooking {
            minute: None,
            periods: Vec::with_capacity(tenant.quotas.len()),
        };
        let mut standing = None;
        if !tenant.limits.is_unlimited() {
            if let Err(wait_ms) = next.window.try_admit(now_ms, estimate.tokens, &tenant.limits) {
                return Err(Refusal::Rate {
                    wait_ms,
                    standing: next.window.standing(now_ms, &tenant.limits),
                });
            }
            booking.minute = Some(next.window.minute);
            standing = Some(next.window.standing(now_ms, &tenant.limits));
        }
        for (index, (quota, record)) in tenant.quotas.iter().zip(&mut next.quotas).enumerate() {
            let period = record
                .try_reserve(quota.period, now_ms, estimate, &quota.caps)
                .map_err(|dimension| Refusal::Quota { index, dimension })?;
            booking.periods.push(period);
        }
        *self = next;
        Ok((booking, standing))
    }

    /// Takes back what `booking` booked (a later check refused the request).
    pub fn undo(&mut self, tenant: &Tenant, booking: &AccountBooking, estimate: Amounts, now_ms: u64) {
        self.fit(tenant);
        if let Some(minute) = booking.minute {
            self.window.cancel(now_ms, minute, estimate.tokens);
        }
        for ((quota, record), &period) in tenant.quotas.iter().zip(&mut self.quotas).zip(&booking.periods) {
            record.release(quota.period, now_ms, period, estimate);
        }
    }

    /// Replaces the booked `estimate` by `actual`; returns the soft alerts
    /// this crossed, by quota.
    pub fn settle(
        &mut self,
        tenant: &Tenant,
        booking: &AccountBooking,
        estimate: Amounts,
        actual: Amounts,
        now_ms: u64,
    ) -> Vec<(usize, SoftAlert)> {
        self.fit(tenant);
        if let Some(minute) = booking.minute {
            self.window
                .settle_tokens(now_ms, minute, estimate.tokens, actual.tokens);
        }
        let mut alerts = Vec::new();
        let quotas = tenant.quotas.iter().zip(&mut self.quotas).zip(&booking.periods);
        for (index, ((quota, record), &period)) in quotas.enumerate() {
            if let Some(alert) = record.settle(quota, now_ms, period, estimate, actual, tenant.alert_at) {
                alerts.push((index, alert));
            }
        }
        alerts
    }
}

impl Record for Account {
    fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::with_version(VERSION);
        writer.bytes(&self.window.encode());
        writer.u16(u16::try_from(self.quotas.len()).unwrap_or(u16::MAX));
        for quota in self.quotas.iter().take(usize::from(u16::MAX)) {
            writer.bytes(&quota.encode());
        }
        writer.finish()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut reader = Reader::with_version(bytes, VERSION)?;
        let window = RateWindow::decode(reader.bytes()?)?;
        let count = reader.u16()?;
        let quotas = (0..count)
            .map(|_| QuotaRecord::decode(reader.bytes()?))
            .collect::<Option<Vec<_>>>()?;
        reader.is_done().then_some(Account { window, quotas })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::govern::quota::Period;
    use crate::testing::{governed_config, tokens};

    /// 2026-11-24T12:00:00Z.
    const NOON: u64 = 1_795_521_600_000;

    #[test]
    fn an_account_reads_back_as_written() {
        let config = governed_config();
        let tenant = &config.governance.as_ref().unwrap().tenants[1];
        let mut account = Account::default();
        account.book(tenant, tokens(100), NOON).unwrap();
        assert_eq!(Account::decode(&account.encode()), Some(account.clone()));
        let mut truncated = account.encode();
        truncated.pop();
        assert_eq!(Account::decode(&truncated), None);
    }

    #[test]
    fn a_refused_booking_leaves_the_account_unchanged() {
        let config = governed_config();
        let tenant = &config.governance.as_ref().unwrap().tenants[1];
        assert!(!tenant.quotas.is_empty() && !tenant.limits.is_unlimited());
        let mut account = Account::default();
        account.book(tenant, tokens(100), NOON).unwrap();
        let before = account.clone();
        // Within the minute's 10 000 tokens but over the day's 5 000: the
        // window, which took the request, must not keep it either.
        let refused = account.book(tenant, tokens(6_000), NOON).unwrap_err();
        assert!(matches!(refused, Refusal::Quota { .. }), "{refused:?}");
        assert_eq!(account, before);
    }

    #[test]
    fn settling_replaces_the_estimate_in_the_window_and_every_quota() {
        let config = governed_config();
        let tenant = &config.governance.as_ref().unwrap().tenants[1];
        let mut account = Account::default();
        let (booking, _) = account.book(tenant, tokens(1_000), NOON).unwrap();
        assert_eq!(booking.periods.len(), tenant.quotas.len());
        account.settle(tenant, &booking, tokens(1_000), tokens(300), NOON + 1_000);
        for index in 0..tenant.quotas.len() {
            let quota = account.quota(index);
            assert_eq!(quota.reserved, Amounts::default(), "quota {index}");
            assert_eq!(quota.used.tokens, 300, "quota {index}");
        }
        let day = tenant.quotas.iter().position(|quota| quota.period == Period::Day);
        assert!(day.is_some(), "the test tenant has a day quota");
    }

    #[test]
    fn an_account_follows_the_configured_quota_count() {
        let config = governed_config();
        let tenant = &config.governance.as_ref().unwrap().tenants[1];
        let mut account = Account {
            quotas: vec![QuotaRecord::default(); tenant.quotas.len() + 3],
            ..Account::default()
        };
        account.book(tenant, tokens(10), NOON).unwrap();
        assert_eq!(account.quotas.len(), tenant.quotas.len());
    }
}
