//! What the dependency graph must hold (Cargo.lock, as CI builds it with `--locked`): one
//! crypto stack for TLS (rustls on ring), jsonwebtoken on its RustCrypto backend only, and no
//! second TLS or crypto library linked in by a feature default.

use std::collections::BTreeMap;

fn packages() -> Vec<toml::Value> {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
    let lock: toml::Value = toml::from_str(&lock).unwrap();
    lock["package"].as_array().unwrap().clone()
}

fn name(p: &toml::Value) -> &str {
    p["name"].as_str().unwrap()
}

/// The names of the packages `package` depends on directly.
fn dependencies_of(package: &str) -> Vec<String> {
    let packages = packages();
    let p = packages.iter().find(|p| name(p) == package).unwrap();
    p["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().split(' ').next().unwrap().to_string())
        .collect()
}

#[test]
fn one_tls_and_crypto_stack() {
    let packages = packages();
    let names: Vec<&str> = packages.iter().map(name).collect();
    for banned in [
        "aws-lc-rs",
        "aws-lc-sys",
        "openssl",
        "openssl-sys",
        "boring",
        "boring-sys",
        "native-tls",
    ] {
        assert!(
            !names.contains(&banned),
            "{banned} is in the dependency graph"
        );
    }
    for needed in ["ring", "rustls"] {
        assert!(names.contains(&needed), "{needed} is missing");
    }
    // One rustls: two versions would mean two TLS configurations to keep right.
    let mut versions: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in &packages {
        versions
            .entry(name(p))
            .or_default()
            .push(p["version"].as_str().unwrap());
    }
    for single in ["rustls", "ring", "tokio-rustls", "jsonwebtoken"] {
        assert_eq!(
            versions[single].len(),
            1,
            "{single}: {:?}",
            versions[single]
        );
    }
}

#[test]
fn jsonwebtoken_uses_only_its_rustcrypto_backend() {
    let deps = dependencies_of("jsonwebtoken");
    let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
    for other in ["ring", "aws-lc-rs", "botan"] {
        assert!(
            !deps.contains(&other),
            "jsonwebtoken pulls in {other}: {deps:?}"
        );
    }
    for rust_crypto in ["rsa", "p256", "hmac"] {
        assert!(
            deps.contains(&rust_crypto),
            "jsonwebtoken without {rust_crypto}: {deps:?}"
        );
    }
}

#[test]
fn graphfront_itself_depends_on_no_crate_an_advisory_calls_unmaintained() {
    // RUSTSEC-2025-0134 (rustls-pemfile): PEM goes through rustls-pki-types' PemObject. pingora
    // 0.9.1 still pulls it in; that edge is not ours to cut.
    let deps = dependencies_of("graphfront");
    for unmaintained in ["rustls-pemfile", "derivative", "proc-macro-error"] {
        assert!(
            !deps.iter().any(|d| d == unmaintained),
            "graphfront depends on {unmaintained}: {deps:?}"
        );
    }
}
