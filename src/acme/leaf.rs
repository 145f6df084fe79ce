//! What renewal needs to know of a served certificate: its validity and the names it covers.

use std::time::{Duration, SystemTime};

use crate::tls::LoadedCert;

/// What renewal needs to know of a served leaf.
pub struct Leaf {
    pub der: rustls::pki_types::CertificateDer<'static>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub names: Vec<String>,
}

pub fn leaf(cert: &LoadedCert) -> Option<Leaf> {
    let der = cert.key.cert.first()?.clone();
    let (_, x509) = x509_parser::parse_x509_certificate(&der).ok()?;
    let time = |t: x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64)
    };
    let names = x509
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => {
                        Some(d.to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Leaf {
        not_before: time(x509.validity().not_before),
        not_after: time(x509.validity().not_after),
        names,
        der,
    })
}

pub fn covers(names: &[String], domains: &[String]) -> bool {
    domains.iter().all(|d| names.contains(d))
}

pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
