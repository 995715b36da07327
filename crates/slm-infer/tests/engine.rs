//! The continuous-batching engine on real checkpoints (qwen2-tiny through the CPU fast path and
//! the burn decoder): batch invariance with requests joining and leaving mid-run, preemption
//! under a small key/value pool, prefix sharing, cancellation, the queue bound, typed refusals,
//! text and stop strings, and no leaked blocks after any of it.

use std::sync::Arc;
use std::time::Duration;

mod common;

use common::*;
use slm_core::fast::FastDecoderConfig;
use slm_core::prelude::*;
use slm_core::step::PerSequence;
use slm_infer::engine::{Completion, Engine, EngineConfig, Event, Request};
use slm_infer::{Error, FinishReason, GenerationConfig, SamplingParams, generate};

/// Prompts of different lengths (one spans several prefill chunks of 16) and settings: greedy,
/// seeded sampling with filters, penalties and logprobs.
fn workload() -> Vec<Request> {
    let prompt = |n: usize, salt: u32| -> Vec<u32> {
        (0..n as u32)
            .map(|i| (i * 37 + salt * 101 + 5) % 700 + 2)
            .collect()
    };
    let sampled = |seed| SamplingParams {
        temperature: 0.9,
        top_k: 50,
        top_p: 0.95,
        min_p: 0.02,
        seed,
        ..Default::default()
    };
    let penalised = SamplingParams {
        temperature: 0.7,
        repetition_penalty: 1.3,
        presence_penalty: 0.5,
        frequency_penalty: 0.2,
        seed: 9,
        ..Default::default()
    };
    let cfg = |sampling: SamplingParams, n: usize| GenerationConfig {
        max_new_tokens: n,
        sampling,
        logprobs: Some(3),
        ..Default::default()
    };
    vec![
        Request::new(prompt(5, 1), cfg(SamplingParams::greedy(), 12)),
        Request::new(prompt(40, 2), cfg(sampled(1), 9)),
        Request::new(prompt(2, 3), cfg(sampled(2), 15)),
        Request::new(prompt(23, 4), cfg(penalised, 6)),
        Request::new(prompt(17, 5), cfg(SamplingParams::greedy(), 20)),
    ]
}

fn config() -> EngineConfig {
    EngineConfig {
        prefill_chunk: 16,
        max_batch_tokens: 64,
        ..Default::default()
    }
}

fn alone(engine: &Engine, requests: &[Request]) -> Vec<Completion> {
    requests
        .iter()
        .map(|r| engine.submit(r.clone()).unwrap().wait().unwrap())
        .collect()
}

/// Submits request 0, waits for its third token, then the rest one after another while it runs.
fn together(engine: &Engine, requests: &[Request]) -> Vec<Completion> {
    let mut first = engine.submit(requests[0].clone()).unwrap();
    let mut early = Vec::new();
    while early.len() < 3 {
        match first.blocking_recv().unwrap() {
            e @ Event::Token { .. } => early.push(e),
            other => panic!("{other:?}"),
        }
    }
    let rest: Vec<_> = requests[1..]
        .iter()
        .map(|r| {
            std::thread::sleep(Duration::from_millis(2));
            engine.submit(r.clone()).unwrap()
        })
        .collect();
    let mut head = first.wait().unwrap();
    for e in early.into_iter().rev() {
        if let Event::Token {
            token,
            text,
            logprob,
        } = e
        {
            head.ids.insert(0, token);
            head.text.insert_str(0, &text);
            head.logprobs.insert(0, logprob.unwrap());
        }
    }
    std::iter::once(head)
        .chain(rest.into_iter().map(|s| s.wait().unwrap()))
        .collect()
}

fn assert_same(a: &[Completion], b: &[Completion]) {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.ids, y.ids, "request {i}: ids");
        assert_eq!(x.logprobs, y.logprobs, "request {i}: logprobs (bitwise)");
        assert_eq!(x.reason, y.reason, "request {i}");
    }
}

