//! Plano's `tracing` block and the standard OpenTelemetry environment it is completed from:
//! where spans go (`opentracing_grpc_endpoint`, `OTEL_*`), how many new traces are kept, and
//! which attributes every trace carries.

use percent_encoding::percent_decode_str;

use super::*;
use crate::config::{OtlpExporter, OtlpProtocol, Tracing};

/// gRPC's method for OTLP traces.
const GRPC_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// OTLP/HTTP's path for traces, after the base endpoint.
const HTTP_TRACES: &str = "/v1/traces";

/// `tracing: {random_sampling, opentracing_grpc_endpoint, trace_arch_internal, span_attributes,
/// exporters}`; `None` when it samples nothing (0 or absent: nothing is built, as in Plano).
pub(super) fn tracing(
    r: &mut Report,
    path: &str,
    node: &Node,
    env: Env,
) -> Option<std::sync::Arc<Tracing>> {
    let mut f = Fields::of(r, path, node)?;
    let sampling = f
        .take("random_sampling")
        .and_then(|(p, n)| sampling(r, &p, n))
        .unwrap_or(0);
    let endpoint = f
        .take("opentracing_grpc_endpoint")
        .and_then(|(p, n)| expanded(r, &p, n, env).map(|e| (e, p, n.line)));
    // Accepted and unused, as in Plano (nothing there reads it).
    if let Some((p, n)) = f.take("trace_arch_internal") {
        yaml::boolean(r, &p, n);
    }
    let (header_prefixes, statics) = f
        .take("span_attributes")
        .map(|(p, n)| span_attributes(r, &p, n))
        .unwrap_or_default();
    f.finish(r, &["exporters"]);
    if sampling == 0 {
        return None;
    }
    let exporter = exporter(r, endpoint, env);
    Some(std::sync::Arc::new(Tracing {
        sampling,
        exporter: std::sync::Arc::new(exporter),
        header_prefixes,
        statics,
    }))
}

/// `random_sampling`: a percent; above 100 is 100 (said).
fn sampling(r: &mut Report, path: &str, node: &Node) -> Option<u8> {
    let n = yaml::integer(r, path, node, 0, i64::MAX)?;
    if n > 100 {
        r.warn(
            path,
            node.line,
            format!("{n} is more than 100 percent; read as 100"),
        );
    }
    Some(n.min(100) as u8)
}

/// `span_attributes: {header_prefixes: [..], static: {key: value}}`.
fn span_attributes(
    r: &mut Report,
    path: &str,
    node: &Node,
) -> (Vec<String>, Vec<(String, String)>) {
    let Some(mut f) = Fields::of(r, path, node) else {
        return Default::default();
    };
    let mut prefixes = Vec::new();
    if let Some((p, n)) = f.take("header_prefixes") {
        for (i, item) in yaml::list(r, &p, n).unwrap_or_default().iter().enumerate() {
            if let Some(prefix) = yaml::string(r, &index(&p, i), item) {
                prefixes.push(prefix.trim().to_ascii_lowercase());
            }
        }
    }
    let mut statics = Vec::new();
    if let Some((p, n)) = f.take("static") {
        if let Some(mut sf) = Fields::of(r, &p, n) {
            for (key, _, value) in sf.rest() {
                if let Some(v) = yaml::string(r, &yaml::join(&p, key), value) {
                    statics.push((key.to_owned(), v));
                }
            }
        }
    }
    f.finish(r, &[]);
    (prefixes, statics)
}

