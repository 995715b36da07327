//! The serving engine: continuous batching over a [`BatchedLm`].
//!
//! [`Engine::start`] moves the model onto a thread of its own that steps every running
//! sequence together (see [`scheduler`](self) for the policy: iteration-level scheduling,
//! chunked prefill, preemption with recomputation, prefix sharing through
//! [`BatchedLm::fork`]). The [`Engine`] handle is cheap to clone and `Send + Sync`:
//! [`Engine::submit`] returns a [`RequestStream`] of [`Event`]s, read with
//! [`RequestStream::recv`] in async code or [`RequestStream::blocking_recv`] on plain threads.
//! Dropping the stream cancels the request and frees its blocks at the next step.
//!
//! ```
//! use std::sync::Arc;
//! use slm_core::prelude::*;
//! use slm_core::config::RopeScaling;
//! use slm_core::fast::FastDecoderConfig;
//! use slm_infer::engine::{Engine, EngineConfig, Request};
//! use slm_infer::GenerationConfig;
//!
//! # fn main() -> slm_infer::Result<()> {
//! # let config = ModelConfig {
//! #     architecture: Architecture::Llama,
//! #     vocab_size: 32, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1,
//! #     num_attention_heads: 2, num_key_value_heads: 1, head_dim: 8, rms_norm_eps: 1e-5,
//! #     rope_theta: 10_000.0, rope_scaling: RopeScaling::Default, partial_rotary_factor: 1.0, max_position_embeddings: 64,
//! #     sliding_window: None, max_window_layers: None, tie_word_embeddings: false, attention_bias: false,
//! #     o_proj_bias: false, mlp_bias: false, bos_token_id: Some(0), eos_token_ids: vec![1],
//! #     pad_token_id: None, torch_dtype: "float32".into(),
//! # };
//! // Any BatchedLm: here the burn decoder, one sequence at a time (256 blocks of 16 tokens).
//! let model = slm_core::step::PerSequence::new(config.init(&Device::flex()), 16, 256);
//! let engine = Engine::start(Arc::new(model), None, EngineConfig::default())?;
//! let settings = GenerationConfig { max_new_tokens: 4, ..Default::default() };
//! let streams: Vec<_> = [vec![0, 5, 6], vec![0, 7]]
//!     .into_iter()
//!     .map(|prompt| engine.submit(Request::new(prompt, settings.clone())))
//!     .collect::<Result<_, _>>()?;
//! for stream in streams {
//!     let done = stream.wait()?;
//!     assert_eq!(done.ids.len(), 4);
//! }
//! # Ok(()) }
//! ```

mod metering;
pub mod metrics;
mod scheduler;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use slm_core::step::{AdapterId, BatchedLm};
use slm_core::tokenizer::Tokenizer;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

pub use metrics::{EngineStats, Histogram, RequestMetrics};
use scheduler::{Scheduler, Sequence};

use crate::classify::LabelScores;
use crate::constraint::Grammar;
use crate::decoding::{Decoding, FinishReason, GenerationConfig};
use crate::error::{Error, Result};
use crate::sampling::TokenLogprob;

/// Settings of an [`Engine`].
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Requests allowed to wait; [`Engine::submit`] refuses more with [`Error::QueueFull`].
    pub max_queue: usize,
    /// Sequences in the running batch at most.
    pub max_running: usize,
    /// Tokens per step at most (decode tokens first, prefill chunks after).
    pub max_batch_tokens: usize,
    /// Prefill chunks end at multiples of this many positions (batch invariance; see the
    /// scheduler).
    pub prefill_chunk: usize,
    /// Finished sequences kept for prefix sharing (0: none; evicted before any preemption).
    pub prefix_cache_entries: usize,
}

impl Default for EngineConfig {
    /// 256 waiting, 32 running, 512 tokens per step in chunks of 256, 64 cached prefixes.
    fn default() -> Self {
        Self {
            max_queue: 256,
            max_running: 32,
            max_batch_tokens: 512,
            prefill_chunk: 256,
            prefix_cache_entries: 64,
        }
    }
}

