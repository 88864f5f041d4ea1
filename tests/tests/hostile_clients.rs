//! Whoever reaches the port is an adversary: `arbiterd run` as a real process under systemd's
//! default open-file limit (1,024) is flooded with 1,100 TCP connections that never start
//! TLS, while parties attest, a function is registered (a PCR extend) and the daemon is
//! restarted — all unharmed, the daemon neither out of descriptors nor spinning. Handshaken
//! connections that send nothing are closed at the idle deadline; a stranger's body is
//! refused before it is read; a party's body that stalls is refused at the body deadline;
//! bodies beyond the shared budget are refused with 503.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use arbiter_client::http::PartyIdentity;
use arbiter_tests::TestTpm;
use arbiter_tests::daemon::{Party, two_party_instance};
use arbiter_tests::process::{DaemonProcess, DaemonSpec};
use hyper::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const SOURCE: &str = "fn compute(inputs) { inputs.a + inputs.b }";

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// User plus system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn nonce() -> String {
    let mut n = [0u8; 16];
    rand::fill(&mut n);
    hex::encode(n)
}

/// Reads the start of an HTTP answer (its status line), or `None` if the peer closed.
async fn read_status(stream: &mut (impl AsyncReadExt + Unpin)) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.ok()?;
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_connections_and_slow_bodies_harms_nothing() {
    // This test holds 1,100 sockets of its own.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    assert!(
        hard >= 4096,
        "the test needs 4,096 descriptors (ulimit -Hn is {hard})"
    );

    let tpm = TestTpm::start();
    let operator = PartyIdentity::generate("operator").unwrap();
    let config = format!(
        "[access]\noperators = [\"{}\"]\n[limits]\nhandshake_timeout_seconds = 2\n\
         idle_timeout_seconds = 2\nbody_timeout_seconds = 3\nmax_body_bytes = 1048576\n\
         max_bodies_in_flight_bytes = 1048576\n",
        operator.identity().unwrap()
    );
    let mut daemon = tokio::task::spawn_blocking({
        let spec = DaemonSpec {
            state_dir: tpm.path("daemon"),
            config,
            tcti: Some(tpm.tcti()),
            nofile: Some(1024),
            ..DaemonSpec::default()
        };
        move || DaemonProcess::start(spec)
    })
    .await
    .unwrap();
    let pid = daemon.pid().unwrap();
    let url = daemon.url();
    let op = Party::with_identity("operator", operator, &url);
    let alice = Party::with_identity("alice", PartyIdentity::generate("alice").unwrap(), &url);
    let bob = Party::with_identity("bob", PartyIdentity::generate("bob").unwrap(), &url);
    let inst = two_party_instance(&op, &alice, &bob, "sum", SOURCE).await;
    let id = inst["id"].as_str().unwrap().to_owned();

    // 1,100 connections from another loopback address that never start TLS.
    let target: SocketAddr = format!("127.0.0.1:{}", daemon.port()).parse().unwrap();
    let mut flood = Vec::new();
    for _ in 0..1_100 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_secs(2), socket.connect(target)).await
        {
            flood.push(stream);
        }
    }
    assert!(
        flood.len() > 1_000,
        "only {} flood connections connected",
        flood.len()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fds = fd_count(pid);
    assert!(
        fds < 300,
        "the flood holds {fds} of the daemon's descriptors"
    );

    // Meanwhile parties attest, and a function registration extends the PCR.
    let cpu_before = cpu_ticks(pid);
    for p in [&alice, &bob] {
        let att = p.get(&format!("/v1/attestation?nonce={}", nonce())).await;
        assert_eq!(att.status, StatusCode::OK, "{}", att.json);
    }
    let g = op
        .post(
            "/v1/functions",
            json!({"name": "sum2", "language": "rhai", "source": "fn compute(inputs) { 2 }"}),
        )
        .await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.json);
    let att = alice
        .get(&format!("/v1/attestation?nonce={}", nonce()))
        .await;
    assert_eq!(
        att.status,
        StatusCode::OK,
        "the log still replays to PCR 23: {}",
        att.json
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Not spinning: well under half a core over those seconds (ticks are 1/100 s).
    let used = cpu_ticks(pid) - cpu_before;
    println!(
        "flood: {} of 1,100 TCP connections without TLS connected; the daemon held {fds} \
         descriptors, and used {used} CPU ticks (1/100 s) over three attestations, a \
         registration and 2 s of quiet",
        flood.len()
    );
    assert!(
        used < 150,
        "the daemon used {used} ticks of CPU during the flood"
    );

    // A handshaken connection that sends nothing is closed at the idle deadline.
    let stranger =
        Party::with_identity("mallory", PartyIdentity::generate("mallory").unwrap(), &url);
    let mut idle = stranger.conn.connect_tls().await.unwrap();
    let since = std::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), read_status(&mut idle)).await;
    assert!(closed.is_ok(), "an idle handshaken connection stays open");
    println!(
        "an idle handshaken connection closed after {:.1} s (idle_timeout_seconds = 2)",
        since.elapsed().as_secs_f64()
    );

    // A stranger's 1 MiB body is refused before it is read: the answer comes after 1 KiB.
    let mut upload = stranger.conn.connect_tls().await.unwrap();
    upload
        .write_all(
            format!(
                "PUT /v1/instances/{id}/inputs/a HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1048576\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    upload.write_all(&[b' '; 1024]).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), read_status(&mut upload))
        .await
        .expect("an answer before the body")
        .expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");

    // Alice's upload that stalls holds the whole body budget: a second upload meanwhile is
    // refused with 503, and the stalled one with 408 at the body deadline.
    let mut stalled = alice.conn.connect_tls().await.unwrap();
    stalled
        .write_all(
            format!(
                "PUT /v1/instances/{id}/inputs/a HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1048576\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    stalled.write_all(&[b' '; 1024]).await.unwrap();
    let since = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = bob.submit(&inst, "b", &json!(2)).await;
    assert_eq!(
        second.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        second.json
    );
    assert_eq!(second.json["error"]["code"], "busy", "{}", second.json);
    let answer = tokio::time::timeout(Duration::from_secs(10), read_status(&mut stalled))
        .await
        .expect("an answer at the body deadline")
        .expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    println!(
        "a stalled 1 MiB upload: 408 after {:.1} s (body_timeout_seconds = 3); a second \
         upload meanwhile: 503 busy",
        since.elapsed().as_secs_f64()
    );
    // The budget is back: Bob's input goes in now.
    let again = bob.submit(&inst, "b", &json!(2)).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.json);

    // A restart under the flood: the daemon comes back and attests.
    assert!(daemon.terminate().success(), "{}", daemon.log());
    let mut daemon = tokio::task::spawn_blocking(move || {
        daemon.restart();
        daemon
    })
    .await
    .unwrap();
    let att = alice
        .get(&format!("/v1/attestation?nonce={}", nonce()))
        .await;
    assert_eq!(att.status, StatusCode::OK, "{}", att.json);
    drop(flood);
    assert!(daemon.terminate().success());
}
