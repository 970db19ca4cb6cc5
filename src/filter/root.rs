//! The root context: loads and validates the configuration once per plugin
//! and VM, and hands it to every HTTP context.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use super::http::ChatFilter;
use crate::config::Config;
use crate::route::models_listing;

#[derive(Default)]
pub struct SignalboxRoot {
    state: Option<Rc<Loaded>>,
}

/// The validated config and what is derived from it once.
pub struct Loaded {
    pub config: Config,
    /// `GET /v1/models` body.
    pub models_json: Vec<u8>,
}

impl Context for SignalboxRoot {}

impl RootContext for SignalboxRoot {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let raw = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, plugin_configuration_size) {
            Ok(Some(raw)) => raw,
            Ok(None) => Vec::new(),
            Err(status) => {
                log::error!("cannot read the plugin configuration: {status:?}");
                return false;
            }
        };
        match Config::parse(&raw, &|name| std::env::var(name).ok()) {
            Ok(config) => {
                log::info!(
                    "configured {} providers, {} models, {} tiers, {} rules",
                    config.providers.len(),
                    config.models.len(),
                    config.tiers.len(),
                    config.rules.len()
                );
                let models_json = models_listing(&config);
                self.state = Some(Rc::new(Loaded { config, models_json }));
                true
            }
            Err(err) => {
                log::error!("{err}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(ChatFilter::new(self.state.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
