//! AWS_IAM at the edge. The SigV4 pre-check refuses what AppSync would refuse without
//! knowing the secret: a malformed `Authorization`, a credential scope for another service or
//! region, an `X-Amz-Date` too far from now. The signature itself is verified by AppSync:
//! such requests are forwarded as signed and never answered from the cache. (The edge's own
//! signing of upstream requests is `upstream/sigv4.rs`.)

use std::time::{Duration, SystemTime};

use crate::config::auth::IamCheck;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Why a signed request was refused: a stable code and a bounded metric reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    MissingDate,
    WrongService,
    WrongRegion,
    ScopeDate,
    Expired,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Malformed => "IAM_SIGNATURE_MALFORMED",
            Refusal::MissingDate => "IAM_DATE_MISSING",
            Refusal::WrongService => "IAM_WRONG_SERVICE",
            Refusal::WrongRegion => "IAM_WRONG_REGION",
            Refusal::ScopeDate => "IAM_SCOPE_DATE_MISMATCH",
            Refusal::Expired => "IAM_SIGNATURE_EXPIRED",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::MissingDate => "missing_date",
            Refusal::WrongService => "wrong_service",
            Refusal::WrongRegion => "wrong_region",
            Refusal::ScopeDate => "scope_date_mismatch",
            Refusal::Expired => "expired",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::Expired => "Signature expired: the request date is too far from now.",
            Refusal::WrongRegion | Refusal::WrongService => {
                "Credential should be scoped to a valid region and the appsync service."
            }
            _ => "Valid authorization header not provided.",
        }
    }
}

/// Whether an `Authorization` value is a SigV4 signature (rather than a token).
pub fn is_sigv4(authorization: &str) -> bool {
    authorization.starts_with(ALGORITHM)
}

/// Check a SigV4-signed request's form; the access key id on success.
pub fn precheck(
    authorization: &str,
    amz_date: Option<&str>,
    check: &IamCheck,
    now: SystemTime,
) -> Result<String, Refusal> {
    let rest = authorization
        .strip_prefix(ALGORITHM)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(Refusal::Malformed)?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or(Refusal::Malformed)?;
        let slot = match k {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return Err(Refusal::Malformed),
        };
        if slot.replace(v).is_some() {
            return Err(Refusal::Malformed);
        }
    }
    let (credential, signed_headers, signature) = (
        credential.ok_or(Refusal::Malformed)?,
        signed_headers.ok_or(Refusal::Malformed)?,
        signature.ok_or(Refusal::Malformed)?,
    );
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, terminator] = scope[..] else {
        return Err(Refusal::Malformed);
    };
    let key_id_ok = (16..=128).contains(&key_id.len())
        && key_id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    let date_ok = date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit());
    let signature_ok = signature.len() == 64
        && signature
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let headers: Vec<&str> = signed_headers.split(';').collect();
    let headers_ok = headers.iter().all(|h| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }) && headers.contains(&"host");
    if !(key_id_ok && date_ok && signature_ok && headers_ok && terminator == "aws4_request") {
        return Err(Refusal::Malformed);
    }
    if service != "appsync" {
        return Err(Refusal::WrongService);
    }
    if region != check.region {
        return Err(Refusal::WrongRegion);
    }
    let amz_date = amz_date.ok_or(Refusal::MissingDate)?;
    if !headers.contains(&"x-amz-date") {
        return Err(Refusal::Malformed);
    }
    let signed_at = parse_amz_date(amz_date).ok_or(Refusal::Malformed)?;
    if !amz_date.starts_with(date) {
        return Err(Refusal::ScopeDate);
    }
    let skew = now
        .duration_since(signed_at)
        .or_else(|e| Ok::<Duration, ()>(e.duration()))
        .unwrap_or_default();
    if skew > check.max_clock_skew {
        return Err(Refusal::Expired);
    }
    Ok(key_id.to_string())
}

/// `20261125T061500Z` as a time.
fn parse_amz_date(v: &str) -> Option<SystemTime> {
    let b = v.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' || !digits(0..8) || !digits(9..15) {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &v[0..4],
        &v[4..6],
        &v[6..8],
        &v[9..11],
        &v[11..13],
        &v[13..15]
    );
    humantime::parse_rfc3339(&rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> IamCheck {
        IamCheck {
            region: "eu-west-1".into(),
            max_clock_skew: Duration::from_secs(300),
        }
    }

    const NOW: &str = "20261125T061500Z";

    fn auth(scope: &str, headers: &str, sig: &str) -> String {
        format!("AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders={headers}, Signature={sig}")
    }

    #[test]
    fn well_formed_signatures_pass_and_others_are_refused() {
        let now = parse_amz_date(NOW).unwrap();
        let sig = "a".repeat(64);
        let good_scope = "AKIAIOSFODNN7EXAMPLE/20261125/eu-west-1/appsync/aws4_request";
        let ok = auth(good_scope, "content-type;host;x-amz-date", &sig);
        assert_eq!(
            precheck(&ok, Some(NOW), &check(), now).unwrap(),
            "AKIAIOSFODNN7EXAMPLE"
        );
        let cases = [
            (
                auth(good_scope, "host;x-amz-date", "xyz"),
                Refusal::Malformed,
            ),
            (auth(good_scope, "x-amz-date", &sig), Refusal::Malformed),
            (
                auth(
                    "AKIAIOSFODNN7EXAMPLE/20261125/eu-west-1/s3/aws4_request",
                    "host;x-amz-date",
                    &sig,
                ),
                Refusal::WrongService,
            ),
            (
                auth(
                    "AKIAIOSFODNN7EXAMPLE/20261125/us-east-1/appsync/aws4_request",
                    "host;x-amz-date",
                    &sig,
                ),
                Refusal::WrongRegion,
            ),
            (
                auth(
                    "AKIAIOSFODNN7EXAMPLE/20261124/eu-west-1/appsync/aws4_request",
                    "host;x-amz-date",
                    &sig,
                ),
                Refusal::ScopeDate,
            ),
            ("AWS4-HMAC-SHA256".to_string(), Refusal::Malformed),
            (format!("{ok}, Extra=1"), Refusal::Malformed),
        ];
        for (value, expected) in cases {
            assert_eq!(
                precheck(&value, Some(NOW), &check(), now),
                Err(expected),
                "{value}"
            );
        }
        assert_eq!(
            precheck(&ok, None, &check(), now),
            Err(Refusal::MissingDate)
        );
        let later = now + Duration::from_secs(301);
        assert_eq!(
            precheck(&ok, Some(NOW), &check(), later),
            Err(Refusal::Expired)
        );
        let earlier = now - Duration::from_secs(301);
        assert_eq!(
            precheck(&ok, Some(NOW), &check(), earlier),
            Err(Refusal::Expired)
        );
        assert_eq!(
            precheck(&ok, Some("2026-11-25T06:15:00Z"), &check(), now),
            Err(Refusal::Malformed)
        );
    }
}
