//! The cost ledger: what each request cost, from actual usage and the
//! model's price table, and running totals per tenant and model in shared
//! data. Costs are integers in micro-USD so sums never drift.
//!
//! A request is billed for what each of its attempts consumed at its
//! provider ([`Consumption`]): the provider's reported usage, or — when it
//! never reported any (the client left mid-stream, the provider reset or
//! timed out after doing work) — the prompt estimate plus the output counted
//! from what was relayed, marked as estimated.

use crate::config::{Config, ModelId, Price};
use crate::providers::TokenUsage;
use crate::state::codec::{Reader, Writer};
use crate::state::Record;

/// Price is USD per million tokens, so tokens × price is micro-USD, rounded
/// up. Cache writes are billed as input, cache reads at the cached-input price.
pub fn cost_micros(price: &Price, usage: &TokenUsage) -> u64 {
    let input = usage.input.saturating_add(usage.cache_write) as f64;
    let micros =
        input * price.input + usage.cached_input as f64 * price.cached_input + usage.output as f64 * price.output;
    // Up to the next whole micro-USD, so a tiny request is never free; the
    // tolerance keeps float noise (0.15 × 300 = 45.000…01) from adding one.
    (micros - 1e-6).ceil().max(0.0) as u64
}

/// What one attempt consumed at its provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consumed {
    pub model: ModelId,
    pub usage: TokenUsage,
    /// The provider reported no usage: prompt estimate plus relayed output.
    pub estimated: bool,
}

impl Consumed {
    pub fn cost_micros(&self, config: &Config) -> u64 {
        config
            .models
            .get(self.model)
            .map_or(0, |model| cost_micros(&model.price, &self.usage))
    }
}

/// What a request consumed, attempt by attempt (usually one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consumption(pub Vec<Consumed>);

impl Consumption {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Usage summed over the attempts; `None` when nothing was consumed.
    pub fn usage(&self) -> Option<TokenUsage> {
        self.0
            .iter()
            .map(|consumed| consumed.usage)
            .reduce(|total, usage| TokenUsage {
                input: total.input.saturating_add(usage.input),
                cached_input: total.cached_input.saturating_add(usage.cached_input),
                cache_write: total.cache_write.saturating_add(usage.cache_write),
                output: total.output.saturating_add(usage.output),
            })
    }

    pub fn cost_micros(&self, config: &Config) -> u64 {
        self.0
            .iter()
            .map(|consumed| consumed.cost_micros(config))
            .fold(0, u64::saturating_add)
    }

    /// Some of it is an estimate (no usage report from the provider).
    pub fn estimated(&self) -> bool {
        self.0.iter().any(|consumed| consumed.estimated)
    }
}

/// Running totals of one tenant on one model since Envoy started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LedgerRecord {
    pub requests: u64,
    pub usage: TokenUsage,
    pub cost_micros: u64,
    /// Requests whose usage was estimated (the provider reported none).
    pub estimated: u64,
}

impl LedgerRecord {
    pub fn add(&mut self, usage: &TokenUsage, cost_micros: u64, estimated: bool) {
        self.estimated += u64::from(estimated);
        self.requests += 1;
        self.usage.input = self.usage.input.saturating_add(usage.input);
        self.usage.cached_input = self.usage.cached_input.saturating_add(usage.cached_input);
        self.usage.cache_write = self.usage.cache_write.saturating_add(usage.cache_write);
        self.usage.output = self.usage.output.saturating_add(usage.output);
        self.cost_micros = self.cost_micros.saturating_add(cost_micros);
    }
}

const VERSION: u8 = 2;

impl Record for LedgerRecord {
    fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::with_version(VERSION);
        writer
            .u64(self.requests)
            .u64(self.usage.input)
            .u64(self.usage.cached_input)
            .u64(self.usage.cache_write)
            .u64(self.usage.output)
            .u64(self.cost_micros)
            .u64(self.estimated);
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
            estimated: reader.u64()?,
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
    fn a_tiny_request_is_never_free_and_float_noise_adds_nothing() {
        let price = Price {
            input: 0.15,
            cached_input: 0.075,
            output: 0.6,
        };
        let one = TokenUsage {
            input: 1,
            ..TokenUsage::default()
        };
        assert_eq!(cost_micros(&price, &one), 1);
        let exact = TokenUsage {
            input: 300,
            ..TokenUsage::default()
        };
        assert_eq!(cost_micros(&price, &exact), 45);
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
            false,
        );
        ledger.add(
            &TokenUsage {
                input: 1,
                cached_input: 0,
                cache_write: 0,
                output: 1,
            },
            5,
            true,
        );
        assert_eq!(ledger.requests, 2);
        assert_eq!(ledger.estimated, 1);
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
