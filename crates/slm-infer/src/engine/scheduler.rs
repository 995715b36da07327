//! The engine's scheduler: which sequences run in the next step, with how many tokens.
//!
//! Iteration-level (continuous) batching as vLLM schedules it: every step first admits waiting
//! requests while key/value blocks allow (first come, first served), then gives each running
//! sequence its next chunk within a token budget (decode tokens first, so a long prompt never
//! stalls decoding), runs one [`BatchedLm::step`] and feeds each sequence's logits to its
//! [`Decoding`]. When blocks run out, finished sequences kept for prefix sharing are evicted
//! first (least recently used), then the newest running sequence is preempted: its blocks go
//! back to the pool and it waits at the head of the queue to be recomputed.
//!
//! Batch invariance: prefill chunks end at fixed multiples of `prefill_chunk` positions, so a
//! sequence sees the same chunks whatever shares its steps; its sampler is its own. Whether the
//! logits are bitwise the same also depends on the model: the fast path's kernels compute each
//! token alike in any batch and any chunking.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use slm_core::LogitsScope;
use slm_core::step::{AdapterId, BatchedLm, SeqChunk, SeqId};
use slm_core::tokenizer::Tokenizer;
use tokio::sync::mpsc::UnboundedSender;

use slm_energy::Energy;

use super::metering::{StepMeter, accumulate, share};
use super::metrics::{EngineStats, RequestMetrics, secs};
use super::{EngineConfig, Event, RequestId};
use crate::classify::{log_softmax_at, log_sum_exp};
use crate::decoding::{Decoding, FinishReason};

/// A request inside the engine, waiting or running.
pub(crate) struct Sequence {
    pub(crate) id: RequestId,
    /// Prompt then generated tokens.
    tokens: Vec<u32>,
    prompt_len: usize,
    /// The model-side sequence while it holds blocks.
    seq: Option<SeqId>,
    /// Tokens the model-side sequence holds.
    fed: usize,
    decoding: Decoding,
    events: UnboundedSender<Event>,
    arrived: Instant,
    scheduled: Option<Instant>,
    last_token: Option<Instant>,
    /// Its share of the steps' energy (`Some(None)`: a meter failed, so unknown).
    energy: Option<Option<Energy>>,
    /// Set for a label-scoring request instead of generation.
    scoring: Option<Scoring>,
    /// The LoRA adapter it runs with (`None`: the base model).
    adapter: Option<AdapterId>,
    metrics: RequestMetrics,
}

/// A scoring request's progress: the prompt once, then one fork per candidate longer than a
/// token, fed its tokens but the last with logits for every one.
pub(crate) struct Scoring {
    candidates: Vec<Vec<u32>>,
    log_probs: Vec<f64>,
    /// Candidates whose fork is still to be made (at the next step's planning, where blocks
    /// can be freed for it).
    pending: Vec<usize>,
    /// Forks still to feed: (candidate, model sequence).
    children: Vec<(usize, SeqId)>,
    /// The prompt's last row has scored every candidate's first token.
    prompt_scored: bool,
}

impl Scoring {
    pub(crate) fn new(candidates: Vec<Vec<u32>>) -> Self {
        Self {
            log_probs: vec![0.0; candidates.len()],
            candidates,
            pending: Vec::new(),
            children: Vec::new(),
            prompt_scored: false,
        }
    }
}

impl Sequence {
    pub(crate) fn new(
        id: RequestId,
        prompt: Vec<u32>,
        decoding: Decoding,
        events: UnboundedSender<Event>,
    ) -> Self {
        Self {
            id,
            prompt_len: prompt.len(),
            metrics: RequestMetrics {
                prompt_tokens: prompt.len(),
                ..Default::default()
            },
            tokens: prompt,
            seq: None,
            fed: 0,
            decoding,
            events,
            arrived: Instant::now(),
            scheduled: None,
            last_token: None,
            energy: None,
            scoring: None,
            adapter: None,
        }
    }

    /// Runs it with `adapter`.
    pub(crate) fn with_adapter(mut self, adapter: Option<AdapterId>) -> Self {
        self.adapter = adapter;
        self
    }

    /// Makes this a scoring request over `candidates`.
    pub(crate) fn scoring(mut self, candidates: Vec<Vec<u32>>) -> Self {
        self.scoring = Some(Scoring::new(candidates));
        self
    }
}

