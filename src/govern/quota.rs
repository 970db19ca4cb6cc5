//! Daily and monthly quotas on requests, tokens and cost, with reservations.
//!
//! A request is admitted only if `used + reserved + its estimate` stays
//! within every cap; the estimate is then reserved, atomically with the
//! check (one compare-and-swap). When the response ends the reservation is
//! released and the actual usage is added. Concurrent requests therefore
//! cannot all pass the same check: admitted spend exceeds a cap only by how
//! far actual usage exceeds its estimate, summed over requests in flight.
//! Periods are UTC days and months; a record from an earlier period is reset
//! the first time it is touched in a new one (no timers).

pub use crate::policy::{Amounts, Caps, Period, Quota};
use crate::state::codec::{Reader, Writer};
use crate::state::Record;

const VERSION: u8 = 1;

/// What crossing the soft threshold asks the caller to do (once per period).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftAlert {
    pub period_index: u64,
    pub share: f64,
}

/// One quota's state in its current period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuotaRecord {
    pub period_index: u64,
    pub used: Amounts,
    pub reserved: Amounts,
    /// The soft alert of this period has fired.
    pub alerted: bool,
}

impl QuotaRecord {
    /// Moves the record to `now_ms`'s period. Only forward: a clock that
    /// jumps back counts in the period the record is in, never wiping it.
    fn roll(&mut self, period: Period, now_ms: u64) {
        let index = period.index(now_ms);
        if index > self.period_index {
            *self = QuotaRecord {
                period_index: index,
                ..QuotaRecord::default()
            };
        }
    }

    /// Reserves `estimate` if it fits every cap. Err names the dimension.
    pub fn try_reserve(
        &mut self,
        period: Period,
        now_ms: u64,
        estimate: Amounts,
        caps: &Caps,
    ) -> Result<u64, &'static str> {
        self.roll(period, now_ms);
        if let Some(dimension) = caps.exceeded_by(self.used.plus(self.reserved).plus(estimate)) {
            return Err(dimension);
        }
        self.reserved = self.reserved.plus(estimate);
        Ok(self.period_index)
    }

    /// Releases a reservation without usage (another check failed).
    pub fn release(&mut self, period: Period, now_ms: u64, period_index: u64, estimate: Amounts) {
        self.roll(period, now_ms);
        if period_index == self.period_index {
            self.reserved = self.reserved.minus(estimate);
        }
    }

    /// Releases a reservation made in `period_index` and adds actual usage.
    /// Returns the soft alert to send if this settlement crossed `alert_share`.
    pub fn settle(
        &mut self,
        quota: &Quota,
        now_ms: u64,
        period_index: u64,
        estimate: Amounts,
        actual: Amounts,
        alert_share: f64,
    ) -> Option<SoftAlert> {
        let caps = &quota.caps;
        self.roll(quota.period, now_ms);
        if period_index == self.period_index {
            self.reserved = self.reserved.minus(estimate);
        }
        self.used = self.used.plus(actual);
        let share = caps.usage_share(self.used);
        if !self.alerted && share >= alert_share {
            self.alerted = true;
            return Some(SoftAlert {
                period_index: self.period_index,
                share,
            });
        }
        None
    }

    /// Share of the caps used (settled usage), in this period.
    pub fn share(&self, period: Period, now_ms: u64, caps: &Caps) -> f64 {
        if self.period_index < period.index(now_ms) {
            return 0.0;
        }
        caps.usage_share(self.used)
    }
}

impl Record for QuotaRecord {
    fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::with_version(VERSION);
        writer.u64(self.period_index);
        for amounts in [self.used, self.reserved] {
            writer
                .u64(amounts.requests)
                .u64(amounts.tokens)
                .u64(amounts.cost_micros);
        }
        writer.u8(u8::from(self.alerted));
        writer.finish()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut reader = Reader::with_version(bytes, VERSION)?;
        let period_index = reader.u64()?;
        let mut amounts = || -> Option<Amounts> {
            Some(Amounts {
                requests: reader.u64()?,
                tokens: reader.u64()?,
                cost_micros: reader.u64()?,
            })
        };
        let (used, reserved) = (amounts()?, amounts()?);
        let alerted = reader.u8()? != 0;
        let record = QuotaRecord {
            period_index,
            used,
            reserved,
            alerted,
        };
        reader.is_done().then_some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::DAY_MS;

    /// 2026-11-24T12:00:00Z.
    const NOON: u64 = 1_795_521_600_000;

