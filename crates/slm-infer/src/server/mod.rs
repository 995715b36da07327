//! The OpenAI-compatible HTTP server over an [`Engine`] (feature `server`; `slm serve` runs it).
//!
//! Requests name the base model or one of its LoRA adapters as their `model` (multi-LoRA: the
//! adapters are applied per sequence, unmerged, and requests of different adapters share the
//! engine's steps); `/v1/models` lists the adapters with the base as their `parent`.
//!
//! Routes: `POST /v1/classify` (label scoring, batched with the rest), `POST
//! /v1/chat/completions` and `POST /v1/completions` (both with `stream: true`
//! server-sent events, `usage`, `n`, `stop`, `seed`, `logprobs`, `logit_bias`), `GET /v1/models`,
//! `GET /health` and `GET /metrics` (Prometheus text, vLLM's metric meanings under the `slm:`
//! prefix). Errors are OpenAI-style JSON bodies: 400 for malformed JSON, unknown models, bad
//! settings and prompts longer than the context (never cut silently: `truncate_prompt_tokens`
//! cuts on request and `usage` says how much); 429 when the engine's queue is full. A client
//! that disconnects mid-stream drops its stream, which cancels the request and frees its blocks.
//!
//! ```no_run
//! # async fn demo(engine: slm_infer::engine::Engine, tokenizer: std::sync::Arc<slm_core::tokenizer::Tokenizer>) -> std::io::Result<()> {
//! use slm_infer::server::{ServerState, serve};
//! let state = ServerState::new(engine, tokenizer, "smollm2");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, state, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

pub mod openai;
mod prometheus;
mod routes;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::{get, post};
use slm_core::tokenizer::Tokenizer;
use slm_energy::CarbonIntensity;

use crate::constraint::ConstraintCompiler;
use crate::engine::Engine;

/// How `/v1/classify` turns an input into a prompt and label completions (token ids): the
/// served model's task (its template and labels, as `slm finetune` records them) or a default
/// classifier prompt. `slm serve` provides one from slm-data's `TaskSpec`.
pub trait ClassifyPrompts: Send + Sync + std::fmt::Debug {
    /// The labels a request without `labels` is scored against, if the model has a task.
    fn default_labels(&self) -> Option<Vec<String>>;
    /// The prompt for `input` and each label's completion tokens.
    ///
    /// # Errors
    /// What went wrong, for a 400.
    fn build(&self, input: &str, labels: &[String]) -> Result<(Vec<u32>, Vec<Vec<u32>>), String>;
}

/// What the server needs: the engine, the tokenizer (chat template, text), names.
#[derive(Debug, Clone)]
pub struct ServerState {
    engine: Engine,
    tokenizer: Arc<Tokenizer>,
    model_name: String,
    created: u64,
    carbon: CarbonIntensity,
    /// The constraint compiler (built at the first constrained request: its token trie costs
    /// ~0.2 s for a 49k vocabulary), or why there is none.
    compiler: Arc<OnceLock<Result<ConstraintCompiler, String>>>,
    /// `/v1/classify`'s prompts, when configured.
    classify: Option<Arc<dyn ClassifyPrompts>>,
    /// `/v1/classify`'s prompts for requests naming an adapter, where its task differs.
    adapter_classify: HashMap<String, Arc<dyn ClassifyPrompts>>,
    /// Where each adapter was loaded from (`root` in `/v1/models`).
    adapter_roots: HashMap<String, String>,
    /// Longest a graceful shutdown waits for running requests before cancelling them.
    pub shutdown_grace: Duration,
}

impl ServerState {
    /// A server for `engine`'s model under `model_name` (what requests' `model` must say).
    /// Emissions use the world-average grid intensity unless [`ServerState::with_carbon`] says
    /// otherwise.
    pub fn new(engine: Engine, tokenizer: Arc<Tokenizer>, model_name: impl Into<String>) -> Self {
        Self {
            compiler: Arc::new(OnceLock::new()),
            classify: None,
            adapter_classify: HashMap::new(),
            adapter_roots: HashMap::new(),
            engine,
            tokenizer,
            model_name: model_name.into(),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            carbon: CarbonIntensity::WORLD_DEFAULT,
            shutdown_grace: Duration::from_secs(30),
        }
    }

    /// Sets the grid's carbon intensity for `usage.gco2e`.
    pub fn with_carbon(mut self, carbon: CarbonIntensity) -> Self {
        self.carbon = carbon;
        self
    }

    /// Serves `POST /v1/classify` with `prompts`.
    pub fn with_classifier(mut self, prompts: Arc<dyn ClassifyPrompts>) -> Self {
        self.classify = Some(prompts);
        self
    }

    /// Describes the model's LoRA adapter `name` (requests name it as their `model`; see
    /// [`BatchedLm::adapters`](slm_core::step::BatchedLm::adapters)): `root`, where it was
    /// loaded from, for `/v1/models`, and `/v1/classify`'s prompts for it when its task is
    /// not the base's.
    pub fn with_adapter(
        mut self,
        name: impl Into<String>,
        root: impl Into<String>,
        prompts: Option<Arc<dyn ClassifyPrompts>>,
    ) -> Self {
        let name = name.into();
        if let Some(p) = prompts {
            self.adapter_classify.insert(name.clone(), p);
        }
        self.adapter_roots.insert(name, root.into());
        self
    }

    /// `/v1/classify`'s prompts for requests naming `model`.
    pub(crate) fn classifier_for(&self, model: &str) -> Option<Arc<dyn ClassifyPrompts>> {
        self.adapter_classify
            .get(model)
            .cloned()
            .or_else(|| self.classify.clone())
    }

    /// The constraint compiler, built on first use, or why there is none.
    pub(crate) fn compiler(&self) -> Result<&ConstraintCompiler, &str> {
        self.compiler
            .get_or_init(|| {
                let config = self.engine.model().config();
                // Constrained outputs end at the chat template's end token, else the model's EOS.
                let eos = self
                    .tokenizer
                    .eos_token()
                    .and_then(|e| self.tokenizer.token_to_id(e))
                    .or(config.eos_token_ids.first().copied())
                    .ok_or("the model names no end-of-sequence token")?;
                ConstraintCompiler::new(&self.tokenizer, eos, config.vocab_size)
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// The routes over `state` (mount it in a larger axum app, or run it with [`serve`]).
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(routes::chat))
        .route("/v1/completions", post(routes::completions))
        .route("/v1/classify", post(routes::classify))
        .route("/v1/models", get(routes::models))
        .route("/health", get(routes::health))
        .route("/metrics", get(routes::metrics))
        .fallback(routes::not_found)
        .with_state(Arc::new(state))
}

/// Serves until `shutdown` resolves, then stops taking connections, lets running requests
/// finish for up to `shutdown_grace`, cancels the rest and stops the engine.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ServerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let engine = state.engine.clone();
    let grace = state.shutdown_grace;
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(state);
    // Streamed tokens are small writes: send each at once (no Nagle delay behind an ACK).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = signalled_tx.send(());
    });
    let watchdog = {
        let engine = engine.clone();
        tokio::spawn(async move {
            if signalled_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
                // Still running after the grace period: cancel, which ends every stream.
                let engine = engine.clone();
                let _ = tokio::task::spawn_blocking(move || engine.shutdown()).await;
            }
        })
    };
    let result = server.await;
    watchdog.abort();
    tokio::task::spawn_blocking(move || engine.shutdown())
        .await
        .map_err(std::io::Error::other)?;
    result
}
