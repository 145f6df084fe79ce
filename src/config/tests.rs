use super::*;

/// A directory with the files a configuration refers to.
fn dir_with_certs(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for n in names {
        let p = dir.path().join(n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "placeholder").unwrap();
    }
    dir
}

const MINIMAL: &str = r#"
[[site]]
name = "a"
domains = ["api.example.com"]
upstream = "https://abc.appsync-api.eu-west-1.amazonaws.com/graphql"
tls = { cert = "c.pem", key = "k.pem" }
"#;

/// One ACME site, for the unit tests of the config files that need a valid site around what
/// they test.
pub(super) const SITE_WITH_ACME: &str = r#"
[[site]]
name = "a"
domains = ["api.example.com"]
upstream = "https://abc.appsync-api.eu-west-1.amazonaws.com/graphql"
tls = "acme"
"#;

fn problems(text: &str) -> Vec<Problem> {
    let dir = dir_with_certs(&["c.pem", "k.pem"]);
    match Config::parse(text, dir.path()) {
        Err(ConfigError::Invalid(p)) => p,
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn certificate_files_are_polled_every_10s_unless_told_otherwise() {
    let dir = dir_with_certs(&["c.pem", "k.pem"]);
    let interval = |text: &str| {
        Config::parse(text, dir.path())
            .unwrap()
            .cert_reload_interval
    };
    // No [tls] table at all, as in a minimal file: the documented default, not "never".
    assert_eq!(interval(MINIMAL), std::time::Duration::from_secs(10));
    assert_eq!(
        interval(&format!("[tls]\n{MINIMAL}")),
        std::time::Duration::from_secs(10)
    );
    assert_eq!(
        interval(&format!("[tls]\nreload-interval = \"0s\"\n{MINIMAL}")),
        std::time::Duration::ZERO
    );
}

#[test]
fn a_missing_upstream_ca_file_is_a_problem_at_load() {
    let p = problems(&format!(
        "[server]\nupstream-ca-file = \"/nonexistent/ca.pem\"\n{MINIMAL}"
    ));
    assert_eq!(p[0].path, "server.upstream-ca-file", "{p:?}");
    assert!(p[0].message.contains("not a readable file"), "{p:?}");
}

#[test]
fn shipped_config_loads() {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/graphfront.toml"))
            .unwrap();
    let dir = dir_with_certs(&["certs/api.example.com.pem", "certs/api.example.com.key"]);
    let shipped = shipped.replace(
        "/etc/graphfront/certs/",
        &format!("{}/certs/", dir.path().display()),
    );
    let config = Config::parse(&shipped, dir.path()).unwrap();
    assert_eq!(config.sites.len(), 1);
    let site = &config.sites[0];
    assert_eq!(site.domains, ["api.example.com", "*.api.example.com"]);
    assert_eq!(site.max_body, Some(1024 * 1024));
    assert_eq!(
        site.realtime.url,
        "wss://abcdefghijklmnopqrstuvwxyz.appsync-realtime-api.eu-west-1.amazonaws.com/graphql"
    );
    assert_eq!(config.admin.to_string(), "127.0.0.1:9180");
    assert_eq!(site.cache.rules.len(), 3);
    assert!(site.cache.principal.is_some());
    assert_eq!(config.cache_max_size, 256 * 1024 * 1024);
}

#[test]
fn cache_rules_are_validated() {
    let p = problems(&format!(
        "{MINIMAL}[[site.cache.rule]]\nfield = \"listPosts\"\nttl = \"0s\"\n"
    ));
    let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        ["site[0].cache.rule[0].field", "site[0].cache.rule[0].ttl"],
        "{p:?}"
    );
    let p = problems(&format!(
        "{MINIMAL}[[site.cache.rule]]\noperation = \"A\"\ntype = \"Post\"\nttl = \"1s\"\n"
    ));
    assert_eq!(p[0].path, "site[0].cache.rule[0]");
    let p = problems(&format!(
        "{MINIMAL}[[site.cache.rule]]\noperation = \"A\"\nttl = \"1s\"\nscope = \"principal\"\n"
    ));
    assert_eq!(p[0].path, "site[0].cache.principal-header");
    assert!(p[0].line.is_some());
}

#[test]
fn minimal_config_gets_defaults() {
    let dir = dir_with_certs(&["c.pem", "k.pem"]);
    let c = Config::parse(MINIMAL, dir.path()).unwrap();
    let s = &c.sites[0];
    assert_eq!(s.graphql_path, "/graphql");
    assert_eq!(s.upstream.host, "abc.appsync-api.eu-west-1.amazonaws.com");
    assert_eq!(s.upstream.port, 443);
    assert!(s.upstream.tls);
    assert_eq!(
        s.realtime.host,
        "abc.appsync-realtime-api.eu-west-1.amazonaws.com"
    );
    assert_eq!(
        s.certificate,
        crate::config::CertSource::Files {
            cert: dir.path().join("c.pem"),
            key: dir.path().join("k.pem")
        }
    );
    assert_eq!(c.https, ["0.0.0.0:443".parse().unwrap()]);
}

#[test]
fn non_appsync_realtime_defaults_to_same_origin() {
    let text = MINIMAL.replace(
        "https://abc.appsync-api.eu-west-1.amazonaws.com/graphql",
        "http://127.0.0.1:4000/graphql",
    );
    let dir = dir_with_certs(&["c.pem", "k.pem"]);
    let c = Config::parse(&text, dir.path()).unwrap();
    assert_eq!(
        c.sites[0].realtime.url,
        "ws://127.0.0.1:4000/graphql/realtime"
    );
    assert!(!c.sites[0].realtime.tls);
}

#[test]
fn bad_value_names_key_and_line() {
    let text = MINIMAL.replace("https://abc.appsync-api", "ftp://abc.appsync-api");
    let p = problems(&text);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].path, "site[0].upstream");
    assert_eq!(p[0].line, Some(5));
    assert!(
        p[0].to_string().starts_with("site[0].upstream (line 5): "),
        "{}",
        p[0]
    );
}

