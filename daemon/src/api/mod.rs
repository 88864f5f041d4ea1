//! The HTTPS API: routes requests (by the table in [`routes`]) to the engine, reads JSON
//! bodies within the configured size limit, and turns every refusal into
//! `{"error": {"code", "message"}}` with the right status. It never touches the TPM or the
//! database itself.

mod openapi;
pub mod routes;
pub mod spool;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use arbiter_proto::api::{
    ActivateCredential, ErrorBody, ErrorDetail, Health, HealthStatus, Problem,
};
use arbiter_proto::{IdentityId, ProtoError};

use crate::admission::BodyBudget;
use crate::config::LimitsSection;
use crate::engine::{Engine, EngineError};
use crate::logging::clip;
use crate::storage::StorageFault;
use routes::Route;
use spool::Refused;

/// An HTTP error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    problems: Option<Vec<Problem>>,
    /// For 405: the methods the path allows (the `Allow` header).
    allow: Option<String>,
    /// For 503 `busy`: seconds to wait before retrying (the `Retry-After` header).
    retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            problems: None,
            allow: None,
            retry_after: None,
        }
    }

    /// A write to the state directory failed: 507 `disk_full`, or 503
    /// `storage_unavailable` with `Retry-After` (docs/reliability.md).
    fn storage(fault: Option<StorageFault>, detail: &str) -> Self {
        match fault {
            Some(StorageFault::Full) => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "disk_full",
                StorageFault::Full.message(detail),
            ),
            _ => Self {
                retry_after: Some(STORAGE_RETRY_AFTER_SECONDS),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    StorageFault::Unavailable.message(detail),
                )
            },
        }
    }

    /// 503 `busy` with `Retry-After`: a shared budget is spent for now.
    fn busy(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(spool::RETRY_AFTER_SECONDS),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
        }
    }

    /// A request body the wire contract refuses: 400 with the endpoint's code.
    fn request(e: ProtoError) -> Self {
        match e {
            ProtoError::Field { code, message } => {
                Self::new(StatusCode::BAD_REQUEST, code, message)
            }
            other => Self::new(StatusCode::BAD_REQUEST, "malformed_json", other.to_string()),
        }
    }
}

/// Seconds a client refused because the state directory cannot be written is asked to
/// wait (`Retry-After`): an operator has to act, so not soon.
pub const STORAGE_RETRY_AFTER_SECONDS: u32 = 60;

/// Seconds a client refused because too many requests wait for the TPM is asked to wait
/// (`Retry-After`): a TPM job takes milliseconds, so the queue drains fast.
pub const TPM_BUSY_RETRY_AFTER_SECONDS: u32 = 1;

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let message = e.to_string();
        match e {
            EngineError::Forbidden(_) => Self::new(StatusCode::FORBIDDEN, "forbidden", message),
            EngineError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            EngineError::BadRequest { code, .. } => {
                Self::new(StatusCode::BAD_REQUEST, code, message)
            }
            EngineError::Conflict { code, .. } => Self::new(StatusCode::CONFLICT, code, message),
            EngineError::TooLarge { code, .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
            }
            EngineError::Quota(_) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", message)
            }
            EngineError::InvalidManifest(problems) => Self {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_manifest",
                message,
                problems: Some(
                    problems
                        .iter()
                        .map(|p| Problem {
                            pointer: p.pointer.clone(),
                            reason: p.reason.clone(),
                        })
                        .collect(),
                ),
                allow: None,
                retry_after: None,
            },
            EngineError::Store(ref s) if s.storage_fault().is_some() => {
                Self::storage(s.storage_fault(), &s.to_string())
            }
            EngineError::Measure(ref m) if m.storage_fault().is_some() => {
                Self::storage(m.storage_fault(), &m.to_string())
            }
            EngineError::SealingUnavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sealing_unavailable",
                message,
            ),
            EngineError::FleetRevoked(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "fleet_revoked", message)
            }
            EngineError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "attestation_unavailable",
                message,
            ),
            EngineError::Tpm(crate::tpm::TpmError::Busy { .. }) => Self {
                retry_after: Some(TPM_BUSY_RETRY_AFTER_SECONDS),
                ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
            },
            EngineError::Tpm(_) | EngineError::Measure(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "tpm_unavailable", message)
            }
            EngineError::Store(_) | EngineError::Keys(_) | EngineError::Internal(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}

fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    let body = ErrorBody {
        error: ErrorDetail {
            code: e.code.to_owned(),
            message: e.message.clone(),
            problems: e.problems.clone(),
        },
    };
    let mut response = json_response(e.status, &body);
    if let Some(allow) = &e.allow
        && let Ok(value) = hyper::header::HeaderValue::from_str(allow)
    {
        response.headers_mut().insert(hyper::header::ALLOW, value);
    }
    if let Some(seconds) = e.retry_after {
        response
            .headers_mut()
            .insert(hyper::header::RETRY_AFTER, seconds.into());
    }
    response
}

