//! The OpenAI-compatible server over raw HTTP on loopback (qwen2-tiny on the fast path, with a
//! ChatML template): chat and completions, streamed and not, `n`, seeds, logprobs, echo,
//! truncation, every refusal as an OpenAI error body, 429 on a full queue, a client leaving
//! mid-stream, concurrent clients getting what they get alone, models / health / metrics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::*;
use serde_json::{Value, json};
use slm_core::prelude::*;
use slm_core::tokenizer::{ChatTemplate, Tokenizer};
use slm_infer::engine::{Engine, EngineConfig};
use slm_infer::server::{ClassifyPrompts, ServerState, serve};

/// The prompt as given, each label as ` label`.
#[derive(Debug)]
struct PlainPrompts(Arc<Tokenizer>);

impl ClassifyPrompts for PlainPrompts {
    fn default_labels(&self) -> Option<Vec<String>> {
        None
    }

    fn build(&self, input: &str, labels: &[String]) -> Result<(Vec<u32>, Vec<Vec<u32>>), String> {
        let enc = |t: &str, special| self.0.encode(t, special).map_err(|e| e.to_string());
        let labels = labels
            .iter()
            .map(|l| enc(&format!(" {l}"), false))
            .collect::<Result<_, _>>()?;
        Ok((enc(input, true)?, labels))
    }
}

const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

struct Server {
    addr: SocketAddr,
    engine: Engine,
    _stop: tokio::sync::oneshot::Sender<()>,
    _rt: tokio::runtime::Runtime,
}

fn start(config: EngineConfig) -> Server {
    start_model(
        qwen2_fast_bytes(8 << 20),
        qwen2_tiny_tokenizer(),
        config,
        |s| s,
    )
}

