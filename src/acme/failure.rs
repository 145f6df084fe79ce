//! Why an ACME step failed, in words an operator can act on: the step and its URL, then every
//! cause down the chain (`placing the order at https://ca/dir: client error (Connect): tcp
//! connect error: Connection refused (os error 111)`), or the CA's problem document.

use std::fmt::Display;

use crate::config::ChallengeKind;

const BAD_NONCE: &str = "urn:ietf:params:acme:error:badNonce";
const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";
const ACCOUNT_DOES_NOT_EXIST: &str = "urn:ietf:params:acme:error:accountDoesNotExist";
const UNAUTHORIZED: &str = "urn:ietf:params:acme:error:unauthorized";

/// Times one step (placing the order, finalizing, ...) is sent again after the CA refused its
/// nonce each time instant-acme tried (three times per send): a nonce is no reason to throw an
/// order away and place a new one, which counts against the CA's limits.
const STEP_NONCE_RETRIES: u32 = 5;

/// Why an order did not bring a certificate.
#[derive(Debug)]
pub(super) enum Failure {
    /// A challenge of this type did not validate (or could not be set up): the next type in
    /// the site's list is tried at once.
    Challenge {
        kind: ChallengeKind,
        detail: String,
    },
    Other {
        detail: String,
        rate_limited: bool,
    },
    /// The CA kept refusing nonces through every retry of a step: the order is placed again.
    BadNonce {
        detail: String,
    },
    /// The CA does not know the account (its database was reset) or has deactivated it: a new
    /// one is registered. `account` is the refused account's URL, once known.
    AccountGone {
        detail: String,
        account: Option<String>,
    },
}

impl Failure {
    pub(super) fn other(detail: impl Display) -> Self {
        Self::Other {
            detail: detail.to_string(),
            rate_limited: false,
        }
    }

    pub(super) fn detail(&self) -> &str {
        match self {
            Self::Challenge { detail, .. }
            | Self::Other { detail, .. }
            | Self::BadNonce { detail }
            | Self::AccountGone { detail, .. } => detail,
        }
    }

    /// `self`, naming `account` as the refused one if it is about the account.
    pub(super) fn of_account(self, id: &str) -> Self {
        match self {
            Self::AccountGone { detail, .. } => Self::AccountGone {
                detail,
                account: Some(id.to_string()),
            },
            f => f,
        }
    }

    /// Whether a step that failed so is worth sending again (a refused nonce, `retries` times
    /// at most [`STEP_NONCE_RETRIES`]); counts the retry.
    pub(super) fn again(&self, retries: &mut u32) -> bool {
        let again = matches!(self, Self::BadNonce { .. }) && *retries < STEP_NONCE_RETRIES;
        if again {
            *retries += 1;
            tracing::debug!(error = %self.detail(), retries = *retries, "acme: nonce refused; sending the step again");
        }
        again
    }

    /// The failure of `step`, classified by the CA's problem type.
    pub(super) fn at(step: &dyn Display, e: &instant_acme::Error) -> Self {
        let detail = format!("{step}: {}", explain(e));
        let problem = match e {
            instant_acme::Error::Api(p) => Some(p),
            _ => None,
        };
        let kind = problem.and_then(|p| p.r#type.as_deref());
        match kind {
            Some(BAD_NONCE) => Self::BadNonce { detail },
            Some(ACCOUNT_DOES_NOT_EXIST) => Self::AccountGone {
                detail,
                account: None,
            },
            Some(UNAUTHORIZED)
                if problem
                    .and_then(|p| p.detail.as_deref())
                    .is_some_and(|d| d.to_ascii_lowercase().contains("deactivated")) =>
            {
                Self::AccountGone {
                    detail,
                    account: None,
                }
            }
            _ => Self::Other {
                detail,
                rate_limited: kind == Some(RATE_LIMITED),
            },
        }
    }
}

/// How long one request to the CA may take before the step fails (instant-acme's client has
/// no deadline of its own: a CA that accepts a connection and never answers would hold the
/// site's renewals for ever).
pub(super) const STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Run one ACME step (`$send`, an expression giving its future, evaluated again for each try)
/// within `$within` (default [`STEP_TIMEOUT`]), sending it again (up to [`STEP_NONCE_RETRIES`]
/// times) while the CA refuses its nonces; any other error is final. `$step` names it (and its
/// URL) in the failure. A macro, not a function taking an async closure: such a closure's
/// future cannot be proven `Send` today.
macro_rules! step {
    ($step:expr, $send:expr) => {
        step!($step, $send, $crate::acme::failure::STEP_TIMEOUT)
    };
    ($step:expr, $send:expr, $within:expr) => {{
        let mut retries = 0;
        let within = $within;
        loop {
            match tokio::time::timeout(within, $send).await {
                Ok(Ok(v)) => break Ok(v),
                Ok(Err(e)) => {
                    let f = $crate::acme::failure::Failure::at(&$step, &e);
                    if !f.again(&mut retries) {
                        break Err(f);
                    }
                }
                Err(_) => {
                    break Err($crate::acme::failure::Failure::other(format!(
                        "{}: no answer from the CA within {within:?}",
                        $step
                    )))
                }
            }
        }
    }};
}
pub(super) use step;

/// An instant-acme error with its whole cause chain, or the CA's problem document.
pub(super) fn explain(e: &instant_acme::Error) -> String {
    if let instant_acme::Error::Api(p) = e {
        let mut s = String::from("the CA refused");
        if let Some(status) = p.status {
            s += &format!(" (HTTP {status})");
        }
        s += ": ";
        s += p.detail.as_deref().unwrap_or("no detail");
        if let Some(t) = &p.r#type {
            s += &format!(" [{t}]");
        }
        for sub in &p.subproblems {
            s += &format!("; {sub}");
        }
        return s;
    }
    chain(e)
}