/// Where spans go: the config's endpoint, else `OTEL_TRACING_GRPC_ENDPOINT` (Plano's CLI),
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT`, else the local default;
/// OTLP/gRPC unless `OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL` asks for OTLP/HTTP.
fn exporter(r: &mut Report, endpoint: Option<(String, String, u64)>, env: Env) -> OtlpExporter {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let protocol = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .as_deref()
        .map(str::trim)
    {
        None | Some("grpc") => OtlpProtocol::Grpc,
        Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
        Some("http/json") => {
            warn_env(r, "OTEL_EXPORTER_OTLP_PROTOCOL", "`http/json` is not supported; spans are sent as `http/protobuf`, which every OTLP/HTTP receiver takes");
            OtlpProtocol::HttpProtobuf
        }
        Some(other) => {
            warn_env(
                r,
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                format!("unknown protocol `{other}`; spans are sent over `grpc`"),
            );
            OtlpProtocol::Grpc
        }
    };
    let http = protocol == OtlpProtocol::HttpProtobuf;
    // (url, whether its path is the whole path, where it came from)
    let (url, exact, from) = if let Some((e, p, line)) = endpoint {
        (e, false, Some((p, line)))
    } else if let Some(e) = var("OTEL_TRACING_GRPC_ENDPOINT") {
        (e, false, None)
    } else if let Some(e) = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        (e, true, None)
    } else if let Some(e) = var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        (e, false, None)
    } else if http {
        ("http://localhost:4318".to_owned(), false, None)
    } else {
        ("http://localhost:4317".to_owned(), false, None)
    };
    let mut say = |message: String| match &from {
        Some((p, line)) => r.warn(p, *line, message),
        None => warn_env(r, "OTLP endpoint", message),
    };
    let (tls, host, port, url_path) = match parse_url(url.trim()) {
        Ok(parts) => parts,
        Err(why) => {
            say(format!("`{url}` {why}; spans go to http://localhost:4317"));
            (false, "localhost".to_owned(), 4317, String::new())
        }
    };
    if from.is_some() && tls {
        say("Plano takes only `http` here; switchyard sends over TLS".to_owned());
    }
    let path = if !http {
        if from.is_some() && !url_path.is_empty() && url_path != "/" {
            say(format!(
                "the path `{url_path}` is not used: gRPC has its own"
            ));
        }
        GRPC_EXPORT.to_owned()
    } else if exact && !url_path.is_empty() {
        url_path
    } else {
        format!("{}{HTTP_TRACES}", url_path.trim_end_matches('/'))
    };
    let headers = var("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        .or_else(|| var("OTEL_EXPORTER_OTLP_HEADERS"))
        .map(|h| {
            pairs(&h)
                .into_iter()
                .filter_map(|(k, v)| {
                    let ok = http::HeaderName::from_bytes(k.as_bytes()).is_ok()
                        && http::HeaderValue::from_str(&v).is_ok();
                    if !ok {
                        // Said without the value, which is likely a key.
                        warn_env(
                            r,
                            "OTEL_EXPORTER_OTLP_HEADERS",
                            format!("`{k}` is not a valid header; left out"),
                        );
                    }
                    ok.then(|| (k.to_ascii_lowercase(), Secret::new(v)))
                })
                .collect()
        })
        .unwrap_or_default();
    OtlpExporter {
        protocol,
        tls,
        host,
        port,
        path,
        headers,
        resource: resource(env),
    }
}

/// A warning about an environment variable (no line to name).
fn warn_env(r: &mut Report, var: &str, message: impl Into<String>) {
    r.warnings.push(yaml::Problem {
        path: var.to_owned(),
        line: None,
        message: message.into(),
    });
}

/// `service.name`, `service.version` and `OTEL_RESOURCE_ATTRIBUTES`.
fn resource(env: Env) -> Vec<(String, String)> {
    let mut attributes = env("OTEL_RESOURCE_ATTRIBUTES")
        .map(|a| pairs(&a))
        .unwrap_or_default();
    let named = env("OTEL_SERVICE_NAME").filter(|n| !n.trim().is_empty());
    attributes.retain(|(k, _)| k != "service.name" || named.is_none());
    if !attributes.iter().any(|(k, _)| k == "service.name") {
        let name = named.unwrap_or_else(|| "switchyard".to_owned());
        attributes.insert(0, ("service.name".to_owned(), name.trim().to_owned()));
    }
    if !attributes.iter().any(|(k, _)| k == "service.version") {
        attributes.push((
            "service.version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ));
    }
    attributes
}

/// OpenTelemetry's `key=value,key=value` lists (values percent-encoded); malformed items are
/// skipped, as the specification says.
fn pairs(list: &str) -> Vec<(String, String)> {
    list.split(',')
        .filter_map(|item| {
            let (k, v) = item.split_once('=')?;
            let k = k.trim();
            let v = percent_decode_str(v.trim()).decode_utf8().ok()?;
            (!k.is_empty()).then(|| (k.to_owned(), v.into_owned()))
        })
        .collect()
}

/// `http[s]://host[:port][/path]`: TLS, host, port (the scheme's default), path.
fn parse_url(url: &str) -> Result<(bool, String, u16, String), &'static str> {
    let uri: Uri = url.parse().map_err(|_| "is not a URL")?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err("must be an http:// or https:// URL"),
    };
    let host = uri.host().ok_or("has no host")?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Ok((tls, host, port, uri.path().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str, vars: &[(&str, &str)]) -> (Option<std::sync::Arc<Tracing>>, Report) {
        let doc = yaml::parse(yaml).unwrap();
        let mut r = Report::default();
        let env = |k: &str| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        };
        let t = tracing(&mut r, "tracing", &doc, &env);
        (t, r)
    }

    #[test]
    fn plano_defaults_trace_to_the_local_collector_over_grpc() {
        let (t, r) = load("random_sampling: 100\ntrace_arch_internal: true\n", &[]);
        assert!(r.errors.is_empty() && r.warnings.is_empty(), "{r:?}");
        let t = t.unwrap();
        assert_eq!(t.sampling, 100);
        let e = &t.exporter;
        assert_eq!(
            (e.protocol, e.tls, e.host.as_str(), e.port, e.path.as_str()),
            (OtlpProtocol::Grpc, false, "localhost", 4317, GRPC_EXPORT)
        );
        assert_eq!(e.resource[0], ("service.name".into(), "switchyard".into()));
    }

    #[test]
    fn zero_or_absent_sampling_builds_nothing() {
        assert!(load("random_sampling: 0\n", &[]).0.is_none());
        assert!(load("trace_arch_internal: false\n", &[]).0.is_none());
        let (t, r) = load("random_sampling: 250\n", &[]);
        assert_eq!(t.unwrap().sampling, 100);
        assert_eq!(r.warnings.len(), 1);
        assert_eq!(load("random_sampling: -1\n", &[]).1.errors.len(), 1);
    }

    #[test]
    fn the_endpoint_comes_from_the_config_then_the_environment() {
        let vars = [
            ("OTEL_TRACING_GRPC_ENDPOINT", "http://plano-cli:4317"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4317"),
            ("COLLECTOR", "collector.local"),
        ];
        let (t, _) = load(
            "random_sampling: 5\nopentracing_grpc_endpoint: http://$COLLECTOR:14317\n",
            &vars,
        );
        let e = t.unwrap().exporter.clone();
        assert_eq!((e.host.as_str(), e.port), ("collector.local", 14317));
        let (t, _) = load("random_sampling: 5\n", &vars);
        assert_eq!(t.unwrap().exporter.host, "plano-cli");
        let (t, _) = load("random_sampling: 5\n", &vars[1..]);
        assert_eq!(t.unwrap().exporter.host, "generic");
        let (t, _) = load(
            "random_sampling: 5\n",
            &[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://api.example:443",
            )],
        );
        let e = t.unwrap().exporter.clone();
        assert_eq!((e.tls, e.host.as_str(), e.port), (true, "api.example", 443));
    }

    #[test]
    fn otlp_http_paths_follow_the_specification() {
        let http = ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
        let (t, _) = load("random_sampling: 1\n", &[http]);
        let e = t.unwrap().exporter.clone();
        assert_eq!(
            (e.protocol, e.port, e.path.as_str()),
            (OtlpProtocol::HttpProtobuf, 4318, "/v1/traces")
        );
        let (t, _) = load(
            "random_sampling: 1\n",
            &[http, ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/otlp/")],
        );
        assert_eq!(t.unwrap().exporter.path, "/otlp/v1/traces");
        let (t, _) = load(
            "random_sampling: 1\n",
            &[
                http,
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom"),
            ],
        );
        assert_eq!(t.unwrap().exporter.path, "/custom");
    }

    #[test]
    fn service_name_resource_and_headers_come_from_the_environment() {
        let (t, _) = load(
            "random_sampling: 1\n",
            &[
                ("OTEL_SERVICE_NAME", "edge"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "service.name=ignored,deployment.environment=prod%20eu, bad",
                ),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "x-honeycomb-team=abc%3D,bad header=x",
                ),
            ],
        );
        let e = t.unwrap().exporter.clone();
        assert_eq!(
            e.resource,
            vec![
                ("service.name".into(), "edge".into()),
                ("deployment.environment".into(), "prod eu".into()),
                ("service.version".into(), env!("CARGO_PKG_VERSION").into()),
            ]
        );
        assert_eq!(e.headers.len(), 1);
        assert_eq!(e.headers[0].0, "x-honeycomb-team");
        assert_eq!(e.headers[0].1.expose(), "abc=");
        assert!(!format!("{e:?}").contains("abc="));
    }

    #[test]
    fn span_attributes_and_exporters_load() {
        let (t, r) = load(
            "random_sampling: 100\nspan_attributes:\n  header_prefixes: [X-Acme-, x-user-]\n  static:\n    environment: production\nexporters:\n  - {type: posthog, url: https://x, api_key: k}\n",
            &[],
        );
        let t = t.unwrap();
        assert_eq!(t.header_prefixes, ["x-acme-", "x-user-"]);
        assert_eq!(
            t.statics,
            [("environment".to_owned(), "production".to_owned())]
        );
        assert!(r.errors.is_empty());
        assert_eq!(r.warnings.len(), 1, "exporters is said to be ignored");
        assert_eq!(
            load("random_sampling: 1\nsampling_rate: 3\n", &[])
                .1
                .errors
                .len(),
            1
        );
    }
}