/// One request: prompt token ids and how to generate after them.
#[derive(Debug, Clone)]
pub struct Request {
    /// The prompt (at least one token, within the model's context).
    pub prompt: Vec<u32>,
    /// Sampling, stops, limits, logprobs.
    pub config: GenerationConfig,
    /// A compiled output constraint ([`crate::constraint`]), if any.
    pub grammar: Option<Grammar>,
    /// The model's LoRA adapter to run with ([`BatchedLm::adapters`]); `None`: the base model.
    pub adapter: Option<AdapterId>,
}

impl Request {
    /// A request for `prompt` with `config`.
    pub fn new(prompt: Vec<u32>, config: GenerationConfig) -> Self {
        Self {
            prompt,
            config,
            grammar: None,
            adapter: None,
        }
    }

    /// Runs the request with the model's adapter `adapter` (unmerged, batched with requests
    /// of other adapters).
    pub fn with_adapter(mut self, adapter: AdapterId) -> Self {
        self.adapter = Some(adapter);
        self
    }

    /// Constrains the output to `grammar`.
    pub fn with_grammar(mut self, grammar: Grammar) -> Self {
        self.grammar = Some(grammar);
        self
    }
}

/// Identifies a request inside an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// What a request's stream carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new token and the text it completes (possibly empty).
    Token {
        /// The token id.
        token: u32,
        /// Text safe to show now.
        text: String,
        /// Its log-probabilities, when asked for.
        logprob: Option<TokenLogprob>,
    },
    /// The request ended; nothing follows.
    Finished {
        /// Why.
        reason: FinishReason,
        /// Its timings and counts.
        metrics: RequestMetrics,
    },
    /// A scoring request's result: each candidate's total log-probability after the prompt
    /// ([`Engine::score`]); `Finished` follows.
    Scored {
        /// One per candidate, in order.
        log_probs: Vec<f64>,
    },
    /// The request failed in the model; nothing follows.
    Failed(String),
}

/// A finished request, collected by [`RequestStream::wait`].
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Generated ids (a stop token included).
    pub ids: Vec<u32>,
    /// Generated text (with a tokenizer).
    pub text: String,
    /// Log-probabilities, when asked for.
    pub logprobs: Vec<TokenLogprob>,
    /// A scoring request's candidates' scores.
    pub scores: Option<LabelScores>,
    /// Why it ended.
    pub reason: FinishReason,
    /// Timings and counts.
    pub metrics: RequestMetrics,
}

enum Command {
    Submit(Box<Sequence>),
    Cancel(RequestId),
    ClearPrefixCache,
    Shutdown,
}

struct Shared {
    commands: Mutex<mpsc::Sender<Command>>,
    /// Requests submitted and not yet admitted once.
    waiting: Arc<AtomicUsize>,
    next_id: AtomicU64,
    stats: Mutex<EngineStats>,
    config: EngineConfig,
    model: Arc<dyn BatchedLm>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    fn send(&self, c: Command) -> bool {
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(c)
            .is_ok()
    }
}

/// A handle to a running engine (see the module docs). Clones share the engine; it stops when
/// [`Engine::shutdown`] is called or the last handle is dropped.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
}

/// Shuts the engine down when the last [`Engine`] handle goes.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        stop(&self.0);
    }
}

