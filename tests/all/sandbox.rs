//! The plugin sandbox tried the way a hostile plugin would: leaving a granted path by
//! encoding it (against Python's http.server and berth itself), reaching another virtual
//! host at a granted address, flooding and forging berth's log, and stalling its own load
//! to freeze administration.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::plugins::{cli, invoke, load_ok, patch, test_plugin};
use crate::support::{Berth, client};

/// `python3` with the arguments `args` makes for a free port, in `dir`, once it accepts
/// connections on that port.
fn python_server(dir: &Path, args: impl FnOnce(u16) -> Vec<String>) -> (std::process::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args(args(port))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the Python server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port)
}

/// Python's http.server on a free port, serving a directory with `api/ok.txt` inside the
/// grant and `private/secret.txt` outside it. Killed on drop.
struct FileServer {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl FileServer {
    fn start() -> FileServer {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("api")).unwrap();
        std::fs::create_dir_all(dir.path().join("private")).unwrap();
        std::fs::write(dir.path().join("api/ok.txt"), "inside the grant").unwrap();
        std::fs::write(dir.path().join("private/secret.txt"), "THE SECRET").unwrap();
        let (child, port) = python_server(dir.path(), |port| {
            vec![
                "-m".into(),
                "http.server".into(),
                "--bind".into(),
                "127.0.0.1".into(),
                port.to_string(),
            ]
        });
        FileServer {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server that answers by virtual host, as nginx or an API gateway in front of several
/// services does: `Host: internal.example` reaches a site nobody granted. Other hosts get
/// the `Host` they sent echoed back. Killed on drop.
struct VirtualHosts {
    child: std::process::Child,
    port: u16,
}

const VIRTUAL_HOSTS: &str = r#"
import http.server, sys
class Site(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        host = self.headers.get("Host", "")
        body = b"INTERNAL ADMIN" if host.split(":")[0] == "internal.example" else ("Host: " + host).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Site).serve_forever()
"#;

impl VirtualHosts {
    fn start() -> VirtualHosts {
        let (child, port) = python_server(Path::new("."), |port| {
            vec!["-c".into(), VIRTUAL_HOSTS.into(), port.to_string()]
        });
        VirtualHosts { child, port }
    }
}

impl Drop for VirtualHosts {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the prober got for `url`: `Ok((status, body))` or `Err(error text)`.
async fn probe(berth: &Berth, url: &str) -> Result<(u16, String), String> {
    probe_with(berth, url, &[]).await
}

/// [`probe`], sending `headers` with the request.
async fn probe_with(
    berth: &Berth,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    let region: String = headers.iter().map(|(n, v)| format!("{n}: {v}\n")).collect();
    let (status, out) = invoke(
        &client(),
        &berth.url,
        "prober",
        "get",
        json!({"cluster": {"name": "c", "regions": [], "settings": [], "credentials": []}, "region": region, "id": url}),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    if let Some(machine) = out.get("ok") {
        return Ok((
            machine["name"].as_str().unwrap().parse().unwrap(),
            machine["image"].as_str().unwrap().to_string(),
        ));
    }
    Err(out["error"].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_path_cannot_be_left_by_encoding_it() {
    let server = FileServer::start();
    let base = format!("http://127.0.0.1:{}", server.port);
    let berth = Berth::start();
    load_ok(&berth, "berth-test-prober").await;
    patch(
        &berth,
        "prober",
        json!({"grant": {"endpoints": [format!("{base}/api/"), format!("{}/v2/team/", berth.url)]}}),
    )
    .await;

    // The server really does resolve an encoded slash: asked directly, it gives the secret
    // away. This is what the grant must not let a plugin do.
    let direct = client()
        .get(format!("{base}/api/..%2fprivate/secret.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 200);
    assert_eq!(direct.text().await.unwrap(), "THE SECRET");

    // Inside the grant: served.
    assert_eq!(
        probe(&berth, &format!("{base}/api/ok.txt")).await,
        Ok((200, "inside the grant".to_string()))
    );
    // Spellings servers read as a way out: refused before anything is sent, saying why.
    for escape in [
        "/api/..%2fprivate/secret.txt",
        "/api/..%2Fprivate/secret.txt",
        "/api/%2e%2e%2fprivate/secret.txt",
        "/api/..%5cprivate/secret.txt",
        "/api/..\\private/secret.txt",
        "/api/%252e%252e%252fprivate/secret.txt",
        "/api/..;/private/secret.txt",
        "/api/x/..%2f..%2fprivate/secret.txt",
        "/api/..%00/private/secret.txt",
    ] {
        let got = probe(&berth, &format!("{base}{escape}")).await;
        let error = got.expect_err(escape);
        assert!(
            error.contains("invalid-request") || error.contains("not-granted"),
            "{escape}: {error}"
        );
        assert!(!error.contains("THE SECRET"), "{escape}: {error}");
    }
    // Dot segments the URL itself resolves land outside the grant: not granted.
    for outside in [
        "/api/../private/secret.txt",
        "/api/%2e%2e/private/secret.txt",
        "/api/.%2e/private/secret.txt",
        "/private/secret.txt",
    ] {
        let error = probe(&berth, &format!("{base}{outside}"))
            .await
            .expect_err(outside);
        assert!(error.contains("not-granted"), "{outside}: {error}");
    }
    // The encoded form is refused with the reason.
    let error = probe(&berth, &format!("{base}/api/..%2fprivate/secret.txt"))
        .await
        .unwrap_err();
    assert!(error.contains("encoded '/'"), "{error}");

    // berth itself as the server: a granted repository path is reached (its 401 comes
    // back), the way out of it is not.
    let (status, _) = probe(&berth, &format!("{}/v2/team/app/tags/list", berth.url))
        .await
        .unwrap();
    assert_eq!(status, 401);
    for escape in [
        "/v2/team/..%2falpha/app/tags/list",
        "/v2/team/../alpha/app/tags/list",
        "/v2/team/%2e%2e/%2e%2e/api/v1/users",
    ] {
        let error = probe(&berth, &format!("{}{escape}", berth.url))
            .await
            .expect_err(escape);
        assert!(
            error.contains("invalid-request") || error.contains("not-granted"),
            "{escape}: {error}"
        );
    }
    // A grant cannot be written with a path servers would read two ways either.
    let r = client()
        .patch(format!("{}/api/v1/plugins/prober", berth.url))
        .json(&json!({"grant": {"endpoints": [format!("{base}/api/..%2fprivate/")]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_reaches_only_the_host_its_url_names() {
    let server = VirtualHosts::start();
    let base = format!("http://127.0.0.1:{}", server.port);
    let berth = Berth::start_logged(&[], &[("RUST_LOG", "info")]);
    load_ok(&berth, "berth-test-prober").await;
    patch(
        &berth,
        "prober",
        json!({"grant": {"endpoints": [format!("{base}/")]}}),
    )
    .await;

    // The server really is several sites: asked directly with another Host, it answers
    // as the internal one. This is what a plugin granted the address must not reach.
    let direct = client()
        .get(format!("{base}/"))
        .header("Host", "internal.example")
        .send()
        .await
        .unwrap();
    assert_eq!(direct.text().await.unwrap(), "INTERNAL ADMIN");

    let own = format!("127.0.0.1:{}", server.port);
    assert_eq!(
        probe(&berth, &format!("{base}/")).await,
        Ok((200, format!("Host: {own}")))
    );
    // The URL's own authority, however spelled, is what the client sends anyway.
    for same in [own.as_str(), &own.to_uppercase()] {
        assert_eq!(
            probe_with(&berth, &format!("{base}/"), &[("Host", same)]).await,
            Ok((200, format!("Host: {own}"))),
            "{same}"
        );
    }
    for other in [
        "internal.example",
        "internal.example:80",
        "127.0.0.1",
        "127.0.0.2:1",
    ] {
        let error = probe_with(&berth, &format!("{base}/"), &[("host", other)])
            .await
            .expect_err(other);
        assert!(error.contains("invalid-request"), "{other}: {error}");
        assert!(
            error.contains("must name the URL's own host"),
            "{other}: {error}"
        );
        assert!(!error.contains("INTERNAL ADMIN"), "{other}: {error}");
    }
    // A second, different Host next to the right one is refused too.
    let error = probe_with(
        &berth,
        &format!("{base}/"),
        &[("Host", own.as_str()), ("Host", "internal.example")],
    )
    .await
    .unwrap_err();
    assert!(error.contains("must name the URL's own host"), "{error}");

    // Framing and connection headers are the client's: a plugin could otherwise smuggle a
    // second request to the granted server.
    for (name, value) in [
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "42"),
        ("Connection", "upgrade"),
        ("Upgrade", "h2c"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
    ] {
        let error = probe_with(&berth, &format!("{base}/"), &[(name, value)])
            .await
            .expect_err(name);
        assert!(error.contains("invalid-request"), "{name}: {error}");
    }
    assert_eq!(
        probe_with(&berth, &format!("{base}/"), &[("Content-Length", "0")]).await,
        Ok((200, format!("Host: {own}")))
    );
    // The refusal is logged by the host, naming the header.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(berth.log_path()).unwrap();
        if log.contains("refused an HTTP request with a header the host's client owns") {
            break;
        }
        assert!(Instant::now() < deadline, "no refusal in the log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The lines of berth's log that came from a plugin's `log` calls.
fn plugin_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("berth::plugin"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_logs_in_a_loop_writes_no_more_than_its_budget() {
    let berth = Berth::start_logged(&[], &[("RUST_LOG", "info")]);
    load_ok(&berth, "berth-test-hostile").await;
    patch(
        &berth,
        "hostile",
        json!({"config": {"behaviour": "flood"}, "limits": {"wall_time_ms": 1500}}),
    )
    .await;
    let before = std::fs::metadata(berth.log_path()).unwrap().len();
    let started = Instant::now();
    let (status, detail) = invoke(
        &client(),
        &berth.url,
        "hostile",
        "plan",
        crate::plugins::plan_request(),
    )
    .await;
    assert_eq!(status, 502, "{detail}");
    assert!(
        detail.as_str().unwrap().contains("wall-time limit"),
        "{detail}"
    );
    assert!(started.elapsed() >= Duration::from_millis(1400));
    // Let the log reach the file.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = std::fs::read_to_string(berth.log_path()).unwrap();
    let written = std::fs::metadata(berth.log_path()).unwrap().len() - before;
    let lines = plugin_lines(&log);
    // The default budget: 256 events, 64 KiB of message and fields per call. Each line
    // adds berth's own prefix (time, level, target, plugin name) of about 100 bytes.
    assert!(
        lines.len() <= 256,
        "{} plugin lines in the log",
        lines.len()
    );
    assert!(
        written <= 64 * 1024 + 256 * 160 + 4096,
        "{written} bytes logged in one call"
    );
    assert!(
        log.contains("the plugin wrote more to the log than one call may"),
        "{log}"
    );
    let stats: Value = client()
        .get(format!("{}/api/v1/plugins/hostile", berth.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dropped = stats["calls"]["log_events_dropped"].as_u64().unwrap();
    assert!(dropped > 1000, "{stats}");
    assert!(
        stats["calls"]["log_bytes_dropped"].as_u64().unwrap() > dropped * 1000,
        "{stats}"
    );
    println!(
        "flood: {} bytes and {} lines logged in one {} ms call; {dropped} events dropped",
        written,
        lines.len(),
        started.elapsed().as_millis()
    );

    // A tighter budget set by the admin holds too.
    patch(
        &berth,
        "hostile",
        json!({"limits": {"log_events": 10, "wall_time_ms": 500}}),
    )
    .await;
    let before_lines = lines.len();
    invoke(
        &client(),
        &berth.url,
        "hostile",
        "plan",
        crate::plugins::plan_request(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = std::fs::read_to_string(berth.log_path()).unwrap();
    assert_eq!(plugin_lines(&log).len() - before_lines, 10);
    // And the CLI shows what was dropped.
    let (ok, out, err) = cli(&berth, &["plugin", "inspect", "hostile"]);
    assert!(ok, "{err}");
    assert!(out.contains("dropped over the log budget"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_cannot_forge_lines_of_berths_log() {
    let berth = Berth::start_logged(&[], &[("RUST_LOG", "info")]);
    load_ok(&berth, "berth-test-hostile").await;
    patch(&berth, "hostile", json!({"config": {"behaviour": "forge"}})).await;
    let (status, out) = invoke(
        &client(),
        &berth.url,
        "hostile",
        "plan",
        crate::plugins::plan_request(),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = std::fs::read(berth.log_path()).unwrap();
    // No terminal escape at all: neither the plugin's nor berth's colours (not a terminal).
    assert!(!log.contains(&0x1b), "an escape byte reached the log");
    assert!(!log.contains(&0x07) && !log.contains(&0x08));
    let log = String::from_utf8(log).unwrap();
    assert!(!log.contains('\u{2028}'));
    // The forged entry never starts a line: it stays inside the plugin's own event.
    for line in log.lines() {
        assert!(
            !line.starts_with("2026-11-30T12:00:00"),
            "a forged line: {line}"
        );
    }
    let event = plugin_lines(&log)
        .into_iter()
        .find(|l| l.contains("innocent"))
        .unwrap_or_else(|| panic!("the plugin's event is missing: {log}"));
    assert!(event.contains("innocent\\n2026-11-30T12:00:00"), "{event}");
    assert!(
        event.contains("field\\\\nname") || event.contains("field\\nname"),
        "{event}"
    );
    assert!(
        event.contains("plugin=\"hostile\"") || event.contains("plugin=hostile"),
        "{event}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_stalls_holds_up_no_other_plugin_and_errors_advise_commands_that_run() {
    let berth = Berth::start();
    load_ok(&berth, "berth-test-hostile").await;
    let stall = test_plugin("berth-test-stall");
    let file = stall.to_str().unwrap().to_string();

    // A limit hit while the component describes itself advises a command that runs.
    let (ok, _, err) = cli(&berth, &["plugin", "load", &file, "--wall-time-ms", "300"]);
    assert!(!ok);
    assert!(
        err.contains("did not finish info within its wall-time limit of 300 ms"),
        "{err}"
    );
    let advised = err
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no command in {err}"))
        .to_string();
    assert_eq!(advised, "berth plugin load <file> --wall-time-ms N");
    let (ok, _, err) = cli(&berth, &["plugin", "load", &file, "--fuel", "100000"]);
    assert!(!ok);
    assert!(err.contains("`berth plugin load <file> --fuel N`"), "{err}");
    assert!(!err.contains("berth plugin limits (loading"), "{err}");

    // Run the advised command, with the file and a value filled in, in the background:
    // the component takes three seconds to say its name.
    let args: Vec<String> = advised
        .split_whitespace()
        .skip(1)
        .map(|word| match word {
            "<file>" => file.clone(),
            "N" => "20000".to_string(),
            other => other.to_string(),
        })
        .collect();
    let loading = std::thread::spawn({
        let (url, data_dir) = (berth.url.clone(), berth.data_dir.clone());
        move || {
            let started = Instant::now();
            let out = Command::new(crate::support::berth_bin())
                .args(&args)
                .env("BERTH_SERVER", url)
                .env("BERTH_USERNAME", "admin")
                .env("BERTH_PASSWORD", crate::support::ADMIN_PASSWORD)
                .env("BERTH_CONFIG_DIR", data_dir.join("cli-config"))
                .output()
                .unwrap();
            (out, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Meanwhile every change to another plugin goes through: each is done while the load
    // still stalls (a change waiting for the load would finish only after it). Timing is
    // not asserted to the millisecond: CI runs many servers on two cores at once.
    for change in [
        json!({"enabled": false}),
        json!({"limits": {"fuel": 1_000_000_000u64}}),
        json!({"config": {"behaviour": "ok"}}),
        json!({"enabled": true}),
    ] {
        patch(&berth, "hostile", change.clone()).await;
        assert!(
            !loading.is_finished(),
            "{change} finished only after the stalled load"
        );
    }
    let r = client()
        .delete(format!("{}/api/v1/plugins/hostile", berth.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        !loading.is_finished(),
        "the remove finished only after the stalled load"
    );

    let (out, took) = loading.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took >= Duration::from_secs(3), "{took:?}");

    // Replacing a named plugin: the component must be that plugin.
    let (ok, _, err) = cli(&berth, &["plugin", "load", &file, "--replace=star"]);
    assert!(!ok);
    assert!(err.contains("built-in"), "{err}");
    let hostile = test_plugin("berth-test-hostile");
    let (ok, _, err) = cli(
        &berth,
        &[
            "plugin",
            "load",
            hostile.to_str().unwrap(),
            "--replace=stall",
        ],
    );
    assert!(!ok);
    assert!(err.contains("calls itself hostile, not stall"), "{err}");
    // And describes itself under that plugin's limits.
    patch(&berth, "stall", json!({"limits": {"wall_time_ms": 200}})).await;
    let (ok, _, err) = cli(&berth, &["plugin", "load", &file, "--replace=stall"]);
    assert!(!ok);
    assert!(err.contains("wall-time limit of 200 ms"), "{err}");
}