/// The stats once the engine has nothing running or waiting.
fn settled(engine: &Engine) -> slm_infer::engine::EngineStats {
    for _ in 0..400 {
        let s = engine.stats();
        if s.running == 0 && s.waiting == 0 {
            return s;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the engine did not settle: {:?}", engine.stats())
}

fn assert_no_leaks(engine: &Engine) {
    engine.clear_prefix_cache();
    // Stats are published after each command batch; wait for the engine to go idle.
    for _ in 0..200 {
        let s = engine.stats();
        if s.running == 0 && s.waiting == 0 && s.kv_free_blocks == s.kv_total_blocks {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let kv = engine.model().kv_usage();
    assert_eq!(kv.free_blocks, kv.total_blocks, "blocks leaked");
}

#[test]
fn each_request_gets_what_it_gets_alone_whatever_shares_its_steps() {
    let requests = workload();
    let engine = Engine::start(Arc::new(qwen2_fast(256)), None, config()).unwrap();
    let single = alone(&engine, &requests);
    let batched = together(&engine, &requests);
    assert_same(&single, &batched);
    // The greedy ones are the argmax chain of the plain generation loop.
    let model = qwen2_fast(256);
    for i in [0, 4] {
        let want = generate(&model, &requests[i].prompt, &requests[i].config, false).unwrap();
        assert_eq!(single[i].ids, want.ids, "request {i} vs generate");
        assert_eq!(single[i].logprobs, want.logprobs);
    }
    let s = settled(&engine);
    assert!(s.steps > 0 && s.generation_tokens == 2 * 62, "{s:?}");
    assert_eq!(s.finished[1], 10, "all ended by length");
    assert_eq!((s.ttft.count(), s.inter_token.count()), (10, 2 * 57));
    assert_no_leaks(&engine);
}

#[test]
fn a_small_pool_preempts_and_recomputes_without_changing_outputs() {
    let requests = workload();
    let roomy = Engine::start(Arc::new(qwen2_fast(256)), None, config()).unwrap();
    let want = alone(&roomy, &requests);
    // 8 blocks hold 128 tokens: not all five sequences at once.
    let tight = Engine::start(
        Arc::new(qwen2_fast(8)),
        None,
        EngineConfig {
            prefix_cache_entries: 0,
            ..config()
        },
    )
    .unwrap();
    let streams: Vec<_> = requests
        .iter()
        .map(|r| tight.submit(r.clone()).unwrap())
        .collect();
    let got: Vec<_> = streams.into_iter().map(|s| s.wait().unwrap()).collect();
    assert_same(&want, &got);
    let s = settled(&tight);
    assert!(s.preemptions > 0, "expected preemptions: {s:?}");
    assert!(got.iter().map(|c| c.metrics.preemptions).sum::<u32>() as u64 == s.preemptions);
    assert_no_leaks(&tight);
}

#[test]
fn identical_prompt_prefixes_share_blocks() {
    let system: Vec<u32> = (0..40).map(|i| (i * 13 + 7) % 700 + 2).collect();
    let ask = |tail: &[u32]| {
        let mut p = system.clone();
        p.extend_from_slice(tail);
        Request::new(
            p,
            GenerationConfig {
                max_new_tokens: 5,
                ..Default::default()
            },
        )
    };
    let requests = [ask(&[11, 12]), ask(&[13]), ask(&[14, 15, 16])];
    let fresh = Engine::start(
        Arc::new(qwen2_fast(64)),
        None,
        EngineConfig {
            prefix_cache_entries: 0,
            ..config()
        },
    )
    .unwrap();
    let want = alone(&fresh, &requests);
    assert_eq!(settled(&fresh).prefix_cache_hits, 0);

    let shared = Engine::start(Arc::new(qwen2_fast(64)), None, config()).unwrap();
    let got = alone(&shared, &requests);
    assert_same(&want, &got);
    let s = settled(&shared);
    // The second and third find the first's 40 prompt tokens (and more) in the cache.
    assert!(s.prefix_cache_hits >= 80, "{s:?}");
    assert_eq!(s.prefix_cache_queries, 3 * 40 + 2 + 1 + 3);
    assert!(got[1].metrics.cached_prompt_tokens >= 40);
    assert!(s.prefix_cache_entries > 0);
    assert_no_leaks(&shared);
}

#[test]
fn cancelled_and_dropped_requests_free_their_blocks_at_once() {
    // `b` must still be running when its client goes: 2 ms a step keeps its 100 tokens going
    // for 0.2 s however fast the fast path is.
    let slow = SlowSteps {
        model: qwen2_fast(64),
        delay: Duration::from_millis(2),
    };
    let engine = Engine::start(Arc::new(slow), None, config()).unwrap();
    let long = GenerationConfig {
        max_new_tokens: 100,
        ..Default::default()
    };
    let mut a = engine
        .submit(Request::new(vec![3; 30], long.clone()))
        .unwrap();
    let b = engine
        .submit(Request::new(vec![4; 20], long.clone()))
        .unwrap();
    assert!(matches!(a.blocking_recv(), Some(Event::Token { .. })));
    engine.cancel(a.id());
    let mut reason = None;
    while let Some(e) = a.blocking_recv() {
        if let Event::Finished { reason: r, .. } = e {
            reason = Some(r);
        }
    }
    assert_eq!(reason, Some(FinishReason::Cancelled));
    drop(b); // a client that goes away mid-stream
    assert_no_leaks(&engine);
    let s = settled(&engine);
    assert_eq!(s.finished[2], 2, "{s:?}");
}

#[test]
fn the_queue_is_bounded_and_bad_requests_are_refused_by_type() {
    // The running request must outlast the submissions below (2 ms a step: 0.12 s).
    let slow = SlowSteps {
        model: qwen2_fast(16),
        delay: Duration::from_millis(2),
    };
    let engine = Engine::start(
        Arc::new(slow),
        None,
        EngineConfig {
            max_queue: 2,
            max_running: 1,
            ..config()
        },
    )
    .unwrap();
    let long = GenerationConfig {
        max_new_tokens: 60,
        ..Default::default()
    };
    let mut running = engine
        .submit(Request::new(vec![5; 4], long.clone()))
        .unwrap();
    assert!(matches!(running.blocking_recv(), Some(Event::Token { .. })));
    let _w1 = engine
        .submit(Request::new(vec![6; 4], long.clone()))
        .unwrap();
    let _w2 = engine
        .submit(Request::new(vec![7; 4], long.clone()))
        .unwrap();
    let full = engine.submit(Request::new(vec![8; 4], long.clone()));
    assert!(
        matches!(full, Err(Error::QueueFull { capacity: 2 })),
        "{full:?}"
    );

    let max = engine.model().config().max_position_embeddings;
    let refused = |prompt: Vec<u32>| engine.submit(Request::new(prompt, long.clone()));
    assert!(matches!(refused(vec![]), Err(Error::InvalidConfig(_))));
    assert!(matches!(
        refused(vec![2; max + 1]),
        Err(Error::Core(slm_core::Error::ContextOverflow { .. }))
    ));
    assert!(matches!(
        refused(vec![100_000]),
        Err(Error::Core(slm_core::Error::TokenOutOfVocab { .. }))
    ));
    let bad = GenerationConfig {
        sampling: SamplingParams {
            top_p: 2.0,
            ..Default::default()
        },
        ..long.clone()
    };
    assert!(matches!(
        engine.submit(Request::new(vec![1], bad)),
        Err(Error::InvalidConfig(m)) if m.contains("top_p")
    ));
    // 4 blocks of 16 tokens: a 100-token prompt could never run.
    let small_pool = Engine::start(Arc::new(qwen2_fast(4)), None, config()).unwrap();
    assert!(matches!(
        small_pool.submit(Request::new(vec![2; 100], long)),
        Err(Error::PromptTooLarge { .. })
    ));
}

#[test]
fn text_streams_whole_characters_and_stops_at_stop_strings() {
    let tk = Arc::new(qwen2_tiny_tokenizer());
    let engine = Engine::start(Arc::new(qwen2_fast(64)), Some(tk.clone()), config()).unwrap();
    let prompt = tk.encode("Hello, world! The answer is", true).unwrap();
    let free = GenerationConfig {
        max_new_tokens: 24,
        ..Default::default()
    };
    let done = engine
        .submit(Request::new(prompt.clone(), free.clone()))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.text, tk.decode(&done.ids, true).unwrap());
    // Stop at a piece of that text that starts after the first token.
    let cut = done.text.char_indices().nth(done.text.chars().count() / 2);
    let Some((at, _)) = cut.filter(|&(at, _)| at > 0) else {
        panic!("text too short: {:?}", done.text)
    };
    let stop: String = done.text[at..].chars().take(3).collect();
    let want = &done.text[..done.text.find(&stop).unwrap()];
    let stopped = engine
        .submit(Request::new(
            prompt,
            GenerationConfig {
                stop_strings: vec![stop.clone()],
                ..free
            },
        ))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(stopped.text, want, "stop {stop:?}");
    assert_eq!(stopped.reason, FinishReason::Stop);
    assert!(stopped.ids.len() < done.ids.len());
}

#[test]
fn the_burn_decoder_serves_through_the_same_engine() {
    let ckpt = qwen2_tiny();
    let burn = PerSequence::new(ckpt.load_decoder(&Device::flex()).unwrap(), 16, 64);
    let requests: Vec<Request> = workload()
        .into_iter()
        .filter(|r| r.config.sampling.is_greedy())
        .collect();
    let want: Vec<_> = requests
        .iter()
        .map(|r| generate(burn.model(), &r.prompt, &r.config, false).unwrap())
        .collect();
    let engine = Engine::start(Arc::new(burn), None, config()).unwrap();
    let got = together(&engine, &requests);
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(w.ids, g.ids);
    }
    assert_no_leaks(&engine);
}

#[test]
fn smollm2_q4_1_is_batch_invariant_through_the_engine() {
    let Some(path) = smollm2() else { return };
    let ckpt = Checkpoint::open(&path).unwrap();
    let model = FastDecoderConfig {
        kv_budget_bytes: 64 << 20,
        ..Default::default()
    }
    .init(&ckpt.config, ckpt.weights.as_ref())
    .unwrap();
    let tk = Arc::new(ckpt.tokenizer.clone().unwrap());
    let engine = Engine::start(Arc::new(model), Some(tk.clone()), config()).unwrap();
    let texts = [
        "The capital of France is",
        "def fibonacci(n):",
        "Once upon a time, in a land far away, there lived a dragon who loved to",
        "Spam or ham? WIN A FREE CRUISE NOW",
    ];
    let requests: Vec<Request> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let sampling = if i % 2 == 0 {
                SamplingParams::greedy()
            } else {
                SamplingParams::with_temperature(0.8, i as u64)
            };
            Request::new(
                tk.encode(t, true).unwrap(),
                GenerationConfig {
                    max_new_tokens: 10,
                    sampling,
                    logprobs: Some(1),
                    ..Default::default()
                },
            )
        })
        .collect();
    let single = alone(&engine, &requests);
    let batched = together(&engine, &requests);
    assert_same(&single, &batched);
    for c in &batched {
        assert_eq!(c.text, tk.decode(&c.ids, true).unwrap());
    }
}

