//! `slm bench-serve`: the serving benchmark. Drives an OpenAI-compatible server over HTTP
//! (`slm serve` started in this process on loopback with `--model`, or any server at `--url`,
//! such as llama.cpp's `llama-server`, so both are measured by the same client) with 1, 2, 4,
//! 8, 16 and 32 concurrent streaming clients, and writes JSON plus an SVG plot: aggregate
//! tokens/s, time to first token and inter-token latency (p50/p99), peak RSS and energy per
//! 1,000 tokens (with how it was obtained; in-process only).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The flags of `slm bench-serve`.
#[derive(clap::Args, Debug)]
pub struct BenchServeArgs {
    /// Serve this model in-process (the same engine and server as `slm serve`).
    #[arg(long, conflicts_with = "url", required_unless_present = "url")]
    model: Option<PathBuf>,
    /// Benchmark the server at this base URL instead (`http://127.0.0.1:8080`).
    #[arg(long)]
    url: Option<String>,
    /// The `model` field to send (default: what `/v1/models` lists first).
    #[arg(long)]
    served_model: Option<String>,
    /// Concurrency levels.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32")]
    concurrency: Vec<usize>,
    /// Requests per client at each level.
    #[arg(long, default_value_t = 2)]
    requests: usize,
    /// Tokens generated per request (end-of-sequence ignored, so every request makes as many).
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Threads of the in-process fast path (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Where to write bench-serve.json and bench-serve.svg.
    #[arg(long, default_value = "target/bench-serve")]
    out: PathBuf,
}

/// One request's timings.
struct Timed {
    ttft: f64,
    gaps: Vec<f64>,
    tokens: usize,
}

fn percentile(v: &mut [f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    Some(v[i])
}

/// `host:port` and path prefix of a base URL (`http://` only).
fn parse_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .context("--url must start with http://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.trim_end_matches('/');
    let path = path
        .strip_suffix("v1")
        .unwrap_or(path)
        .trim_end_matches('/');
    Ok((
        host.to_string(),
        if path.is_empty() {
            String::new()
        } else {
            format!("/{path}")
        },
    ))
}

fn get_json(host: &str, path: &str) -> Result<Value> {
    let mut s = TcpStream::connect(host)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let body = raw.split_once("\r\n\r\n").map_or("", |x| x.1);
    Ok(serde_json::from_str(body.trim())?)
}

/// One streaming completion; the time of each chunk that carries text.
fn stream_once(host: &str, path: &str, body: &str) -> Result<Timed> {
    let addr = host
        .to_socket_addrs()?
        .next()
        .context("cannot resolve the server")?;
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(30))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(600)))?;
    // One write, keep-alive (the connection is dropped after `[DONE]`), as real clients send.
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes())?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    if !line.contains(" 200") {
        let mut rest = String::new();
        let _ = r.read_to_string(&mut rest);
        bail!("the server answered {}: {rest}", line.trim());
    }
    // Headers, then SSE lines (chunk-size lines of a chunked body are skipped as non-data).
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let mut times = Vec::new();
    let mut usage_tokens = None;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            break;
        }
        let Some(data) = line.trim().strip_prefix("data:") else {
            continue;
        };
        let data = data.trim();
        if data == "[DONE]" {
            break;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            usage_tokens = Some(n as usize);
        }
        let text = v["choices"][0]["text"].as_str().unwrap_or("");
        if !text.is_empty() {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let Some(&first) = times.first() else {
        bail!("the server streamed no text");
    };
    Ok(Timed {
        ttft: first,
        gaps: times.windows(2).map(|w| w[1] - w[0]).collect(),
        tokens: usage_tokens.unwrap_or(times.len()),
    })
}

