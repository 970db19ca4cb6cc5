//! The core's metric samples as Envoy stats. A series is defined with the
//! host the first time this VM uses it (its labels come from the config, so
//! the set is bounded) and its id kept: Envoy hands out a new id for every
//! definition, even of a name it already has.

use std::cell::RefCell;
use std::collections::HashMap;

use proxy_wasm::types::MetricType;

use super::host;

use crate::config::Config;
use crate::telemetry::{config_load_stat_name, Kind, Sample, Series};

pub struct Metrics {
    enabled: bool,
    ids: RefCell<HashMap<Series, u32, ahash::RandomState>>,
}

fn metric_type(kind: Kind) -> MetricType {
    match kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
        Kind::Histogram => MetricType::Histogram,
    }
}

fn define(kind: Kind, name: &str) -> Option<u32> {
    host::define_metric(metric_type(kind), name)
}

fn apply(kind: Kind, id: u32, value: u64) {
    match kind {
        Kind::Counter => host::increment_metric(id, value),
        Kind::Gauge | Kind::Histogram => host::record_metric(id, value),
    }
}

impl Metrics {
    pub fn new(config: &Config) -> Metrics {
        Metrics {
            enabled: config.observability.metrics,
            ids: RefCell::default(),
        }
    }

    /// Adds each counter sample, sets each gauge, records each histogram value.
    pub fn emit(&self, config: &Config, samples: &[Sample]) {
        if !self.enabled {
            return;
        }
        let mut ids = self.ids.borrow_mut();
        for sample in samples {
            let kind = sample.series.family.kind();
            let id = match ids.get(&sample.series) {
                Some(id) => *id,
                None => {
                    let Some(id) = define(kind, &sample.series.stat_name(config)) else {
                        continue;
                    };
                    ids.insert(sample.series, id);
                    id
                }
            };
            apply(kind, id, sample.value);
        }
    }
}

/// Counts a configuration this VM loaded or rejected.
pub fn count_config_load(loaded: bool) {
    if let Some(id) = define(Kind::Counter, &config_load_stat_name(loaded)) {
        apply(Kind::Counter, id, 1);
    }
}