/// `model` served as `tiny` with a ChatML template and [`PlainPrompts`]; `more` adds to the
/// server's state.
fn start_model(
    model: impl slm_core::step::BatchedLm + 'static,
    mut tk: Tokenizer,
    config: EngineConfig,
    more: impl FnOnce(ServerState) -> ServerState,
) -> Server {
    tk.set_chat_template(Some(ChatTemplate::new(CHATML).unwrap()));
    let tk = Arc::new(tk);
    let engine = Engine::start(Arc::new(model), Some(tk.clone()), config).unwrap();
    let state = more(
        ServerState::new(engine.clone(), tk.clone(), "tiny")
            .with_classifier(Arc::new(PlainPrompts(tk))),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(serve(listener, state, async {
        let _ = rx.await;
    }));
    Server {
        addr,
        engine,
        _stop: tx,
        _rt: rt,
    }
}

fn send(addr: SocketAddr, method: &str, path: &str, body: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s
}

/// Status and body (de-chunked).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut raw = Vec::new();
    send(addr, method, path, body)
        .read_to_end(&mut raw)
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    if !chunked {
        return (status, rest.to_string());
    }
    let mut out = String::new();
    let mut rest = rest;
    loop {
        let (size, tail) = rest.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    (status, out)
}

fn post(addr: SocketAddr, path: &str, body: Value) -> (u16, Value) {
    let (status, text) = http(addr, "POST", path, &body.to_string());
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The `data:` payloads of an SSE body.
fn sse(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .map(str::to_string)
        .collect()
}

fn chat_body(content: &str, extra: Value) -> Value {
    let mut b = json!({
        "model": "tiny",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": content}],
        "max_tokens": 8,
        "temperature": 0,
    });
    b.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    b
}

#[test]
fn chat_and_completions_answer_as_the_openai_api_does() {
    let srv = start(EngineConfig::default());
    let (status, r) = post(
        srv.addr,
        "/v1/chat/completions",
        chat_body("Hi there", json!({})),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["model"], "tiny");
    let choice = &r["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(r["usage"]["completion_tokens"], 8);
    let prompt_tokens = r["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(
        r["usage"]["total_tokens"].as_u64().unwrap(),
        prompt_tokens + 8
    );
    assert!(
        r["usage"]["energy_joules"].is_null(),
        "no meters: null, never 0"
    );
    let content = choice["message"]["content"].as_str().unwrap().to_string();

    // Streamed: the deltas add up to the same text; a usage chunk, then [DONE].
    let (status, body) = http(
        srv.addr,
        "POST",
        "/v1/chat/completions",
        &chat_body(
            "Hi there",
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        )
        .to_string(),
    );
    assert_eq!(status, 200);
    let events = sse(&body);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, content);
    let finish: Vec<&Value> = chunks
        .iter()
        .filter(|c| !c["choices"][0]["finish_reason"].is_null())
        .collect();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "length");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 8);
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );

    // Completions: n choices with seeds, logprobs, echo; the same seed repeats.
    let body = json!({
        "model": "tiny", "prompt": "The sky is", "max_tokens": 6, "n": 3,
        "temperature": 1.0, "seed": 42, "logprobs": 2, "echo": true,
    });
    let (status, a) = post(srv.addr, "/v1/completions", body.clone());
    assert_eq!(status, 200, "{a}");
    let (_, b) = post(srv.addr, "/v1/completions", body);
    assert_eq!(a["object"], "text_completion");
    let texts = |r: &Value| -> Vec<String> {
        r["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["text"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(texts(&a), texts(&b), "same seed, same choices");
    assert_eq!(texts(&a).len(), 3);
    assert!(texts(&a).iter().all(|t| t.starts_with("The sky is")));
    assert!(texts(&a)[0] != texts(&a)[1] || texts(&a)[1] != texts(&a)[2]);
    let lp = &a["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), 6);
    assert_eq!(lp["top_logprobs"][0].as_object().unwrap().len(), 2);
    assert!(lp["token_logprobs"][0].as_f64().unwrap() <= 0.0);
    assert_eq!(a["usage"]["completion_tokens"], 18);

    // Constrained: a choice, and a JSON schema through response_format.
    let (status, r) = post(
        srv.addr,
        "/v1/chat/completions",
        chat_body(
            "Spam?",
            json!({"guided_choice": ["spam", "ham"], "max_tokens": 10, "temperature": 1.0}),
        ),
    );
    assert_eq!(status, 200, "{r}");
    let answer = r["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(answer == "spam" || answer == "ham", "{answer:?}");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    let schema = json!({"type": "object", "properties": {"label": {"enum": ["spam", "ham"]},
        "n": {"type": "integer", "minimum": 0, "maximum": 5}}, "required": ["label", "n"],
        "additionalProperties": false});
    let (status, r) = post(
        srv.addr,
        "/v1/chat/completions",
        chat_body(
            "Classify",
            json!({"max_tokens": 40, "temperature": 1.0, "response_format":
            {"type": "json_schema", "json_schema": {"name": "c", "schema": schema, "strict": true}}}),
        ),
    );
    assert_eq!(status, 200, "{r}");
    let v: Value =
        serde_json::from_str(r["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(v["label"] == "spam" || v["label"] == "ham", "{v}");
    assert!(v["n"].as_i64().is_some_and(|n| (0..=5).contains(&n)), "{v}");

    // Token-id prompts and a stop string.
    let (status, r) = post(
        srv.addr,
        "/v1/completions",
        json!({"model": "tiny", "prompt": [5, 6, 7], "max_tokens": 4, "temperature": 0}),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["usage"]["prompt_tokens"], 3);

    // Truncation on request, said in usage.
    let long: Vec<u32> = (0..200).map(|i| i % 500 + 3).collect();
    let (status, r) = post(
        srv.addr,
        "/v1/completions",
        json!({"model": "tiny", "prompt": long, "max_tokens": 2, "truncate_prompt_tokens": 100}),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["usage"]["prompt_tokens"], 100);
    assert_eq!(r["usage"]["prompt_tokens_truncated"], 100);

    // Models, health, metrics.
    let (status, m) = http(srv.addr, "GET", "/v1/models", "");
    assert_eq!(status, 200);
    let m: Value = serde_json::from_str(&m).unwrap();
    assert_eq!(m["data"][0]["id"], "tiny");
    assert_eq!(m["data"][0]["max_model_len"], 128);
    assert_eq!(http(srv.addr, "GET", "/health", "").0, 200);
    let (status, metrics) = http(srv.addr, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(metrics.contains("# TYPE slm:time_to_first_token_seconds histogram"));
    let generated: f64 = metrics
        .lines()
        .find(|l| l.starts_with("slm:generation_tokens_total"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(generated >= 8.0 + 8.0 + 18.0 * 2.0 + 4.0 + 2.0, "{metrics}");
}

#[test]
fn bad_requests_get_openai_errors_and_never_free_text() {
    let srv = start(EngineConfig::default());
    let check = |body: &str, param: Option<&str>, code: Option<&str>| {
        let (status, text) = http(srv.addr, "POST", "/v1/chat/completions", body);
        assert_eq!(status, 400, "{body}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{text}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 5);
        if let Some(p) = param {
            assert_eq!(v["error"]["param"], p, "{text}");
        }
        if let Some(c) = code {
            assert_eq!(v["error"]["code"], c, "{text}");
        }
    };
    check("{not json", None, None);
    check(r#"{"model": "tiny"}"#, None, None);
    let body = |extra: Value| chat_body("hello", extra).to_string();
    check(
        &body(json!({"model": "gpt-4"})),
        Some("model"),
        Some("model_not_found"),
    );
    check(&body(json!({"top_p": 1.5})), Some("top_p"), None);
    check(&body(json!({"temperature": -1})), Some("temperature"), None);
    check(&body(json!({"n": 0})), Some("n"), None);
    check(
        &body(json!({"logit_bias": {"abc": 1}})),
        Some("logit_bias"),
        None,
    );
    check(
        &body(json!({"max_tokens": 1000})),
        Some("max_tokens"),
        Some("context_length_exceeded"),
    );
    // Constraints fail closed: a 400 naming the field, never unconstrained text.
    check(
        &body(
            json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "no-such-type"}}}}),
        ),
        Some("response_format"),
        None,
    );
    check(
        &body(json!({"response_format": {"type": "xml"}})),
        Some("response_format"),
        None,
    );
    check(
        &body(json!({"guided_regex": "(unclosed"})),
        Some("guided_regex"),
        None,
    );
    check(
        &body(json!({"guided_regex": "a+", "guided_choice": ["a"]})),
        None,
        None,
    );
    check(&body(json!({"messages": []})), Some("messages"), None);
    check(
        &body(json!({"messages": [{"role": "user", "content": 5}]})),
        Some("messages"),
        None,
    );
    let long = "word ".repeat(300);
    check(
        &chat_body(&long, json!({})).to_string(),
        None,
        Some("context_length_exceeded"),
    );
    let (status, _) = http(srv.addr, "GET", "/v2/nothing", "");
    assert_eq!(status, 404);
    // Nothing was queued by any of them, and the server still answers.
    assert_eq!(srv.engine.stats().generation_tokens, 0);
    assert_eq!(
        post(srv.addr, "/v1/chat/completions", chat_body("ok", json!({}))).0,
        200
    );
}

#[test]
fn a_full_queue_is_429_and_a_client_leaving_frees_its_sequence() {
    // A must still be running when C arrives: 2 ms a step keeps its 100 tokens going for 0.2 s
    // however fast the fast path is (qwen2-tiny runs a step in tens of microseconds).
    let srv = start_model(
        SlowSteps {
            model: qwen2_fast_bytes(8 << 20),
            delay: Duration::from_millis(2),
        },
        qwen2_tiny_tokenizer(),
        EngineConfig {
            max_queue: 1,
            max_running: 1,
            ..Default::default()
        },
        |s| s,
    );
    // A runs (streaming, long); read its first token so it is in the batch.
    let a = send(
        srv.addr,
        "POST",
        "/v1/completions",
        &json!({"model": "tiny", "prompt": [3, 4], "max_tokens": 100, "stream": true, "temperature": 0, "ignore_eos": true}).to_string(),
    );
    let mut reader = BufReader::new(a);
    let mut line = String::new();
    while !line.starts_with("data:") {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    // B waits in the queue (non-streaming, in its own thread), C finds the queue full.
    let addr = srv.addr;
    let b = std::thread::spawn(move || {
        post(
            addr,
            "/v1/completions",
            json!({"model": "tiny", "prompt": [5], "max_tokens": 3}),
        )
    });
    for _ in 0..400 {
        if srv.engine.stats().waiting == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (status, c) = post(
        srv.addr,
        "/v1/completions",
        json!({"model": "tiny", "prompt": [6], "max_tokens": 3}),
    );
    assert_eq!(status, 429, "{c}");
    assert_eq!(c["error"]["type"], "rate_limit_error");
    // A's client goes away: its sequence is cancelled and B runs.
    drop(reader);
    let (status, b) = b.join().unwrap();
    assert_eq!(status, 200, "{b}");
    for _ in 0..400 {
        let s = srv.engine.stats();
        if s.finished[2] == 1 && s.running == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!(
        "the abandoned request was not cancelled: {:?}",
        srv.engine.stats()
    );
}

#[test]
fn concurrent_clients_get_what_they_get_alone() {
    let srv = start(EngineConfig::default());
    let prompts: Vec<String> = (0..8)
        .map(|i| format!("Question {i}: what is {i} + {i}?"))
        .collect();
    let body = |p: &str| chat_body(p, json!({"max_tokens": 12, "temperature": 0.8, "seed": 7}));
    let alone: Vec<Value> = prompts
        .iter()
        .map(|p| post(srv.addr, "/v1/chat/completions", body(p)).1)
        .collect();
    let addr = srv.addr;
    let together: Vec<Value> = prompts
        .iter()
        .map(|p| {
            let b = body(p);
            std::thread::spawn(move || post(addr, "/v1/chat/completions", b))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| {
            let (status, v) = h.join().unwrap();
            assert_eq!(status, 200);
            v
        })
        .collect();
    for (a, t) in alone.iter().zip(&together) {
        assert_eq!(a["choices"][0]["message"], t["choices"][0]["message"]);
    }
}

#[test]
fn classify_scores_labels_through_the_engine() {
    let srv = start(EngineConfig::default());
    let inputs = ["Win a prize now", "See you at the meeting tomorrow"];
    let labels = ["spam", "ham", "not sure"];
    let (status, r) = post(
        srv.addr,
        "/v1/classify",
        json!({"model": "tiny", "input": inputs, "labels": labels}),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["object"], "list");
    assert_eq!(r["labels"], json!(labels));
    // The reference: score_labels over the burn decoder with the same prompts.
    let burn = qwen2_tiny().load_decoder(&Device::flex()).unwrap();
    let tk = Arc::new(qwen2_tiny_tokenizer());
    let owned: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
    for (i, input) in inputs.iter().enumerate() {
        let (prompt, cands) = PlainPrompts(tk.clone()).build(input, &owned).unwrap();
        let want = slm_infer::score_labels(&burn, &prompt, &cands).unwrap();
        let d = &r["data"][i];
        assert_eq!(d["index"], i);
        assert_eq!(d["label"], labels[want.best]);
        assert_eq!(d["num_classes"], 3);
        for (got, want) in d["probs"].as_array().unwrap().iter().zip(&want.probs) {
            assert!(
                (got.as_f64().unwrap() - want).abs() < 1e-4,
                "{got} vs {want}"
            );
        }
    }
    assert!(r["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    for (body, param) in [
        (json!({"model": "tiny", "input": "x"}), "labels"),
        (
            json!({"model": "tiny", "input": "x", "labels": ["one"]}),
            "labels",
        ),
        (
            json!({"model": "tiny", "input": 5, "labels": ["a", "b"]}),
            "input",
        ),
    ] {
        let (status, e) = post(srv.addr, "/v1/classify", body);
        assert_eq!(status, 400, "{e}");
        assert_eq!(e["error"]["param"], param, "{e}");
    }
}

#[test]
fn requests_name_lora_adapters_as_their_model() {
    let model = llama_tiny_with_adapters(8 << 20);
    let tk = Tokenizer::from_model_dir(&fixture("models/llama-tiny")).unwrap();
    let srv = start_model(model, tk.clone(), EngineConfig::default(), |s| {
        s.with_adapter("a", "fixtures/lora/adapter_a", None)
    });
    // Listed as vLLM lists LoRA modules: the base is their parent.
    let (status, body) = http(srv.addr, "GET", "/v1/models", "");
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["tiny", "a", "all"]);
    assert_eq!(list["data"][0]["parent"], Value::Null);
    assert_eq!(list["data"][1]["parent"], "tiny");
    assert_eq!(list["data"][1]["root"], "fixtures/lora/adapter_a");
    assert_eq!(list["data"][2]["root"], "all");

    // Greedy completions per model, all at once (one engine, shared steps): each is the
    // engine's answer for that adapter alone, and the adapters change the text.
    let body = |model: &str| json!({"model": model, "prompt": [5, 17, 42, 99], "max_tokens": 8, "temperature": 0});
    let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
        let jobs: Vec<_> = ["tiny", "a", "all", "a"]
            .into_iter()
            .map(|m| s.spawn(move || post(srv.addr, "/v1/completions", body(m))))
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    let text = |r: &Value| r["choices"][0]["text"].as_str().unwrap().to_string();
    for ((status, r), (model, adapter)) in answers.iter().zip([
        ("tiny", None),
        ("a", Some(0)),
        ("all", Some(1)),
        ("a", Some(0)),
    ]) {
        assert_eq!(*status, 200, "{r}");
        assert_eq!(r["model"], model);
        let mut request = slm_infer::engine::Request::new(
            vec![5, 17, 42, 99],
            slm_infer::GenerationConfig {
                max_new_tokens: 8,
                sampling: slm_infer::SamplingParams::greedy(),
                ..Default::default()
            },
        );
        request.adapter = adapter.map(slm_core::step::AdapterId);
        let alone = srv.engine.submit(request).unwrap().wait().unwrap();
        assert_eq!(text(r), tk.decode(&alone.ids, true).unwrap(), "{model}");
    }
    assert_ne!(text(&answers[0].1), text(&answers[1].1));
    assert_ne!(text(&answers[1].1), text(&answers[2].1));

    // Label scoring through an adapter.
    let (status, r) = post(
        srv.addr,
        "/v1/classify",
        json!({"model": "all", "input": "Win a prize now", "labels": ["spam", "ham"]}),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["model"], "all");
    let base = post(
        srv.addr,
        "/v1/classify",
        json!({"model": "tiny", "input": "Win a prize now", "labels": ["spam", "ham"]}),
    )
    .1;
    assert_ne!(r["data"][0]["probs"], base["data"][0]["probs"]);

    // An unknown model names what is served.
    let (status, e) = post(srv.addr, "/v1/completions", body("b"));
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["code"], "model_not_found");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("`tiny`, `a`, `all`"), "{msg}");
}