fn stop(shared: &Shared) {
    shared.send(Command::Shutdown);
    let handle = shared
        .thread
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(h) = handle {
        let _ = h.join();
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts an engine over `model` on a thread of its own. With a `tokenizer`, events carry
    /// text and requests may use stop strings.
    pub fn start(
        model: Arc<dyn BatchedLm>,
        tokenizer: Option<Arc<Tokenizer>>,
        config: EngineConfig,
    ) -> Result<Self> {
        Self::start_metered(model, tokenizer, config, Vec::new())
    }

    /// Starts an engine that reads `meters` around every step and reports each request's share
    /// of the energy ([`RequestMetrics::energy_joules`], with the meters' method) and the total
    /// ([`EngineStats::energy`]); `slm_energy::default_meters()` gives this machine's best.
    pub fn start_metered(
        model: Arc<dyn BatchedLm>,
        tokenizer: Option<Arc<Tokenizer>>,
        config: EngineConfig,
        meters: Vec<Box<dyn slm_energy::PowerMeter>>,
    ) -> Result<Self> {
        if config.max_running == 0 || config.max_batch_tokens == 0 || config.prefill_chunk == 0 {
            return Err(Error::InvalidConfig(
                "max_running, max_batch_tokens and prefill_chunk must be positive".into(),
            ));
        }
        let (tx, rx) = mpsc::channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        let mut scheduler = Scheduler::new(
            model.clone(),
            tokenizer,
            config.clone(),
            waiting.clone(),
            metering::StepMeter::new(meters),
        );
        let shared = Arc::new(Shared {
            commands: Mutex::new(tx),
            waiting,
            next_id: AtomicU64::new(0),
            stats: Mutex::new(scheduler.stats.clone()),
            config,
            model,
            thread: Mutex::new(None),
        });
        let inner = shared.clone();
        let thread = std::thread::Builder::new()
            .name("slm-engine".into())
            .spawn(move || run(&mut scheduler, &rx, &inner))
            .map_err(|e| Error::InvalidConfig(format!("cannot start the engine thread: {e}")))?;
        *shared.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        Ok(Self {
            _owner: Arc::new(Owner(shared.clone())),
            shared,
        })
    }

    /// Queues a request; it joins the running batch at a coming step.
    ///
    /// # Errors
    /// [`Error::QueueFull`] when `max_queue` requests wait; [`Error::InvalidConfig`] for bad
    /// settings, an empty prompt, or stop strings without a tokenizer;
    /// [`slm_core::Error::TokenOutOfVocab`] and [`slm_core::Error::ContextOverflow`] (a prompt
    /// longer than the context is refused, never cut); [`Error::PromptTooLarge`] when the
    /// whole key/value pool could not hold it; [`Error::EngineStopped`].
    pub fn submit(&self, request: Request) -> Result<RequestStream> {
        self.check_prompt(&request.prompt, 1)?;
        self.check_adapter(request.adapter)?;
        let mut decoding = Decoding::new(&request.config, &request.prompt)?;
        if let Some(g) = &request.grammar {
            decoding = decoding.with_grammar(g.start());
        }
        self.enqueue(|id, tx| {
            Sequence::new(id, request.prompt, decoding, tx).with_adapter(request.adapter)
        })
    }

    /// Refuses an adapter the model does not hold.
    fn check_adapter(&self, adapter: Option<AdapterId>) -> Result<()> {
        match adapter {
            Some(AdapterId(a)) if a >= self.shared.model.adapters().len() => {
                Err(Error::InvalidConfig(format!(
                    "no adapter {a}: the model holds {}",
                    self.shared.model.adapters().len()
                )))
            }
            _ => Ok(()),
        }
    }

    /// Queues a label-scoring request: the total log-probability of each of `candidates`
    /// (token ids) after `prompt`, batched with everything else. The prompt is fed once and
    /// each candidate longer than a token continues from a fork of it (its blocks shared).
    /// The stream carries [`Event::Scored`] then `Finished`; [`RequestStream::wait`] gives
    /// [`Completion::scores`].
    ///
    /// # Errors
    /// As [`Engine::submit`], and [`Error::InvalidConfig`] without candidates or with an
    /// empty one.
    pub fn score(&self, prompt: Vec<u32>, candidates: Vec<Vec<u32>>) -> Result<RequestStream> {
        self.score_with(None, prompt, candidates)
    }

    /// [`Engine::score`] with the model's adapter `adapter` (`None`: the base model).
    ///
    /// # Errors
    /// As [`Engine::score`], and [`Error::InvalidConfig`] for an adapter the model does not
    /// hold.
    pub fn score_with(
        &self,
        adapter: Option<AdapterId>,
        prompt: Vec<u32>,
        candidates: Vec<Vec<u32>>,
    ) -> Result<RequestStream> {
        self.check_adapter(adapter)?;
        if candidates.is_empty() || candidates.iter().any(Vec::is_empty) {
            return Err(Error::InvalidConfig(
                "label scoring needs candidates, none empty".into(),
            ));
        }
        let vocab = self.shared.model.config().vocab_size;
        if let Some(&id) = candidates.iter().flatten().find(|&&t| t as usize >= vocab) {
            return Err(slm_core::Error::TokenOutOfVocab {
                id,
                vocab_size: vocab,
            }
            .into());
        }
        let longest = candidates.iter().map(Vec::len).max().unwrap_or(1);
        self.check_prompt(&prompt, longest)?;
        let decoding = Decoding::new(&GenerationConfig::default(), &prompt)?;
        self.enqueue(|id, tx| {
            Sequence::new(id, prompt, decoding, tx)
                .scoring(candidates)
                .with_adapter(adapter)
        })
    }

    /// Refuses prompts that could never run: empty, out of the vocabulary, beyond the context
    /// with `extra` more tokens, or beyond the whole pool.
    fn check_prompt(&self, prompt: &[u32], extra: usize) -> Result<()> {
        let config = self.shared.model.config();
        if prompt.is_empty() {
            return Err(Error::InvalidConfig("the prompt is empty".into()));
        }
        if let Some(&id) = prompt.iter().find(|&&t| t as usize >= config.vocab_size) {
            return Err(slm_core::Error::TokenOutOfVocab {
                id,
                vocab_size: config.vocab_size,
            }
            .into());
        }
        if prompt.len() + extra - 1 > config.context_length() {
            return Err(slm_core::Error::ContextOverflow {
                tokens: prompt.len() + extra - 1,
                max: config.context_length(),
            }
            .into());
        }
        let kv = self.shared.model.kv_usage();
        if kv.blocks_for(prompt.len() + extra) > kv.total_blocks {
            return Err(Error::PromptTooLarge {
                tokens: prompt.len(),
                capacity: kv.total_blocks * kv.block_size,
            });
        }
        Ok(())
    }

    /// Counts a request against the queue bound and hands it to the engine thread.
    fn enqueue(
        &self,
        make: impl FnOnce(RequestId, tokio::sync::mpsc::UnboundedSender<Event>) -> Sequence,
    ) -> Result<RequestStream> {
        let max = self.shared.config.max_queue;
        if self
            .shared
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (w < max).then_some(w + 1)
            })
            .is_err()
        {
            return Err(Error::QueueFull { capacity: max });
        }
        let id = RequestId(self.shared.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = unbounded_channel();
        let seq = make(id, tx);
        if !self.shared.send(Command::Submit(Box::new(seq))) {
            self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::EngineStopped);
        }
        Ok(RequestStream {
            id,
            rx,
            done: false,
            shared: Arc::downgrade(&self.shared),
        })
    }

    /// Cancels a request (its stream then ends with [`FinishReason::Cancelled`]).
    pub fn cancel(&self, id: RequestId) {
        self.shared.send(Command::Cancel(id));
    }

    /// Releases the finished sequences kept for prefix sharing (their blocks go back).
    pub fn clear_prefix_cache(&self) {
        self.shared.send(Command::ClearPrefixCache);
    }

    /// A snapshot of the engine's state and counters (refreshed after every step).
    pub fn stats(&self) -> EngineStats {
        let mut s = self
            .shared
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        s.waiting = s.waiting.max(self.shared.waiting.load(Ordering::Acquire));
        s
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// The model it serves.
    pub fn model(&self) -> &Arc<dyn BatchedLm> {
        &self.shared.model
    }

    /// Cancels every request, releases every block and stops the thread (also done when the
    /// last handle is dropped).
    pub fn shutdown(&self) {
        stop(&self.shared);
    }
}

