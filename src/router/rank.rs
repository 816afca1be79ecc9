//! The order in which a route's models are tried: as written, by cost, by latency, or shuffled.

use super::feeds;
use crate::config::Prefer;
use crate::state::Snapshot;

/// A route's models in the order they are tried: as written, or by `prefer`. `cheapest`: the
/// providers' own `cost`, else a cost feed's price; `fastest`: a latency feed's figures when one
/// has answered, else the latency the gateway observed from the model's endpoints. Models with
/// no figure keep their order, after those with one.
pub fn rank(
    models: &[String],
    prefer: Prefer,
    snapshot: &Snapshot,
    figures: &feeds::Figures,
) -> Vec<String> {
    let fed_latency = prefer == Prefer::Fastest && figures.has_latency();
    let figure = |model: &String| -> Option<f64> {
        let route = snapshot
            .resolver
            .resolve(&snapshot.config.providers, Some(model))
            .ok()?;
        let members = &snapshot.resolver.group(route.group).members;
        let figures = members.iter().filter_map(|&p| {
            let provider = snapshot.provider(p);
            // The names a feed may know the model by: as the route writes it, then as the
            // provider does.
            let names = [
                model.as_str(),
                &provider.model,
                &provider.name,
                &provider.id,
            ];
            match prefer {
                Prefer::Cheapest => provider.cost.or_else(|| figures.cost(&names)),
                Prefer::Fastest if fed_latency => figures.latency(&names),
                Prefer::Fastest => snapshot
                    .upstream(p)
                    .health
                    .latency()
                    .map(|d| d.as_secs_f64()),
                Prefer::None | Prefer::Random => None,
            }
        });
        figures.reduce(f64::min)
    };
    if prefer == Prefer::Random {
        return shuffled(models, random_seed());
    }
    let mut ranked: Vec<(Option<f64>, &String)> = models.iter().map(|m| (figure(m), m)).collect();
    if prefer != Prefer::None {
        // Stable: equal figures, and models without one, keep their written order.
        ranked.sort_by(|a, b| match (a.0, b.0) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
    }
    ranked.into_iter().map(|(_, m)| m.clone()).collect()
}

/// `models` in an order drawn from `seed` (Fisher-Yates with xorshift64).
fn shuffled(models: &[String], seed: u64) -> Vec<String> {
    let mut out = models.to_vec();
    let mut x = seed | 1;
    for i in (1..out.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.swap(i, (x % (i as u64 + 1)) as usize);
    }
    out
}

/// A seed that differs from request to request.
fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::time::Duration;

    #[test]
    fn random_order_is_a_shuffle_that_changes_with_the_seed() {
        let models: Vec<String> = (0..6).map(|i| format!("m{i}")).collect();
        let orders: std::collections::HashSet<Vec<String>> = (0..20u64)
            .map(|seed| shuffled(&models, seed * 7919))
            .collect();
        assert!(orders.len() > 5, "{orders:?}");
        for order in &orders {
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, models, "every model once");
        }
    }

    #[test]
    fn a_routes_models_are_ranked_by_cost_or_observed_latency() {
        let config = Config::from_yaml(
            "model_providers:\n  - {model: openai/a, access_key: k, cost: {input_per_million: 5, output_per_million: 15}}\n  - {model: openai/b, access_key: k}\n  - {model: openai/c, access_key: k, cost: {input_per_million: 0.15, output_per_million: 0.6}}\n",
            &|_| None,
        )
        .unwrap();
        let snapshot = Snapshot::new(config);
        let models: Vec<String> = ["openai/a", "openai/b", "openai/c"]
            .map(String::from)
            .to_vec();
        let figures = feeds::Figures::default();
        let rank = |prefer| rank(&models, prefer, &snapshot, &figures);
        assert_eq!(rank(Prefer::None), models);
        assert_eq!(rank(Prefer::Cheapest), ["openai/c", "openai/a", "openai/b"]);
        // No latency seen yet: the written order.
        assert_eq!(rank(Prefer::Fastest), models);
        snapshot
            .upstream(0)
            .health
            .observe_latency(Duration::from_millis(900));
        snapshot
            .upstream(1)
            .health
            .observe_latency(Duration::from_millis(200));
        assert_eq!(rank(Prefer::Fastest), ["openai/b", "openai/a", "openai/c"]);
    }
}
