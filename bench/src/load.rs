//! Load for the directory pages: `wrk` with many connections (closed loop, fixed time after a warm-up), and one
//! request at a time for a page's own latency.

use std::time::{Duration, Instant};

use reqwest::header::COOKIE;
use serde_json::{Value, json};

pub struct Stats {
    pub samples_ms: Vec<f64>,
    pub errors: usize,
    pub seconds: f64,
    pub bytes: usize,
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

impl Stats {
    pub fn summarize(&mut self) -> Value {
        self.samples_ms.sort_by(f64::total_cmp);
        let n = self.samples_ms.len();
        let mean = if n == 0 {
            f64::NAN
        } else {
            self.samples_ms.iter().sum::<f64>() / n as f64
        };
        json!({
            "requests": n,
            "errors": self.errors,
            "seconds": self.seconds,
            "req_per_s": n as f64 / self.seconds,
            "p50_ms": percentile(&self.samples_ms, 50.0),
            "p90_ms": percentile(&self.samples_ms, 90.0),
            "p99_ms": percentile(&self.samples_ms, 99.0),
            "max_ms": self.samples_ms.last().copied().unwrap_or(f64::NAN),
            "mean_ms": mean,
            "avg_body_bytes": self.bytes.checked_div(n).unwrap_or(0),
        })
    }
}

/// `wrk` (Debian's package; `make bench` installs it) against `url` with `connections` connections on one
/// thread: `warmup` unmeasured, then `duration` measured. wrk rather than a Rust client because the load
/// generator shares the machine's two cores with the server: at the same server, reqwest's 64 connections
/// left it 1,105 req/s on the Users list and wrk 1,950 (docs/benchmarks.md). Returns the summary
/// `Stats::summarize` gives (percentiles 50/90/99 from wrk's latency distribution; no mean or max).
pub fn wrk(
    url: &str,
    cookie: &str,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Value> {
    let run = |d: Duration| -> anyhow::Result<String> {
        let out = std::process::Command::new("wrk")
            .args(["-t1", "--latency"])
            .arg(format!("-c{connections}"))
            .arg(format!("-d{}s", d.as_secs().max(1)))
            .args(["-H", &format!("Cookie: {cookie}")])
            .arg(url)
            .output()
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot run wrk ({e}); make bench installs it (apt-get install wrk)"
                )
            })?;
        anyhow::ensure!(
            out.status.success(),
            "wrk failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    if !warmup.is_zero() {
        run(warmup)?;
    }
    let text = run(duration)?;
    parse_wrk(&text, duration)
}

/// Milliseconds of a wrk duration such as `812.00us`, `17.92ms` or `1.20s`.
fn wrk_ms(v: &str) -> Option<f64> {
    let (num, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|x| x * factor)
}

/// Bytes of a wrk size such as `150.20MB`.
fn wrk_bytes(v: &str) -> Option<f64> {
    let units = [("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1.0)];
    units.iter().find_map(|(u, f)| {
        v.strip_suffix(u)
            .and_then(|n| n.parse::<f64>().ok())
            .map(|x| x * f)
    })
}

fn parse_wrk(text: &str, duration: Duration) -> anyhow::Result<Value> {
    let mut pct = std::collections::HashMap::new();
    let (mut requests, mut bytes, mut errors, mut rps) = (None, None, 0.0, None);
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [p, v] if p.ends_with('%') => {
                pct.insert(p.trim_end_matches('%').to_owned(), wrk_ms(v));
            }
            [n, "requests", "in", _, b, "read"] => {
                requests = n.parse::<f64>().ok();
                bytes = wrk_bytes(b);
            }
            ["Requests/sec:", v] => rps = v.parse::<f64>().ok(),
            ["Non-2xx", "or", "3xx", "responses:", n] => errors += n.parse::<f64>().unwrap_or(0.0),
            ["Socket", "errors:", rest @ ..] => {
                errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<f64>().ok())
                    .sum::<f64>();
            }
            _ => {}
        }
    }
    let requests = requests.ok_or_else(|| anyhow::anyhow!("unexpected wrk output: {text}"))?;
    let p = |k: &str| pct.get(k).copied().flatten();
    Ok(json!({
        "tool": "wrk -t1",
        "requests": requests,
        "errors": errors,
        "seconds": duration.as_secs_f64(),
        "req_per_s": rps,
        "p50_ms": p("50"),
        "p90_ms": p("90"),
        "p99_ms": p("99"),
        "avg_body_bytes": bytes.map(|b| b / requests.max(1.0)),
    }))
}

/// One request at a time (no concurrency): the page's own latency without queueing.
pub async fn sequential(url: &str, cookie: &str, n: usize) -> anyhow::Result<Stats> {
    let client = reqwest::Client::new();
    let mut stats = Stats {
        samples_ms: Vec::new(),
        errors: 0,
        seconds: 0.0,
        bytes: 0,
    };
    let all = Instant::now();
    for _ in 0..n {
        let t0 = Instant::now();
        let resp = client.get(url).header(COOKIE, cookie).send().await?;
        let ok = resp.status().is_success();
        let body = resp.bytes().await?;
        if ok {
            stats.samples_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
            stats.bytes += body.len();
        } else {
            stats.errors += 1;
        }
    }
    stats.seconds = all.elapsed().as_secs_f64();
    Ok(stats)
}