#[test]
fn unknown_key_and_wrong_type_name_key_and_line() {
    let p = problems(&format!("{MINIMAL}colour = \"blue\"\n"));
    assert_eq!(p[0].line, Some(7), "{:?}", p);
    assert!(p[0].message.contains("colour"), "{:?}", p);

    let p = problems(&MINIMAL.replace("name = \"a\"", "name = 3"));
    assert_eq!(p[0].path, "site[0].name");
    assert_eq!(p[0].line, Some(3));
}

#[test]
fn bad_durations_and_sizes_are_rejected() {
    let p = problems(&format!("{MINIMAL}max-body = \"lots\"\n"));
    assert_eq!(p[0].path, "site[0].max-body");
    let p = problems(&format!("[server]\ngrace-period = \"soon\"\n{MINIMAL}"));
    assert_eq!(p[0].path, "server.grace-period");
    assert_eq!(p[0].line, Some(2));
}

#[test]
fn collects_every_problem() {
    let text = r#"
[listeners]
https = ["nowhere"]

[[site]]
name = "a b"
domains = ["bad_domain!", "*.ok.test"]
upstream = "https://up.test/graphql"
graphql-path = "graphql"
tls = { cert = "missing.pem", key = "k.pem" }

[[site]]
name = "c"
domains = ["*.ok.test"]
upstream = "https://user:pw@up.test/graphql"
tls = { cert = "c.pem", key = "k.pem" }
"#;
    let p = problems(text);
    let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
    for want in [
        "listeners.https[0]",
        "site[0].name",
        "site[0].domains[0]",
        "site[0].graphql-path",
        "site[0].tls.cert",
        "site[1].upstream",
        "site[1].domains[0]",
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
    assert!(p.iter().all(|p| p.line.is_some()), "{p:?}");
    // Secrets in URLs are not echoed back.
    assert!(!p.iter().any(|p| p.message.contains("user:pw")), "{p:?}");
}

#[test]
fn fallback_site_must_exist() {
    let p = problems(&format!("[tls]\nfallback-site = \"nope\"\n{MINIMAL}"));
    assert_eq!(p[0].path, "tls.fallback-site");
}

#[test]
fn url_credentials_are_never_echoed() {
    for url in [
        "ftp://user:s3cret@up.test/graphql",
        "https://user:s3cret@/graphql",
    ] {
        let p = problems(&MINIMAL.replace(
            "https://abc.appsync-api.eu-west-1.amazonaws.com/graphql",
            url,
        ));
        assert_eq!(p[0].path, "site[0].upstream");
        assert!(!p[0].message.contains("s3cret"), "{}", p[0]);
    }
}

#[test]
fn api_key_problems_never_echo_the_key() {
    let p = problems(&format!(
        "{MINIMAL}[site.auth]\n[[site.auth.api-key]]\nid = \"x\"\nkey = \"short-s3cret\"\nexpires = \"soon\"\n"
    ));
    let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "site[0].auth.api-key[0].expires",
            "site[0].auth.api-key[0].key"
        ],
        "{p:?}"
    );
    assert!(p.iter().all(|p| !p.message.contains("s3cret")), "{p:?}");
}

