//! Certificates for `tls = "acme"` sites, obtained and renewed by graphfront (RFC 8555, with
//! instant-acme). One task per site: serve what the state directory holds at once, order when
//! there is nothing valid for every domain, renew when the CA's renewal window (RFC 9773) opens
//! or a third of the lifetime remains, back off after failures. The old certificate serves until
//! a new one is installed; only a site's configured domains are ever ordered.

mod account;
pub mod challenges;
mod dns_hook;
mod failure;
mod leaf;
pub mod schedule;
mod storage;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewOrder,
    Order, OrderStatus, RetryPolicy,
};
use serde::Serialize;

use account::Accounts;
pub use challenges::{AlpnChallengeHook, Challenges, HTTP01_PREFIX};
use failure::{step, Failure};
use leaf::{covers, leaf, unix, Leaf};
use schedule::Clock;
pub use storage::Storage;

use crate::config::{CertSource, ChallengeKind, Config, Site};
use crate::metrics;
use crate::tls::CertStore;

/// Longest sleep between two looks at a certificate: renewal windows move and clocks jump.
const RECHECK: Duration = Duration::from_secs(6 * 3600);
/// Orders placed again at once after the CA kept refusing nonces through every retry of a step,
/// before that counts as a failure.
const MAX_NONCE_RETRIES: u32 = 5;
/// The least a CA that answered "rate limited" without a date is left alone.
const RATE_LIMIT_PAUSE: Duration = Duration::from_secs(3600);

/// What the admin API reports about a site's ACME certificate.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SiteStatus {
    /// `pending` (nothing ordered yet), `ordering`, `valid`, `retrying`.
    pub state: &'static str,
    /// Consecutive failed orders.
    pub failures: u32,
    /// Orders placed since the process started.
    pub orders: u64,
    pub last_error: Option<String>,
    /// Unix time of the next order attempt while retrying.
    pub next_attempt: Option<u64>,
    /// The wait chosen after the last failure (backoff with jitter, or the CA's retry time).
    pub retry_in_seconds: Option<f64>,
    /// Unix time the certificate falls due for renewal.
    pub renewal_due: Option<u64>,
}

/// A challenge answer to take down once the order is decided.
enum Open {
    Http(String),
    Alpn(String),
    Dns { record: String, value: String },
}

pub struct Manager {
    config: Arc<Config>,
    certs: Arc<CertStore>,
    challenges: Arc<Challenges>,
    storage: Storage,
    clock: Arc<dyn Clock>,
    accounts: Accounts,
    status: Vec<Mutex<SiteStatus>>,
}

impl Manager {
    pub fn new(config: Arc<Config>, certs: Arc<CertStore>, challenges: Arc<Challenges>) -> Self {
        Self::with_clock(config, certs, challenges, Arc::new(schedule::SystemClock))
    }

    pub fn with_clock(
        config: Arc<Config>,
        certs: Arc<CertStore>,
        challenges: Arc<Challenges>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let storage = Storage::new(&config.state_dir, &config.acme.directory);
        let status = config
            .sites
            .iter()
            .map(|_| {
                Mutex::new(SiteStatus {
                    state: "pending",
                    ..SiteStatus::default()
                })
            })
            .collect();
        Self {
            accounts: Accounts::new(config.acme.clone()),
            config,
            certs,
            challenges,
            storage,
            clock,
            status,
        }
    }

    /// Whether any site takes its certificate from ACME.
    pub fn needed(config: &Config) -> bool {
        config
            .sites
            .iter()
            .any(|s| matches!(s.certificate, CertSource::Acme { .. }))
    }

