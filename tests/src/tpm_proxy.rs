//! A TPM proxy in front of swtpm's TCP ports: a slow-TPM emulator and a fault injector.
//!
//! swtpm's `--server type=tcp,port=P` carries raw TPM commands (a 10-byte header: tag u16,
//! size u32, command code u32, then the rest) and its `--ctrl type=tcp,port=P+1` carries
//! swtpm's control protocol (locality, power, cancel); the `swtpm:` TCTI of tpm2-tss (used by
//! tss-esapi and tpm2-tools) talks to both. The proxy listens on its own port pair, passes the
//! control port through untouched and, on the command port, parses each command's code to
//! - hold the answer until the command has taken at least the [`LatencyTable`]'s time for
//!   its code, with one command at a time across all connections, as a single discrete TPM
//!   executes them (swtpm's own time counts towards it);
//! - answer chosen commands with a bare error response carrying a chosen response code
//!   ([`Fault`]: the first K times, or with a seeded probability) instead of passing them on.
//!
//! Used by tests ([`TpmProxy::start`] in front of a [`crate::TestTpm`], then
//! [`TpmProxy::tcti`]) and by the `tpm-proxy` binary for tools such as `tpm2_quote`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// `TPM_RC_RETRY`: the TPM was busy; send the command again.
pub const RC_RETRY: u32 = 0x922;
/// `TPM_RC_YIELDED`: the TPM suspended the command to do something else; send it again.
pub const RC_YIELDED: u32 = 0x908;
/// `TPM_RC_NV_RATE`: NV access is rate-limited to prevent wear-out; try again later.
pub const RC_NV_RATE: u32 = 0x920;

/// Command names and codes (TPM 2.0 Library, Part 2, `TPM_CC`), for tables and faults.
const COMMANDS: &[(&str, u32)] = &[
    ("EvictControl", 0x120),
    ("NV_UndefineSpace", 0x122),
    ("NV_DefineSpace", 0x12A),
    ("CreatePrimary", 0x131),
    ("NV_Write", 0x137),
    ("PCR_Reset", 0x13D),
    ("SelfTest", 0x143),
    ("Startup", 0x144),
    ("Shutdown", 0x145),
    ("ActivateCredential", 0x147),
    ("Certify", 0x148),
    ("CertifyCreation", 0x14A),
    ("GetTime", 0x14C),
    ("NV_Read", 0x14E),
    ("PolicySecret", 0x151),
    ("Create", 0x153),
    ("ECDH_ZGen", 0x154),
    ("HMAC", 0x155),
    ("Load", 0x157),
    ("Quote", 0x158),
    ("RSA_Decrypt", 0x159),
    ("Sign", 0x15D),
    ("Unseal", 0x15E),
    ("ContextLoad", 0x161),
    ("ContextSave", 0x162),
    ("ECDH_KeyGen", 0x163),
    ("FlushContext", 0x165),
    ("LoadExternal", 0x167),
    ("NV_ReadPublic", 0x169),
    ("PolicyAuthValue", 0x16B),
    ("PolicyCommandCode", 0x16C),
    ("PolicyOR", 0x171),
    ("ReadPublic", 0x173),
    ("StartAuthSession", 0x176),
    ("VerifySignature", 0x177),
    ("GetCapability", 0x17A),
    ("GetRandom", 0x17B),
    ("Hash", 0x17D),
    ("PCR_Read", 0x17E),
    ("PolicyPCR", 0x17F),
    ("PolicyRestart", 0x180),
    ("ReadClock", 0x181),
    ("PCR_Extend", 0x182),
    ("NV_Certify", 0x184),
    ("PolicyGetDigest", 0x189),
    ("TestParms", 0x18A),
    ("CreateLoaded", 0x191),
];

/// What went wrong reading a latency table or a fault.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A command name or code that is not known.
    #[error(
        "unknown TPM command {0:?}: give a name such as Quote or PCR_Extend, or a code such as 0x158"
    )]
    Command(String),
    /// A response code that is not known.
    #[error("unknown response code {0:?}: give RETRY, YIELDED, NV_RATE or a code such as 0x922")]
    ResponseCode(String),
    /// A line of a latency table or a fault that does not parse.
    #[error("{0}")]
    Syntax(String),
    /// Binding or connecting failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The code of a command given by name (`Quote`, `TPM2_Quote`, `TPM_CC_Quote`) or number.
