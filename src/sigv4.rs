//! AWS Signature Version 4, for Amazon Bedrock providers that have no API key (`access_key`)
//! but the standard AWS credentials in the environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, and `AWS_SESSION_TOKEN` for temporary ones). The request is signed
//! as it leaves: its final path, `Host`, `Content-Type` and body (the body's hash is part of the
//! signature, so the translated body is signed, not the client's). HMAC and SHA-256 come from
//! ring, which TLS already brings.

use std::time::SystemTime;

use ring::{digest, hmac};

use crate::config::AwsCredentials as Credentials;
#[cfg(test)]
use crate::config::Secret;

/// What a signature covers, besides the credentials.
pub struct Signed<'a> {
    pub method: &'a str,
    pub host: &'a str,
    /// The path as sent (percent-encoded already) and its query, if any.
    pub path: &'a str,
    pub query: &'a str,
    pub content_type: &'a str,
    pub body: &'a [u8],
    pub service: &'a str,
}

/// The headers to send: `authorization`, `x-amz-date`, `x-amz-content-sha256`, and
/// `x-amz-security-token` with temporary credentials.
pub fn sign(r: &Signed, creds: &Credentials, at: SystemTime) -> Vec<(&'static str, String)> {
    let (date, time) = timestamp(at);
    let stamp = format!("{date}T{time}Z");
    let payload = hex(digest::digest(&digest::SHA256, r.body).as_ref());
    let mut headers: Vec<(&str, &str)> = vec![
        ("content-type", r.content_type),
        ("host", r.host),
        ("x-amz-content-sha256", &payload),
        ("x-amz-date", &stamp),
    ];
    if let Some(token) = &creds.session_token {
        headers.push(("x-amz-security-token", token.expose()));
    }
    let signed_names: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
    let signed_names = signed_names.join(";");
    let canonical_headers: String = headers
        .iter()
        .map(|(n, v)| format!("{n}:{}\n", v.trim()))
        .collect();
    // Services other than S3 sign the path with each segment encoded once more.
    let canonical_path: String = r.path.split('/').map(encode).collect::<Vec<_>>().join("/");
    let canonical = format!(
        "{}\n{canonical_path}\n{}\n{canonical_headers}\n{signed_names}\n{payload}",
        r.method,
        canonical_query(r.query)
    );
    let scope = format!("{date}/{}/{}/aws4_request", creds.region, r.service);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    );
    let mut key = format!("AWS4{}", creds.secret_access_key.expose()).into_bytes();
    for part in [date.as_str(), &creds.region, r.service, "aws4_request"] {
        key = mac(&key, part.as_bytes());
    }
    let signature = hex(&mac(&key, to_sign.as_bytes()));
    let mut out = vec![
        (
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_names}, Signature={signature}",
                creds.access_key_id
            ),
        ),
        ("x-amz-date", stamp.clone()),
        ("x-amz-content-sha256", payload.clone()),
    ];
    if let Some(token) = &creds.session_token {
        out.push(("x-amz-security-token", token.expose().to_owned()));
    }
    out
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, data).as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3986 encoding of everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The query's pairs, sorted (they are encoded as sent).
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|p| {
            if p.contains('=') {
                (*p).to_owned()
            } else {
                format!("{p}=")
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `(YYYYMMDD, HHMMSS)` in UTC, from the access log's RFC 3339 form (one civil-date reading).
fn timestamp(at: SystemTime) -> (String, String) {
    let t = crate::access_log::rfc3339(at);
    (t[..10].replace('-', ""), t[11..19].replace(':', ""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// The published test vector of the OpenAI Python SDK's Bedrock client
    /// (tests/fixtures/bedrock/v1/sigv4.json), on AWS's documentation credentials.
    #[test]
    fn the_published_vector_is_reproduced() {
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
            session_token: Some(Secret::new("fixture-session-token".into())),
            region: "us-east-1".into(),
        };
        // 2025-01-02T03:04:05Z
        let at = UNIX_EPOCH + Duration::from_secs(1_735_787_045);
        let headers = sign(
            &Signed {
                method: "POST",
                host: "bedrock-mantle.us-east-1.api.aws",
                path: "/openai/v1/responses",
                query: "",
                content_type: "application/json",
                body: br#"{"model":"gpt-4o","input":"hello"}"#,
                service: "bedrock-mantle",
            },
            &creds,
            at,
        );
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("x-amz-date"), Some("20250102T030405Z"));
        assert_eq!(
            get("x-amz-content-sha256"),
            Some("50329e51ad520f21b77bad0b01999930ff556cd1bf18434701251ba6c9f877bc")
        );
        assert_eq!(
            get("authorization"),
            Some("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250102/us-east-1/bedrock-mantle/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature=dc20c8fbe516daf0ccae7e5b7a78fc2936870413a9f1af6e1b2d44b970ce411f")
        );
        assert_eq!(get("x-amz-security-token"), Some("fixture-session-token"));
    }

    #[test]
    fn dates_and_paths() {
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            ("20000229".into(), "000000".into())
        );
        // An ARN's `/`, sent as `%2F`, is signed as `%252F`.
        assert_eq!(encode("a%2Fb:0"), "a%252Fb%3A0");
    }
}