#[test]
fn label_scores_through_the_engine_match_score_labels_and_batch_with_generation() {
    let prompt: Vec<u32> = (0..21).map(|i| (i * 29 + 3) % 700 + 2).collect();
    let candidates: Vec<Vec<u32>> = vec![vec![17], vec![40, 41, 42], vec![300, 5], vec![9; 6]];
    // The reference: slm-infer's score_labels over the burn decoder (one forward per label).
    let ckpt = qwen2_tiny();
    let burn = ckpt.load_decoder(&Device::flex()).unwrap();
    let want = slm_infer::score_labels(&burn, &prompt, &candidates).unwrap();

    let engine = Engine::start(Arc::new(qwen2_fast(64)), None, config()).unwrap();
    let alone = engine
        .score(prompt.clone(), candidates.clone())
        .unwrap()
        .wait()
        .unwrap();
    let got = alone.scores.clone().unwrap();
    for (a, b) in got.log_probs.iter().zip(&want.log_probs) {
        assert!((a - b).abs() < 1e-3, "{a} vs {b}");
    }
    assert_eq!(got.best, want.best);
    assert!((got.probs.iter().sum::<f64>() - 1.0).abs() < 1e-9);

    // Scored while generation runs beside it: the same scores, bitwise.
    let requests = workload();
    let streams: Vec<_> = requests
        .iter()
        .map(|r| engine.submit(r.clone()).unwrap())
        .collect();
    let scored = engine.score(prompt.clone(), candidates.clone()).unwrap();
    let busy = scored.wait().unwrap();
    assert_eq!(busy.scores, alone.scores);
    for s in streams {
        s.wait().unwrap();
    }
    // Under a pool small enough to preempt, and with bad candidates refused.
    let tight = Engine::start(
        Arc::new(qwen2_fast(6)),
        None,
        EngineConfig {
            prefix_cache_entries: 0,
            ..config()
        },
    )
    .unwrap();
    let mut streams: Vec<_> = requests
        .iter()
        .take(3)
        .map(|r| tight.submit(r.clone()).unwrap())
        .collect();
    let scored = tight.score(prompt.clone(), candidates.clone()).unwrap();
    assert_eq!(scored.wait().unwrap().scores, alone.scores);
    streams.drain(..).for_each(|s| drop(s.wait().unwrap()));
    assert!(matches!(
        engine.score(prompt.clone(), vec![]),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        engine.score(prompt, vec![vec![1], vec![]]),
        Err(Error::InvalidConfig(_))
    ));
    assert_no_leaks(&engine);
    assert_no_leaks(&tight);
}