pub fn command_code(name: &str) -> Result<u32, ProxyError> {
    let n = name.trim();
    if let Some(hex) = n.strip_prefix("0x").or_else(|| n.strip_prefix("0X")) {
        return u32::from_str_radix(hex, 16).map_err(|_| ProxyError::Command(name.into()));
    }
    let bare = n
        .strip_prefix("TPM2_")
        .or_else(|| n.strip_prefix("TPM_CC_"))
        .unwrap_or(n);
    COMMANDS
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(bare))
        .map(|(_, code)| *code)
        .ok_or_else(|| ProxyError::Command(name.into()))
}

/// The name of a command code, or its number in hex.
pub fn command_name(code: u32) -> String {
    COMMANDS
        .iter()
        .find(|(_, c)| *c == code)
        .map_or_else(|| format!("{code:#x}"), |(n, _)| (*n).to_owned())
}

/// A response code given by name (`RETRY`, `TPM_RC_YIELDED`, `NV_RATE`) or number.
pub fn response_code(name: &str) -> Result<u32, ProxyError> {
    let n = name.trim();
    if let Some(hex) = n.strip_prefix("0x").or_else(|| n.strip_prefix("0X")) {
        return u32::from_str_radix(hex, 16).map_err(|_| ProxyError::ResponseCode(name.into()));
    }
    match n
        .strip_prefix("TPM_RC_")
        .unwrap_or(n)
        .to_ascii_uppercase()
        .as_str()
    {
        "RETRY" => Ok(RC_RETRY),
        "YIELDED" => Ok(RC_YIELDED),
        "NV_RATE" => Ok(RC_NV_RATE),
        _ => Err(ProxyError::ResponseCode(name.into())),
    }
}

/// How long each command takes at least, by command code.
#[derive(Clone, Debug, Default)]
pub struct LatencyTable {
    /// Per command code.
    pub commands: HashMap<u32, Duration>,
    /// For command codes not in `commands`.
    pub default: Duration,
    /// `CreatePrimary`/`Create`/`CreateLoaded` of an RSA key (key generation), overriding
    /// `commands` for those when set.
    pub rsa_keygen: Option<Duration>,
}

impl LatencyTable {
    /// No delay at all: swtpm's own speed.
    pub fn none() -> Self {
        Self::default()
    }

    /// A discrete TPM's typical latencies (docs/performance.md gives the sources and says
    /// which figures are estimates).
    pub fn discrete() -> Self {
        let ms = Duration::from_millis;
        let table = [
            // One ECDSA P-256 signature each.
            ("Quote", 200),
            ("Sign", 200),
            ("Certify", 200),
            ("CertifyCreation", 200),
            ("NV_Certify", 200),
            ("GetTime", 200),
            // An RSA-2048 private-key operation (the EK) or an ECDH point multiplication.
            ("ActivateCredential", 200),
            ("RSA_Decrypt", 200),
            ("ECDH_ZGen", 150),
            ("ECDH_KeyGen", 150),
            // Primary keys: ECC key derivation (RSA generation below).
            ("CreatePrimary", 250),
            ("Create", 250),
            ("CreateLoaded", 250),
            ("StartAuthSession", 100),
            ("Load", 40),
            ("LoadExternal", 40),
            ("VerifySignature", 100),
            ("Unseal", 20),
            // Flash writes.
            ("NV_Write", 30),
            ("NV_DefineSpace", 50),
            ("NV_UndefineSpace", 50),
            ("EvictControl", 50),
            ("NV_Read", 10),
            ("PCR_Extend", 5),
            ("PCR_Read", 3),
            ("PCR_Reset", 5),
            ("GetRandom", 3),
            ("GetCapability", 3),
            ("ReadPublic", 3),
            ("NV_ReadPublic", 3),
            ("FlushContext", 2),
            ("ContextSave", 10),
            ("ContextLoad", 10),
            ("PolicyPCR", 5),
            ("PolicyGetDigest", 2),
            ("PolicyRestart", 2),
            ("Hash", 5),
            ("HMAC", 5),
        ];
        Self {
            commands: table
                .iter()
                .filter_map(|(n, t)| command_code(n).ok().map(|c| (c, ms(*t))))
                .collect(),
            default: ms(5),
            rsa_keygen: Some(ms(3_000)),
        }
    }

