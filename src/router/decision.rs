//! What the router decided for a request, and where the decision came from: shared by
//! asking (`ask`), remembering (`recall`) and choosing (`choose`).

use crate::config::Prefer;

/// What the router decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A route: its name, its models as configured and how to order them.
    Route {
        name: String,
        models: Vec<String>,
        prefer: Prefer,
    },
    /// The router saw no fitting route: the client's model serves.
    NoRoute,
    /// The router failed (why): the client's model serves.
    FailedOpen(&'static str),
}

/// Where a decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The router was asked.
    Router,
    /// The same question was answered a moment ago.
    Cache,
    /// The session (`X-Model-Affinity`) is pinned to its first decision.
    Pinned,
    /// Not the user's turn (`route_on_user_only`): the conversation's last decision.
    Replayed,
}

impl Decision {
    /// For the access log and the response header: the route and why.
    pub fn describe(&self, source: Source) -> String {
        let why = match source {
            Source::Router => "router",
            Source::Cache => "cache",
            Source::Pinned => "pinned",
            Source::Replayed => "replayed",
        };
        match self {
            Decision::Route { name, .. } => format!("{name} ({why})"),
            Decision::NoRoute => format!("none ({why})"),
            Decision::FailedOpen(cause) => format!("none (fail-open: {cause})"),
        }
    }

    /// The `route` metric label: a configured route name or `none`.
    pub fn route_label(&self) -> &str {
        match self {
            Decision::Route { name, .. } => name,
            _ => "none",
        }
    }

    /// The `outcome` metric label.
    pub fn outcome_label(&self, source: Source) -> &'static str {
        match (source, self) {
            (Source::Pinned, _) => "pinned",
            (Source::Cache, _) => "cache",
            (Source::Replayed, _) => "replayed",
            (Source::Router, Decision::Route { .. }) => "routed",
            (Source::Router, Decision::NoRoute) => "no_route",
            (Source::Router, Decision::FailedOpen(_)) => "failed_open",
        }
    }
}