#[test]
fn requests_for_different_adapters_share_steps_and_get_what_they_get_alone() {
    use slm_core::step::AdapterId;
    let adapters = [
        None,
        Some(AdapterId(0)),
        Some(AdapterId(1)),
        Some(AdapterId(0)),
        None,
    ];
    let requests: Vec<Request> = workload()
        .into_iter()
        .zip(adapters)
        .map(|(r, a)| Request { adapter: a, ..r })
        .collect();
    let engine =
        Engine::start(Arc::new(llama_tiny_with_adapters(32 << 20)), None, config()).unwrap();
    let single = alone(&engine, &requests);
    let batched = together(&engine, &requests);
    assert_same(&single, &batched);
    // The greedy adapted request is peft's model's argmax chain (the burn decoder with the
    // adapter attached, checked against peft in slm-core), the greedy base one the base's.
    let base = || {
        Checkpoint::open(&fixture("models/llama-tiny"))
            .unwrap()
            .load_decoder(&Device::flex())
            .unwrap()
    };
    let (with_a, _) = slm_core::peft::load_adapter(base(), &fixture("lora/adapter_a")).unwrap();
    let greedy = Request {
        adapter: Some(AdapterId(0)),
        ..requests[0].clone()
    };
    let got = engine.submit(greedy.clone()).unwrap().wait().unwrap();
    let want = generate(&with_a, &greedy.prompt, &greedy.config, false).unwrap();
    assert_eq!(got.ids, want.ids, "adapter a vs peft's model");
    let plain = generate(&base(), &greedy.prompt, &greedy.config, false).unwrap();
    assert_eq!(single[0].ids, plain.ids, "base");
    assert_ne!(got.ids, single[0].ids, "the adapter changes the output");
    // Cached prefixes are shared within an adapter only.
    let prompt: Vec<u32> = (0..40).map(|i| (i * 13 + 7) % 700 + 2).collect();
    let ask = |adapter| Request {
        adapter,
        ..Request::new(
            prompt.clone(),
            GenerationConfig {
                max_new_tokens: 3,
                ..Default::default()
            },
        )
    };
    let first = engine
        .submit(ask(Some(AdapterId(1))))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(first.metrics.cached_prompt_tokens, 0);
    let other = engine.submit(ask(None)).unwrap().wait().unwrap();
    assert_eq!(
        other.metrics.cached_prompt_tokens, 0,
        "another adapter's blocks"
    );
    let same = engine
        .submit(ask(Some(AdapterId(1))))
        .unwrap()
        .wait()
        .unwrap();
    assert!(
        same.metrics.cached_prompt_tokens >= 32,
        "{:?}",
        same.metrics
    );
    assert_eq!(same.ids, first.ids);
    // An adapter the model does not hold is refused by type.
    assert!(matches!(
        engine.submit(ask(Some(AdapterId(2)))),
        Err(Error::InvalidConfig(m)) if m.contains("adapter")
    ));
    assert_no_leaks(&engine);
}
