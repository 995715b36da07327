//! `GET /metrics`: the engine's [`EngineStats`] in Prometheus' text format, one metric per
//! vLLM metric of the same meaning (`vllm:num_requests_running` is `slm:num_requests_running`).

use std::fmt::Write;

use crate::engine::{EngineStats, Histogram};

fn gauge(out: &mut String, name: &str, help: &str, model: &str, v: f64) {
    let _ = writeln!(out, "# HELP slm:{name} {help}\n# TYPE slm:{name} gauge");
    let _ = writeln!(out, "slm:{name}{{model_name=\"{model}\"}} {v}");
}

fn counter(out: &mut String, name: &str, help: &str, model: &str, v: f64) {
    let _ = writeln!(out, "# HELP slm:{name} {help}\n# TYPE slm:{name} counter");
    let _ = writeln!(out, "slm:{name}{{model_name=\"{model}\"}} {v}");
}

fn histogram(out: &mut String, name: &str, help: &str, model: &str, h: &Histogram) {
    let _ = writeln!(out, "# HELP slm:{name} {help}\n# TYPE slm:{name} histogram");
    for (b, c) in h.bounds.iter().zip(&h.counts) {
        let _ = writeln!(
            out,
            "slm:{name}_bucket{{model_name=\"{model}\",le=\"{b}\"}} {c}"
        );
    }
    let _ = writeln!(
        out,
        "slm:{name}_bucket{{model_name=\"{model}\",le=\"+Inf\"}} {}",
        h.count()
    );
    let _ = writeln!(out, "slm:{name}_sum{{model_name=\"{model}\"}} {}", h.sum);
    let _ = writeln!(
        out,
        "slm:{name}_count{{model_name=\"{model}\"}} {}",
        h.count()
    );
}

/// Renders `s` for the model `model` (label-escaped by the caller's naming rules: no quotes).
pub(crate) fn render(s: &EngineStats, model: &str) -> String {
    let model = model.replace(['"', '\\', '\n'], "_");
    let m = model.as_str();
    let mut out = String::new();
    gauge(
        &mut out,
        "num_requests_running",
        "Requests in the running batch.",
        m,
        s.running as f64,
    );
    gauge(
        &mut out,
        "num_requests_waiting",
        "Requests waiting to be scheduled.",
        m,
        s.waiting as f64,
    );
    gauge(
        &mut out,
        "kv_cache_usage_perc",
        "Fraction of KV-cache blocks in use (0 to 1).",
        m,
        s.kv_usage(),
    );
    counter(
        &mut out,
        "prefix_cache_queries_total",
        "Prompt tokens looked up in the prefix cache.",
        m,
        s.prefix_cache_queries as f64,
    );
    counter(
        &mut out,
        "prefix_cache_hits_total",
        "Prompt tokens found in the prefix cache.",
        m,
        s.prefix_cache_hits as f64,
    );
    counter(
        &mut out,
        "num_preemptions_total",
        "Sequences preempted (recomputed later).",
        m,
        s.preemptions as f64,
    );
    counter(
        &mut out,
        "prompt_tokens_total",
        "Prefill tokens processed.",
        m,
        s.prompt_tokens as f64,
    );
    counter(
        &mut out,
        "generation_tokens_total",
        "Tokens generated.",
        m,
        s.generation_tokens as f64,
    );
    let _ = writeln!(
        out,
        "# HELP slm:request_success_total Requests finished, by reason.\n# TYPE slm:request_success_total counter"
    );
    for (reason, n) in ["stop", "length", "abort", "error"].iter().zip(s.finished) {
        let _ = writeln!(
            out,
            "slm:request_success_total{{model_name=\"{m}\",finished_reason=\"{reason}\"}} {n}"
        );
    }
    histogram(
        &mut out,
        "time_to_first_token_seconds",
        "Time to first token.",
        m,
        &s.ttft,
    );
    histogram(
        &mut out,
        "inter_token_latency_seconds",
        "Time between tokens.",
        m,
        &s.inter_token,
    );
    histogram(
        &mut out,
        "e2e_request_latency_seconds",
        "Submission to end.",
        m,
        &s.e2e,
    );
    histogram(
        &mut out,
        "request_queue_time_seconds",
        "Submission to first step.",
        m,
        &s.queue_time,
    );
    let _ = writeln!(
        out,
        "# HELP slm:energy_joules_total Energy of model steps, by how it was obtained.\n# TYPE slm:energy_joules_total counter"
    );
    if let Some((joules, method)) = &s.energy {
        let method = method.replace(['"', '\\', '\n'], "_");
        let _ = writeln!(
            out,
            "slm:energy_joules_total{{model_name=\"{m}\",method=\"{method}\"}} {joules}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use slm_core::step::KvUsage;

    #[test]
    fn renders_every_metric_with_its_type() {
        let mut s = EngineStats::new(KvUsage {
            block_size: 16,
            total_blocks: 10,
            free_blocks: 4,
        });
        s.ttft.observe(0.03);
        s.finished[0] = 3;
        let text = render(&s, "m\"x");
        assert!(text.contains("slm:kv_cache_usage_perc{model_name=\"m_x\"} 0.6"));
        assert!(
            text.contains(
                "slm:request_success_total{model_name=\"m_x\",finished_reason=\"stop\"} 3"
            )
        );
        assert!(
            text.contains(
                "slm:time_to_first_token_seconds_bucket{model_name=\"m_x\",le=\"0.04\"} 1"
            )
        );
        assert!(text.contains("slm:time_to_first_token_seconds_count{model_name=\"m_x\"} 1"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
