//! The SMTP side: tests/peers/python/smtp_sink.py (aiosmtpd) in its `--lean` mode (no MIME parsing, no file
//! per message: one line per accepted message in `arrivals.log`, its arrival time in ns), and a bare SMTP
//! client that measures what the sink itself can take.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::procs::{self, Proc};

pub struct Sink {
    _proc: Proc,
    pub port: u16,
    pub dir: PathBuf,
}

impl Sink {
    pub fn start(repo: &Path, dir: &Path, log: &Path) -> anyhow::Result<Sink> {
        let py = repo.join("tests/peers/python/.venv/bin/python");
        if !py.exists() {
            bail!(
                "{} is missing: run scripts/install-test-deps.sh",
                py.display()
            );
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let mut cmd = Command::new(py);
        cmd.arg(repo.join("tests/peers/python/smtp_sink.py"))
            .args(["--lean", "--port", "0", "--dir"])
            .arg(dir);
        let (proc, line) = procs::spawn("smtp_sink.py", cmd, log, true)?;
        let port = line
            .strip_prefix("READY port=")
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("unexpected first line from the SMTP sink: {line}"))?;
        Ok(Sink {
            _proc: proc,
            port,
            dir: dir.to_owned(),
        })
    }

    /// Arrival times (ns since the epoch) of the accepted messages, sorted.
    pub fn arrivals(&self) -> Vec<u128> {
        let mut out: Vec<u128> = std::fs::read_to_string(self.dir.join("arrivals.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        out.sort_unstable();
        out
    }

    /// Waits until `n` messages arrived (or nothing arrived for `stall`); returns the arrival times.
    pub async fn wait_for(&self, n: usize, stall: Duration) -> Vec<u128> {
        let mut last_count = 0;
        let mut last_change = Instant::now();
        loop {
            let a = self.arrivals();
            if a.len() >= n {
                return a;
            }
            if a.len() != last_count {
                last_count = a.len();
                last_change = Instant::now();
            } else if last_change.elapsed() > stall {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn reply(r: &mut impl BufRead, want: &str) -> anyhow::Result<()> {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            bail!("the SMTP server closed the connection");
        }
        if line.len() >= 4 && &line[3..4] == "-" {
            continue;
        }
        if !line.starts_with(want) {
            bail!("SMTP: expected {want}, got {line}");
        }
        return Ok(());
    }
}

/// Sends `n` messages of about `body_bytes` over one connection, one after the other (no pipelining);
/// returns the seconds it took. With `lettre_writes`, the socket keeps Nagle's algorithm on (no
/// TCP_NODELAY) and the content and the final `.` go out as two writes, as lettre 0.11 does
/// (`AsyncSmtpConnection::message_iter`); otherwise TCP_NODELAY and one write: the sink's own ceiling.
pub fn blast(port: u16, n: usize, body_bytes: usize, lettre_writes: bool) -> anyhow::Result<f64> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(!lettre_writes)?;
    let mut r = BufReader::new(stream.try_clone()?);
    let mut w = stream;
    let body: String =
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n".repeat(body_bytes / 58 + 1);
    let start = Instant::now();
    reply(&mut r, "220")?;
    w.write_all(b"HELO bench.example\r\n")?;
    reply(&mut r, "250")?;
    for i in 0..n {
        write!(w, "MAIL FROM:<roster@example.test>\r\n")?;
        reply(&mut r, "250")?;
        write!(w, "RCPT TO:<user{i}@example.test>\r\n")?;
        reply(&mut r, "250")?;
        w.write_all(b"DATA\r\n")?;
        reply(&mut r, "354")?;
        let content = format!(
            "From: Roster <roster@example.test>\r\nTo: <user{i}@example.test>\r\nSubject: Bench {i}\r\n\
             Message-ID: <bench-{i}@example.test>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
        );
        if lettre_writes {
            w.write_all(content.trim_end().as_bytes())?;
            w.flush()?;
            w.write_all(b"\r\n.\r\n")?;
        } else {
            w.write_all(format!("{content}.\r\n").as_bytes())?;
        }
        reply(&mut r, "250")?;
    }
    w.write_all(b"QUIT\r\n")?;
    Ok(start.elapsed().as_secs_f64())
}