/// `error: cause: cause ...`, leaving out a cause whose text its parent already shows (wrappers
/// such as `#[error(transparent)]` or `"request failure: {0}"` repeat their source).
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !s.contains(&text) {
            s += ": ";
            s += &text;
        }
        next = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn the_chain_names_every_cause_once() {
        let e = E(
            "client error (Connect)",
            Some(Box::new(E(
                "tcp connect error",
                Some(Box::new(E("Connection refused (os error 111)", None))),
            ))),
        );
        assert_eq!(
            chain(&e),
            "client error (Connect): tcp connect error: Connection refused (os error 111)"
        );
        let repeated = E("request failure: boom", Some(Box::new(E("boom", None))));
        assert_eq!(chain(&repeated), "request failure: boom");
    }

    fn problem(kind: &str, detail: &str) -> instant_acme::Error {
        instant_acme::Error::Api(
            serde_json::from_value(serde_json::json!({
                "type": kind, "detail": detail, "status": 400
            }))
            .unwrap(),
        )
    }

    #[test]
    fn problems_are_classified_and_shown_with_the_step() {
        let f = Failure::at(
            &"placing the order at https://ca/dir",
            &problem(ACCOUNT_DOES_NOT_EXIST, "unable to find account"),
        );
        assert!(matches!(f, Failure::AccountGone { account: None, .. }));
        assert_eq!(
            f.detail(),
            "placing the order at https://ca/dir: the CA refused (HTTP 400): unable to find \
             account [urn:ietf:params:acme:error:accountDoesNotExist]"
        );
        let f = Failure::at(&"x", &problem(UNAUTHORIZED, "Account has been deactivated"));
        assert!(matches!(f, Failure::AccountGone { .. }));
        let f = Failure::at(&"x", &problem(UNAUTHORIZED, "no"));
        assert!(matches!(
            f,
            Failure::Other {
                rate_limited: false,
                ..
            }
        ));
        let f = Failure::at(&"x", &problem(RATE_LIMITED, "slow down"));
        assert!(matches!(
            f,
            Failure::Other {
                rate_limited: true,
                ..
            }
        ));
        assert!(matches!(
            Failure::at(&"x", &problem(BAD_NONCE, "stale")),
            Failure::BadNonce { .. }
        ));
    }

    #[tokio::test]
    async fn a_refused_nonce_sends_the_step_again_and_other_errors_end_it() {
        let mut sent = 0;
        let mut send = || {
            sent += 1;
            let r = if sent < 3 {
                Err(problem(BAD_NONCE, "stale"))
            } else {
                Ok(sent)
            };
            std::future::ready(r)
        };
        let r: Result<u32, Failure> = step!("finalizing", send());
        assert_eq!(r.unwrap(), 3);

        let mut sent = 0;
        let mut send = || {
            sent += 1;
            std::future::ready(Err::<(), _>(problem(BAD_NONCE, "stale")))
        };
        let r = step!("finalizing", send());
        assert!(matches!(r, Err(Failure::BadNonce { .. })));
        assert_eq!(sent, STEP_NONCE_RETRIES + 1);

        let mut sent = 0;
        let mut send = || {
            sent += 1;
            std::future::ready(Err::<(), _>(problem(
                "urn:ietf:params:acme:error:malformed",
                "bad csr",
            )))
        };
        let r = step!("finalizing", send());
        assert!(r
            .unwrap_err()
            .detail()
            .starts_with("finalizing: the CA refused"));
        assert_eq!(sent, 1);
    }

    #[tokio::test]
    async fn a_ca_that_never_answers_fails_the_step_at_its_deadline() {
        let never = || std::future::pending::<Result<(), instant_acme::Error>>();
        let r = step!(
            "placing an order at https://ca/dir",
            never(),
            std::time::Duration::from_millis(20)
        );
        let f = r.unwrap_err();
        assert!(matches!(f, Failure::Other { .. }));
        assert_eq!(
            f.detail(),
            "placing an order at https://ca/dir: no answer from the CA within 20ms"
        );
    }
}