/// A finished sequence kept for its key/value blocks (computed with `adapter`: only
/// sequences of the same adapter share them).
struct CachedPrefix {
    seq: SeqId,
    tokens: Vec<u32>,
    adapter: Option<AdapterId>,
    last_used: u64,
}

pub(crate) struct Scheduler {
    model: Arc<dyn BatchedLm>,
    tokenizer: Option<Arc<Tokenizer>>,
    config: EngineConfig,
    pub(crate) waiting: VecDeque<Sequence>,
    running: Vec<Sequence>,
    prefixes: Vec<CachedPrefix>,
    clock: u64,
    /// Requests not yet admitted once (the queue bound; shared with the handle).
    queued: Arc<AtomicUsize>,
    meter: StepMeter,
    energy: Option<Option<Energy>>,
    pub(crate) stats: EngineStats,
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Scheduler {
    pub(crate) fn new(
        model: Arc<dyn BatchedLm>,
        tokenizer: Option<Arc<Tokenizer>>,
        config: EngineConfig,
        queued: Arc<AtomicUsize>,
        meter: StepMeter,
    ) -> Self {
        let stats = EngineStats::new(model.kv_usage());
        Self {
            model,
            tokenizer,
            config,
            waiting: VecDeque::new(),
            running: Vec::new(),
            prefixes: Vec::new(),
            clock: 0,
            queued,
            meter,
            energy: None,
            stats,
        }
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    pub(crate) fn submit(&mut self, seq: Sequence) {
        self.waiting.push_back(seq);
    }

    /// Ends a request wherever it is (unknown or finished ids are ignored).
    pub(crate) fn cancel(&mut self, id: RequestId) {
        if let Some(i) = self.waiting.iter().position(|s| s.id == id) {
            let s = self.waiting.remove(i).expect("found");
            self.finish(s, FinishReason::Cancelled);
        } else if let Some(i) = self.running.iter().position(|s| s.id == id) {
            let s = self.running.remove(i);
            self.finish(s, FinishReason::Cancelled);
        }
    }

    /// Cancels everything and releases every block (shutdown).
    pub(crate) fn cancel_all(&mut self) {
        while let Some(s) = self.waiting.pop_front() {
            self.finish(s, FinishReason::Cancelled);
        }
        while let Some(s) = self.running.pop() {
            self.finish(s, FinishReason::Cancelled);
        }
        self.clear_prefix_cache();
    }

    /// Releases every cached prefix.
    pub(crate) fn clear_prefix_cache(&mut self) {
        for p in self.prefixes.drain(..) {
            self.model.release(p.seq);
        }
        self.refresh_stats();
    }

    fn refresh_stats(&mut self) {
        let kv = self.model.kv_usage();
        self.stats.running = self.running.len();
        self.stats.waiting = self.waiting.len();
        self.stats.kv_free_blocks = kv.free_blocks;
        self.stats.kv_total_blocks = kv.total_blocks;
        self.stats.prefix_cache_entries = self.prefixes.len();
    }

    /// Releases a scoring request's forks (keeping its scores).
    fn reset_scoring_children(&mut self, s: &mut Sequence) {
        if let Some(sc) = &mut s.scoring {
            for (_, child) in sc.children.drain(..) {
                self.model.release(child);
            }
        }
    }

    /// Releases a scoring request's forks and restarts its scoring (after preemption).
    fn reset_scoring(&mut self, s: &mut Sequence) {
        self.reset_scoring_children(s);
        if let Some(sc) = &mut s.scoring {
            sc.pending.clear();
            sc.prompt_scored = false;
            sc.log_probs.iter_mut().for_each(|l| *l = 0.0);
        }
    }

    /// Sends the end of a request, returns its blocks (or keeps them as a prefix) and counts it.
    fn finish(&mut self, mut s: Sequence, reason: FinishReason) {
        self.reset_scoring_children(&mut s);
        s.decoding.end(reason);
        if let Some(seq) = s.seq.take() {
            self.keep_or_release(seq, &s.tokens[..s.fed], s.adapter);
        }
        self.record_end(&mut s);
        self.stats.finished[match reason {
            FinishReason::Stop => 0,
            FinishReason::Length => 1,
            FinishReason::Cancelled => 2,
        }] += 1;
        let _ = s.events.send(Event::Finished {
            reason,
            metrics: s.metrics,
        });
    }

    fn fail(&mut self, mut s: Sequence, error: String) {
        self.reset_scoring_children(&mut s);
        if let Some(seq) = s.seq.take() {
            self.model.release(seq);
        }
        self.record_end(&mut s);
        self.stats.finished[3] += 1;
        let _ = s.events.send(Event::Failed(error));
    }

    /// Marks `s` as having left the queue (it no longer counts against `max_queue`); false if it
    /// already had.
    fn leave_queue(&self, s: &mut Sequence) -> bool {
        if s.scheduled.is_some() {
            return false;
        }
        self.queued.fetch_sub(1, Ordering::AcqRel);
        s.scheduled = Some(Instant::now());
        true
    }

    fn record_end(&mut self, s: &mut Sequence) {
        self.leave_queue(s);
        s.metrics.e2e_s = secs(s.arrived.elapsed());
        if let Some(Some(e)) = &s.energy {
            s.metrics.energy_joules = Some(e.joules());
            s.metrics.energy_method = Some(e.method().to_string());
        }
        s.metrics.completion_tokens = s.decoding.ids().len();
        self.stats.e2e.observe(s.metrics.e2e_s);
    }

    fn keep_or_release(&mut self, seq: SeqId, tokens: &[u32], adapter: Option<AdapterId>) {
        let bs = self.model.kv_usage().block_size;
        if self.config.prefix_cache_entries == 0 || tokens.len() < bs {
            self.model.release(seq);
            return;
        }
        self.clock += 1;
        self.prefixes.push(CachedPrefix {
            seq,
            tokens: tokens.to_vec(),
            adapter,
            last_used: self.clock,
        });
        while self.prefixes.len() > self.config.prefix_cache_entries {
            self.evict_one();
        }
    }

    /// Drops the least recently used cached prefix; false when there is none.
    fn evict_one(&mut self) -> bool {
        let Some(i) = (0..self.prefixes.len()).min_by_key(|&i| self.prefixes[i].last_used) else {
            return false;
        };
        let p = self.prefixes.swap_remove(i);
        self.model.release(p.seq);
        true
    }

    /// Frees blocks until `needed` are free: cached prefixes first. False if still short.
    fn make_room(&mut self, needed: usize) -> bool {
        while self.model.kv_usage().free_blocks < needed {
            if !self.evict_one() {
                return false;
            }
        }
        true
    }

    /// Gives a waiting sequence its model-side sequence, sharing the longest cached or running
    /// prefix of at least one block computed with the same adapter. `Ok(None)` when blocks do
    /// not allow it yet.
    fn attach(&mut self, s: &mut Sequence) -> slm_core::Result<Option<usize>> {
        let kv = self.model.kv_usage();
        // The last token is always fed, so that the step returns its logits.
        let limit = s.tokens.len() - 1;
        let mut best: Option<(usize, SeqId, Option<usize>)> = None;
        for (i, p) in self.prefixes.iter().enumerate() {
            if p.adapter != s.adapter {
                continue;
            }
            let n = common_prefix(&p.tokens, &s.tokens[..limit]);
            if n >= kv.block_size && best.is_none_or(|b| n > b.0) {
                best = Some((n, p.seq, Some(i)));
            }
        }
        for r in self.running.iter().filter(|r| r.adapter == s.adapter) {
            if let Some(seq) = r.seq {
                let n = common_prefix(&r.tokens[..r.fed], &s.tokens[..limit]);
                if n >= kv.block_size && best.is_none_or(|b| n > b.0) {
                    best = Some((n, seq, None));
                }
            }
        }
        let shared = best.map_or(0, |b| b.0);
        // Blocks for the rest of the prompt and the first new token; shared full blocks are free.
        let needed = kv.blocks_for(s.tokens.len() + 1) - shared / kv.block_size;
        if let Some((_, _, Some(i))) = best {
            self.clock += 1;
            self.prefixes[i].last_used = self.clock;
        }
        if !self.make_room(needed) {
            return Ok(None);
        }
        let forked = best.and_then(|(n, src, _)| Some((n, self.model.fork(src, n).ok()?)));
        let seq = match forked {
            Some((n, seq)) => {
                s.fed = n;
                seq
            }
            None => {
                s.fed = 0;
                self.model.add_sequence_with(s.adapter)?
            }
        };
        s.seq = Some(seq);
        Ok(Some(s.fed))
    }

    /// Moves waiting sequences into the running batch while blocks allow.
    fn admit(&mut self) {
        while self.running.len() < self.config.max_running {
            let Some(mut s) = self.waiting.pop_front() else {
                break;
            };
            let shared = match self.attach(&mut s) {
                Ok(Some(shared)) => shared,
                Ok(None) => {
                    self.waiting.push_front(s);
                    break;
                }
                Err(e) => {
                    self.fail(s, e.to_string());
                    continue;
                }
            };
            if self.leave_queue(&mut s) {
                let now = s.scheduled.expect("just scheduled");
                s.metrics.queue_time_s = secs(now - s.arrived);
                self.stats.queue_time.observe(s.metrics.queue_time_s);
                // Prompt-cache accounting covers the first admission only.
                self.stats.prefix_cache_queries += s.prompt_len as u64;
                self.stats.prefix_cache_hits += shared.min(s.prompt_len) as u64;
                s.metrics.cached_prompt_tokens = shared.min(s.prompt_len);
            }
            self.running.push(s);
        }
    }

    /// Preempts the newest running sequence: its blocks go back, it waits first in line.
    fn preempt_newest(&mut self) -> bool {
        let Some(mut s) = self.running.pop() else {
            return false;
        };
        self.reset_scoring(&mut s);
        if let Some(seq) = s.seq.take() {
            self.model.release(seq);
        }
        s.fed = 0;
        s.metrics.preemptions += 1;
        self.stats.preemptions += 1;
        self.waiting.push_front(s);
        true
    }

    /// The next chunk of running sequence `i`: `(start, end)` in its tokens.
    fn next_chunk(&self, i: usize) -> (usize, usize) {
        let s = &self.running[i];
        let c = self.config.prefill_chunk.max(1);
        let end = ((s.fed / c + 1) * c).min(s.tokens.len());
        (s.fed, end)
    }

    /// Runs one step; false when there was nothing to run.
    pub(crate) fn step(&mut self) -> bool {
        self.admit();
        if self.running.is_empty() {
            self.refresh_stats();
            return false;
        }
        loop {
            // Scoring forks first: each needs a block for its copy of the prompt's last one.
            match self.fork_pending() {
                Forks::Done => {}
                Forks::Retry => continue,
                Forks::Failed(i, msg) => {
                    let s = self.running.remove(i);
                    self.fail(s, msg);
                    if self.running.is_empty() {
                        break;
                    }
                    continue;
                }
            }
            let (plan, needed) = self.plan();
            if needed > self.model.kv_usage().free_blocks
                && !self.make_room(needed)
                && self.running.len() > 1
            {
                self.preempt_newest();
                continue;
            }
            let meter_start = self.meter.read();
            let chunks: Vec<SeqChunk<'_>> = plan.iter().map(|w| self.chunk(w)).collect();
            match self.model.step(&chunks) {
                Ok(out) => {
                    drop(chunks);
                    self.stats.steps += 1;
                    let energy = meter_start.and_then(|m| self.meter.since(&m));
                    self.charge(&plan, energy);
                    self.after_step(&plan, &out);
                }
                Err(slm_core::Error::KvCacheFull { .. }) if self.running.len() > 1 => {
                    drop(chunks);
                    self.preempt_newest();
                    continue;
                }
                Err(e) => {
                    drop(chunks);
                    let msg = e.to_string();
                    let mut failed: Vec<usize> = plan.iter().map(|w| w.i).collect();
                    failed.sort_unstable();
                    failed.dedup();
                    for i in failed.into_iter().rev() {
                        let s = self.running.remove(i);
                        self.fail(s, msg.clone());
                    }
                }
            }
            break;
        }
        self.refresh_stats();
        true
    }

    /// This step's work and the blocks it needs: decode tokens first, then prefill chunks and
    /// scoring forks in arrival order, within the token budget.
    fn plan(&self) -> (Vec<Work>, usize) {
        let mut plan: Vec<Work> = Vec::new();
        let mut budget = self.config.max_batch_tokens.max(1);
        let bs = self.model.kv_usage().block_size;
        let mut needed = 0;
        for decode_pass in [true, false] {
            for (i, s) in self.running.iter().enumerate() {
                let items: Vec<Work> = match &s.scoring {
                    Some(sc) if sc.prompt_scored => (0..sc.children.len())
                        .map(|k| Work {
                            i,
                            start: s.prompt_len,
                            end: s.prompt_len + sc.candidates[sc.children[k].0].len() - 1,
                            child: Some(k),
                        })
                        .collect(),
                    _ => {
                        let (start, end) = self.next_chunk(i);
                        vec![Work {
                            i,
                            start,
                            end,
                            child: None,
                        }]
                    }
                };
                for w in items {
                    let is_decode = w.child.is_none()
                        && w.end - w.start == 1
                        && w.start + 1 == s.tokens.len()
                        && s.scoring.is_none();
                    if is_decode != decode_pass || (w.end - w.start > budget && !plan.is_empty()) {
                        continue;
                    }
                    budget = budget.saturating_sub(w.end - w.start);
                    needed += match w.child {
                        // A fork shares the prompt's full blocks and copies its last.
                        Some(_) => w.end.div_ceil(bs) - w.start / bs,
                        None => w.end.div_ceil(bs) - w.start.div_ceil(bs),
                    };
                    plan.push(w);
                }
            }
        }
        (plan, needed)
    }

    /// The model-side chunk of a piece of work.
    fn chunk(&self, w: &Work) -> SeqChunk<'_> {
        let s = &self.running[w.i];
        match (w.child, &s.scoring) {
            (Some(k), Some(sc)) => {
                let (c, seq) = sc.children[k];
                let cand = &sc.candidates[c];
                SeqChunk {
                    seq,
                    tokens: &cand[..cand.len() - 1],
                    logits: Some(LogitsScope::All),
                }
            }
            _ => SeqChunk {
                seq: s.seq.expect("running sequences hold a sequence"),
                tokens: &s.tokens[w.start..w.end],
                logits: (w.end == s.tokens.len()).then_some(LogitsScope::Last),
            },
        }
    }

    /// Makes the forks scoring requests wait for, freeing blocks (cached prefixes, then the
    /// newest sequence) when the pool is short.
    fn fork_pending(&mut self) -> Forks {
        for i in 0..self.running.len() {
            let s = &self.running[i];
            let (Some(sc), Some(seq)) = (&s.scoring, s.seq) else {
                continue;
            };
            let (prompt_len, pending) = (s.prompt_len, sc.pending.clone());
            for c in pending {
                let child = loop {
                    match self.model.fork(seq, prompt_len) {
                        Ok(child) => break child,
                        Err(slm_core::Error::KvCacheFull { needed, .. }) => {
                            if self.make_room(needed) {
                                continue;
                            }
                            if self.running.len() > 1 {
                                self.preempt_newest();
                                return Forks::Retry;
                            }
                            return Forks::Failed(i, "scoring: the key/value pool is full".into());
                        }
                        Err(e) => return Forks::Failed(i, format!("scoring: {e}")),
                    }
                };
                let sc = self.running[i].scoring.as_mut().expect("scoring");
                sc.pending.retain(|&p| p != c);
                sc.children.push((c, child));
            }
        }
        Forks::Done
    }

    /// Splits a step's energy between its sequences by the tokens each fed.
    fn charge(&mut self, plan: &[Work], energy: Option<Energy>) {
        let tokens: usize = plan.iter().map(|w| w.end - w.start).sum();
        for w in plan {
            let part = energy
                .as_ref()
                .and_then(|e| share(e, (w.end - w.start) as f64 / tokens.max(1) as f64));
            accumulate(&mut self.running[w.i].energy, part);
        }
        accumulate(&mut self.energy, energy);
        self.stats.energy = match &self.energy {
            Some(Some(e)) => Some((e.joules(), e.method().to_string())),
            _ => None,
        };
    }

    /// Adds the rows a scoring request got this step to its candidates' scores.
    fn score_rows(&mut self, i: usize, w: &Work, rows: &[f32], vocab: usize) {
        let s = &mut self.running[i];
        let sc = s.scoring.as_mut().expect("a scoring request");
        match w.child {
            None => {
                // The prompt's last row: every candidate's first token, one normaliser.
                let lse = log_sum_exp(rows);
                for (c, cand) in sc.candidates.iter().enumerate() {
                    sc.log_probs[c] = rows[cand[0] as usize] as f64 - lse;
                }
                sc.prompt_scored = true;
                sc.pending = (0..sc.candidates.len())
                    .filter(|&c| sc.candidates[c].len() > 1)
                    .collect();
            }
            Some(k) => {
                let (c, _) = sc.children[k];
                let cand = &sc.candidates[c];
                for (t, &id) in cand[1..].iter().enumerate() {
                    sc.log_probs[c] += log_softmax_at(&rows[t * vocab..(t + 1) * vocab], id);
                }
            }
        }
    }

    fn after_step(&mut self, plan: &[Work], out: &slm_core::step::StepLogits) {
        let max_ctx = self.model.config().context_length();
        let mut ended: Vec<(usize, End)> = Vec::new();
        let mut fed_children: Vec<(usize, usize)> = Vec::new();
        for (k, w) in plan.iter().enumerate() {
            let i = w.i;
            if self.running[i].scoring.is_some() {
                self.stats.prompt_tokens += (w.end - w.start) as u64;
                match w.child {
                    None => self.running[i].fed = w.end,
                    Some(c) => fed_children.push((i, c)),
                }
                let rows = out.chunk(k);
                if !rows.is_empty() {
                    self.score_rows(i, w, rows, out.vocab);
                }
                continue;
            }
            let s = &mut self.running[i];
            let is_decode = w.start + 1 == s.tokens.len() && w.start >= s.prompt_len;
            if !is_decode {
                self.stats.prompt_tokens += (w.end - w.start) as u64;
            }
            s.fed = w.end;
            let Some(row) = out.last(k) else { continue };
            let emitted = match s.decoding.advance(row, self.tokenizer.as_deref()) {
                Ok(e) => e,
                Err(e) => {
                    ended.push((i, End::Fail(e.to_string())));
                    continue;
                }
            };
            let now = Instant::now();
            match s.last_token {
                None => {
                    let t = secs(now - s.arrived);
                    s.metrics.ttft_s = Some(t);
                    self.stats.ttft.observe(t);
                }
                Some(prev) => {
                    let t = secs(now - prev);
                    s.metrics.inter_token_s.push(t);
                    self.stats.inter_token.observe(t);
                }
            }
            s.last_token = Some(now);
            self.stats.generation_tokens += 1;
            s.tokens.push(emitted.token);
            let mut finish = emitted.finish;
            if finish.is_none() && s.tokens.len() > max_ctx {
                // The chosen token would not fit in the context: the answer ends here.
                finish = Some(FinishReason::Length);
            }
            let open = s
                .events
                .send(Event::Token {
                    token: emitted.token,
                    text: emitted.text,
                    logprob: emitted.logprob,
                })
                .is_ok();
            if let Some(r) = finish {
                ended.push((i, End::Finish(r)));
            } else if !open {
                // The receiver is gone: the client left.
                ended.push((i, End::Finish(FinishReason::Cancelled)));
            }
        }
        // Fed forks are done: release them (highest index first, so indices stay valid).
        fed_children.sort_unstable_by(|a, b| b.cmp(a));
        for (i, k) in fed_children {
            if let Some(sc) = self.running[i].scoring.as_mut() {
                let (_, child) = sc.children.remove(k);
                self.model.release(child);
            }
        }
        // Scoring requests with every candidate scored are done.
        for (i, s) in self.running.iter().enumerate() {
            if let Some(sc) = &s.scoring
                && sc.prompt_scored
                && sc.children.is_empty()
                && sc.pending.is_empty()
                && !ended.iter().any(|e| e.0 == i)
            {
                let _ = s.events.send(Event::Scored {
                    log_probs: sc.log_probs.clone(),
                });
                ended.push((i, End::Finish(FinishReason::Stop)));
            }
        }
        ended.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
        for (i, end) in ended {
            let s = self.running.remove(i);
            match end {
                End::Finish(r) => self.finish(s, r),
                End::Fail(msg) => self.fail(s, msg),
            }
        }
    }
}

/// What [`Scheduler::fork_pending`] managed.
enum Forks {
    /// Every pending fork exists.
    Done,
    /// A sequence was preempted to make room: plan again.
    Retry,
    /// Running sequence `.0` cannot get its forks: fail it.
    Failed(usize, String),
}

/// How a running sequence ended in a step.
enum End {
    Finish(FinishReason),
    Fail(String),
}

/// One piece of a step: tokens `start..end` of running sequence `i`, or (for a scoring
/// request) the `child`-th fork's candidate tokens.
#[derive(Debug, Clone, Copy)]
struct Work {
    i: usize,
    start: usize,
    end: usize,
    child: Option<usize>,
}