/// Runs `slm bench-serve`.
pub fn run(args: BenchServeArgs) -> Result<()> {
    // In-process: the server on a free loopback port, on its own runtime thread.
    let mut local = None;
    let (host, prefix, target) = match (&args.model, &args.url) {
        (Some(model), _) => {
            let served =
                crate::serve::build(&crate::serve::ServeArgs::for_model(model, args.threads)?)?;
            let (engine, state) = (served.engine, served.state);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
            let addr = listener.local_addr()?;
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            rt.spawn(slm_infer::server::serve(listener, state, async {
                let _ = rx.await;
            }));
            local = Some((engine, tx, rt));
            (
                addr.to_string(),
                String::new(),
                format!("slm serve {}", model.display()),
            )
        }
        (None, Some(url)) => {
            let (h, p) = parse_url(url)?;
            (h, p, url.clone())
        }
        (None, None) => bail!("pass --model or --url"),
    };
    let name = match &args.served_model {
        Some(n) => n.clone(),
        None => get_json(&host, &format!("{prefix}/v1/models"))?["data"][0]["id"]
            .as_str()
            .context("/v1/models lists no model")?
            .to_string(),
    };
    let path = format!("{prefix}/v1/completions");
    let body = |client: usize, k: usize| {
        json!({
            "model": name,
            "prompt": format!("Request {client}-{k}. Write a short story about a lighthouse keeper and a storm."),
            "max_tokens": args.max_tokens,
            "temperature": 0.8,
            "seed": client * 1000 + k,
            "stream": true,
            "stream_options": {"include_usage": true},
            "ignore_eos": true,
        })
        .to_string()
    };
    // One warm-up request.
    stream_once(&host, &path, &body(9999, 0))?;

    let mut levels = Vec::new();
    for &c in &args.concurrency {
        let energy_before = local.as_ref().and_then(|l| l.0.stats().energy);
        let start = Instant::now();
        let host = Arc::new(host.clone());
        let handles: Vec<_> = (0..c)
            .map(|client| {
                let host = host.clone();
                let path = path.clone();
                let bodies: Vec<String> = (0..args.requests).map(|k| body(client, k)).collect();
                std::thread::spawn(move || -> Result<Vec<Timed>> {
                    bodies
                        .iter()
                        .map(|b| stream_once(&host, &path, b))
                        .collect()
                })
            })
            .collect();
        let mut timed = Vec::new();
        for h in handles {
            timed.extend(
                h.join()
                    .map_err(|_| anyhow::anyhow!("a client panicked"))??,
            );
        }
        let seconds = start.elapsed().as_secs_f64();
        let tokens: usize = timed.iter().map(|t| t.tokens).sum();
        let mut ttft: Vec<f64> = timed.iter().map(|t| t.ttft).collect();
        let mut itl: Vec<f64> = timed.iter().flat_map(|t| t.gaps.clone()).collect();
        let energy_after = local.as_ref().and_then(|l| l.0.stats().energy);
        let energy = match (energy_before, energy_after) {
            (Some((a, _)), Some((b, method))) => Some((b - a, method)),
            (None, Some((b, method))) => Some((b, method)),
            _ => None,
        };
        let ms = |v: Option<f64>| v.map(|x| (x * 1e4).round() / 10.0);
        let level = json!({
            "concurrency": c,
            "requests": timed.len(),
            "tokens": tokens,
            "seconds": seconds,
            "tokens_per_s": tokens as f64 / seconds,
            "ttft_p50_ms": ms(percentile(&mut ttft, 0.5)),
            "ttft_p99_ms": ms(percentile(&mut ttft, 0.99)),
            "itl_p50_ms": ms(percentile(&mut itl, 0.5)),
            "itl_p99_ms": ms(percentile(&mut itl, 0.99)),
            "energy_wh_per_1k_tokens": energy.as_ref().map(|(j, _)| j / 3600.0 / tokens as f64 * 1000.0),
            "energy_method": energy.as_ref().map(|(_, m)| m.clone()),
        });
        eprintln!(
            "concurrency {c:>2}: {:>7.1} tokens/s, TTFT p50 {} ms, ITL p50 {} ms",
            level["tokens_per_s"].as_f64().unwrap_or(0.0),
            level["ttft_p50_ms"],
            level["itl_p50_ms"]
        );
        levels.push(level);
    }
    let tps = |c: usize| {
        levels
            .iter()
            .find(|l| l["concurrency"] == c)
            .and_then(|l| l["tokens_per_s"].as_f64())
    };
    let report = json!({
        "target": target,
        "model": name,
        "max_tokens": args.max_tokens,
        "requests_per_client": args.requests,
        "levels": levels,
        "scaling_8_vs_1": tps(8).zip(tps(1)).map(|(a, b)| a / b),
        "peak_rss_bytes": local.as_ref().and_then(|_| crate::bench::peak_rss_bytes()),
    });
    std::fs::create_dir_all(&args.out)?;
    let json_path = args.out.join("bench-serve.json");
    slm_core::io::write_atomic(
        &json_path,
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    let svg = plot(&report)?;
    slm_core::io::write_atomic(&args.out.join("bench-serve.svg"), svg.as_bytes())?;
    println!("{report}");
    if let Some((engine, tx, rt)) = local {
        let _ = tx.send(());
        drop(rt);
        engine.shutdown();
    }
    Ok(())
}

/// Tokens/s and TTFT p50 against concurrency.
fn plot(report: &Value) -> Result<String> {
    use plotters::prelude::*;
    let levels = report["levels"].as_array().cloned().unwrap_or_default();
    let pts = |key: &str| -> Vec<(f64, f64)> {
        levels
            .iter()
            .filter_map(|l| Some((l["concurrency"].as_f64()?, l[key].as_f64()?)))
            .collect()
    };
    let tps = pts("tokens_per_s");
    let ttft = pts("ttft_p50_ms");
    let max_c = tps.iter().map(|p| p.0).fold(1.0, f64::max);
    let max_t = tps.iter().map(|p| p.1).fold(1.0, f64::max);
    let max_l = ttft.iter().map(|p| p.1).fold(1.0, f64::max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        let title = format!(
            "{} — {} tokens per request",
            report["model"].as_str().unwrap_or(""),
            report["max_tokens"]
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .right_y_label_area_size(60)
            .build_cartesian_2d((0.5..max_c * 1.1).log_scale(), 0.0..max_t * 1.15)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .set_secondary_coord((0.5..max_c * 1.1).log_scale(), 0.0..max_l * 1.15);
        chart
            .configure_mesh()
            .x_desc("concurrent clients")
            .y_desc("aggregate tokens/s")
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .configure_secondary_axes()
            .y_desc("TTFT p50 (ms)")
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .draw_series(LineSeries::new(tps.clone(), BLUE.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label("tokens/s")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        chart
            .draw_series(tps.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .draw_secondary_series(LineSeries::new(ttft, RED.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label("TTFT p50 (ms)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_percentiles() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/v1").unwrap(),
            ("127.0.0.1:8080".into(), String::new())
        );
        assert_eq!(
            parse_url("http://h:1/api/v1/").unwrap(),
            ("h:1".into(), "/api".into())
        );
        assert!(parse_url("https://h").is_err());
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&mut v, 0.5), Some(3.0));
        assert_eq!(percentile(&mut v, 0.99), Some(5.0));
        assert_eq!(percentile(&mut [], 0.5), None);
    }
}
