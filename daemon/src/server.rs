//! The daemon's wiring point: [`run`] opens the store and the TPM, unseals the sealing key,
//! loads (or creates and wraps) the TLS identity, builds the engine and serves the HTTPS
//! API on the given listener until `shutdown` resolves, then drains connections within a
//! grace period. Tests bind `127.0.0.1:0` and call it directly.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::api;
use crate::config::Config;
use crate::engine::{Engine, StartError};

/// How long open connections may take to finish after shutdown is requested.
const GRACE: Duration = Duration::from_secs(10);
/// How long a client may take for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the daemon on `listener` and serves until `shutdown` completes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let engine = Arc::new(Engine::start(config).await?);
    serve(engine, listener, shutdown).await;
    Ok(())
}

/// The service entry point of `arbiterd run`: optionally starts a private swtpm
/// (development mode), binds the listener, runs until SIGTERM or SIGINT.
pub async fn run_service(mut config: Config, dev_swtpm: bool) -> Result<(), StartError> {
    let hardened =
        crate::hardening::harden(config.danger.allow_unlocked_memory).map_err(StartError::Other)?;
    crate::engine::tracing_line(&format!(
        "process hardened: not dumpable, no core files, memory locked: {}",
        hardened.memory_locked
    ));
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
        let tpm = crate::swtpm::Swtpm::start(&state.state_dir)
            .map_err(|e| StartError::Other(format!("development swtpm: {e}")))?;
        config.tpm.tcti = tpm.tcti();
        crate::engine::tracing_line(&format!(
            "development mode: private swtpm at {} (state {}); NOT a hardware TPM",
            config.tpm.tcti,
            state.state_dir.display()
        ));
        Some(tpm)
    } else {
        None
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| StartError::Other(format!("cannot listen on {}: {e}", config.listen)))?;
    let engine = Arc::new(Engine::start(config).await?);
    crate::engine::tracing_line(&format!(
        "serving on https://{} (TLS key sha256 {})",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        engine.tls_spki_sha256()
    ));
    // Ready only now: the TPM, the store and the measurement log are verified and the
    // socket is bound. Without NOTIFY_SOCKET (not under systemd) this does nothing.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    if let Some(interval) = sd_notify::watchdog_enabled() {
        let watched = Arc::clone(&engine);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval / 2).await;
                // Ping only while the TPM answers: a daemon that lost its TPM is restarted.
                if watched.tpm().clock().await.is_ok() {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
            }
        });
    }
    serve(engine, listener, shutdown_signal()).await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
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

/// Serves the API of a started engine.
pub async fn serve(engine: Arc<Engine>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    engine.spawn_background();
    let acceptor = TlsAcceptor::from(engine.tls_server_config());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                let acceptor = acceptor.clone();
                let engine = Arc::clone(&engine);
                let mut stop = stop_rx.clone();
                connections.spawn(async move {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
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
                        async move {
                            Ok::<_, std::convert::Infallible>(api::handle(engine, identity, req).await)
                        }
                    });
                    let conn = http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service);
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
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    let _ = stop_tx.send(true);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(GRACE, drain).await.is_err() {
        connections.abort_all();
    }
    engine.shutdown().await;
}
