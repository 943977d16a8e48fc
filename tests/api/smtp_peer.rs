//! The SMTP peer: tests/peers/python/smtp_sink.py (aiosmtpd) in its own process, storing every received
//! message as a JSON file in a temp directory that survives `stop()` / `restart()` on the same port.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One message as the sink received it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub message_id: String,
    pub content_type: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub raw: String,
}

pub struct SmtpPeer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn python() -> PathBuf {
    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/python/.venv/bin/python");
    assert!(
        py.exists(),
        "the Python test peers are not installed ({} is missing): run `make test-deps`",
        py.display()
    );
    py
}

/// Starts the sink on `port` (0 = any) and waits for its READY line; `None` when it exits first.
fn spawn(port: u16, dir: &Path) -> Option<(Child, u16)> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/python/smtp_sink.py");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("sink.log"))
        .unwrap();
    let mut child = Command::new(python())
        .arg(script)
        .arg("--port")
        .arg(port.to_string())
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start the SMTP sink (run `make test-deps`)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    match line.trim().strip_prefix("READY port=") {
        Some(p) => Some((child, p.parse().unwrap())),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}

impl SmtpPeer {
    /// Starts a sink on a free port with an empty message store.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (child, port) = spawn(0, dir.path()).unwrap_or_else(|| {
            panic!(
                "the SMTP sink did not start: {}",
                std::fs::read_to_string(dir.path().join("sink.log")).unwrap_or_default()
            )
        });
        Self {
            port,
            dir,
            child: Some(child),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the sink (an outage: connections are refused). Stored messages stay.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the sink again on the same port, keeping the stored messages.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((child, port)) = spawn(self.port, self.dir.path()) {
                assert_eq!(port, self.port);
                self.child = Some(child);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the SMTP sink could not listen on port {} again: {}",
                self.port,
                std::fs::read_to_string(self.dir.path().join("sink.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p.file_name().unwrap().to_string_lossy().starts_with('.')
            })
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }

    /// Waits until at least `n` messages arrived; panics with what did arrive after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} mails at the SMTP sink within {timeout:?}, got {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpPeer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Saves the SMTP settings of `app` to send through a sink on `port` (no TLS, no password).
pub async fn configure_smtp(app: &crate::helpers::TestApp, port: u16) {
    let resp = app
        .post_form(
            "/admin/mail",
            &[
                ("host", "127.0.0.1"),
                ("port", &port.to_string()),
                ("security", "none"),
                ("username", ""),
                ("password", ""),
                ("from_name", "Roster"),
                ("from_address", "roster@example.test"),
                ("action", "save"),
            ],
        )
        .await;
    crate::helpers::assert_redirect_to(&resp, "/admin/mail");
}