/// The engine thread: take commands, step while there is work, sleep when idle.
fn run(s: &mut Scheduler, rx: &mpsc::Receiver<Command>, shared: &Shared) {
    let publish = |s: &Scheduler| {
        *shared.stats.lock().unwrap_or_else(|e| e.into_inner()) = s.stats.clone();
    };
    let handle = |s: &mut Scheduler, c: Command| -> bool {
        match c {
            Command::Submit(seq) => s.submit(*seq),
            Command::Cancel(id) => s.cancel(id),
            Command::ClearPrefixCache => s.clear_prefix_cache(),
            Command::Shutdown => return false,
        }
        true
    };
    'outer: loop {
        if s.is_idle() {
            publish(s);
            match rx.recv() {
                Ok(c) => {
                    if !handle(s, c) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        while let Ok(c) = rx.try_recv() {
            if !handle(s, c) {
                break 'outer;
            }
        }
        s.step();
        publish(s);
    }
    s.cancel_all();
    publish(s);
}

/// The events of one request (see the module docs). Dropping it before the end cancels the
/// request.
#[derive(Debug)]
pub struct RequestStream {
    id: RequestId,
    rx: UnboundedReceiver<Event>,
    done: bool,
    shared: std::sync::Weak<Shared>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl RequestStream {
    /// The request's id (for [`Engine::cancel`]).
    pub fn id(&self) -> RequestId {
        self.id
    }

    fn seen(&mut self, e: Option<Event>) -> Option<Event> {
        if matches!(e, None | Some(Event::Finished { .. } | Event::Failed(_))) {
            self.done = true;
        }
        e
    }

    /// The next event, awaiting it; `None` after the last.
    pub async fn recv(&mut self) -> Option<Event> {
        let e = self.rx.recv().await;
        self.seen(e)
    }

    /// The next event, blocking the thread (not inside an async runtime); `None` after the
    /// last.
    pub fn blocking_recv(&mut self) -> Option<Event> {
        let e = self.rx.blocking_recv();
        self.seen(e)
    }

    /// Blocks until the request ends and returns everything it produced.
    ///
    /// # Errors
    /// [`Error::RequestFailed`] when the model failed; [`Error::EngineStopped`] when the
    /// engine went away first.
    pub fn wait(mut self) -> Result<Completion> {
        let mut c = Completion::default();
        loop {
            if let Some(done) = c.absorb(self.blocking_recv()) {
                return done.map(|()| c);
            }
        }
    }

    /// Awaits the end of the request and returns everything it produced (the async
    /// [`RequestStream::wait`]).
    ///
    /// # Errors
    /// As [`RequestStream::wait`].
    pub async fn completion(mut self) -> Result<Completion> {
        let mut c = Completion::default();
        loop {
            if let Some(done) = c.absorb(self.recv().await) {
                return done.map(|()| c);
            }
        }
    }
}

impl Default for Completion {
    fn default() -> Self {
        Self {
            ids: Vec::new(),
            text: String::new(),
            logprobs: Vec::new(),
            scores: None,
            reason: FinishReason::Cancelled,
            metrics: RequestMetrics::default(),
        }
    }
}

impl Completion {
    /// Adds an event; `Some` once the request has ended (`Ok` for a finish).
    fn absorb(&mut self, event: Option<Event>) -> Option<Result<()>> {
        match event {
            Some(Event::Token {
                token,
                text,
                logprob,
            }) => {
                self.ids.push(token);
                self.text.push_str(&text);
                self.logprobs.extend(logprob);
                None
            }
            Some(Event::Scored { log_probs }) => {
                self.scores = Some(LabelScores::from_log_probs(log_probs));
                None
            }
            Some(Event::Finished { reason, metrics }) => {
                self.reason = reason;
                self.metrics = metrics;
                Some(Ok(()))
            }
            Some(Event::Failed(msg)) => Some(Err(Error::RequestFailed(msg))),
            None => Some(Err(Error::EngineStopped)),
        }
    }
}

impl Drop for RequestStream {
    fn drop(&mut self) {
        if !self.done
            && let Some(shared) = self.shared.upgrade()
        {
            shared.send(Command::Cancel(self.id));
        }
    }
}
