//! The daemon's wiring point: [`run`] opens the store and the TPM, unseals the sealing key,
//! loads (or creates and wraps) the TLS identity, builds the engine and serves the HTTPS
//! API on the given listener until `shutdown` resolves, then drains connections within a
//! grace period. `arbiterd run` ([`run_service`]) and the tests take the same path,
//! [`Daemon::start`] (or [`Daemon::start_locked`]) then [`Daemon::serve`]; tests bind
//! `127.0.0.1:0`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::admission::{AcceptBackoff, Admission, connection_capacity, open_file_limit};
use crate::api;
use crate::config::{Config, ConfigError};
use crate::engine::{Engine, StartError};

/// How long open connections may take to finish after shutdown is requested.
const GRACE: Duration = Duration::from_secs(10);
/// The largest read buffer of a connection, so the largest request head (hyper's minimum
/// is 8 KiB; bodies stream through it in pieces).
const MAX_HEADER_BUFFER: usize = 64 << 10;

/// Starts the daemon on `listener` and serves until `shutdown` completes: [`Daemon::start`]
/// then [`Daemon::serve`].
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    Daemon::start(config, listener).await?.serve(shutdown).await
}

/// A started daemon on its bound listener, not serving yet: the one path from a
/// configuration to serving, taken by `arbiterd run` ([`run_service`]) and by the tests
/// alike. Between the two steps the caller may look at the engine (tests) or tell the
/// service manager it is ready (`arbiterd run`).
#[derive(Debug)]
pub struct Daemon {
    engine: Arc<Engine>,
    listener: TcpListener,
    /// Body limits and the input spool, whose leftovers are cleared before readiness.
    api_limits: api::ApiLimits,
    /// Keylime's agent interface and its bound listener, when `[keylime]` enables it.
    keylime: Option<(Arc<crate::keylime::Agent>, TcpListener)>,
}

impl Daemon {
    /// Locks the state directory and starts the engine ([`Engine::start_locked`]).
    pub async fn start(config: Config, listener: TcpListener) -> Result<Self, StartError> {
        let lock = crate::lock::StateLock::acquire(&config.state_dir)?;
        Self::start_locked(config, lock, listener).await
    }

    /// Starts the engine on a state directory whose lock the caller took.
    pub async fn start_locked(
        config: Config,
        lock: crate::lock::StateLock,
        listener: TcpListener,
    ) -> Result<Self, StartError> {
        let engine = Arc::new(Engine::start_locked(config, lock).await?);
        // The spool's leftovers go now, before the daemon says it is ready.
        let api_limits = api::ApiLimits::new(&engine.config().limits, &engine.config().state_dir)
            .map_err(|e| {
            StartError::Other(format!(
                "the input spool ({}/{}): {e}",
                engine.config().state_dir.display(),
                api::spool::SPOOL_DIR
            ))
        })?;
        let keylime = if engine.config().keylime.enabled {
            Some(
                crate::keylime::Agent::prepare(Arc::clone(&engine))
                    .await
                    .map_err(|e| StartError::Other(format!("Keylime agent interface: {e}")))?,
            )
        } else {
            None
        };
        Ok(Self {
            engine,
            listener,
            api_limits,
            keylime,
        })
    }

    /// The started engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The address listened on.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// The Keylime agent interface, when enabled.
    pub fn keylime(&self) -> Option<&Arc<crate::keylime::Agent>> {
        self.keylime.as_ref().map(|(agent, _)| agent)
    }

    /// Serves until `shutdown` completes, then drains connections and stops the engine.
    /// The Keylime agent interface (when enabled) serves and registers in the background
    /// until then.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
        if let Some((agent, listener)) = self.keylime {
            agent.spawn(listener).map_err(StartError::Other)?;
        }
        serve(self.engine, self.listener, self.api_limits, shutdown).await
    }
}