    /// Reads a table: one `COMMAND MILLISECONDS` per line (a name such as `Quote` or a code
    /// such as `0x158`), `default MILLISECONDS` and `rsa_keygen MILLISECONDS` lines, `#`
    /// comments. Commands not listed take `default` (0 unless given).
    pub fn parse(text: &str) -> Result<Self, ProxyError> {
        let mut table = Self::none();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(name), Some(ms), None) = (words.next(), words.next(), words.next()) else {
                return Err(ProxyError::Syntax(format!(
                    "line {}: {line:?} is not `COMMAND MILLISECONDS`",
                    i + 1
                )));
            };
            let ms: u64 = ms.parse().map_err(|_| {
                ProxyError::Syntax(format!(
                    "line {}: {ms:?} is not a whole number of milliseconds",
                    i + 1
                ))
            })?;
            let d = Duration::from_millis(ms);
            match name {
                "default" => table.default = d,
                "rsa_keygen" => table.rsa_keygen = Some(d),
                _ => {
                    table.commands.insert(command_code(name)?, d);
                }
            }
        }
        Ok(table)
    }

    /// The least time `command` (a whole TPM command) takes.
    pub fn latency(&self, command: &[u8]) -> Duration {
        let Some(cc) = code_of(command) else {
            return self.default;
        };
        if matches!(cc, 0x131 | 0x153 | 0x191)
            && let Some(rsa) = self.rsa_keygen
            && created_key_type(command) == Some(0x0001)
        {
            return rsa;
        }
        self.commands.get(&cc).copied().unwrap_or(self.default)
    }
}

/// The command code of a whole command.
fn code_of(command: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(command.get(6..10)?.try_into().ok()?))
}

/// The `TPMI_ALG_PUBLIC` of the template in a `CreatePrimary`/`Create`/`CreateLoaded`
/// command: header, one handle, the authorization area, `TPM2B_SENSITIVE_CREATE`, then the
/// template (a `TPM2B` whose first field is the type).
fn created_key_type(command: &[u8]) -> Option<u16> {
    let u16_at = |o: usize| Some(u16::from_be_bytes(command.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_be_bytes(command.get(o..o + 4)?.try_into().ok()?));
    let tag = u16_at(0)?;
    let mut at = 14;
    if tag == 0x8002 {
        at += 4 + usize::try_from(u32_at(at)?).ok()?;
    }
    at += 2 + usize::from(u16_at(at)?);
    u16_at(at + 2)
}

/// When a fault applies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Trigger {
    /// The first K matching commands (then none).
    First(u32),
    /// Each matching command with this probability (from the proxy's seeded generator).
    Probability(f64),
}

/// Answer a command with a bare error response instead of passing it on.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// The command code it applies to.
    pub command: u32,
    /// The response code to answer with.
    pub rc: u32,
    /// When.
    pub trigger: Trigger,
}

impl FromStr for Fault {
    type Err = ProxyError;

    /// `CMD=RC` (every time), `CMD=RCxK` (the first K times) or `CMD=RC@p` (probability p):
    /// `Quote=RETRYx3`, `NV_Write=NV_RATE@0.5`, `0x182=0x908x1`.
    fn from_str(s: &str) -> Result<Self, ProxyError> {
        let (cmd, rest) = s
            .split_once('=')
            .ok_or_else(|| ProxyError::Syntax(format!("fault {s:?} is not CMD=RC[xK|@p]")))?;
        let command = command_code(cmd)?;
        let (rc, trigger) = if let Some((rc, p)) = rest.split_once('@') {
            let p: f64 = p
                .parse()
                .ok()
                .filter(|p| (0.0..=1.0).contains(p))
                .ok_or_else(|| {
                    ProxyError::Syntax(format!("{p:?} is not a probability between 0 and 1"))
                })?;
            (rc, Trigger::Probability(p))
        } else if let Some((rc, k)) = rest.rsplit_once('x').filter(|(rc, k)| {
            // `0x922` alone is a code, not `0` times 922.
            !k.is_empty() && k.chars().all(|c| c.is_ascii_digit()) && response_code(rc).is_ok()
        }) {
            let k = k
                .parse()
                .map_err(|_| ProxyError::Syntax(format!("{k:?} is not a count")))?;
            (rc, Trigger::First(k))
        } else {
            (rest, Trigger::Probability(1.0))
        };
        Ok(Self {
            command,
            rc: response_code(rc)?,
            trigger,
        })
    }
}

