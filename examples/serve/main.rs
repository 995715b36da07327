//! A task model inside your own service: slm-infer's continuous-batching engine behind a small
//! axum app with its own `/classify` route. Concurrent requests share the engine's steps (the
//! model's weights are read once per step for all of them), and each answer carries its label,
//! the labels' probabilities and its latency.
//!
//! ```text
//! cargo run --example pipeline -- --quick        # exports target/pipeline/export/
//! cargo run --example serve -- --model target/pipeline/export/teacher.gguf \
//!     --task target/pipeline/export/task.json --port 3000
//! curl -s localhost:3000/classify -d '{"text": "WIN a FREE cruise, click now!"}'
//! # {"label":"spam","probs":{"ham":0.197,"spam":0.803},"latency_ms":416.0}   (the quick teacher)
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use slm::core::fast::FastDecoderConfig;
use slm::data::Example;
use slm::data::inputs::TaskSpec;
use slm::infer::engine::{Engine, EngineConfig};
use slm::prelude::*;

#[derive(Parser)]
struct Args {
    /// The model: a GGUF (run on the CPU fast path) with its tokenizer.
    #[arg(long)]
    model: PathBuf,
    /// The task: the `task.json` a tuned model was saved with (labels, prompt template).
    #[arg(long)]
    task: PathBuf,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 3000)]
    port: u16,
}

/// What the route handlers share.
struct App {
    engine: Engine,
    tokenizer: Tokenizer,
    task: TaskSpec,
    labels: Vec<String>,
}

#[derive(serde::Deserialize)]
struct ClassifyRequest {
    text: String,
}

#[derive(serde::Serialize)]
struct ClassifyResponse {
    label: String,
    probs: std::collections::BTreeMap<String, f64>,
    latency_ms: f64,
}

/// `POST /classify {"text": ...}`: the prompt the model was tuned on, every label scored.
async fn classify(
    State(app): State<Arc<App>>,
    Json(request): Json<ClassifyRequest>,
) -> Result<Json<ClassifyResponse>, (StatusCode, String)> {
    let started = Instant::now();
    let bad = |e: String| (StatusCode::BAD_REQUEST, e);
    let example = Example::new("request", request.text);
    let (prompt, candidates) =
        slm::train::label_prompt(&app.task, &app.tokenizer, &example, &app.labels)
            .map_err(|e| bad(e.to_string()))?;
    let done = app
        .engine
        .score(prompt, candidates)
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?
        .completion()
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let scores = done.scores.ok_or_else(|| bad("no scores".into()))?;
    Ok(Json(ClassifyResponse {
        label: app.labels[scores.best].clone(),
        probs: app.labels.iter().cloned().zip(scores.probs).collect(),
        latency_ms: started.elapsed().as_secs_f64() * 1e3,
    }))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();

    // 1. The model on the CPU fast path, and the task it was tuned for.
    let ckpt = Checkpoint::open(&args.model)?;
    let tokenizer = ckpt
        .tokenizer
        .clone()
        .context("the model has no tokenizer")?;
    let text = std::fs::read_to_string(&args.task)
        .with_context(|| format!("reading {}", args.task.display()))?;
    let task: TaskSpec = serde_json::from_str(&text).context("not a task.json")?;
    let labels = task.labels.clone().context("the task has no labels")?;
    let model = FastDecoderConfig::default().init(&ckpt.config, ckpt.weights.as_ref())?;

    // 2. The engine: one thread owns the model and batches whatever is in flight.
    let engine = Engine::start(
        Arc::new(model),
        Some(Arc::new(tokenizer.clone())),
        EngineConfig::default(),
    )?;

    // 3. Your service's routes around it.
    let app = Arc::new(App {
        engine: engine.clone(),
        tokenizer,
        task,
        labels,
    });
    let router = Router::new()
        .route("/classify", post(classify))
        .route("/health", get(|| async { "ok" }))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    engine.shutdown();
    Ok(())
}