/// Reads the configuration again, as at start (the same file and overrides), on SIGHUP.
pub type ConfigLoader = Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// The service entry point of `arbiterd run`: optionally starts a private swtpm
/// (development mode), binds the listener, runs until SIGTERM or SIGINT; on SIGHUP applies
/// what `reload` reads where it can ([`Engine::reload`]).
pub async fn run_service(
    mut config: Config,
    dev_swtpm: bool,
    reload: ConfigLoader,
) -> Result<(), StartError> {
    let stop = shutdown_signal();
    // Installed now: SIGHUP's default action would end the process.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| StartError::Other(format!("installing the SIGHUP handler: {e}")))?;
    // Before anything else, the development swtpm included: one daemon per state directory.
    let lock = crate::lock::StateLock::acquire(&config.state_dir)?;
    // As many descriptors as the service manager allows; the connection cap is derived
    // from what is in force, so running out is refused up front, not discovered later.
    let nofile = crate::admission::raise_open_file_limit();
    connection_capacity(&config.limits, nofile).map_err(|e| StartError::Other(e.to_string()))?;
    let hardened =
        crate::hardening::harden(config.danger.allow_unlocked_memory).map_err(StartError::Other)?;
    tracing::info!(
        event = "hardened",
        memory_locked = hardened.memory_locked,
        "process hardened: not dumpable, no core files"
    );
    // Kept alive while serving: dropping it stops the software TPM.
    let _swtpm = if dev_swtpm {
        let dir = config.state_dir.join("swtpm");
        let state = if dir.join("state").join("tpm2-00.permall").exists() {
            crate::swtpm::ProvisionedState {
                state_dir: dir.join("state"),
                ca_root_pem: dir.join("ca").join("swtpm-localca-rootca-cert.pem"),
                ca_issuer_pem: dir.join("ca").join("issuercert.pem"),
            }
        } else {
            crate::swtpm::ProvisionedState::provision(&dir)
                .map_err(|e| StartError::Other(format!("development swtpm: {e}")))?
        };
        // Tied to this (the main) thread: a daemon killed with SIGKILL leaves no swtpm.
        let tpm = crate::swtpm::Swtpm::start_tied(&state.state_dir)
            .map_err(|e| StartError::Other(format!("development swtpm: {e}")))?;
        config.tpm.tcti = tpm.tcti();
        tracing::warn!(
            event = "development_swtpm",
            tcti = %config.tpm.tcti,
            swtpm_state = %state.state_dir.display(),
            "development mode: a private swtpm, NOT a hardware TPM"
        );
        Some(tpm)
    } else {
        None
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| StartError::Other(format!("cannot listen on {}: {e}", config.listen)))?;
    let daemon = Daemon::start_locked(config, lock, listener).await?;
    let engine = Arc::clone(daemon.engine());
    let address = daemon
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(
        event = "serving",
        address = %address,
        tls_spki_sha256 = %engine.tls_spki_sha256(),
        "serving on https://{address}"
    );
    // What `systemctl status` shows from now on: where it serves, or why it is degraded.
    let status = match engine.sealing_unavailable() {
        Some(reason) => format!("degraded: {reason}; serving on https://{address}"),
        None => format!("serving on https://{address}"),
    };
    // Ready only now: the TPM, the store and the measurement log are verified and the
    // socket is bound. Without NOTIFY_SOCKET (not under systemd) this does nothing.
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
    // The development swtpm's TCTI is this process's, not the file's: keep it on reload.
    let pinned_tcti = dev_swtpm.then(|| engine.config().tpm.tcti.clone());
    let reloading = Arc::clone(&engine);
    // Both loops below end once the engine stops.
    tokio::spawn(async move {
        loop {
            tokio::select! {
                signal = hangup.recv() => if signal.is_none() { break },
                () = reloading.stopped() => break,
            }
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
            let outcome = reload_config(&reloading, &reload, pinned_tcti.as_deref());
            let outcome_field = crate::logging::clip(&outcome);
            tracing::info!(event = "reload", "{outcome_field}");
            let line = format!("{status}; {outcome}");
            let _ = sd_notify::notify(&[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status(&line),
            ]);
        }
    });
    if let Some(interval) = sd_notify::watchdog_enabled() {
        let watched = Arc::clone(&engine);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(interval / 2) => {}
                    () = watched.stopped() => break,
                }
                // Ping only while the TPM answers: a daemon that lost its TPM is restarted.
                // A random number is the cheapest command that proves it (a clock read is a
                // quote: a signature, 200 ms on a discrete TPM, that attestations would wait
                // behind).
                if watched.tpm().random(8).await.is_ok() {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
            }
        });
    }
    drop(engine);
    daemon.serve(stop).await?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    Ok(())
}

