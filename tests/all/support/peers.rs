//! What tests put beside berth: Debian's `docker-registry`, and TCP proxies that fail or
//! hold back on command.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::require_tool;

/// Debian's `docker-registry` (CNCF distribution) on a free port, open (no auth), deletes
/// enabled, storing in its own temporary directory.
pub struct DockerRegistry {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    _dir: tempfile::TempDir,
}

impl DockerRegistry {
    /// Starts one and waits until it accepts connections.
    pub fn start() -> DockerRegistry {
        require_tool("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("write config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        DockerRegistry {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a [`FaultyProxy`] treats the connections it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    None,
    /// Answer every request with `500 Internal Server Error`.
    ServerError,
    /// Close every connection as soon as it is accepted.
    Drop,
    /// Forward, but only after this many milliseconds.
    Slow(u64),
}

/// A TCP proxy in front of a real server that can be told to fail: for testing that a
/// replication destination which errors, drops connections or crawls is retried and
/// reported without holding up the others.
pub struct FaultyProxy {
    /// `127.0.0.1:<port>` to connect to instead of the server.
    pub addr: String,
    fault: std::sync::Arc<std::sync::Mutex<Fault>>,
    /// Bumped by [`FaultyProxy::cut`]: forwarded connections close when it changes.
    cuts: tokio::sync::watch::Sender<u64>,
    _task: tokio::task::JoinHandle<()>,
}

impl FaultyProxy {
    /// A proxy to `target` (`host:port`), starting in `fault` mode. Needs a Tokio runtime.
    pub async fn start(target: &str, fault: Fault) -> FaultyProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let fault = std::sync::Arc::new(std::sync::Mutex::new(fault));
        let cuts = tokio::sync::watch::Sender::new(0u64);
        let (mode, target, cut) = (fault.clone(), target.to_string(), cuts.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let now = *mode.lock().unwrap();
                let target = target.clone();
                let mut cut = cut.subscribe();
                tokio::spawn(async move {
                    match now {
                        Fault::Drop => drop(client),
                        Fault::ServerError => {
                            let mut buf = vec![0u8; 64 * 1024];
                            let _ = client.read(&mut buf).await;
                            let body =
                                r#"{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}"#;
                            let answer = format!(
                                "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = client.write_all(answer.as_bytes()).await;
                            let _ = client.shutdown().await;
                        }
                        Fault::Slow(_) | Fault::None => {
                            if let Fault::Slow(ms) = now {
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                            }
                            if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                                tokio::select! {
                                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                    _ = cut.changed() => {}
                                }
                            }
                        }
                    }
                });
            }
        });
        FaultyProxy {
            addr,
            fault,
            cuts,
            _task: task,
        }
    }

    /// Closes every connection it forwards now, as a server that goes down does; the
    /// clients' pooled connections are gone with them.
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Changes how new connections are treated.
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }
}

/// What a [`GatedProxy`] does with a connection that reached its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Hold it: forward nothing more towards the server until told otherwise.
    Held,
    /// Forward everything, on held connections and new ones.
    Open,
    /// Close held connections; forward new ones freely.
    Cut,
}

/// A TCP proxy that forwards each connection's first `threshold` bytes towards the server
/// and then holds it, for catching a transfer half-way: what the receiver (and whoever
/// forwards from it) does with half a blob.
pub struct GatedProxy {
    /// `127.0.0.1:<port>` to connect to instead of the server.
    pub addr: String,
    gate: tokio::sync::watch::Sender<Gate>,
    _task: tokio::task::JoinHandle<()>,
}

impl GatedProxy {
    /// A held gate in front of `target` (`host:port`). Needs a Tokio runtime.
    pub async fn start(target: &str, threshold: u64) -> GatedProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let gate = tokio::sync::watch::Sender::new(Gate::Held);
        let (watch, target) = (gate.clone(), target.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let mut gate = watch.subscribe();
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let answers = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    });
                    let mut forwarded = 0u64;
                    let mut let_through = false;
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        forwarded += n as u64;
                        if forwarded > threshold && !let_through {
                            // Only a connection that arrives while the gate holds is held
                            // (and cut); later ones pass.
                            if *gate.borrow() == Gate::Held {
                                let state = *gate
                                    .wait_for(|g| *g != Gate::Held)
                                    .await
                                    .expect("gate kept by the proxy");
                                if state == Gate::Cut {
                                    break;
                                }
                            }
                            let_through = true;
                        }
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    answers.abort();
                });
            }
        });
        GatedProxy {
            addr,
            gate,
            _task: task,
        }
    }

    /// Releases held connections (to finish, or to be closed).
    pub fn set(&self, state: Gate) {
        self.gate.send_replace(state);
    }
}

/// A TCP proxy that changes requests after their client signed them, as a hostile network
/// would: every occurrence of `from` in what a client sends becomes `to` (of the same
/// length, so the request stays well-formed) before it reaches the server.
pub struct TamperingProxy {
    /// `127.0.0.1:<port>` to connect to instead of the server.
    pub addr: String,
    _task: tokio::task::JoinHandle<()>,
}

impl TamperingProxy {
    pub async fn start(target: &str, from: &str, to: &str) -> TamperingProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        assert_eq!(from.len(), to.len(), "a change of the same length");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (target, from, to) = (
            target.to_string(),
            from.as_bytes().to_vec(),
            to.as_bytes().to_vec(),
        );
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let (from, to) = (from.clone(), to.clone());
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = client_read.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            let chunk = &mut buf[..n];
                            let mut at = 0;
                            while let Some(found) =
                                chunk[at..].windows(from.len()).position(|w| w == from)
                            {
                                chunk[at + found..at + found + to.len()].copy_from_slice(&to);
                                at += found + to.len();
                            }
                            if server_write.write_all(chunk).await.is_err() {
                                break;
                            }
                        }
                    };
                    let downstream = tokio::io::copy(&mut server_read, &mut client_write);
                    let _ = tokio::join!(upstream, downstream);
                });
            }
        });
        TamperingProxy { addr, _task: task }
    }
}