/// What bounds request bodies: the size limit, the read deadline, and the budget shared by
/// every connection.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    max_body_bytes: usize,
    body_timeout: Duration,
    budget: BodyBudget,
    spool: spool::Spool,
}

/// The largest body of `POST /v1/tpm/activate-credential` (a credential blob and an
/// encrypted seed: a few hundred bytes), which any authenticated client may call.
const MAX_CREDENTIAL_BODY: usize = 16 << 10;

impl ApiLimits {
    /// From the configuration's `[limits]`, with the input spool in `state_dir` (emptied
    /// of what a previous run left).
    pub fn new(limits: &LimitsSection, state_dir: &std::path::Path) -> std::io::Result<Self> {
        Ok(Self {
            max_body_bytes: limits.max_body_bytes,
            body_timeout: Duration::from_secs(limits.body_timeout_seconds),
            budget: BodyBudget::new(limits.max_bodies_in_flight_bytes),
            spool: spool::Spool::open(state_dir, limits)?,
        })
    }
}

/// Handles one request from an authenticated `identity`: answers it, counts it, times it
/// by route and status, and logs it (refusals at `info`, the rest at `debug`).
pub async fn handle(
    engine: Arc<Engine>,
    limits: &ApiLimits,
    identity: String,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = routes::match_route(&method, &path)
        .map_or_else(|| "unmatched".to_owned(), |(route, _)| format!("{route:?}"));
    let response = match dispatch(&engine, limits, &identity, request).await {
        Ok(response) => {
            engine.metrics().requests_ok.inc();
            response
        }
        Err(e) => {
            if e.status.is_server_error() {
                engine.metrics().requests_failed.inc();
            } else {
                engine.metrics().requests_refused.inc();
            }
            engine.note_refused(
                &identity,
                &format!("{method} {path}"),
                &format!("{} {}", e.status.as_u16(), e.code),
            );
            error_response(&e)
        }
    };
    let took = started.elapsed();
    let status = response.status().as_u16();
    engine.metrics().request(route.clone(), status, took);
    tracing::debug!(
        event = "request",
        identity = %identity,
        method = %method,
        route = %route,
        path = %clip(&path),
        status,
        duration_ms = took.as_secs_f64() * 1e3,
        "request answered"
    );
    response
}

/// Reads a JSON body of at most `limit` bytes and parses it as the wire contract says
/// (strict JSON, then the endpoint's type). Call it only once the caller is known to be
/// allowed this endpoint: a stranger's body is never read.
async fn body<T: DeserializeOwned>(
    limits: &ApiLimits,
    limit: usize,
    request: Request<Incoming>,
) -> Result<T, ApiError> {
    let bytes = body_bytes(limits, limit, Refused::Body, request).await?;
    // Strictly: a duplicate key (in a manifest or anywhere else) is refused, as the policy
    // crate's manifest parser refuses it — parsers that keep the first or the last value
    // would otherwise read one text as two different documents.
    arbiter_proto::api::parse_request(&bytes).map_err(ApiError::request)
}

/// Reads a body of at most `limit` bytes. Its bytes are reserved from the shared budget
/// first (its declared length, else the limit), and it must arrive within the body
/// deadline. A body refused before it is read is discarded as `refused` says.
async fn body_bytes(
    limits: &ApiLimits,
    limit: usize,
    refused: Refused,
    request: Request<Incoming>,
) -> Result<Bytes, ApiError> {
    let declared = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(len) = declared
        && len > limit
    {
        return Err(unread(request, refused, too_large(limit)));
    }
    let Some(_reserved) = limits.budget.try_reserve(declared.unwrap_or(limit)) else {
        return Err(unread(
            request,
            refused,
            ApiError::busy("too many request bodies are being received at once; retry shortly"),
        ));
    };
    let collected = tokio::time::timeout(
        limits.body_timeout,
        Limited::new(request.into_body(), limit).collect(),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {} s",
                limits.body_timeout.as_secs()
            ),
        )
    })?;
    Ok(collected.map_err(|_| too_large(limit))?.to_bytes())
}

/// A refusal sent before the request's body was read: the body is discarded in the
/// background ([`spool::linger`]) so that the client, still sending it, reads the refusal
/// instead of a reset connection. Schemathesis found refusals lost this way (403 to a
/// creator posting a function, 403 to a stranger's input): closing a connection with
/// unread bytes in its receive buffer resets it, and the reset discards the answer.
/// `refused` says whose body it is, which bounds how much of it is discarded.
fn unread(request: Request<Incoming>, refused: Refused, e: ApiError) -> ApiError {
    spool::linger(request.into_body(), refused);
    e
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body exceeds {limit} bytes"),
    )
}