/// Re-reads the configuration and applies it, or keeps the one in force; says which.
fn reload_config(engine: &Engine, load: &ConfigLoader, pinned_tcti: Option<&str>) -> String {
    let mut new = match load() {
        Ok(config) => config,
        Err(e) => return format!("reload refused, configuration kept: {e}"),
    };
    if let Some(tcti) = pinned_tcti {
        new.tpm.tcti = tcti.to_owned();
    }
    match engine.reload(new) {
        Ok(changed) if changed.is_empty() => "reloaded: nothing changed".into(),
        Ok(changed) => format!("reloaded: {} changed", changed.join(", ")),
        Err(fixed) => format!(
            "reload refused, configuration kept: {} cannot change without a restart",
            fixed.join(", ")
        ),
    }
}

/// Installs the SIGTERM and SIGINT handlers now — so a stop requested any time after this,
/// also during start or right after READY, is a clean stop rather than the default action
/// — and returns a future that resolves on the first of them.
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        match handlers {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            // Without signal handlers the daemon still stops when killed.
            _ => std::future::pending::<()>().await,
        }
    }
}

/// Serves the API of a started engine until `shutdown` completes. Every connection holds
/// a slot of [`Admission`] (bounded by the open-file limit) and, per address, a share of it;
/// the TLS handshake, each request's headers (and an idle keep-alive connection) and each
/// body have deadlines, so no client holds a slot for long without doing work.
async fn serve(
    engine: Arc<Engine>,
    listener: TcpListener,
    api_limits: api::ApiLimits,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let limits = engine.config().limits.clone();
    let capacity = connection_capacity(&limits, open_file_limit())
        .map_err(|e| StartError::Other(e.to_string()))?;
    let admission = Admission::new(capacity, limits.max_connections_per_ip);
    tracing::info!(
        event = "admission",
        max_connections = capacity,
        max_connections_per_ip = limits.max_connections_per_ip,
        "serving at most {capacity} connections ({} per address)",
        limits.max_connections_per_ip
    );
    let handshake_timeout = Duration::from_secs(limits.handshake_timeout_seconds);
    let idle_timeout = Duration::from_secs(limits.idle_timeout_seconds);
    engine.spawn_background();
    let acceptor = TlsAcceptor::from(engine.tls_server_config());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut backoff = AcceptBackoff::default();
    tokio::pin!(shutdown);
    loop {
        // Reap finished connections without waiting.
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = admission.slot() => slot,
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            Err(e) => {
                // Out of descriptors or memory: wait instead of spinning on the error.
                let delay = backoff.failed();
                tracing::warn!(
                    event = "accept_failed",
                    error = %e,
                    retry_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "accepting a connection failed; retrying"
                );
                drop(slot);
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(delay) => continue,
                }
            }
        };
        // Answers are small TLS records written as they are ready: with Nagle's algorithm a
        // record waits for the ACK of the previous one, which the peer delays (~40 ms).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(event = "nodelay_failed", error = %e, "cannot set TCP_NODELAY");
        }
        let Some(admitted) = admission.admit(slot, peer.ip()) else {
            // This address holds its share already: close at once, holding nothing.
            engine.note_rejected_connection(&peer.to_string());
            drop(tcp);
            continue;
        };
        let acceptor = acceptor.clone();
        let engine = Arc::clone(&engine);
        let api_limits = api_limits.clone();
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let _admitted = admitted;
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    engine.note_rejected_handshake(&peer.to_string(), &e.to_string());
                    return;
                }
                Err(_) => return,
            };
            let identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| arbiter_policy::identity::identity_of(c).ok());
            // The verifier requires a parseable client certificate; no identity
            // here would be a rustls defect: close the connection.
            let Some(identity) = identity else { return };
            let service = service_fn(move |req| {
                let engine = Arc::clone(&engine);
                let identity = identity.clone();
                let api_limits = api_limits.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        api::handle(engine, &api_limits, identity, req).await,
                    )
                }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                // Also the idle deadline: hyper starts it whenever it waits for a request.
                .header_read_timeout(idle_timeout)
                .max_buf_size(MAX_HEADER_BUFFER);
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    tracing::info!(event = "stopping", "stopping: draining connections");
    let _ = stop_tx.send(true);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(GRACE, drain).await.is_err() {
        connections.abort_all();
    }
    engine.shutdown().await;
    tracing::info!(event = "stopped", "stopped");
    Ok(())
}