    fn acme_sites(&self) -> impl Iterator<Item = (usize, &Arc<Site>)> {
        self.config
            .sites
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s.certificate, CertSource::Acme { .. }))
    }

    /// Serve the stored certificates at once (before any listener starts): a restart or an
    /// upgrade does not wait for the CA. A stored certificate that does not cover every domain
    /// of its site any more, or has expired, is not served and is ordered again.
    pub fn load_stored(&self) {
        let now = self.clock.now();
        for (i, site) in self.acme_sites() {
            let stored = match self.storage.load_certificate(&site.name) {
                Ok(Some(pair)) => pair,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(site = %site.name, error = %e, "acme: cannot read the stored certificate");
                    continue;
                }
            };
            match crate::tls::load_pem(&stored.0, &stored.1, "stored chain", "stored key") {
                Ok(cert) => match leaf(&cert) {
                    Some(l) if l.not_after > now && covers(&l.names, &site.domains) => {
                        tracing::info!(site = %site.name, expires = %humantime::format_rfc3339_seconds(l.not_after), "acme: serving the stored certificate");
                        self.certs.install(i, cert);
                    }
                    _ => {
                        tracing::info!(site = %site.name, "acme: the stored certificate has expired or does not cover the site's domains; ordering a new one")
                    }
                },
                Err(e) => {
                    tracing::error!(site = %site.name, error = %e, "acme: the stored certificate is unusable; ordering a new one")
                }
            }
        }
    }

    /// Run every ACME site's task until shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: pingora::server::ShutdownWatch) {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, _) in self.acme_sites() {
            tasks.spawn(self.clone().site_loop(i));
        }
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { return; }
                }
                done = tasks.join_next() => {
                    if done.is_none() { return; }
                }
            }
        }
    }

    /// Every ACME site's state, for `GET /admin/certificates`.
    pub fn status(&self, index: usize) -> Option<SiteStatus> {
        matches!(
            self.config.sites.get(index)?.certificate,
            CertSource::Acme { .. }
        )
        .then(|| self.status[index].lock().expect("status lock").clone())
    }

    fn set_status(&self, i: usize, change: impl FnOnce(&mut SiteStatus)) {
        change(&mut self.status[i].lock().expect("status lock"));
    }

    async fn site_loop(self: Arc<Self>, i: usize) {
        let site = self.config.sites[i].clone();
        let CertSource::Acme { challenges } = &site.certificate else {
            return;
        };
        let acme = &self.config.acme;
        let mut failures = 0u32;
        let mut next_kind = 0usize;
        let mut nonce_retries = 0u32;
        let mut account_replaced = false;
        loop {
            let now = self.clock.now();
            let current = self.certs.current(i).and_then(|c| leaf(&c));
            let (due, replaces) = match &current {
                Some(l) if covers(&l.names, &site.domains) => {
                    self.renewal_time(&site.name, l, now).await
                }
                _ => (now, None),
            };
            if due > now {
                self.set_status(i, |s| {
                    s.state = "valid";
                    s.renewal_due = Some(unix(due));
                    s.next_attempt = None;
                });
                let wait = due.duration_since(now).unwrap_or_default().min(RECHECK);
                tokio::time::sleep(wait).await;
                continue;
            }
            let kind = challenges[next_kind % challenges.len()];
            self.set_status(i, |s| {
                s.state = "ordering";
                s.orders += 1;
            });
            let started = std::time::Instant::now();
            match self.issue(i, &site, kind, replaces).await {
                Ok(()) => {
                    metrics::get()
                        .acme_orders
                        .with_label_values(&[&site.name, "issued"])
                        .inc();
                    tracing::info!(site = %site.name, challenge = kind.name(), took = ?started.elapsed(), "acme: certificate issued and installed");
                    failures = 0;
                    next_kind = 0;
                    nonce_retries = 0;
                    account_replaced = false;
                    self.set_status(i, |s| {
                        s.failures = 0;
                        s.last_error = None;
                    });
                }
                Err(Failure::BadNonce { detail }) if nonce_retries < MAX_NONCE_RETRIES => {
                    nonce_retries += 1;
                    tracing::info!(site = %site.name, error = %detail, "acme: the CA refused nonces repeatedly; ordering again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(Failure::AccountGone {
                    detail,
                    account: Some(id),
                }) if !account_replaced => {
                    // Once per failure: a CA that refuses a fresh account too is retried later.
                    account_replaced = true;
                    if let Err(e) = self
                        .accounts
                        .replace(&self.storage, &site.name, &id, &detail)
                        .await
                    {
                        tracing::error!(site = %site.name, error = %e, dir = %self.storage.root().display(), "acme: cannot move the refused account aside");
                    }
                }
                Err(failure) => {
                    nonce_retries = 0;
                    account_replaced = false;
                    metrics::get()
                        .acme_orders
                        .with_label_values(&[&site.name, "failed"])
                        .inc();
                    let detail = failure.detail().to_string();
                    if let Failure::Challenge { kind, .. } = &failure {
                        metrics::get()
                            .acme_challenge_failures
                            .with_label_values(&[kind.name()])
                            .inc();
                        next_kind += 1;
                        if next_kind % challenges.len() != 0 {
                            let next = challenges[next_kind % challenges.len()];
                            tracing::warn!(site = %site.name, challenge = kind.name(), error = %detail, next = next.name(), "acme: challenge failed; trying the next type");
                            self.set_status(i, |s| s.last_error = Some(detail));
                            continue;
                        }
                    }
                    failures += 1;
                    let now = self.clock.now();
                    let mut wait = schedule::backoff(
                        failures,
                        acme.retry_initial,
                        acme.retry_max,
                        schedule::random_unit(),
                    );
                    if let Failure::Other {
                        rate_limited: true,
                        detail,
                    } = &failure
                    {
                        let until = schedule::retry_after_problem(detail, now)
                            .unwrap_or(now + RATE_LIMIT_PAUSE);
                        wait = wait.max(until.duration_since(now).unwrap_or_default());
                    }
                    tracing::error!(site = %site.name, error = %detail, failures, retry_in = ?wait, "acme: order failed; the current certificate (if any) keeps serving");
                    self.set_status(i, |s| {
                        s.state = "retrying";
                        s.failures = failures;
                        s.last_error = Some(detail);
                        s.next_attempt = Some(unix(now + wait));
                        s.retry_in_seconds = Some(wait.as_secs_f64());
                    });
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// When `cert` falls due: inside the CA's renewal window when it publishes one (and then the
    /// new order names the certificate it replaces), else with a third of its lifetime left.
    async fn renewal_time(
        &self,
        site: &str,
        cert: &Leaf,
        now: SystemTime,
    ) -> (SystemTime, Option<CertificateIdentifier<'static>>) {
        let fallback = schedule::default_renewal(cert.not_before, cert.not_after);
        let Ok(account) = self.accounts.get(&self.storage, site).await else {
            return (fallback, None);
        };
        let Ok(id) = CertificateIdentifier::try_from(&cert.der) else {
            return (fallback, None);
        };
        match account.renewal_info(&id).await {
            Ok((info, _)) => {
                let w = info.suggested_window;
                let (start, end) = (SystemTime::from(w.start), SystemTime::from(w.end));
                let due = schedule::in_window(start, end, schedule::random_unit(), now);
                (due, Some(id.into_owned()))
            }
            Err(instant_acme::Error::Unsupported(_)) => (fallback, None),
            Err(e) => {
                tracing::warn!(site = %site, error = %failure::explain(&e), "acme: no renewal information; renewing with a third of the lifetime left");
                (fallback, None)
            }
        }
    }

    /// One order for every domain of the site, answered with `kind` (dns-01 for wildcards).
    async fn issue(
        &self,
        i: usize,
        site: &Site,
        kind: ChallengeKind,
        replaces: Option<CertificateIdentifier<'static>>,
    ) -> Result<(), Failure> {
        let account = self.accounts.get(&self.storage, &site.name).await?;
        self.order(i, site, kind, replaces, &account)
            .await
            .map_err(|f| f.of_account(account.id()))
    }

    async fn order(
        &self,
        i: usize,
        site: &Site,
        kind: ChallengeKind,
        replaces: Option<CertificateIdentifier<'static>>,
        account: &Account,
    ) -> Result<(), Failure> {
        let ids: Vec<Identifier> = site
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut new = NewOrder::new(&ids);
        if let Some(r) = replaces {
            new = new.replaces(r);
        }
        let directory = &self.config.acme.directory;
        let mut order = step!(
            format!("placing an order at {directory}"),
            account.new_order(&new)
        )?;
        let url = order.url().to_string();
        tracing::info!(site = %site.name, domains = ?site.domains, challenge = kind.name(), order = %url, "acme: order placed");
        let mut open = Vec::new();
        let authorized = self
            .authorize(&site.name, &mut order, kind, &mut open)
            .await;
        let polled = match authorized {
            Ok(()) => {
                let policy = RetryPolicy::new()
                    .initial_delay(Duration::from_millis(250))
                    .backoff(1.5)
                    .timeout(self.config.acme.order_timeout);
                // The polling has its own deadline; the step's is that plus one request.
                step!(
                    format!("waiting for the CA to validate {url}"),
                    order.poll_ready(&policy),
                    self.config.acme.order_timeout + failure::STEP_TIMEOUT
                )
            }
            Err(e) => Err(e),
        };
        self.close(&site.name, open).await;
        let failed = match polled {
            Ok(OrderStatus::Ready) => None,
            Ok(status) => Some(Failure::other(format!("the order {url} ended {status:?}"))),
            Err(f) => Some(f),
        };
        if let Some(f) = failed {
            return Err(match failed_challenge(&mut order).await {
                Some(detail) => Failure::Challenge { kind, detail },
                None => f,
            });
        }
        tracing::info!(site = %site.name, order = %url, "acme: challenges validated; finalizing");
        // A refused nonce sends the finalize again (a new key and CSR each time), never a new
        // order.
        let key_pem = step!(format!("finalizing {url}"), order.finalize())?;
        let policy = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(self.config.acme.order_timeout);
        let chain = step!(
            format!("downloading the certificate of {url}"),
            order.poll_certificate(&policy),
            self.config.acme.order_timeout + failure::STEP_TIMEOUT
        )?;
        let cert = crate::tls::load_pem(
            chain.as_bytes(),
            key_pem.as_bytes(),
            "issued chain",
            "issued key",
        )
        .map_err(|e| Failure::other(format!("the certificate of {url} is unusable: {e}")))?;
        if let Err(e) =
            self.storage
                .save_certificate(&site.name, chain.as_bytes(), key_pem.as_bytes())
        {
            // Still served; a restart before the next successful save orders again.
            tracing::error!(site = %site.name, error = %e, "acme: cannot store the certificate");
        }
        self.certs.install(i, cert);
        Ok(())
    }

    /// Set up each pending authorization's challenge and tell the CA to look.
    async fn authorize(
        &self,
        site: &str,
        order: &mut Order,
        kind: ChallengeKind,
        open: &mut Vec<Open>,
    ) -> Result<(), Failure> {
        let url = order.url().to_string();
        // Identifiers already told ready: a refused nonce while reading an authorization reads
        // them again, and skips these.
        let mut ready = std::collections::HashSet::new();
        let mut nonce_retries = 0;
        'read: loop {
            let mut authorizations = order.authorizations();
            while let Some(authz) = authorizations.next().await {
                let mut authz = match authz {
                    Ok(a) => a,
                    Err(e) => {
                        let f =
                            Failure::at(&format_args!("reading the authorizations of {url}"), &e);
                        if f.again(&mut nonce_retries) {
                            continue 'read;
                        }
                        return Err(f);
                    }
                };
                let name = authz.identifier().to_string();
                if ready.contains(&name) {
                    continue;
                }
                match authz.status {
                    AuthorizationStatus::Pending => {}
                    AuthorizationStatus::Valid => continue,
                    other => {
                        return Err(Failure::other(format!(
                            "authorization for {name} is {other:?}"
                        )))
                    }
                }
                let identifier = authz.identifier();
                let wildcard = identifier.wildcard;
                let Identifier::Dns(domain) = identifier.identifier.clone() else {
                    return Err(Failure::other("only DNS names are ordered"));
                };
                let kind = if wildcard { ChallengeKind::Dns01 } else { kind };
                let offered = match kind {
                    ChallengeKind::Http01 => ChallengeType::Http01,
                    ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
                    ChallengeKind::Dns01 => ChallengeType::Dns01,
                };
                let Some(mut challenge) = authz.challenge(offered) else {
                    return Err(Failure::Challenge {
                        kind,
                        detail: format!("the CA offers no {} challenge for {domain}", kind.name()),
                    });
                };
                let key_authorization = challenge.key_authorization();
                match kind {
                    ChallengeKind::Http01 => {
                        self.challenges.add_http(
                            site,
                            &challenge.token,
                            key_authorization.as_str(),
                        );
                        open.push(Open::Http(challenge.token.clone()));
                    }
                    ChallengeKind::TlsAlpn01 => {
                        self.challenges
                            .add_alpn(site, &domain, key_authorization.digest().as_ref())
                            .map_err(|detail| Failure::Challenge { kind, detail })?;
                        open.push(Open::Alpn(domain.clone()));
                    }
                    ChallengeKind::Dns01 => {
                        let record = format!("_acme-challenge.{domain}");
                        let value = key_authorization.dns_value();
                        dns_hook::run(&self.config.acme, "set", &record, &value)
                            .await
                            .map_err(|detail| Failure::Challenge { kind, detail })?;
                        open.push(Open::Dns { record, value });
                        tokio::time::sleep(self.config.acme.dns_propagation_delay).await;
                    }
                }
                step!(
                    format!(
                        "telling the CA the {} challenge for {domain} is ready",
                        kind.name()
                    ),
                    challenge.set_ready()
                )?;
                tracing::info!(site = %site, domain = %domain, challenge = kind.name(), "acme: challenge ready");
                ready.insert(name);
            }
            return Ok(());
        }
    }

    async fn close(&self, site: &str, open: Vec<Open>) {
        for o in open {
            match o {
                Open::Http(token) => self.challenges.remove_http(&token),
                Open::Alpn(domain) => self.challenges.remove_alpn(&domain),
                Open::Dns { record, value } => {
                    if let Err(e) = dns_hook::run(&self.config.acme, "clear", &record, &value).await
                    {
                        tracing::warn!(site = %site, record = %record, error = %e, "acme: dns-hook clear failed");
                    }
                }
            }
        }
    }
}

/// The first challenge error the CA reports on the order's authorizations.
async fn failed_challenge(order: &mut Order) -> Option<String> {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let Ok(state) = authz.refresh().await else {
            continue;
        };
        for c in &state.challenges {
            if let Some(e) = &c.error {
                return Some(format!("{}: {e}", state.identifier()));
            }
        }
    }
    None
}
