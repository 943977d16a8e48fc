//! A closed-loop HTTP load generator: `connections` tasks, each sending the next request when the last one
//! answered, for a fixed time after a warm-up. Latency is measured per request, body included.

use std::sync::Arc;
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

/// GETs `url` from `connections` concurrent loops: `warmup` unmeasured, then `duration` measured.
pub async fn run(
    url: &str,
    cookie: &str,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Stats> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(60))
        .build()?;
    let url: Arc<str> = Arc::from(url);
    let cookie: Arc<str> = Arc::from(cookie);
    let start = Instant::now() + warmup;
    let end = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, url, cookie) = (client.clone(), url.clone(), cookie.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let (mut errors, mut bytes) = (0usize, 0usize);
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let result = async {
                    let resp = client.get(&*url).header(COOKIE, &*cookie).send().await?;
                    let ok = resp.status().is_success();
                    let body = resp.bytes().await?;
                    Ok::<_, reqwest::Error>((ok, body.len()))
                }
                .await;
                let t1 = Instant::now();
                // Count what completes inside the window (closed loop: a slow server still yields samples
                // from requests started during the warm-up).
                if t1 < start || t1 > end {
                    continue;
                }
                match result {
                    Ok((true, n)) => {
                        samples.push((t1 - t0).as_secs_f64() * 1000.0);
                        bytes += n;
                    }
                    _ => errors += 1,
                }
            }
            (samples, errors, bytes)
        }));
    }
    let mut stats = Stats {
        samples_ms: Vec::new(),
        errors: 0,
        seconds: duration.as_secs_f64(),
        bytes: 0,
    };
    for t in tasks {
        let (s, e, b) = t.await?;
        stats.samples_ms.extend(s);
        stats.errors += e;
        stats.bytes += b;
    }
    Ok(stats)
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
