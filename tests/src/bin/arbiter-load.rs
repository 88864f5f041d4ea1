//! `arbiter-load`: the load tool of docs/performance.md. It starts `arbiterd run` (the
//! binary beside it) on a private swtpm behind the slow-TPM emulator, drives N concurrent
//! clients over kept-alive mutual-TLS connections for a fixed time — attestations (a fresh
//! nonce each, every answer appraised by the client: an unverified answer does not count),
//! encrypted input submissions (sealed before the clock starts, counted when acknowledged,
//! which the daemon does only once they are durable) and result reads (each JWS verified
//! with the attested statement key) — and measures the baselines in the same run: one quote
//! per request through the TPM layer, `tpm2_quote` as a process, HPKE open on one core,
//! SQLite inserts with `synchronous=FULL` one per transaction; plus the start to `READY=1`
//! (empty, and restarted with many instances) and the daemon's RSS. It prints a table of
//! the goals as ratios and writes a JSON report.
//!
//! ```text
//! cargo build --release -p arbiter-daemon -p arbiter-tests --bin arbiter-load
//! target/release/arbiter-load --seconds 10 --report load.json
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use arbiter_client::http::{Connection, PartyIdentity};
use arbiter_client::verify::{Answer as Seen, appraise_answers, fresh_nonce};
use arbiter_daemon::tpm::{Tpm, TpmConfig};
use arbiter_policy::appraisal::AppraisalPolicy;
use arbiter_policy::hpke::{self, InputContext};
use arbiter_policy::jws::{Statement, verify_statement};
use arbiter_tests::TestTpm;
use arbiter_tests::daemon::Party;
use arbiter_tests::load::{KeepAlive, Op, Step, Summary, Window, rss_kib, run};
use arbiter_tests::process::{DaemonProcess, DaemonSpec};
use arbiter_tests::tpm_proxy::{LatencyTable, TpmProxy, command_code};
use base64::Engine as _;
use clap::Parser;
use hyper::Method;
use hyper::body::Bytes;
use serde_json::{Value, json};

/// Load and baselines against a private daemon on swtpm behind the slow-TPM emulator.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds of warm-up before each scenario's measurement (connections opened, the
    /// first rounds served): its operations are verified like the rest and reported apart
    /// (`warmup_ok`, `p99_all_ms`); failures count in it too.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// TPM latency tables to attest under, in order: `discrete` (published discrete-TPM
    /// figures, docs/performance.md), `none` (plain swtpm), or a file of `COMMAND MS` lines.
    #[arg(long, value_delimiter = ',', default_value = "discrete,none")]
    tpm_latency: Vec<String>,
    /// Concurrent verifiers for the attestation scenario (each level runs in turn; 0: skip).
    #[arg(long, value_delimiter = ',', default_value = "1,64,256")]
    attest: Vec<usize>,
    /// Concurrent submitters (run on plain swtpm; 0: skip).
    #[arg(long, value_delimiter = ',', default_value = "1,64,256")]
    submit: Vec<usize>,
    /// Inputs sealed in advance for each submission level (the level stops early, and says
    /// so, if they run out).
    #[arg(long, default_value_t = 60_000)]
    submit_pool: usize,
    /// Concurrent result readers (run on plain swtpm; 0: skip).
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    read: Vec<usize>,
    /// Evaluated instances whose results the readers read in turn.
    #[arg(long, default_value_t = 32)]
    read_instances: usize,
    /// Instances in the store for the restart measurement (0: skip it).
    #[arg(long, default_value_t = 10_000)]
    restart_instances: usize,
    /// Skip the baselines.
    #[arg(long)]
    no_baselines: bool,
    /// Where to write the JSON report.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Run the daemon at log level `debug` and copy its log here at the end (every
    /// request's duration, every TPM command, every attestation batch cut).
    #[arg(long)]
    daemon_log: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// Verify every quote and certification signature from scratch, even one over bytes
    /// already verified (by default a signature that verified over byte-identical data —
    /// the batch's one quote, seen by each of its verifiers — is not verified again;
    /// docs/performance.md says why that is sound).
    #[arg(long)]
    no_signature_memo: bool,
}

