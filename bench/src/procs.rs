//! Child processes (the emulator, `roster serve`, `roster sync --once`, the peers) and facts about the machine.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// A child process killed (by its own pid) when dropped.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait up to `grace` before SIGKILL.
    pub fn stop(mut self, grace: Duration) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `cmd` with stderr (and stdout unless `read_first_line`) appended to `log`; when `read_first_line`
/// is set, returns the first stdout line too (the peers and the emulator print one when ready).
pub fn spawn(
    name: &str,
    mut cmd: Command,
    log: &Path,
    read_first_line: bool,
) -> anyhow::Result<(Proc, String)> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    cmd.stdin(Stdio::null()).stderr(file.try_clone()?);
    if read_first_line {
        cmd.stdout(Stdio::piped());
    } else {
        cmd.stdout(file);
    }
    let mut child = cmd.spawn().with_context(|| format!("start {name}"))?;
    let mut line = String::new();
    if read_first_line {
        let Some(out) = child.stdout.take() else {
            bail!("{name}: no stdout");
        };
        let mut reader = BufReader::new(out);
        reader.read_line(&mut line)?;
        // Keep draining so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader.lines() {});
        if line.trim().is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{name} exited before it was ready; see {}:\n{}",
                log.display(),
                tail(log, 20)
            );
        }
    }
    Ok((Proc { child }, line.trim().to_owned()))
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Peak resident set (VmHWM) and current RSS of a live process, in MiB.
pub fn vm_hwm_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// A live process's memory now, in MiB: resident anonymous memory, resident file-backed pages, and its
/// proportional set size (`/proc/PID/status`, `/proc/PID/smaps_rollup`). SQLite connections of
/// `roster serve` each map the database file, and RSS counts a file page once per mapping that touched it;
/// PSS counts it once.
pub fn memory_now_mib(pid: u32) -> Option<Value> {
    let read = |path: &str, name: &str| -> Option<f64> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/{path}")).ok()?;
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some(json!({
        "rss_anon_mib": read("status", "RssAnon:")?,
        "rss_file_mib": read("status", "RssFile:")?,
        "pss_mib": read("smaps_rollup", "Pss:")?,
    }))
}

/// User + system CPU seconds a live process has used so far.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// What `/usr/bin/time -f '%e %U %S %M'` measured for a finished child.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rusage {
    pub wall_s: f64,
    pub user_s: f64,
    pub sys_s: f64,
    pub max_rss_mib: f64,
}

/// Runs `program args` under `/usr/bin/time` (peak RSS from getrusage) with `envs`, stdout and stderr to
/// `log`. Returns the measured usage, our own wall time and the child's stdout.
pub fn run_timed(
    program: &Path,
    args: &[&str],
    envs: &[(String, String)],
    log: &Path,
) -> anyhow::Result<(Rusage, f64, String)> {
    let time_out = log.with_extension("time");
    let out_file = log.with_extension("stdout");
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-f")
        .arg("%e %U %S %M")
        .arg("-o")
        .arg(&time_out)
        .arg(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_file)?)
        .stderr(std::fs::File::create(log)?);
    let start = Instant::now();
    let status = cmd
        .status()
        .context("run /usr/bin/time (install the `time` package)")?;
    let wall = start.elapsed().as_secs_f64();
    let stdout = std::fs::read_to_string(&out_file).unwrap_or_default();
    if !status.success() {
        bail!(
            "{} {} failed ({status}); see {}:\n{}",
            program.display(),
            args.join(" "),
            log.display(),
            tail(log, 30)
        );
    }
    let text = std::fs::read_to_string(&time_out)?;
    let nums: Vec<f64> = text
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    let [wall_s, user_s, sys_s, kb] = nums[..] else {
        bail!("unexpected /usr/bin/time output: {text}");
    };
    Ok((
        Rusage {
            wall_s,
            user_s,
            sys_s,
            max_rss_mib: kb / 1024.0,
        },
        wall,
        stdout,
    ))
}

/// Runs a command to completion, feeding `stdin`; fails with its output when it fails.
pub fn run_with_stdin(
    program: &Path,
    args: &[&str],
    envs: &[(String, String)],
    stdin: &str,
) -> anyhow::Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", program.display()))?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("{} {} failed: {text}", program.display(), args.join(" "));
    }
    Ok(text)
}

fn first_line_with(path: &str, prefix: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_owned()))
}

/// The commit checked out in `repo`, read from `.git` without running git.
pub fn git_commit(repo: &Path) -> String {
    let git = repo.join(".git");
    let Ok(head) = std::fs::read_to_string(git.join("HEAD")) else {
        return "unknown".into();
    };
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref: ") else {
        return head.to_owned();
    };
    if let Ok(c) = std::fs::read_to_string(git.join(reference)) {
        return c.trim().to_owned();
    }
    let packed = std::fs::read_to_string(git.join("packed-refs")).unwrap_or_default();
    packed
        .lines()
        .find(|l| l.ends_with(reference))
        .and_then(|l| l.split_whitespace().next())
        .map_or_else(|| format!("unknown ({reference})"), str::to_owned)
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// nproc, CPU model, RAM, OS, kernel, date, commit.
pub fn machine(repo: &Path) -> Value {
    let mem_kb: f64 = first_line_with("/proc/meminfo", "MemTotal")
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0.0);
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("PRETTY_NAME=")
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into()),
        "ram_gib": (mem_kb / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "os": os,
        "kernel": command_output("uname", &["-r"]).unwrap_or_default(),
        "date_utc": command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
        "commit": git_commit(repo),
        "rustc": command_output("rustc", &["--version"]).unwrap_or_default(),
        "postgres": command_output("psql", &["--version"]).unwrap_or_default(),
    })
}

/// `target/release/<name>` next to this binary.
pub fn release_bin(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let dir = me.parent().context("the bench binary has no folder")?;
    let bin = dir.join(name);
    if !bin.exists() {
        bail!(
            "{} is missing: build with `cargo build --release --workspace` (make bench does)",
            bin.display()
        );
    }
    Ok(bin)
}
