//! The cost ledger: what each request cost, from actual usage and the
//! model's price table, and running totals per tenant and model in shared
//! data. Costs are integers in micro-USD so sums never drift.

use crate::config::Price;
use crate::providers::TokenUsage;
use crate::state::codec::{Reader, Writer};
use crate::state::Record;

/// Price is USD per million tokens, so tokens × price is micro-USD. Cache
/// writes are billed as input, cache reads at the cached-input price.
pub fn cost_micros(price: &Price, usage: &TokenUsage) -> u64 {
    let input = usage.input.saturating_add(usage.cache_write) as f64;
    let micros =
        input * price.input + usage.cached_input as f64 * price.cached_input + usage.output as f64 * price.output;
    micros.round().max(0.0) as u64
}

/// Running totals of one tenant on one model since Envoy started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LedgerRecord {
    pub requests: u64,
    pub usage: TokenUsage,
    pub cost_micros: u64,
}

impl LedgerRecord {
    pub fn add(&mut self, usage: &TokenUsage, cost_micros: u64) {
        self.requests += 1;
        self.usage.input = self.usage.input.saturating_add(usage.input);
        self.usage.cached_input = self.usage.cached_input.saturating_add(usage.cached_input);
        self.usage.cache_write = self.usage.cache_write.saturating_add(usage.cache_write);
        self.usage.output = self.usage.output.saturating_add(usage.output);
        self.cost_micros = self.cost_micros.saturating_add(cost_micros);
    }
}

const VERSION: u8 = 1;

impl Record for LedgerRecord {
    fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::with_version(VERSION);
        writer
            .u64(self.requests)
            .u64(self.usage.input)
            .u64(self.usage.cached_input)
            .u64(self.usage.cache_write)
            .u64(self.usage.output)
            .u64(self.cost_micros);
        writer.finish()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut reader = Reader::with_version(bytes, VERSION)?;
        let record = LedgerRecord {
            requests: reader.u64()?,
            usage: TokenUsage {
                input: reader.u64()?,
                cached_input: reader.u64()?,
                cache_write: reader.u64()?,
                output: reader.u64()?,
            },
            cost_micros: reader.u64()?,
        };
        reader.is_done().then_some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_tokens_are_billed_at_the_cached_price() {
        let price = Price {
            input: 3.0,
            cached_input: 0.3,
            output: 15.0,
        };
        let usage = TokenUsage {
            input: 1_000,
            cached_input: 10_000,
            cache_write: 0,
            output: 500,
        };
        // 1000×3 + 10000×0.3 + 500×15 = 3000 + 3000 + 7500 micro-USD.
        assert_eq!(cost_micros(&price, &usage), 13_500);
    }

    #[test]
    fn the_ledger_accumulates_and_round_trips() {
        let mut ledger = LedgerRecord::default();
        ledger.add(
            &TokenUsage {
                input: 1,
                cached_input: 2,
                cache_write: 1,
                output: 3,
            },
            10,
        );
        ledger.add(
            &TokenUsage {
                input: 1,
                cached_input: 0,
                cache_write: 0,
                output: 1,
            },
            5,
        );
        assert_eq!(ledger.requests, 2);
        assert_eq!(
            ledger.usage,
            TokenUsage {
                input: 2,
                cached_input: 2,
                cache_write: 1,
                output: 4
            }
        );
        assert_eq!(ledger.cost_micros, 15);
        assert_eq!(LedgerRecord::decode(&ledger.encode()), Some(ledger));
    }
}