const FUNCTION: &str = "fn compute(inputs) { inputs.a }\n";
/// The most slots a manifest may have.
const SLOTS_PER_INSTANCE: usize = 64;

fn latency_table(name: &str) -> anyhow::Result<LatencyTable> {
    Ok(match name {
        "none" => LatencyTable::none(),
        "discrete" | "default" => LatencyTable::discrete(),
        path => LatencyTable::parse(
            &std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        )?,
    })
}

/// The daemon and what the scenarios share.
struct Bench {
    args: Args,
    proxy: TpmProxy,
    daemon: DaemonProcess,
    url: String,
    operator: Party,
    client_identity: PartyIdentity,
    function: String,
    policy: AppraisalPolicy,
    rss: Arc<Mutex<Vec<(f64, u64)>>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    for levels in [&mut args.attest, &mut args.submit, &mut args.read] {
        levels.retain(|&c| c > 0);
    }
    let mut report = serde_json::Map::new();
    if !args.no_signature_memo {
        arbiter_policy::remember_verified_signatures(1 << 16);
    }
    report.insert("signature_memo".into(), json!(!args.no_signature_memo));
    let tpm = TestTpm::start();
    let proxy = TpmProxy::start(tpm.swtpm.port(), LatencyTable::none(), vec![]).await;
    let work = tempfile::tempdir()?;
    let operator_id = PartyIdentity::generate("operator")?;
    let state_dir = work.path().join("state");
    let spec = DaemonSpec {
        state_dir: state_dir.clone(),
        config: format!(
            "[access]\noperators = [\"{}\"]\n[limits]\nmax_connections = 2048\n\
             max_connections_per_ip = 2048\n[log]\nlevel = \"{}\"\n",
            operator_id.identity()?,
            if args.daemon_log.is_some() {
                "debug"
            } else {
                "info"
            }
        ),
        tcti: Some(proxy.tcti()),
        ..DaemonSpec::default()
    };
    let t = Instant::now();
    let daemon = tokio::task::spawn_blocking(move || DaemonProcess::start(spec)).await?;
    let ready_empty_ms = t.elapsed().as_secs_f64() * 1e3;
    let pid = daemon
        .pid()
        .ok_or_else(|| anyhow!("the daemon has no pid"))?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss_kib = rss_kib(pid).unwrap_or(0);
    eprintln!(
        "arbiterd ready in {ready_empty_ms:.0} ms (empty state, plain swtpm), idle RSS {:.1} MiB",
        idle_rss_kib as f64 / 1024.0
    );
    report.insert(
        "start".into(),
        json!({"ready_empty_ms": ready_empty_ms, "idle_rss_kib": idle_rss_kib}),
    );

    let url = daemon.url();
    let operator = Party::with_identity("operator", operator_id, &url);
    let f = operator
        .post(
            "/v1/functions",
            json!({"name": "first-input", "language": "rhai", "source": FUNCTION}),
        )
        .await;
    if f.status.as_u16() != 201 {
        bail!("registering the function: {} {}", f.status, f.json);
    }
    let function = f.json["sha256"].as_str().unwrap_or_default().to_owned();
    // The verifiers' policy pins the daemon's AK, as a party's does after enrolment.
    // (swtpm has no firmware: its platform PCRs are allowed unpinned.)
    let (att, _) = operator.appraise(&AppraisalPolicy::default()).await;
    let mut policy = AppraisalPolicy::default();
    policy.ak.name = Some(hex::decode(att["ak"]["name"].as_str().unwrap_or_default())?);
    policy.allow_unpinned_platform = true;
    let (_, verdict) = operator.appraise(&policy).await;
    if !verdict.trusted {
        bail!("the daemon is not trusted: {:?}", verdict.reasons);
    }

