//! The ACME account: the one stored in the state directory, or a new one registered once and
//! stored (0600). The stored file is the truth: an operator who deletes or replaces
//! `account.json` gets a new account (or theirs) at the next order, without a restart. A CA
//! that forgot the account (its database was reset) or deactivated it gets a new registration,
//! and the old file stays beside it as `account.json.replaced-<time>`.

use std::sync::Arc;

use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};

use super::failure::{step, Failure};
use super::storage::Storage;
use crate::config::Acme;

pub(super) struct Accounts {
    acme: Arc<Acme>,
    /// The account in use and the stored bytes it was made from.
    current: tokio::sync::Mutex<Option<(Vec<u8>, Account)>>,
}

impl Accounts {
    pub(super) fn new(acme: Arc<Acme>) -> Self {
        Self {
            acme,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// The account to order with for `site` (named in the log when an account is made).
    pub(super) async fn get(&self, storage: &Storage, site: &str) -> Result<Account, Failure> {
        let mut current = self.current.lock().await;
        let stored = storage.load_account().map_err(|e| {
            Failure::other(format!(
                "cannot read the account in {}: {e}",
                storage.root().display()
            ))
        })?;
        if let (Some(json), Some((have, account))) = (&stored, &*current) {
            if json == have {
                return Ok(account.clone());
            }
        }
        let directory = &self.acme.directory;
        let (json, account) = match stored {
            Some(json) => {
                let creds: AccountCredentials = serde_json::from_slice(&json).map_err(|e| {
                    Failure::other(format!(
                        "the account in {} is unreadable: {e}",
                        storage.root().display()
                    ))
                })?;
                let account = self
                    .builder()
                    .map_err(|e| Failure::at(&"reading the account's CA certificates", &e))?
                    .from_credentials(creds)
                    .await
                    .map_err(|e| {
                        Failure::at(&format_args!("loading the account from {directory}"), &e)
                    })?;
                tracing::info!(site = %site, account = account.id(), "acme: account loaded");
                (json, account)
            }
            None => {
                let (account, creds) = self.create(site).await?;
                let json = serde_json::to_vec(&creds).map_err(Failure::other)?;
                storage.save_account(&json).map_err(|e| {
                    Failure::other(format!(
                        "cannot store the account in {}: {e}",
                        storage.root().display()
                    ))
                })?;
                (json, account)
            }
        };
        *current = Some((json, account.clone()));
        Ok(account)
    }

    /// The CA refused the account `id` (`detail` says how): keep its file aside, so the next
    /// [`Accounts::get`] registers a new one. Another site that saw the same refusal first has
    /// already done so; then nothing happens.
    pub(super) async fn replace(
        &self,
        storage: &Storage,
        site: &str,
        id: &str,
        detail: &str,
    ) -> std::io::Result<()> {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|(_, a)| a.id() != id) {
            return Ok(());
        }
        *current = None;
        let kept = storage.retire_account()?;
        tracing::warn!(site = %site, account = id, error = %detail, kept = ?kept, "acme: the CA no longer knows the account; registering a new one");
        Ok(())
    }

    fn builder(&self) -> Result<instant_acme::AccountBuilder, instant_acme::Error> {
        match &self.acme.ca_file {
            Some(p) => Account::builder_with_root(p),
            None => Account::builder(),
        }
    }

    async fn register(
        &self,
        new: &NewAccount<'_>,
        eab: Option<&ExternalAccountKey>,
    ) -> Result<(Account, AccountCredentials), instant_acme::Error> {
        self.builder()?
            .create(new, self.acme.directory.clone(), eab)
            .await
    }

    async fn create(&self, site: &str) -> Result<(Account, AccountCredentials), Failure> {
        let acme = &self.acme;
        let contact: Vec<&str> = acme.contact.iter().map(String::as_str).collect();
        let eab = acme
            .eab
            .as_ref()
            .map(|(kid, key)| ExternalAccountKey::new(kid.clone(), key));
        let new = NewAccount {
            contact: &contact,
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let created = step!(
            format!("creating an account at {}", acme.directory),
            self.register(&new, eab.as_ref())
        )?;
        tracing::info!(site = %site, account = created.0.id(), directory = %acme.directory, "acme: account created");
        Ok(created)
    }
}
