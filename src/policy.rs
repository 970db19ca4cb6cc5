//! What a tenant's policy is made of, as the configuration states it and
//! governance enforces it: rate limits per minute, quota periods (UTC days
//! and months) and caps on requests, tokens and cost. Plain values: a leaf
//! that both `config` and `govern` use.

pub(crate) const DAY_MS: u64 = 86_400_000;

/// Limits of one scope (tenant, user or deployment); `None` = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

impl RateLimits {
    pub fn is_unlimited(&self) -> bool {
        self.requests_per_minute.is_none() && self.tokens_per_minute.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "daily",
            Period::Month => "monthly",
        }
    }

    /// Index of the UTC day or month containing `now_ms`.
    pub fn index(self, now_ms: u64) -> u64 {
        let days = now_ms / DAY_MS;
        match self {
            Period::Day => days,
            Period::Month => {
                let (year, month) = year_month(days);
                year * 12 + month - 1
            }
        }
    }

    /// Milliseconds from `now_ms` to the start of the next period.
    pub fn remaining_ms(self, now_ms: u64) -> u64 {
        match self {
            Period::Day => DAY_MS - now_ms % DAY_MS,
            Period::Month => {
                let days = now_ms / DAY_MS;
                let (year, month) = year_month(days);
                let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
                days_from_civil(next_year, next_month)
                    .saturating_mul(DAY_MS)
                    .saturating_sub(now_ms)
            }
        }
    }
}

/// Civil (proleptic Gregorian) year and month of a day count since 1970-01-01.
fn year_month(days: u64) -> (u64, u64) {
    // Shift to an era starting on 0000-03-01 so leap days fall at a year's end.
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month)
}

/// Days since 1970-01-01 of the first day of `year`-`month`.
fn days_from_civil(year: u64, month: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year % 400;
    let month_index = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_index + 2) / 5;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    (era * 146_097 + day_of_era).saturating_sub(719_468)
}

/// Requests, tokens and cost (micro-USD: integers do not drift).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Amounts {
    pub requests: u64,
    pub tokens: u64,
    pub cost_micros: u64,
}

impl Amounts {
    pub(crate) fn plus(self, other: Amounts) -> Amounts {
        Amounts {
            requests: self.requests.saturating_add(other.requests),
            tokens: self.tokens.saturating_add(other.tokens),
            cost_micros: self.cost_micros.saturating_add(other.cost_micros),
        }
    }

    pub(crate) fn minus(self, other: Amounts) -> Amounts {
        Amounts {
            requests: self.requests.saturating_sub(other.requests),
            tokens: self.tokens.saturating_sub(other.tokens),
            cost_micros: self.cost_micros.saturating_sub(other.cost_micros),
        }
    }
}

/// Caps of one quota; `None` = no cap on that dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caps {
    pub requests: Option<u64>,
    pub tokens: Option<u64>,
    pub cost_micros: Option<u64>,
}

impl Caps {
    /// The first dimension `amounts` is over, if any.
    pub(crate) fn exceeded_by(&self, amounts: Amounts) -> Option<&'static str> {
        let over = |cap: Option<u64>, value: u64| cap.is_some_and(|cap| value > cap);
        if over(self.requests, amounts.requests) {
            Some("requests")
        } else if over(self.tokens, amounts.tokens) {
            Some("tokens")
        } else if over(self.cost_micros, amounts.cost_micros) {
            Some("cost")
        } else {
            None
        }
    }

    /// Highest share of any capped dimension `amounts` has used.
    pub fn usage_share(&self, amounts: Amounts) -> f64 {
        [
            (self.requests, amounts.requests),
            (self.tokens, amounts.tokens),
            (self.cost_micros, amounts.cost_micros),
        ]
        .into_iter()
        .filter_map(|(cap, value)| cap.map(|cap| value as f64 / cap.max(1) as f64))
        .fold(0.0, f64::max)
    }
}

/// One quota of a tenant: its period and caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub period: Period,
    pub caps: Caps,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-24T12:00:00Z.
    const NOON: u64 = 1_795_521_600_000;

    #[test]
    fn days_and_months_follow_the_utc_calendar() {
        assert_eq!(year_month(0), (1970, 1));
        assert_eq!(year_month(NOON / DAY_MS), (2026, 11));
        assert_eq!(year_month(days_from_civil(2024, 2) + 28), (2024, 2), "leap day");
        assert_eq!(year_month(days_from_civil(2024, 3)), (2024, 3));
        assert_eq!(Period::Month.index(NOON) + 1, Period::Month.index(NOON + 7 * DAY_MS));
        assert_eq!(Period::Day.remaining_ms(NOON), DAY_MS / 2);
        let end_of_november = days_from_civil(2026, 12) * DAY_MS;
        assert_eq!(Period::Month.remaining_ms(NOON), end_of_november - NOON);
        assert_eq!(
            Period::Month.index(end_of_november - 1) + 1,
            Period::Month.index(end_of_november)
        );
    }
}