    let rss = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let sampler = {
        let rss = Arc::clone(&rss);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                if let Some(kib) = rss_kib(pid) {
                    rss.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((started.elapsed().as_secs_f64(), kib));
                }
            }
        })
    };
    let mut bench = Bench {
        client_identity: PartyIdentity::generate("verifier")?,
        args,
        proxy,
        daemon,
        url,
        operator,
        function,
        policy,
        rss,
    };

    let mut summaries: Vec<Summary> = Vec::new();
    for name in bench.args.tpm_latency.clone() {
        bench.proxy.set_latency(latency_table(&name)?);
        for &c in &bench.args.attest.clone() {
            summaries.push(bench.attest(c, &name).await?);
        }
    }
    bench.proxy.set_latency(LatencyTable::none());
    for &c in &bench.args.submit.clone() {
        summaries.push(bench.submit(c).await?);
    }
    if !bench.args.read.is_empty() {
        let readable = bench
            .evaluated_instances(bench.args.read_instances.max(1))
            .await?;
        for &c in &bench.args.read.clone() {
            summaries.push(bench.read(c, &readable).await?);
        }
    }
    sampler.abort();
    let rss_trace = bench.rss.lock().unwrap_or_else(|p| p.into_inner()).clone();
    report.insert("scenarios".into(), serde_json::to_value(&summaries)?);
    report.insert("rss_kib".into(), json!(rss_trace));

    let mut baselines = BTreeMap::new();
    if !bench.args.no_baselines {
        for name in bench.args.tpm_latency.clone() {
            baselines.insert(name.clone(), bench.tpm_baselines(&name).await?);
        }
        baselines.insert("hpke_open_per_second".into(), json!(hpke_open_rate(2.0)?));
        baselines.insert(
            "sqlite_full_inserts_per_second".into(),
            json!(sqlite_rate(work.path(), bench.args.seconds.min(5.0))?),
        );
        report.insert("baselines".into(), json!(baselines));
    }
    if bench.args.restart_instances > 0 {
        report.insert("restart".into(), bench.restart().await?);
    }
    if let Some(path) = &bench.args.daemon_log {
        std::fs::write(path, bench.daemon.log())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let goals = goals(&report);
    print_tables(&report, &goals);
    report.insert("goals".into(), goals);
    if let Some(path) = &bench.args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&Value::Object(report))?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("report: {}", path.display());
    }
    Ok(())
}

/// One verifier: its connection and the `GET /v1/tpm` answer it fetched once.
struct Verifier {
    http: KeepAlive,
    tpm: Option<(Value, String)>,
    policy: Arc<AppraisalPolicy>,
}

async fn attest_once(mut v: Verifier) -> (Verifier, Step) {
    let step = async {
        if v.tpm.is_none() {
            let a = v.http.send(Method::GET, "/v1/tpm", None).await?;
            if !a.status.is_success() {
                return Err(format!("GET /v1/tpm: {} {}", a.status, a.json));
            }
            v.tpm = Some((a.json, a.server_spki_sha256));
        }
        let nonce = fresh_nonce();
        let a = v
            .http
            .send(Method::GET, &format!("/v1/attestation?nonce={nonce}"), None)
            .await?;
        if !a.status.is_success() {
            return Err(format!("GET /v1/attestation: {} {}", a.status, a.json));
        }
        let (tpm_json, tpm_spki) = v.tpm.as_ref().ok_or("no /v1/tpm answer")?;
        let (verdict, _) = appraise_answers(
            &Seen {
                json: tpm_json,
                tls_spki_sha256: tpm_spki,
            },
            &Seen {
                json: &a.json,
                tls_spki_sha256: &a.server_spki_sha256,
            },
            &nonce,
            None,
            &v.policy,
        )
        .map_err(|e| e.to_string())?;
        if verdict.trusted {
            Ok(())
        } else {
            Err(format!("not trusted: {:?}", verdict.reasons))
        }
    }
    .await;
    (v, step.map_or_else(Step::Failed, |()| Step::Ok))
}

/// One submitter: its connection and the shared pool of sealed inputs.
struct Submitter {
    http: KeepAlive,
    pool: Arc<Mutex<Vec<(String, Bytes)>>>,
}

async fn submit_once(mut s: Submitter) -> (Submitter, Step) {
    let next = s.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
    let Some((path, body)) = next else {
        return (s, Step::Exhausted);
    };
    let step = match s.http.send(Method::PUT, &path, Some(body)).await {
        Ok(a) if a.status.is_success() => Step::Ok,
        Ok(a) => Step::Failed(format!("PUT input: {} {}", a.status, a.json)),
        Err(e) => Step::Failed(e),
    };
    (s, step)
}