fn ok(value: &impl Serialize) -> Result<Response<Full<Bytes>>, ApiError> {
    Ok(json_response(StatusCode::OK, value))
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The wire form of the revocation state.
fn fleet_revocation(
    r: Option<crate::keylime::revocation::Revoked>,
) -> arbiter_proto::api::FleetRevocation {
    arbiter_proto::api::FleetRevocation {
        revoked: r.map(|r| arbiter_proto::api::FleetRevoked {
            reason: r.reason,
            source: r.source,
            since: r.since,
        }),
    }
}

fn require_operator(engine: &Engine, identity: &str) -> Result<(), ApiError> {
    if engine.config().is_operator(identity) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("identity {identity} is not an operator"),
        ))
    }
}

async fn dispatch(
    engine: &Arc<Engine>,
    limits: &ApiLimits,
    identity: &str,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let max_body = limits.max_body_bytes;
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let Some((route, params)) = routes::match_route(&method, &path) else {
        let allowed = routes::allowed_methods(&path);
        let refusal = if !allowed.is_empty() {
            ApiError {
                allow: Some(allowed.join(", ")),
                ..ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{method} is not allowed on {path}"),
                )
            }
        } else {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_endpoint",
                format!("there is no endpoint {path}"),
            )
        };
        return Err(unread(request, Refused::Caller, refusal));
    };
    let p = |i: usize| params.get(i).map(String::as_str).unwrap_or("");
    // Degraded (docs/protocol.md): only health, attestation and the TPM's public parts answer;
    // everything else may need a secret and is refused before anything is read.
    if engine.sealing_unavailable().is_some() && !routes::serves_when_degraded(route) {
        return Err(unread(
            request,
            Refused::Caller,
            ApiError::from(engine.sealing_refusal()),
        ));
    }
    // Revoked by the fleet verifier (docs/fleet.md): the same refusal, the fleet endpoints
    // (which need no secret) still answer so an operator can clear it.
    if !routes::serves_when_degraded(route)
        && let Some(refusal) = engine.fleet_refusal()
    {
        return Err(unread(request, Refused::Caller, ApiError::from(refusal)));
    }
    match route {
        Route::Healthz => {
            let degraded = engine.degraded();
            let identity = identity.parse::<IdentityId>().map_err(|e| {
                ApiError::from(EngineError::Internal(format!("the caller's identity: {e}")))
            })?;
            ok(&if degraded.is_empty() {
                Health {
                    degraded: None,
                    identity,
                    status: HealthStatus::Ok,
                }
            } else {
                Health {
                    degraded: Some(degraded),
                    identity,
                    status: HealthStatus::Degraded,
                }
            })
        }
        Route::OpenApi => ok(&routes::openapi()),
        Route::Metrics => {
            require_operator(engine, identity)?;
            let text = metrics_text(engine).await;
            Ok(Response::builder()
                .header(hyper::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)
                .body(Full::new(Bytes::from(text)))
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
        }
        Route::Attestation => {
            let nonce = query_param(&query, "nonce").ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_nonce",
                    "`nonce` (hex, 16 to 64 bytes) is required",
                )
            })?;
            let instance = query_param(&query, "instance");
            ok(&engine.attest(identity, nonce, instance).await?)
        }
        Route::TpmInfo => ok(&engine.tpm_info().await?),
        Route::ActivateCredential => {
            // Any certificate may call this endpoint: a refused body is a caller's.
            let bytes = body_bytes(
                limits,
                MAX_CREDENTIAL_BODY.min(max_body),
                Refused::Caller,
                request,
            )
            .await?;
            let request = ActivateCredential::from_body(&bytes).map_err(ApiError::request)?;
            ok(&engine.activate_credential(request).await?)
        }
        Route::ListFunctions => ok(&engine.list_functions().await?),
        Route::RegisterFunction => {
            if let Err(e) = engine.authorize_registration(identity) {
                return Err(unread(request, Refused::Caller, e.into()));
            }
            let request = body(limits, max_body, request).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &engine.register_function(identity, request).await?,
            ))
        }
        Route::GetFunction => ok(&engine.get_function(p(0)).await?),
        Route::CreateInstance => {
            if let Err(e) = engine.authorize_creation(identity) {
                return Err(unread(request, Refused::Caller, e.into()));
            }
            let request = body(limits, max_body, request).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &engine.create_instance(identity, request).await?,
            ))
        }
        Route::GetInstance => ok(&engine.describe_instance(identity, p(0)).await?),
        Route::PutInput => put_input(engine, limits, identity, p(0), p(1), request).await,
        Route::DeleteInput => ok(&engine.withdraw_input(identity, p(0), p(1)).await?),
        Route::Approve => ok(&engine.approve(identity, p(0)).await?),
        Route::Evaluate => Ok(json_response(
            StatusCode::ACCEPTED,
            &engine.request_evaluation(identity, p(0)).await?,
        )),
        Route::GetResult => {
            let wait = match query_param(&query, "wait") {
                Some(w) => w.parse::<u64>().map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_wait",
                        "`wait` is a number of seconds",
                    )
                })?,
                None => 0,
            };
            let round = match query_param(&query, "round") {
                Some(r) => Some(r.parse::<u64>().map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_round",
                        "`round` is a round number",
                    )
                })?),
                None => None,
            };
            ok(&engine
                .get_result(identity, p(0), round, Duration::from_secs(wait))
                .await?)
        }
        Route::Usage => ok(&engine.usage(identity, p(0)).await?),
        Route::Destroy => ok(&engine.request_destruction(identity, p(0)).await?),
        Route::DestructionCertificate => {
            ok(&engine.destruction_certificate(identity, p(0)).await?)
        }
        Route::EpochReset => ok(&engine.epoch_reset(identity).await?),
        Route::UpgradeStatus => ok(&engine.upgrade_status(identity).await?),
        Route::AuthorizeUpgrade => {
            if let Err(e) = require_operator(engine, identity) {
                return Err(unread(request, Refused::Caller, e));
            }
            let request = body(limits, max_body, request).await?;
            ok(&engine.authorize_upgrade(identity, request).await?)
        }
        Route::WithdrawUpgrade => ok(&engine.withdraw_upgrade(identity).await?),
        Route::FleetRevocation => {
            require_operator(engine, identity)?;
            ok(&fleet_revocation(engine.fleet_revoked()))
        }
        Route::ClearFleetRevocation => {
            require_operator(engine, identity)?;
            let cleared = engine
                .fleet_revocation()
                .clear()
                .map_err(|e| ApiError::from(EngineError::Internal(e)))?;
            tracing::warn!(
                event = "fleet_revocation_cleared",
                identity,
                was_revoked = cleared.is_some(),
                "an operator cleared the fleet revocation"
            );
            ok(&fleet_revocation(cleared))
        }
    }
}

