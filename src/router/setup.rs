//! The router of a config: which provider serves the router model, the prompt template it was
//! trained on, its token budget and time limit. Found once per config snapshot.

use std::time::Duration;

use super::prompt;
use crate::config::Config;

/// The router of a config: its provider, the template it was trained on, its token budget.
#[derive(Debug, Clone)]
pub struct Router {
    /// The router provider's name: what the router request asks for.
    pub model: String,
    pub form: prompt::Form,
    pub budget: usize,
    /// How long it may take (`routing.router_timeout`).
    pub timeout: Duration,
}

impl Router {
    /// `None` when no provider serves the config's router model.
    pub fn of(config: &Config) -> Option<Router> {
        let provider = config.router_provider()?;
        let form = prompt::Form::for_model(&provider.id);
        Some(Router {
            model: provider.name.clone(),
            form,
            budget: config
                .overrides
                .orchestrator_model_context_length
                .unwrap_or_else(|| form.default_context_length()),
            timeout: config.routing.router_timeout,
        })
    }
}