#[test]
fn log_settings_are_validated() {
    let dir = dir_with_certs(&["c.pem", "k.pem"]);
    let c = Config::parse(MINIMAL, dir.path()).unwrap();
    assert_eq!(c.log_level, "info");
    assert_eq!(c.log_format, crate::logging::Format::Auto);
    let c = Config::parse(
        &format!("[log]\nlevel = \"warn,graphfront=debug\"\nformat = \"json\"\n{MINIMAL}"),
        dir.path(),
    )
    .unwrap();
    assert_eq!(c.log_level, "warn,graphfront=debug");
    assert_eq!(c.log_format, crate::logging::Format::Json);

    let p = problems(&format!("[log]\nlevel = \"loud\"\n{MINIMAL}"));
    assert_eq!(p[0].path, "log.level");
    assert_eq!(p[0].line, Some(2));
    let p = problems(&format!("[log]\nformat = \"xml\"\n{MINIMAL}"));
    assert_eq!(p[0].path, "log.format");
}

#[test]
fn token_issuers_are_validated() {
    let dir = dir_with_certs(&["c.pem", "k.pem"]);
    let c = Config::parse(
        &format!(
            "{MINIMAL}[site.auth]\n[[site.auth.oidc]]\nissuer = \"https://id.example.com\"\nclient-id = \"web|ios\"\n[[site.auth.cognito]]\nuser-pool-id = \"eu-west-1_AbC123\"\n"
        ),
        dir.path(),
    )
    .unwrap();
    let auth = c.sites[0].auth.as_ref().unwrap();
    assert_eq!(auth.issuers.len(), 2);
    let oidc = &auth.issuers[0];
    assert_eq!(
        oidc.jwks,
        auth::JwksSource::Discovery(
            "https://id.example.com/.well-known/openid-configuration".into()
        )
    );
    let re = oidc.client_id.as_ref().unwrap();
    assert!(re.is_match("web") && !re.is_match("webx"), "anchored");
    let cognito = &auth.issuers[1];
    assert_eq!(
        cognito.issuer,
        "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
    );
    assert_eq!(
        cognito.jwks,
        auth::JwksSource::Url(
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123/.well-known/jwks.json"
                .into()
        )
    );

    let p = problems(&format!(
        "{MINIMAL}[site.auth]\n[[site.auth.oidc]]\nissuer = \"http://id.example.com\"\nclient-id = \"(\"\n[[site.auth.cognito]]\nuser-pool-id = \"nopool\"\n"
    ));
    let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "site[0].auth.oidc[0].issuer",
            "site[0].auth.oidc[0].client-id",
            "site[0].auth.cognito[0].user-pool-id",
        ],
        "{p:?}"
    );
    let p = problems(&format!(
        "{MINIMAL}[site.auth]\n[[site.auth.oidc]]\nissuer = \"https://a.example\"\n[[site.auth.oidc]]\nissuer = \"https://a.example\"\n"
    ));
    assert!(p[0].message.contains("configured twice"), "{p:?}");
}

#[test]
fn iam_and_edge_signing_are_validated() {
    let dir = dir_with_certs(&["c.pem", "k.pem"]);
    // The region comes from the AppSync upstream's host.
    let c = Config::parse(
        &format!("{MINIMAL}[site.auth.iam]\n[site.upstream-signing]\naccess-key-id = \"AKIDEXAMPLE\"\nsecret-access-key = \"s\"\n")
            .replace("[site.auth.iam]\n[site.upstream-signing]", "[site.upstream-signing]"),
        dir.path(),
    )
    .unwrap();
    let signing = c.sites[0].upstream_signing.as_ref().unwrap();
    assert_eq!(signing.region, "eu-west-1");
    assert_eq!(signing.service, "appsync");
    assert!(
        !format!("{signing:?}").contains("\"s\""),
        "no secret in Debug"
    );
    let c = Config::parse(&format!("{MINIMAL}[site.auth.iam]\n"), dir.path()).unwrap();
    assert_eq!(
        c.sites[0]
            .auth
            .as_ref()
            .unwrap()
            .iam
            .as_ref()
            .unwrap()
            .region,
        "eu-west-1"
    );

    // Accepting IAM clients while re-signing would let unverified signatures through.
    let p = problems(&format!(
        "{MINIMAL}[site.auth.iam]\n[site.upstream-signing]\naccess-key-id = \"AKIDEXAMPLE\"\nsecret-access-key = \"s\"\n"
    ));
    assert_eq!(p[0].path, "site[0].auth.iam", "{p:?}");
    let p = problems(&format!(
        "{}[site.auth.iam]\n",
        MINIMAL.replace("abc.appsync-api.eu-west-1.amazonaws.com", "api.example.com")
    ));
    assert_eq!(p[0].path, "site[0].auth.iam.region", "{p:?}");
}