/// Bodies up to this size (declared by `Content-Length`) are read into memory; larger
/// ones, and those of undeclared length, are spooled to disk as they arrive.
const IN_MEMORY_INPUT_BODY: u64 = 1 << 20;

/// `PUT /v1/instances/{id}/inputs/{slot}`: the caller is checked and the input limits
/// looked up before any byte of the body is read; a body larger than any input within
/// them is refused (413, naming the limit) on its declared length or as soon as that many
/// bytes have arrived; a large body is spooled to disk, then processed when its turn
/// comes (at most `max_inputs_processing` at once).
async fn put_input(
    engine: &Arc<Engine>,
    limits: &ApiLimits,
    identity: &str,
    id: &str,
    slot: &str,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (input_limits, others) = match engine.input_admission(identity, id, slot).await {
        Ok(admitted) => admitted,
        Err(e) => return Err(unread(request, Refused::Caller, e.into())),
    };
    let (limit, refusal) = input_limits.body_limit(slot, others);
    let over = |bytes: u64| ApiError::from(refusal.error(bytes));
    let declared = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared
        && len > limit
    {
        spool::linger(request.into_body(), Refused::Body);
        return Err(over(len));
    }
    let submission: arbiter_proto::api::SubmitInput = match declared {
        Some(len) if len <= IN_MEMORY_INPUT_BODY => {
            body(limits, usize::try_from(len).unwrap_or(usize::MAX), request).await?
        }
        _ => {
            let reserved = match limits.spool.reserve(declared.unwrap_or(limit)) {
                Ok(reserved) => reserved,
                Err(busy) => {
                    spool::linger(request.into_body(), Refused::Body);
                    return Err(busy);
                }
            };
            let spooled = limits
                .spool
                .receive(request.into_body(), limit, reserved, over)
                .await?;
            let _turn = limits.spool.turn().await?;
            let bytes = spooled.read().await?;
            let parsed = arbiter_proto::api::parse_request(&bytes).map_err(ApiError::request);
            drop(bytes);
            let submission = parsed?;
            return ok(&engine.submit_input(identity, id, slot, submission).await?);
        }
    };
    ok(&engine.submit_input(identity, id, slot, submission).await?)
}

/// The OpenMetrics text of every metric, the instance counts read from the store now.
async fn metrics_text(engine: &Engine) -> String {
    let counts = engine.instance_counts().await.unwrap_or_default();
    engine.metrics().encode(&counts)
}

/// Allowed methods, for the OpenAPI document.
pub fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "get",
        Method::POST => "post",
        Method::PUT => "put",
        Method::DELETE => "delete",
        _ => "other",
    }
}