/// A bare error response: `TPM_ST_NO_SESSIONS`, size 10, the code.
pub fn error_response(rc: u32) -> Vec<u8> {
    let mut r = vec![0x80, 0x01, 0, 0, 0, 10];
    r.extend_from_slice(&rc.to_be_bytes());
    r
}

/// What the proxy does and has done (shared by all connections).
struct State {
    latency: LatencyTable,
    faults: Vec<(Fault, u32)>,
    rng: StdRng,
    /// Per command code: (forwarded, injected).
    counts: HashMap<u32, (u64, u64)>,
}

/// A running proxy; its tasks stop when it is dropped.
pub struct TpmProxy {
    port: u16,
    state: Arc<Mutex<State>>,
    tasks: Vec<JoinHandle<()>>,
}

impl TpmProxy {
    /// Starts a proxy on a free loopback port pair in front of the swtpm whose command port
    /// is `upstream` on loopback.
    pub async fn start(upstream: u16, latency: LatencyTable, faults: Vec<Fault>) -> Self {
        let port = arbiter_daemon::swtpm::free_port_pair().expect("a free port pair");
        let listen = SocketAddr::from(([127, 0, 0, 1], port));
        let upstream = SocketAddr::from(([127, 0, 0, 1], upstream));
        Self::start_on(listen, upstream, latency, faults, 0)
            .await
            .expect("binding the proxy's ports")
    }