const ACME_SITE: &str = r#"
[[site]]
name = "a"
domains = ["api.example.com"]
upstream = "https://abc.appsync-api.eu-west-1.amazonaws.com/graphql"
"#;

#[test]
fn acme_sites_take_the_defaults_or_their_own_challenges() {
    let dir = dir_with_certs(&[]);
    let c = Config::parse(&format!("{ACME_SITE}tls = \"acme\"\n"), dir.path()).unwrap();
    assert_eq!(
        c.sites[0].certificate,
        CertSource::Acme {
            challenges: vec![ChallengeKind::TlsAlpn01, ChallengeKind::Http01]
        }
    );
    assert_eq!(
        c.acme.directory,
        "https://acme-v02.api.letsencrypt.org/directory"
    );
    let text = format!(
        "[acme]\ndirectory = \"letsencrypt-staging\"\ncontact = [\"ops@example.com\"]\n\
         dns-hook = [\"/bin/hook\"]\neab = {{ kid = \"k\", hmac-key = \"c2VjcmV0\" }}\n\
         {ACME_SITE}domains = [\"*.example.com\"]\ntls = {{ acme = true, challenges = [\"dns-01\"] }}\n"
    )
    .replace("domains = [\"api.example.com\"]\n", "");
    let c = Config::parse(&text, dir.path()).unwrap();
    assert_eq!(c.acme.contact, ["mailto:ops@example.com"]);
    assert_eq!(c.acme.eab, Some(("k".to_string(), b"secret".to_vec())));
    assert!(c.acme.directory.contains("staging"));
    assert_eq!(
        c.sites[0].certificate,
        CertSource::Acme {
            challenges: vec![ChallengeKind::Dns01]
        }
    );
}

#[test]
fn acme_needs_what_its_challenges_use() {
    let cases = [
        // Not a keyword.
        ("tls = \"auto\"\n", "", "site[0].tls"),
        // Files and acme at once.
        (
            "tls = { acme = true, cert = \"c.pem\", key = \"k.pem\" }\n",
            "",
            "site[0].tls",
        ),
        // http-01 without a port-80 listener.
        (
            "tls = { acme = true, challenges = [\"http-01\"] }\n",
            "[listeners]\nhttp = []\n",
            "site[0].tls",
        ),
        // dns-01 without a hook.
        (
            "tls = { acme = true, challenges = [\"dns-01\"] }\n",
            "",
            "site[0].tls",
        ),
        // An unknown challenge type.
        (
            "tls = { acme = true, challenges = [\"email-01\"] }\n",
            "",
            "site[0].tls.challenges[0]",
        ),
        // Not an https directory.
        (
            "tls = \"acme\"\n",
            "[acme]\ndirectory = \"http://ca.test/dir\"\n",
            "acme.directory",
        ),
    ];
    for (tls, before, path) in cases {
        let p = problems(&format!("{before}{ACME_SITE}{tls}"));
        assert!(
            p.iter().any(|p| p.path == path),
            "{tls}: {path} missing from {p:?}"
        );
    }
    // A wildcard can only be validated by dns-01.
    let text = format!("[acme]\ndns-hook = [\"/bin/hook\"]\n{ACME_SITE}tls = \"acme\"\n")
        .replace("api.example.com", "*.example.com");
    let p = problems(&text);
    assert!(p[0].message.contains("dns-01"), "{p:?}");
}

#[test]
fn client_limits_have_defaults_and_are_validated() {
    let dir = dir_with_certs(&["c.pem", "k.pem"]);
    let c = Config::parse(MINIMAL, dir.path()).unwrap().clients;
    assert_eq!(c.tls_handshake, Duration::from_secs(10));
    assert_eq!(c.request_header, Duration::from_secs(10));
    assert_eq!(c.request_body, Duration::from_secs(30));
    assert_eq!(c.max_request_header, 64 * 1024);
    assert_eq!(c.max_connections_per_client, 256);
    let p = problems(&format!(
        "[timeouts]\nrequest-header = \"0s\"\n[listeners]\nmax-request-header = \"100B\"\n{MINIMAL}"
    ));
    let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        ["timeouts.request-header", "listeners.max-request-header"]
    );
}

#[test]
fn local_config_loads() {
    let local =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/local.toml")).unwrap();
    // As in the repository: the file in conf/, the certificate in certs/.
    let dir = dir_with_certs(&["certs/localhost.pem", "certs/localhost.key"]);
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    let config = Config::parse(&local, &dir.path().join("conf")).unwrap();
    assert_eq!(config.https[0].to_string(), "127.0.0.1:8443");
    assert!(config.http.is_empty());
    assert_eq!(config.state_dir, dir.path().join("conf/../state"));
    assert_eq!(config.sites[0].domains, ["localhost"]);
}
