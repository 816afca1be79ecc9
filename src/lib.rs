//! switchyard: an edge gateway for LLM traffic on Pingora, configured with Plano's YAML.
//!
//! Where things live: `config` (the file), `providers` (built-in catalog), `routing` (model →
//! provider), `auth` (upstream credentials), `body` (reading and rewriting the JSON body),
//! `forward` (sending a pre-read body upstream), `proxy` (the `ProxyHttp` callbacks), `state`
//! (the swappable snapshot), `dns` (upstream addresses), `server` (process wiring).

pub mod access_log;
pub mod attempt;
pub mod auth;
pub mod balancer;
pub mod body;
pub mod config;
pub mod dns;
pub mod error;
pub mod exchange;
pub mod health;
pub mod intake;
pub mod metrics;
pub mod providers;
pub mod proxy;
pub mod reload;
pub mod request_id;
pub mod respond;
pub mod routing;
pub mod server;
pub mod state;
pub mod subrequest;
pub mod translate;
pub mod upstream;
pub mod usage;