    /// Starts a proxy listening on `listen` (commands) and the port after it (control), in
    /// front of `upstream` (commands) and the port after it; `seed` seeds probabilistic
    /// faults.
    pub async fn start_on(
        listen: SocketAddr,
        upstream: SocketAddr,
        latency: LatencyTable,
        faults: Vec<Fault>,
        seed: u64,
    ) -> Result<Self, ProxyError> {
        let data = TcpListener::bind(listen).await?;
        let mut ctrl_addr = listen;
        ctrl_addr.set_port(listen.port() + 1);
        let ctrl = TcpListener::bind(ctrl_addr).await?;
        let mut upstream_ctrl = upstream;
        upstream_ctrl.set_port(upstream.port() + 1);
        let state = Arc::new(Mutex::new(State {
            latency,
            faults: faults.into_iter().map(|f| (f, 0)).collect(),
            rng: StdRng::seed_from_u64(seed),
            counts: HashMap::new(),
        }));
        // One command at a time across all connections, as in one TPM.
        let tpm = Arc::new(tokio::sync::Mutex::new(()));
        let s = Arc::clone(&state);
        let commands = tokio::spawn(async move {
            while let Ok((client, _)) = data.accept().await {
                let _ = client.set_nodelay(true);
                tokio::spawn(serve_commands(
                    client,
                    upstream,
                    Arc::clone(&s),
                    Arc::clone(&tpm),
                ));
            }
        });
        let control = tokio::spawn(async move {
            while let Ok((mut client, _)) = ctrl.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream_ctrl).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Ok(Self {
            port: listen.port(),
            state,
            tasks: vec![commands, control],
        })
    }

    /// The TCTI that reaches the TPM through this proxy.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The proxy's command port (the control port is the next one).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Replaces the faults (their counts start again).
    pub fn set_faults(&self, faults: Vec<Fault>) {
        self.lock().faults = faults.into_iter().map(|f| (f, 0)).collect();
    }

    /// Replaces the latency table.
    pub fn set_latency(&self, latency: LatencyTable) {
        self.lock().latency = latency;
    }

    /// How many `command` commands were passed on to the TPM.
    pub fn forwarded(&self, command: u32) -> u64 {
        self.lock().counts.get(&command).map_or(0, |c| c.0)
    }

    /// How many `command` commands were answered with an injected fault.
    pub fn injected(&self, command: u32) -> u64 {
        self.lock().counts.get(&command).map_or(0, |c| c.1)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for TpmProxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Reads one TPM command or response (a 10-byte header with its size, then the rest).
async fn read_message(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut header = [0u8; 10];
    s.read_exact(&mut header).await.ok()?;
    let size = u32::from_be_bytes(header[2..6].try_into().ok()?) as usize;
    if size > 1 << 20 {
        return None;
    }
    let mut message = header.to_vec();
    message.resize(size.max(10), 0);
    s.read_exact(&mut message[10..]).await.ok()?;
    Some(message)
}

/// Decides a command's fate: `Some(rc)` to answer with an injected fault.
fn decide(state: &Mutex<State>, cc: u32) -> Option<u32> {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    let State { faults, rng, .. } = &mut *st;
    let mut injected = None;
    for (fault, used) in faults.iter_mut().filter(|(f, _)| f.command == cc) {
        let hit = match fault.trigger {
            Trigger::First(k) => *used < k,
            Trigger::Probability(p) => rng.random::<f64>() < p,
        };
        if hit {
            *used += 1;
            injected = Some(fault.rc);
            break;
        }
    }
    let counts = st.counts.entry(cc).or_default();
    if injected.is_some() {
        counts.1 += 1;
    } else {
        counts.0 += 1;
    }
    injected
}

async fn serve_commands(
    mut client: TcpStream,
    upstream: SocketAddr,
    state: Arc<Mutex<State>>,
    tpm: Arc<tokio::sync::Mutex<()>>,
) {
    let mut server: Option<TcpStream> = None;
    while let Some(command) = read_message(&mut client).await {
        let cc = code_of(&command).unwrap_or_default();
        if let Some(rc) = decide(&state, cc) {
            if client.write_all(&error_response(rc)).await.is_err() {
                return;
            }
            continue;
        }
        let latency = state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .latency
            .latency(&command);
        let response = {
            let _tpm = tpm.lock().await;
            let started = Instant::now();
            if server.is_none() {
                server = TcpStream::connect(upstream).await.ok();
                if let Some(s) = &server {
                    let _ = s.set_nodelay(true);
                }
            }
            let Some(s) = server.as_mut() else { return };
            if s.write_all(&command).await.is_err() {
                return;
            }
            let Some(response) = read_message(s).await else {
                return;
            };
            tokio::time::sleep(latency.saturating_sub(started.elapsed())).await;
            response
        };
        if client.write_all(&response).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse() {
        assert_eq!(
            "Quote=RETRYx3".parse::<Fault>().unwrap(),
            Fault {
                command: 0x158,
                rc: RC_RETRY,
                trigger: Trigger::First(3)
            }
        );
        assert_eq!(
            "NV_Write=NV_RATE@0.5".parse::<Fault>().unwrap().trigger,
            Trigger::Probability(0.5)
        );
        let f = "0x182=0x908x2".parse::<Fault>().unwrap();
        assert_eq!(
            (f.command, f.rc, f.trigger),
            (0x182, 0x908, Trigger::First(2))
        );
        let f = "NV_Write=0x920x3".parse::<Fault>().unwrap();
        assert_eq!((f.rc, f.trigger), (RC_NV_RATE, Trigger::First(3)));
        let f = "NV_Write=0x920".parse::<Fault>().unwrap();
        assert_eq!((f.rc, f.trigger), (RC_NV_RATE, Trigger::Probability(1.0)));
        assert!("Quote=BUSY".parse::<Fault>().is_err());
        assert!("Quote=RETRYx".parse::<Fault>().is_err());
        assert!("Frobnicate=RETRY".parse::<Fault>().is_err());
        assert!("Quote=RETRY@2".parse::<Fault>().is_err());
    }

    #[test]
    fn tables_parse() {
        let t = LatencyTable::parse("# a dTPM\nQuote 200\n0x182 5\ndefault 1\n").unwrap();
        assert_eq!(t.commands[&0x158], Duration::from_millis(200));
        assert_eq!(t.commands[&0x182], Duration::from_millis(5));
        assert_eq!(t.default, Duration::from_millis(1));
        assert!(LatencyTable::parse("Quote fast").is_err());
        assert!(LatencyTable::parse("Quote").is_err());
    }
}
