//! switchyard: an edge gateway for LLM traffic on Pingora, configured with Plano's YAML.
//!
//! Where things live:
//! - `proxy`: the `ProxyHttp` callbacks, the map of a request's path;
//! - `intake`: which path a request asks for, its body, and the `Request` value taken in once;
//!   `exchange`: one model request on its way through the proxy phase; `subrequest`: the proxy phase of a subrequest, for bodies
//!   over 64 KiB and translated answers;
//! - `resolve`: resolution of `model` → group of endpoints (and each group's policy); `attempt`:
//!   the attempt plan (stages, retries, fallbacks, backoff), pure; `endpoints`: which endpoint takes an attempt, and their health;
//! - `upstream`: the peer and request header an attempt sends; `auth`: the credential;
//!   `body`: reading and rewriting the JSON body; `translate`: OpenAI ↔ Anthropic;
//! - `router`: preference routing (`choose`: the decision for a request; the router model, its
//!   memory, its cost and latency feeds);
//! - `respond` and `error`: everything the gateway answers itself, in the client's API;
//! - `side_call`: the gateway's own HTTP calls (health checks, model lists, feeds);
//! - `usage`, `metrics`, `access_log`, `request_id`, `trace` (OpenTelemetry spans over OTLP):
//!   observability;
//! - `config`, `catalog` (the built-in providers), `state` (the swappable snapshot), `reload`, `dns`
//!   (upstream addresses), `server` (process wiring), `preflight` (what must hold before it
//!   starts), `lifecycle` and `upgrade` (signals, draining, `-u`, `-d`).
//!
//! Words: a *provider* is a `model_providers` entry; an *endpoint* is a provider entry as one of
//! its model's targets; its *origin* is where it is reached; a *group* is the endpoints of one
//! model; an *attempt* is one try of a request at one endpoint.

pub mod access_log;
pub mod attempt;
pub mod auth;
pub mod body;
pub mod catalog;
pub mod clients;
pub mod config;
pub mod conversations;
pub mod dns;
pub mod downstream;
pub mod endpoints;
pub mod error;
pub mod exchange;
pub mod intake;
pub mod lifecycle;
pub mod logs;
pub mod memory;
pub mod metrics;
pub mod models;
pub mod preflight;
pub mod proxy;
pub mod quota;
pub mod reload;
pub mod request_id;
pub mod resolve;
pub mod respond;
pub mod router;
pub mod server;
pub mod session;
pub mod side_call;
pub mod sigv4;
pub mod state;
pub mod store;
pub mod subrequest;
pub mod trace;
pub mod translate;
pub mod upgrade;
pub mod upstream;
pub mod usage;