    #[test]
    fn reservations_count_against_the_cap_until_settled() {
        let caps = Caps {
            tokens: Some(1_000),
            ..Caps::default()
        };
        let mut quota = QuotaRecord::default();
        let estimate = Amounts {
            requests: 1,
            tokens: 600,
            cost_micros: 0,
        };
        let period = quota.try_reserve(Period::Day, NOON, estimate, &caps).unwrap();
        assert_eq!(
            quota.try_reserve(Period::Day, NOON, estimate, &caps),
            Err("tokens"),
            "a second in-flight request would overshoot"
        );
        let actual = Amounts {
            requests: 1,
            tokens: 200,
            cost_micros: 0,
        };
        quota.settle(
            &Quota {
                period: Period::Day,
                caps,
            },
            NOON + 5,
            period,
            estimate,
            actual,
            0.8,
        );
        assert_eq!(quota.used.tokens, 200);
        assert_eq!(quota.reserved.tokens, 0);
        assert!(quota.try_reserve(Period::Day, NOON + 6, estimate, &caps).is_ok());
    }

    #[test]
    fn a_new_day_resets_lazily() {
        let caps = Caps {
            requests: Some(1),
            ..Caps::default()
        };
        let one = Amounts {
            requests: 1,
            ..Amounts::default()
        };
        let mut quota = QuotaRecord::default();
        let period = quota.try_reserve(Period::Day, NOON, one, &caps).unwrap();
        quota.settle(
            &Quota {
                period: Period::Day,
                caps,
            },
            NOON,
            period,
            one,
            one,
            0.8,
        );
        assert!(quota.try_reserve(Period::Day, NOON + 1_000, one, &caps).is_err());
        assert!(
            quota.try_reserve(Period::Day, NOON + DAY_MS / 2, one, &caps).is_ok(),
            "midnight passed"
        );
    }

    #[test]
    fn a_clock_that_jumps_back_neither_wipes_nor_reopens_the_period() {
        let caps = Caps {
            requests: Some(1),
            ..Caps::default()
        };
        let one = Amounts {
            requests: 1,
            ..Amounts::default()
        };
        let mut quota = QuotaRecord::default();
        assert!(quota.try_reserve(Period::Day, NOON, one, &caps).is_ok());
        // A worker whose clock says yesterday finds today's record full.
        assert!(quota.try_reserve(Period::Day, NOON - DAY_MS, one, &caps).is_err());
        assert_eq!(quota.reserved.requests, 1);
        assert_eq!(quota.period_index, Period::Day.index(NOON));
    }

    #[test]
    fn a_reservation_from_yesterday_settles_without_touching_today() {
        let caps = Caps {
            tokens: Some(1_000),
            ..Caps::default()
        };
        let estimate = Amounts {
            tokens: 500,
            ..Amounts::default()
        };
        let mut quota = QuotaRecord::default();
        let yesterday = quota.try_reserve(Period::Day, NOON, estimate, &caps).unwrap();
        quota.settle(
            &Quota {
                period: Period::Day,
                caps,
            },
            NOON + DAY_MS,
            yesterday,
            estimate,
            estimate,
            0.8,
        );
        assert_eq!(quota.reserved.tokens, 0);
        assert_eq!(quota.used.tokens, 500, "late usage is charged to the period it ends in");
    }

    #[test]
    fn the_soft_alert_fires_once_per_period() {
        let caps = Caps {
            cost_micros: Some(1_000_000),
            ..Caps::default()
        };
        let spend = |micros| Amounts {
            requests: 1,
            tokens: 0,
            cost_micros: micros,
        };
        let mut quota = QuotaRecord::default();
        let mut alerts = 0;
        for _ in 0..10 {
            let period = quota.try_reserve(Period::Month, NOON, spend(100_000), &caps).unwrap();
            alerts += usize::from(
                quota
                    .settle(
                        &Quota {
                            period: Period::Month,
                            caps,
                        },
                        NOON,
                        period,
                        spend(100_000),
                        spend(100_000),
                        0.8,
                    )
                    .is_some(),
            );
        }
        assert_eq!(alerts, 1);
        assert!(
            quota.try_reserve(Period::Month, NOON, spend(1), &caps).is_err(),
            "the hard cap holds"
        );
        let next_month = NOON + 40 * DAY_MS;
        let period = quota
            .try_reserve(Period::Month, next_month, spend(900_000), &caps)
            .unwrap();
        let monthly = Quota {
            period: Period::Month,
            caps,
        };
        assert!(quota
            .settle(&monthly, next_month, period, spend(900_000), spend(900_000), 0.8)
            .is_some());
    }

    #[test]
    fn the_record_round_trips() {
        let quota = QuotaRecord {
            period_index: 9,
            used: Amounts {
                requests: 1,
                tokens: 2,
                cost_micros: 3,
            },
            reserved: Amounts {
                requests: 4,
                tokens: 5,
                cost_micros: 6,
            },
            alerted: true,
        };
        assert_eq!(QuotaRecord::decode(&quota.encode()), Some(quota));
    }
}
