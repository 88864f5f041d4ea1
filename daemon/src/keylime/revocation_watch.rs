//! The pull side of revocation: every `poll_interval_seconds`, ask the verifier for this
//! agent's status (`GET /v{ver}/agents/{uuid}`, mutual TLS with the configured client
//! certificate) and record a revocation when it reports the agent `Failed` or
//! `Invalid Quote`. Keylime's own agent notifier tells the *other* agents about a failure,
//! so this is how the failed appliance itself learns of it. An unreachable verifier or an
//! agent it does not know changes nothing.

use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use serde_json::Value;

use super::Agent;
use super::http::Client;
use super::registration::highest_v2;
use super::revocation::failed_state;

/// Polls until the engine stops.
pub async fn run(agent: Arc<Agent>) {
    let engine = Arc::clone(&agent.engine);
    let section = &agent.section;
    let interval = Duration::from_secs(section.poll_interval_seconds.max(1));
    let client = match section
        .verifier_endpoint()
        .map_err(|e| e.to_string())
        .and_then(|e| e.ok_or_else(|| "keylime.verifier is not set".to_owned()))
        .and_then(|endpoint| {
            let pair = section
                .client_certificate
                .as_deref()
                .zip(section.client_key.as_deref());
            Client::new(endpoint, section.ca_certificate.as_deref(), pair)
        }) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(event = "keylime_watch_failed", error = %e, "cannot poll the Keylime verifier");
            return;
        }
    };
    let mut version: Option<String> = None;
    let mut last_error = String::new();
    loop {
        tokio::select! {
            () = engine.stopped() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match poll(&agent, &client, &mut version).await {
            Ok(()) => last_error.clear(),
            Err(e) if e != last_error => {
                tracing::warn!(event = "keylime_poll_failed", error = %crate::logging::clip(&e), "polling the Keylime verifier failed");
                last_error = e;
            }
            Err(_) => {}
        }
    }
}

async fn poll(agent: &Agent, client: &Client, version: &mut Option<String>) -> Result<(), String> {
    if version.is_none() {
        let (status, answer) = client.request(Method::GET, "/version", None).await?;
        if status != 200 {
            return Err(format!("the verifier's GET /version answered {status}"));
        }
        *version = Some(highest_v2(&answer).ok_or("the verifier offers no 2.x API version")?);
    }
    let v = version.as_deref().unwrap_or("2.1");
    let (status, answer) = client
        .request(Method::GET, &format!("/v{v}/agents/{}", agent.uuid), None)
        .await?;
    match status {
        200 => {}
        // Not (or no longer) enrolled with this verifier: nothing to say.
        404 => return Ok(()),
        other => return Err(format!("the verifier answered {other}")),
    }
    let Some(state) = answer
        .pointer("/results/operational_state")
        .and_then(Value::as_i64)
    else {
        return Err("the verifier's answer has no results.operational_state".into());
    };
    if let Some(name) = failed_state(state) {
        let event = answer
            .pointer("/results/last_event_id")
            .and_then(Value::as_str)
            .map(|e| format!(", last event {e}"))
            .unwrap_or_default();
        let reason = format!("the verifier reports this agent `{name}` ({state}{event})");
        agent
            .engine
            .fleet_revocation()
            .revoke(&reason, "verifier_status")?;
    }
    Ok(())
}
