//! Starting and stopping the real `jubed` binary for end-to-end tests: each server runs in its own
//! temporary directory on an ephemeral port of 127.0.0.1 (jubed prints `listening on ADDR`), with
//! its log in `jubed.log` there (printed when a test fails and drops the server), and is killed
//! when dropped.

#![allow(dead_code)] // Each test file uses a different subset.

use jube_protocol::{Client, ClientOptions};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The RESP listener's address, unless the test turned it off.
    pub resp_addr: Option<SocketAddr>,
    pub data_dir: PathBuf,
    log: PathBuf,
}

impl Server {
    /// Starts jubed on `dir/data` with `extra` flags (2 cores unless they say otherwise); panics if it does not come up.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        Server::try_start(dir, extra).unwrap_or_else(|error| panic!("{error}"))
    }

    pub fn try_start(dir: &Path, extra: &[&str]) -> Result<Server, String> {
        let data_dir = dir.join("data");
        let log = dir.join("jubed.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| e.to_string())?;
        // Small WAL segments unless the test brings its own file: creating a data directory then
        // does not zero 64 MiB per shard.
        let mut config_args: Vec<String> = Vec::new();
        if !extra.contains(&"--config") {
            let config = dir.join("jubed-small.toml");
            std::fs::write(&config, "[storage]\nwal_segment_bytes = 4194304\n")
                .map_err(|e| e.to_string())?;
            config_args = vec!["--config".to_string(), config.display().to_string()];
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_jubed"))
            .args(&config_args)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(if extra.contains(&"--cores") {
                &[][..]
            } else {
                &["--cores", "2"][..]
            })
            // An ephemeral RESP port unless the test picks one: the default 7379 would collide
            // between servers of concurrent tests.
            .args(if extra.contains(&"--resp-listen") {
                &[][..]
            } else {
                &["--resp-listen", "127.0.0.1:0"][..]
            })
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start jubed: {e}"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut resp_addr = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(addr) = line.strip_prefix("resp listening on ") {
                    resp_addr = Some(addr.to_string());
                } else if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send((addr.to_string(), resp_addr.take()));
                }
            }
        });
        let (addr, resp_addr) = match rx.recv_timeout(START_TIMEOUT) {
            Ok((addr, resp_addr)) => (
                addr.parse()
                    .map_err(|e| format!("bad address {addr}: {e}"))?,
                resp_addr
                    .map(|resp| resp.parse().map_err(|e| format!("bad address {resp}: {e}")))
                    .transpose()?,
            ),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("jubed did not start ({status:?}):\n{text}"));
            }
        };
        Ok(Server {
            child: Some(child),
            addr,
            resp_addr,
            data_dir,
            log,
        })
    }

    pub fn client(&self) -> Client {
        let options = ClientOptions {
            io_timeout: Some(Duration::from_secs(20)),
            ..ClientOptions::default()
        };
        Client::connect_with(self.addr, &options).expect("connect to jubed")
    }

    /// The value of metric `name` in INFO's `total` section.
    pub fn info_metric(&self, name: &str) -> u64 {
        let info = self.client().info().expect("info");
        info.sections
            .iter()
            .find(|section| section.name == "total")
            .and_then(|section| section.metrics.iter().find(|metric| metric.name == name))
            .unwrap_or_else(|| panic!("INFO has no {name}"))
            .value
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal by name (TERM, INT, KILL) with kill(1): the tests use no unsafe code.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// kill -9 and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- jubed log ----\n{}", self.log());
        }
    }
}
