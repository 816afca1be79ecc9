//! Preference routing (Plano's `routing_preferences`): a small router model reads the
//! conversation and picks the route whose description fits; the route's models serve the
//! request. So far: what the router is asked and how its answer is read (`prompt`), and the
//! bounded, expiring memory its session pins and decision cache will use (`memory`). The router
//! call and the `/routing/v1/*` endpoints are still to come.

pub mod memory;
pub mod prompt;
