//! DNS-01 through the operator's hook: `<dns-hook...> set|clear <record> <value>`, with
//! ACME_ACTION, ACME_RECORD and ACME_VALUE in its environment too, bounded by `dns-hook-timeout`.

use crate::config::Acme;

/// `<dns-hook...> set|clear <record> <value>`, with ACME_ACTION, ACME_RECORD and ACME_VALUE
/// in its environment too.
pub async fn run(acme: &Acme, action: &str, record: &str, value: &str) -> Result<(), String> {
    let Some(hook) = acme.dns_hook.as_ref().filter(|h| !h.is_empty()) else {
        return Err("no [acme] dns-hook is configured".into());
    };
    let mut command = tokio::process::Command::new(&hook[0]);
    command
        .args(&hook[1..])
        .args([action, record, value])
        .env("ACME_ACTION", action)
        .env("ACME_RECORD", record)
        .env("ACME_VALUE", value)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let run = tokio::time::timeout(acme.dns_hook_timeout, command.output()).await;
    match run {
        Err(_) => Err(format!(
            "dns-hook {action} took longer than {:?}",
            acme.dns_hook_timeout
        )),
        Ok(Err(e)) => Err(format!("dns-hook {}: cannot run: {e}", hook[0])),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: String = stderr.trim().chars().take(300).collect();
            Err(format!("dns-hook {action} failed ({}): {tail}", out.status))
        }
    }
}