/// One result reader: its connection, the certified statement key and the instances.
struct Reader {
    http: KeepAlive,
    key: Arc<arbiter_policy::Public>,
    instances: Arc<Vec<(String, Value)>>,
}

async fn read_once(mut r: Reader, i: u64) -> (Reader, Step) {
    let (id, expected) = &r.instances[(i as usize) % r.instances.len()];
    let step = async {
        let a = r
            .http
            .send(Method::GET, &format!("/v1/instances/{id}/result"), None)
            .await?;
        if !a.status.is_success() {
            return Err(format!("GET result: {} {}", a.status, a.json));
        }
        let jws = a.json["jws"].as_str().ok_or("no jws in the result")?;
        match verify_statement(jws, &r.key).map_err(|e| e.to_string())? {
            Statement::Result(st) if st.instance_id == *id && st.output == *expected => Ok(()),
            _ => Err("the signed statement is not this instance's expected result".into()),
        }
    }
    .await;
    (r, step.map_or_else(Step::Failed, |()| Step::Ok))
}

impl Bench {
    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.args.seconds)
    }

    /// A scenario's warm-up and measured time.
    fn window(&self) -> Window {
        Window {
            warmup: Duration::from_secs_f64(self.args.warmup.max(0.0)),
            measure: self.duration(),
        }
    }

    fn connection(&self) -> anyhow::Result<Connection> {
        Ok(Connection::new(&self.url, &self.client_identity, None)?)
    }

    async fn attest(&self, clients: usize, latency: &str) -> anyhow::Result<Summary> {
        let policy = Arc::new(self.policy.clone());
        let verifiers = (0..clients)
            .map(|_| {
                Ok(Verifier {
                    http: KeepAlive::new(self.connection()?),
                    tpm: None,
                    policy: Arc::clone(&policy),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let quote = command_code("Quote")?;
        let quotes_before = self.proxy.forwarded(quote);
        let op: Op<Verifier> = Arc::new(|v, _| Box::pin(attest_once(v)));
        let mut s = run(
            "attest",
            &format!("tpm latency {latency}"),
            verifiers,
            self.window(),
            !self.args.quiet,
            op,
        )
        .await;
        let quotes = self.proxy.forwarded(quote) - quotes_before;
        s.condition = format!("{}, {quotes} quotes", s.condition);
        Ok(s)
    }

    /// Creates instances of up to 64 explicit-trigger slots, all provided once by the
    /// load client, and seals `n` inputs for them (before any clock starts).
    async fn sealed_inputs(&self, n: usize) -> anyhow::Result<Vec<(String, Bytes)>> {
        let me = self.client_identity.identity()?;
        let mut out = Vec::with_capacity(n);
        let b64 = base64::engine::general_purpose::STANDARD;
        while out.len() < n {
            let slots = (n - out.len()).min(SLOTS_PER_INSTANCE);
            let slot_map: serde_json::Map<String, Value> = (0..slots)
                .map(|i| {
                    (
                        format!("s{i}"),
                        json!({"providers": [me], "provide": "provide_once"}),
                    )
                })
                .collect();
            let manifest = json!({
                "function": {"sha256": self.function},
                "parties": [{"name": "load", "identity": me}],
                "slots": slot_map,
                "trigger": {"kind": "explicit"},
                "evaluators": [me],
                "readers": {(me.clone()): "result"},
                "destruction": {"policy": "on_request", "destroyers": [me]}
            });
            let r = self
                .operator
                .post("/v1/instances", json!({"manifest": manifest}))
                .await;
            if r.status.as_u16() != 201 {
                bail!("creating an instance: {} {}", r.status, r.json);
            }
            let id = r.json["id"].as_str().unwrap_or_default().to_owned();
            let public_key = hex::decode(r.json["public_key"].as_str().unwrap_or_default())?;
            for i in 0..slots {
                let slot = format!("s{i}");
                let ctx = InputContext {
                    instance_id: &id,
                    slot: &slot,
                    round: 1,
                    function_sha256: &self.function,
                    submitter: &me,
                };
                let plain =
                    hpke::pad_json(json!(i).to_string().as_bytes(), hpke::DEFAULT_PAD_BLOCK);
                let (enc, ct) = hpke::seal(&public_key, &ctx, &plain)?;
                let body = json!({"enc": b64.encode(enc), "ciphertext": b64.encode(ct)});
                out.push((
                    format!("/v1/instances/{id}/inputs/{slot}"),
                    Bytes::from(serde_json::to_vec(&body)?),
                ));
            }
        }
        Ok(out)
    }

    async fn submit(&self, clients: usize) -> anyhow::Result<Summary> {
        let n = if clients == 1 {
            self.args.submit_pool.min(5_000)
        } else {
            self.args.submit_pool
        };
        if !self.args.quiet {
            eprintln!("sealing {n} inputs for {clients} submitters...");
        }
        let pool = Arc::new(Mutex::new(self.sealed_inputs(n).await?));
        let submitters = (0..clients)
            .map(|_| {
                Ok(Submitter {
                    http: KeepAlive::new(self.connection()?),
                    pool: Arc::clone(&pool),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let op: Op<Submitter> = Arc::new(|s, _| Box::pin(submit_once(s)));
        Ok(run(
            "submit",
            "plain swtpm, synchronous=FULL store",
            submitters,
            self.window(),
            !self.args.quiet,
            op,
        )
        .await)
    }

    /// `n` one-slot instances evaluated (automatic trigger), with their expected outputs.
    async fn evaluated_instances(&self, n: usize) -> anyhow::Result<Vec<(String, Value)>> {
        let me = self.client_identity.identity()?;
        let party = Party::with_identity(
            "load",
            PartyIdentity::from_pem(
                self.client_identity.cert_pem().as_bytes(),
                self.client_identity.key_pem().as_bytes(),
            )?,
            &self.url,
        );
        let mut out = Vec::new();
        for i in 0..n {
            let manifest = json!({
                "function": {"sha256": self.function},
                "parties": [{"name": "load", "identity": me}],
                "slots": {"a": {"providers": [me], "provide": "provide_once"}},
                "trigger": {"kind": "all"},
                "readers": {(me.clone()): "result"},
                "destruction": {"policy": "on_request", "destroyers": [me]}
            });
            let r = self
                .operator
                .post("/v1/instances", json!({"manifest": manifest}))
                .await;
            if r.status.as_u16() != 201 {
                bail!("creating an instance: {} {}", r.status, r.json);
            }
            let id = r.json["id"].as_str().unwrap_or_default().to_owned();
            let body = party.encrypt_input(&r.json, "a", 1, &json!(i));
            let s = party
                .put(&format!("/v1/instances/{id}/inputs/a"), body)
                .await;
            if !s.status.is_success() {
                bail!("submitting: {} {}", s.status, s.json);
            }
            out.push((id, json!(i)));
        }
        for (id, _) in &out {
            let r = party
                .get(&format!("/v1/instances/{id}/result?wait=30"))
                .await;
            if r.json["evaluated"] != json!(true) {
                bail!("instance {id} was not evaluated: {}", r.json);
            }
        }
        Ok(out)
    }

    async fn read(&self, clients: usize, instances: &[(String, Value)]) -> anyhow::Result<Summary> {
        let (_, verdict) = self.operator.appraise(&self.policy).await;
        let key = Arc::new(
            verdict
                .statement_key()
                .cloned()
                .ok_or_else(|| anyhow!("no certified statement key: {:?}", verdict.reasons))?,
        );
        let instances = Arc::new(instances.to_vec());
        let readers = (0..clients)
            .map(|_| {
                Ok(Reader {
                    http: KeepAlive::new(self.connection()?),
                    key: Arc::clone(&key),
                    instances: Arc::clone(&instances),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let op: Op<Reader> = Arc::new(|r, i| Box::pin(read_once(r, i)));
        Ok(run(
            "read",
            "plain swtpm, JWS verified",
            readers,
            self.window(),
            !self.args.quiet,
            op,
        )
        .await)
    }

    /// One quote per request through the TPM layer and `tpm2_quote` as a process, on a
    /// second swtpm behind its own emulator with the same table.
    async fn tpm_baselines(&self, latency: &str) -> anyhow::Result<Value> {
        let sw = TestTpm::start();
        let proxy = TpmProxy::start(sw.swtpm.port(), LatencyTable::none(), vec![]).await;
        let tpm = Tpm::open(TpmConfig::with_tcti(proxy.tcti()))?;
        let selection = tpm.config().quote_selection()?;
        let ak = format!("{:#x}", tpm.config().ak_handle);
        let list = format!(
            "sha256:{}",
            selection
                .pcrs()
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        proxy.set_latency(latency_table(latency)?);
        let budget = self.duration();
        let start = Instant::now();
        let mut quotes = 0u64;
        while start.elapsed() < budget || quotes < 3 {
            tpm.quote(selection.clone(), hex::decode(fresh_nonce())?)
                .await?;
            quotes += 1;
        }
        let layer = quotes as f64 / start.elapsed().as_secs_f64();
        let (msg, sig) = (sw.path("q.msg"), sw.path("q.sig"));
        let start = Instant::now();
        let mut runs = 0u64;
        while start.elapsed() < budget || runs < 3 {
            let out = Command::new("tpm2_quote")
                .args(["-c", &ak, "-l", &list, "-q", &fresh_nonce()])
                .arg("-m")
                .arg(&msg)
                .arg("-s")
                .arg(&sig)
                .args(["-g", "sha256"])
                .env("TPM2TOOLS_TCTI", proxy.tcti())
                .env("TSS2_LOG", "all+NONE")
                .output()
                .context("running tpm2_quote (apt-get install tpm2-tools)")?;
            if !out.status.success() {
                bail!("tpm2_quote: {}", String::from_utf8_lossy(&out.stderr));
            }
            runs += 1;
        }
        let tool = runs as f64 / start.elapsed().as_secs_f64();
        eprintln!(
            "baselines [tpm latency {latency}]: one quote per request {layer:.1}/s, tpm2_quote {tool:.1}/s"
        );
        Ok(json!({
            "one_quote_per_request_per_second": layer,
            "quote_ms": 1e3 / layer,
            "tpm2_quote_per_second": tool,
        }))
    }

    /// Fills the store to `restart_instances` instances, then stops the daemon (SIGTERM)
    /// and times its start on the same TPM (no TPM restart in between) to `READY=1`.
    async fn restart(&mut self) -> anyhow::Result<Value> {
        let target = self.args.restart_instances;
        let me = self.client_identity.identity()?;
        let have = {
            let r = self.operator.get("/v1/instances").await;
            r.json.as_array().map_or(0, Vec::len)
        };
        if !self.args.quiet {
            eprintln!(
                "creating {} more instances for the restart...",
                target.saturating_sub(have)
            );
        }
        let manifest = json!({
            "function": {"sha256": self.function},
            "parties": [{"name": "load", "identity": me}],
            "slots": {"a": {"providers": [me], "provide": "provide_once"}},
            "trigger": {"kind": "all"},
            "readers": {(me.clone()): "result"},
            "destruction": {"policy": "on_request", "destroyers": [me]}
        });
        let left = Arc::new(Mutex::new(target.saturating_sub(have)));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (left, manifest) = (Arc::clone(&left), manifest.clone());
            let mut http = KeepAlive::new(self.operator.conn.clone());
            tasks.spawn(async move {
                let body = Bytes::from(json!({"manifest": manifest}).to_string());
                loop {
                    {
                        let mut l = left.lock().unwrap_or_else(|p| p.into_inner());
                        if *l == 0 {
                            return Ok::<(), String>(());
                        }
                        *l -= 1;
                    }
                    let a = http
                        .send(Method::POST, "/v1/instances", Some(body.clone()))
                        .await?;
                    if a.status.as_u16() != 201 {
                        return Err(format!("creating an instance: {} {}", a.status, a.json));
                    }
                }
            });
        }
        while let Some(t) = tasks.join_next().await {
            t?.map_err(|e| anyhow!(e))?;
        }
        self.daemon.terminate();
        let daemon = &mut self.daemon;
        let ms = tokio::task::block_in_place(|| {
            let t = Instant::now();
            daemon.restart();
            t.elapsed().as_secs_f64() * 1e3
        });
        eprintln!("arbiterd ready again in {ms:.0} ms with {target} instances (same TPM startup)");
        Ok(json!({"instances": target, "ready_ms": ms}))
    }
}

/// Opens HPKE-sealed inputs of the submissions' size on this thread for `seconds`.
fn hpke_open_rate(seconds: f64) -> anyhow::Result<f64> {
    let secret = [7u8; 32];
    let (private, public) = hpke::derive_keypair(&secret);
    let ctx = InputContext {
        instance_id: "00000000000000000000000000000000",
        slot: "s0",
        round: 1,
        function_sha256: "00",
        submitter: "00",
    };
    let plain = hpke::pad_json(b"1", hpke::DEFAULT_PAD_BLOCK);
    let sealed: Vec<_> = (0..256)
        .map(|_| hpke::seal(&public, &ctx, &plain))
        .collect::<Result<_, _>>()?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        let (enc, ct) = &sealed[(n % 256) as usize];
        hpke::open(&private, &ctx, enc, ct)?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Inserts of a 200-byte row, one transaction each, WAL and `synchronous=FULL` (as the
/// daemon's store runs), in a directory on the same filesystem as the state.
fn sqlite_rate(dir: &std::path::Path, seconds: f64) -> anyhow::Result<f64> {
    let db = rusqlite::Connection::open(dir.join("baseline.sqlite"))?;
    db.pragma_update(None, "journal_mode", "wal")?;
    db.pragma_update(None, "synchronous", "full")?;
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)", [])?;
    let row = vec![0u8; 200];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        db.execute("INSERT INTO t (v) VALUES (?1)", [&row])?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn best<'a>(
    report: &'a serde_json::Map<String, Value>,
    scenario: &str,
    cond: &str,
) -> Option<&'a Value> {
    report["scenarios"]
        .as_array()?
        .iter()
        .filter(|s| {
            s["scenario"] == scenario && s["condition"].as_str().is_some_and(|c| c.contains(cond))
        })
        .max_by_key(|s| s["clients"].as_u64())
}

/// The level of `scenario` under `cond` run with `clients` clients, or else the largest.
fn level<'a>(
    report: &'a serde_json::Map<String, Value>,
    scenario: &str,
    cond: &str,
    clients: u64,
) -> Option<&'a Value> {
    report["scenarios"]
        .as_array()?
        .iter()
        .find(|s| {
            s["scenario"] == scenario
                && s["clients"].as_u64() == Some(clients)
                && s["condition"].as_str().is_some_and(|c| c.contains(cond))
        })
        .or_else(|| best(report, scenario, cond))
}

/// The level of `scenario` with the highest rate.
fn fastest<'a>(report: &'a serde_json::Map<String, Value>, scenario: &str) -> Option<&'a Value> {
    report["scenarios"]
        .as_array()?
        .iter()
        .filter(|s| s["scenario"] == scenario)
        .max_by(|a, b| {
            let rate = |s: &Value| s["per_second"].as_f64().unwrap_or(0.0);
            rate(a).total_cmp(&rate(b))
        })
}

/// The goals of docs/performance.md as ratios of this run's figures.
fn goals(report: &serde_json::Map<String, Value>) -> Value {
    let mut goals = Vec::new();
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let base = report.get("baselines");
    for latency in ["discrete", "none"] {
        // The goals name 256 verifiers through the emulator and 64 on plain swtpm.
        let clients = if latency == "discrete" { 256 } else { 64 };
        let (Some(s), Some(b)) = (
            level(report, "attest", &format!("latency {latency}"), clients),
            base.and_then(|b| b.get(latency)),
        ) else {
            continue;
        };
        let one = f(&b["one_quote_per_request_per_second"]);
        let ratio = f(&s["per_second"]) / one.max(f64::EPSILON);
        if latency == "discrete" {
            let p99_limit = 2.0 * f(&b["quote_ms"]) + 5.0;
            goals.push(json!({"goal": format!("verified attestations/s at {} verifiers vs one quote per request (200 ms signatures)", s["clients"]), "ratio": ratio, "target": 100.0, "met": ratio >= 100.0}));
            goals.push(json!({"goal": "p99 latency after the warm-up vs 2 quote times + the batch window (ms)", "value": f(&s["p99_ms"]), "with_warmup": f(&s["p99_all_ms"]), "target": p99_limit, "met": f(&s["p99_ms"]) <= p99_limit}));
        } else {
            let tool = f(&b["tpm2_quote_per_second"]);
            let vs_tool = f(&s["per_second"]) / tool.max(f64::EPSILON);
            goals.push(json!({"goal": format!("verified attestations/s at {} verifiers vs one quote per request (plain swtpm)", s["clients"]), "ratio": ratio, "target": 2.0, "met": ratio >= 2.0}));
            goals.push(json!({"goal": "the same vs tpm2_quote as a process", "ratio": vs_tool, "target": 25.0, "met": vs_tool >= 25.0}));
        }
    }
    if let Some(s) = fastest(report, "submit") {
        let rate = f(&s["per_second"]);
        goals.push(json!({"goal": format!("inputs acknowledged durably per second at {} submitters", s["clients"]), "value": rate, "target": 5000.0, "met": rate >= 5000.0}));
        if let Some(open) = base.and_then(|b| b.get("hpke_open_per_second")) {
            let ratio = rate / f(open).max(f64::EPSILON);
            goals.push(json!({"goal": "the same vs raw HPKE open on one core", "ratio": ratio, "target": 0.5, "met": ratio >= 0.5}));
        }
    }
    if let Some(start) = report.get("start") {
        let ms = f(&start["ready_empty_ms"]);
        goals.push(json!({"goal": "READY=1 after start, empty state (ms)", "value": ms, "target": 300.0, "met": ms <= 300.0}));
        let mib = f(&start["idle_rss_kib"]) / 1024.0;
        goals.push(
            json!({"goal": "idle RSS (MiB)", "value": mib, "target": 40.0, "met": mib < 40.0}),
        );
    }
    if let Some(r) = report.get("restart") {
        let ms = f(&r["ready_ms"]);
        goals.push(json!({"goal": format!("READY=1 after a restart with {} instances (ms)", r["instances"]), "value": ms, "target": 1000.0, "met": ms <= 1000.0}));
    }
    Value::Array(goals)
}

fn print_tables(report: &serde_json::Map<String, Value>, goals: &Value) {
    println!(
        "{:<8} {:<38} {:>7} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>11}",
        "scenario",
        "condition",
        "clients",
        "ok",
        "failed",
        "per s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99 all ms"
    );
    for s in report["scenarios"].as_array().into_iter().flatten() {
        println!(
            "{:<8} {:<38} {:>7} {:>9} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>11.1}{}",
            s["scenario"].as_str().unwrap_or_default(),
            s["condition"].as_str().unwrap_or_default(),
            s["clients"],
            s["ok"],
            s["failed"],
            s["per_second"].as_f64().unwrap_or(0.0),
            s["p50_ms"].as_f64().unwrap_or(0.0),
            s["p90_ms"].as_f64().unwrap_or(0.0),
            s["p99_ms"].as_f64().unwrap_or(0.0),
            s["p99_all_ms"].as_f64().unwrap_or(0.0),
            if s["exhausted"] == json!(true) {
                "  (pool ran out)"
            } else {
                ""
            }
        );
        if let Some(errors) = s["errors"].as_object() {
            for (reason, n) in errors {
                println!("    {n} x {reason}");
            }
        }
    }
    if let Some(b) = report.get("baselines") {
        println!("baselines: {b}");
    }
    println!(
        "{:<78} {:>10} {:>10} {:>5}",
        "goal", "measured", "target", "met"
    );
    for g in goals.as_array().into_iter().flatten() {
        let measured = g
            .get("ratio")
            .or_else(|| g.get("value"))
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        println!(
            "{:<78} {:>10.2} {:>10.2} {:>5}",
            g["goal"].as_str().unwrap_or_default(),
            measured,
            g["target"].as_f64().unwrap_or(0.0),
            if g["met"] == json!(true) { "yes" } else { "NO" }
        );
    }
}
