//! The handlers: parse and check a request (every refusal before anything is queued), submit
//! one engine request per choice, answer with one JSON body or a stream of server-sent events.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, BoxStream, SelectAll, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use slm_core::step::AdapterId;
use slm_core::tokenizer::ChatMessage;

use super::ServerState;
use super::openai::{
    ApiError, ChatRequest, CompletionRequest, Prompt, PromptTokensDetails, SamplingFields, Usage,
};
use super::prometheus;
use crate::constraint::{Grammar, OutputConstraint};
use crate::decoding::{FinishReason, GenerationConfig};
use crate::engine::{Completion, Event, Request, RequestMetrics, RequestStream};
use crate::sampling::{SamplingParams, TokenLogprob};

type AppState = State<Arc<ServerState>>;

/// Choices per prompt at most.
const MAX_N: usize = 16;
/// `top_logprobs` at most (OpenAI's limit).
const MAX_TOP_LOGPROBS: usize = 20;

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

/// The adapter a request's `model` names: `None` for the base model, `Some` for one of the
/// model's LoRA adapters (vLLM's multi-LoRA naming).
fn check_model(st: &ServerState, model: &str) -> Result<Option<AdapterId>, ApiError> {
    if model == st.model_name {
        return Ok(None);
    }
    let adapters = st.engine.model().adapters();
    if let Some(i) = adapters.iter().position(|a| a == model) {
        return Ok(Some(AdapterId(i)));
    }
    let mut served = vec![format!("`{}`", st.model_name)];
    served.extend(adapters.iter().map(|a| format!("`{a}`")));
    Err(ApiError::bad_request(format!(
        "The model `{model}` does not exist; this server serves {}.",
        served.join(", ")
    ))
    .param("model")
    .code("model_not_found"))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn new_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{:x}{n:04x}", now_secs())
}

/// A seed for requests that give none: distinct per request, from the clock and a counter.
fn fresh_seed() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // splitmix64 of the mix, so consecutive requests get unrelated streams.
    let mut z = nanos ^ NEXT.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One prompt, checked and ready to submit `n` times.
struct Prepared {
    ids: Vec<u32>,
    grammar: Option<Grammar>,
    truncated: Option<usize>,
    /// The prompt text, for `echo`.
    echo: Option<String>,
    configs: Vec<GenerationConfig>,
}

/// The request's output constraint, compiled (cached per distinct constraint). Fails closed:
/// anything that cannot be compiled is a 400 naming the field, never free text.
fn constraint(st: &ServerState, f: &SamplingFields) -> Result<Option<Grammar>, ApiError> {
    let mut asked: Vec<(&'static str, OutputConstraint)> = Vec::new();
    if let Some(format) = &f.response_format {
        let bad = |m: &str| ApiError::bad_request(m.to_string()).param("response_format");
        match format.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some("json_object") => asked.push(("response_format", OutputConstraint::JsonObject)),
            Some("json_schema") => {
                let schema = format
                    .get("json_schema")
                    .and_then(|j| j.get("schema"))
                    .ok_or_else(|| bad("response_format.json_schema.schema is missing"))?;
                asked.push(("response_format", OutputConstraint::json_schema(schema)));
            }
            other => {
                return Err(bad(&format!(
                    "response_format type {other:?} is not one of text, json_object, json_schema"
                )));
            }
        }
    }
    if let Some(c) = &f.guided_choice {
        asked.push(("guided_choice", OutputConstraint::Choice(c.clone())));
    }
    if let Some(r) = &f.guided_regex {
        asked.push(("guided_regex", OutputConstraint::Regex(r.clone())));
    }
    if let Some(j) = &f.guided_json {
        asked.push(("guided_json", OutputConstraint::json_schema(j)));
    }
    if let Some(g) = &f.guided_grammar {
        asked.push(("guided_grammar", OutputConstraint::Lark(g.clone())));
    }
    match asked.len() {
        0 => Ok(None),
        1 => {
            let (field, c) = asked.pop().expect("one");
            let compiler = st.compiler().map_err(|why| {
                ApiError::bad_request(format!("constrained outputs are unavailable: {why}"))
                    .param(field)
            })?;
            compiler
                .compile(&c)
                .map(Some)
                .map_err(|e| ApiError::bad_request(e.to_string()).param(field))
        }
        _ => Err(ApiError::bad_request(format!(
            "give one output constraint, not {}",
            asked.iter().map(|a| a.0).collect::<Vec<_>>().join(" and ")
        ))
        .param(asked[1].0)),
    }
}

/// Checks everything a request asks for, before anything is queued.
fn prepare(
    st: &ServerState,
    mut ids: Vec<u32>,
    echo: Option<String>,
    f: &SamplingFields,
    max_tokens: Option<usize>,
    default_max: Option<usize>,
    logprobs: Option<usize>,
) -> Result<Prepared, ApiError> {
    let n = f.n.unwrap_or(1);
    if n == 0 || n > MAX_N {
        return Err(ApiError::bad_request(format!("n must be in 1..={MAX_N}, got {n}")).param("n"));
    }
    let grammar = constraint(st, f)?;
    let mut truncated = None;
    if let Some(keep) = f.truncate_prompt_tokens
        && ids.len() > keep
    {
        if keep == 0 {
            return Err(
                ApiError::bad_request("truncate_prompt_tokens must be at least 1")
                    .param("truncate_prompt_tokens"),
            );
        }
        truncated = Some(ids.len() - keep);
        ids.drain(..ids.len() - keep);
    }
    if ids.is_empty() {
        return Err(ApiError::bad_request("the prompt is empty").param("prompt"));
    }
    let config = st.engine.model().config();
    let ctx = config.context_length();
    if ids.len() >= ctx {
        return Err(ApiError::bad_request(format!(
            "This model's maximum context length is {ctx} tokens. However, your prompt has {} \
             tokens (no room for a completion). Shorten it, or pass truncate_prompt_tokens.",
            ids.len()
        ))
        .param("messages")
        .code("context_length_exceeded"));
    }
    let max_new = match max_tokens {
        Some(0) => {
            return Err(ApiError::bad_request("max_tokens must be at least 1").param("max_tokens"));
        }
        Some(m) if ids.len() + m > ctx => {
            return Err(ApiError::bad_request(format!(
                "This model's maximum context length is {ctx} tokens. However, you requested {} \
                 tokens ({} in the prompt, {m} for the completion). Reduce the prompt or \
                 max_tokens.",
                ids.len() + m,
                ids.len()
            ))
            .param("max_tokens")
            .code("context_length_exceeded"));
        }
        Some(m) => m,
        None => default_max.unwrap_or(ctx).min(ctx - ids.len()),
    };
    let mut logit_bias = std::collections::BTreeMap::new();
    for (k, &v) in f.logit_bias.iter().flatten() {
        let id: u32 = k
            .parse()
            .ok()
            .filter(|&id| (id as usize) < config.vocab_size)
            .ok_or_else(|| {
                ApiError::bad_request(format!("logit_bias key `{k}` is not a token id"))
                    .param("logit_bias")
            })?;
        if !(-100.0..=100.0).contains(&v) {
            return Err(ApiError::bad_request(format!(
                "logit_bias values must be in [-100, 100], got {v}"
            ))
            .param("logit_bias"));
        }
        logit_bias.insert(id, v);
    }
    let sampling = SamplingParams {
        temperature: f.temperature.unwrap_or(1.0),
        top_p: f.top_p.unwrap_or(1.0),
        top_k: f.top_k.filter(|&k| k > 0).unwrap_or(0) as usize,
        min_p: f.min_p.unwrap_or(0.0),
        repetition_penalty: f.repetition_penalty.unwrap_or(1.0),
        presence_penalty: f.presence_penalty.unwrap_or(0.0),
        frequency_penalty: f.frequency_penalty.unwrap_or(0.0),
        logit_bias,
        seed: 0,
    };
    if let Err(e) = sampling.validate() {
        let msg = e.to_string();
        let field = msg
            .trim_start_matches("invalid generation config: ")
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        return Err(ApiError::bad_request(msg).param(&field));
    }
    for (name, v) in [
        ("presence_penalty", sampling.presence_penalty),
        ("frequency_penalty", sampling.frequency_penalty),
    ] {
        if !(-2.0..=2.0).contains(&v) {
            return Err(
                ApiError::bad_request(format!("{name} must be in [-2, 2], got {v}")).param(name),
            );
        }
    }
    let mut stop_tokens = f.stop_token_ids.clone().unwrap_or_default();
    if !f.ignore_eos {
        stop_tokens.extend(&config.eos_token_ids);
        if let Some(id) = st
            .tokenizer
            .eos_token()
            .and_then(|e| st.tokenizer.token_to_id(e))
        {
            stop_tokens.push(id);
        }
    }
    let seed = f.seed.unwrap_or_else(fresh_seed);
    let configs = (0..n as u64)
        .map(|i| GenerationConfig {
            max_new_tokens: max_new,
            sampling: SamplingParams {
                seed: seed.wrapping_add(i),
                ..sampling.clone()
            },
            stop_tokens: stop_tokens.clone(),
            stop_strings: f.stop.clone().map(|s| s.into_vec()).unwrap_or_default(),
            logprobs,
        })
        .collect();
    Ok(Prepared {
        ids,
        grammar,
        truncated,
        echo,
        configs,
    })
}

/// Which API shapes the answer.
#[derive(Clone, Copy, PartialEq)]
enum Api {
    Chat,
    Completions,
}

/// A request after parsing: prompts and settings.
struct Job {
    api: Api,
    model: String,
    adapter: Option<AdapterId>,
    prepared: Vec<Prepared>,
    stream: bool,
    include_usage: bool,
    logprobs: bool,
}

fn finish_reason(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Cancelled => "abort",
    }
}

fn token_text(st: &ServerState, id: u32) -> String {
    st.tokenizer.decode(&[id], false).unwrap_or_default()
}

fn chat_logprobs(st: &ServerState, lps: &[TokenLogprob]) -> Value {
    let entry = |id: u32, lp: f32| {
        let t = token_text(st, id);
        json!({"token": t, "logprob": lp, "bytes": t.as_bytes()})
    };
    let content: Vec<Value> = lps
        .iter()
        .map(|l| {
            let mut e = entry(l.token, l.logprob);
            e["top_logprobs"] = l.top.iter().map(|&(id, lp)| entry(id, lp)).collect();
            e
        })
        .collect();
    json!({ "content": content })
}

fn completion_logprobs(st: &ServerState, lps: &[TokenLogprob], offset: usize) -> Value {
    let mut tokens = Vec::new();
    let mut offsets = Vec::new();
    let mut at = offset;
    for l in lps {
        let t = token_text(st, l.token);
        offsets.push(at);
        at += t.len();
        tokens.push(t);
    }
    let top: Vec<Value> = lps
        .iter()
        .map(|l| {
            let m: serde_json::Map<String, Value> = l
                .top
                .iter()
                .map(|&(id, lp)| (token_text(st, id), json!(lp)))
                .collect();
            Value::Object(m)
        })
        .collect();
    json!({
        "tokens": tokens,
        "token_logprobs": lps.iter().map(|l| l.logprob).collect::<Vec<_>>(),
        "top_logprobs": top,
        "text_offset": offsets,
    })
}

/// The usage of one prompt of `prompt_tokens` (`truncated` cut from it) and its choices.
fn usage_of(
    st: &ServerState,
    prompt_tokens: usize,
    truncated: Option<usize>,
    metrics: &[&RequestMetrics],
) -> Usage {
    let completion_tokens = metrics.iter().map(|m| m.completion_tokens).sum();
    let energy: Option<f64> = metrics.iter().map(|m| m.energy_joules).sum();
    let mut methods: Vec<&str> = metrics
        .iter()
        .filter_map(|m| m.energy_method.as_deref())
        .collect();
    methods.dedup();
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
        prompt_tokens_details: PromptTokensDetails {
            cached_tokens: metrics
                .iter()
                .map(|m| m.cached_prompt_tokens)
                .max()
                .unwrap_or(0),
        },
        prompt_tokens_truncated: truncated,
        energy_joules: energy,
        gco2e: energy.map(|j| j / 3.6e6 * st.carbon.grams_co2e_per_kwh),
        energy_method: energy.and(match methods.as_slice() {
            [one] => Some(one.to_string()),
            _ => None,
        }),
    }
}

/// The usage of a whole request: every prompt's, from its choices' metrics (`(prompt, metrics)`).
fn request_usage(
    st: &ServerState,
    prepared: &[Prepared],
    metrics: &[(usize, &RequestMetrics)],
) -> Usage {
    let mut prompts = prepared.iter().enumerate().map(|(pi, p)| {
        let mine: Vec<&RequestMetrics> = metrics
            .iter()
            .filter(|(q, _)| *q == pi)
            .map(|(_, m)| *m)
            .collect();
        usage_of(st, p.ids.len(), p.truncated, &mine)
    });
    let first = prompts.next().unwrap_or_default();
    prompts.fold(first, |mut total, u| {
        total.add_prompt(&u);
        total
    })
}

async fn run(st: Arc<ServerState>, job: Job) -> Result<Response, ApiError> {
    // Submit every choice; a refusal drops (cancels) those already queued.
    let mut streams: Vec<(usize, usize, RequestStream)> = Vec::new();
    let n = job.prepared.first().map_or(1, |p| p.configs.len());
    for (pi, p) in job.prepared.iter().enumerate() {
        for (ci, config) in p.configs.iter().enumerate() {
            let mut request = Request::new(p.ids.clone(), config.clone());
            request.grammar = p.grammar.clone();
            request.adapter = job.adapter;
            let s = st.engine.submit(request)?;
            streams.push((pi, pi * n + ci, s));
        }
    }
    let id = new_id(match job.api {
        Api::Chat => "chatcmpl",
        Api::Completions => "cmpl",
    });
    let created = now_secs();
    if job.stream {
        return Ok(stream_response(st, job, streams, id, created));
    }
    let done: Vec<Completion> =
        futures_util::future::join_all(streams.into_iter().map(|(_, _, s)| s.completion()))
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
    let metrics: Vec<(usize, &RequestMetrics)> = done
        .iter()
        .enumerate()
        .map(|(k, c)| (k / n, &c.metrics))
        .collect();
    let total = request_usage(&st, &job.prepared, &metrics);
    let mut choices = Vec::new();
    for (pi, p) in job.prepared.iter().enumerate() {
        let mine = &done[pi * n..(pi + 1) * n];
        for (ci, c) in mine.iter().enumerate() {
            let index = pi * n + ci;
            let reason = finish_reason(c.reason);
            choices.push(match job.api {
                Api::Chat => json!({
                    "index": index,
                    "message": {"role": "assistant", "content": c.text},
                    "logprobs": job.logprobs.then(|| chat_logprobs(&st, &c.logprobs)),
                    "finish_reason": reason,
                }),
                Api::Completions => {
                    let echo = p.echo.clone().unwrap_or_default();
                    json!({
                        "index": index,
                        "text": format!("{echo}{}", c.text),
                        "logprobs": job.logprobs.then(|| completion_logprobs(&st, &c.logprobs, echo.len())),
                        "finish_reason": reason,
                    })
                }
            });
        }
    }
    let object = match job.api {
        Api::Chat => "chat.completion",
        Api::Completions => "text_completion",
    };
    Ok(axum::Json(json!({
        "id": id,
        "object": object,
        "created": created,
        "model": job.model,
        "choices": choices,
        "usage": total,
    }))
    .into_response())
}

/// Merges the choices' events into server-sent chunks, then usage (when asked) and `[DONE]`.
fn stream_response(
    st: Arc<ServerState>,
    job: Job,
    streams: Vec<(usize, usize, RequestStream)>,
    id: String,
    created: u64,
) -> Response {
    let total = streams.len();
    let mut merged: SelectAll<BoxStream<'static, (usize, usize, Option<Event>)>> = SelectAll::new();
    for (pi, index, s) in streams {
        merged.push(
            stream::unfold(Some(s), move |s| async move {
                let mut s = s?;
                let e = s.recv().await;
                let end = matches!(e, None | Some(Event::Finished { .. } | Event::Failed(_)));
                Some(((pi, index, e), if end { None } else { Some(s) }))
            })
            .boxed(),
        );
    }
    struct State {
        st: Arc<ServerState>,
        job: Job,
        merged: SelectAll<BoxStream<'static, (usize, usize, Option<Event>)>>,
        pending: VecDeque<SseEvent>,
        started: Vec<bool>,
        metrics: Vec<Option<(usize, RequestMetrics)>>,
        text_len: Vec<usize>,
        id: String,
        created: u64,
        finished: bool,
    }
    let object = match job.api {
        Api::Chat => "chat.completion.chunk",
        Api::Completions => "text_completion",
    };
    let state = State {
        st,
        job,
        merged,
        pending: VecDeque::new(),
        started: vec![false; total],
        metrics: vec![None; total],
        text_len: vec![0; total],
        id,
        created,
        finished: false,
    };
    let chunk = move |s: &State, choice: Value| -> SseEvent {
        let body = json!({
            "id": s.id,
            "object": object,
            "created": s.created,
            "model": s.job.model,
            "choices": [choice],
        });
        SseEvent::default().data(body.to_string())
    };
    let events = stream::unfold(state, move |mut s| async move {
        loop {
            if let Some(e) = s.pending.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(e), s));
            }
            if s.finished {
                return None;
            }
            let Some((pi, index, event)) = s.merged.next().await else {
                if s.job.include_usage {
                    let metrics: Vec<(usize, &RequestMetrics)> =
                        s.metrics.iter().flatten().map(|(pi, m)| (*pi, m)).collect();
                    let total = request_usage(&s.st, &s.job.prepared, &metrics);
                    let body = json!({
                        "id": s.id, "object": object, "created": s.created,
                        "model": s.job.model, "choices": [], "usage": total,
                    });
                    s.pending
                        .push_back(SseEvent::default().data(body.to_string()));
                }
                s.pending.push_back(SseEvent::default().data("[DONE]"));
                s.finished = true;
                continue;
            };
            let api = s.job.api;
            if api == Api::Chat && !s.started[index] {
                s.started[index] = true;
                let first = chunk(
                    &s,
                    json!({"index": index, "delta": {"role": "assistant", "content": ""},
                           "logprobs": null, "finish_reason": null}),
                );
                s.pending.push_back(first);
            }
            match event {
                Some(Event::Token { text, logprob, .. }) => {
                    if text.is_empty() && !s.job.logprobs {
                        continue;
                    }
                    let lps: Vec<TokenLogprob> = logprob.into_iter().collect();
                    let c = match api {
                        Api::Chat => json!({
                            "index": index, "delta": {"content": text},
                            "logprobs": s.job.logprobs.then(|| chat_logprobs(&s.st, &lps)),
                            "finish_reason": null,
                        }),
                        Api::Completions => {
                            let offset = s.text_len[index];
                            json!({
                                "index": index, "text": text,
                                "logprobs": s.job.logprobs.then(|| completion_logprobs(&s.st, &lps, offset)),
                                "finish_reason": null,
                            })
                        }
                    };
                    s.text_len[index] += text.len();
                    let e = chunk(&s, c);
                    s.pending.push_back(e);
                }
                Some(Event::Finished { reason, metrics }) => {
                    s.metrics[index] = Some((pi, metrics));
                    let c = match api {
                        Api::Chat => json!({"index": index, "delta": {}, "logprobs": null,
                                            "finish_reason": finish_reason(reason)}),
                        Api::Completions => json!({"index": index, "text": "", "logprobs": null,
                                                   "finish_reason": finish_reason(reason)}),
                    };
                    let e = chunk(&s, c);
                    s.pending.push_back(e);
                }
                Some(Event::Failed(msg)) => {
                    let body = ApiError::server_error(msg).body();
                    s.pending
                        .push_back(SseEvent::default().data(body.to_string()));
                }
                None => {
                    let body = ApiError::from(crate::Error::EngineStopped).body();
                    s.pending
                        .push_back(SseEvent::default().data(body.to_string()));
                }
                // Only scoring requests carry scores; completions never do.
                Some(Event::Scored { .. }) => {}
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The text of a chat message's `content`: a string, or the `text` of its text parts.
fn message_text(content: &Value, i: usize) -> Result<String, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "messages[{i}].content must be a string or a list of text parts"
        ))
        .param("messages")
    };
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut out = String::new();
            for part in parts {
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(t))) => out.push_str(t),
                    _ => return Err(bad()),
                }
            }
            Ok(out)
        }
        _ => Err(bad()),
    }
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat(State(st): AppState, body: Bytes) -> Response {
    let go = async {
        let req: ChatRequest = parse(&body)?;
        let adapter = check_model(&st, &req.model)?;
        if req.messages.is_empty() {
            return Err(ApiError::bad_request("messages must not be empty").param("messages"));
        }
        let messages = req
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                Ok(ChatMessage::new(
                    m.role.clone(),
                    message_text(&m.content, i)?,
                ))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let text = st
            .tokenizer
            .apply_chat_template(&messages, true)
            .map_err(|e| {
                ApiError::bad_request(format!("cannot render the chat template: {e}"))
                    .param("messages")
            })?;
        // The rendered template already holds its special tokens.
        let ids = st
            .tokenizer
            .encode(&text, false)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let top = req.top_logprobs.unwrap_or(0);
        if top > MAX_TOP_LOGPROBS {
            return Err(ApiError::bad_request(format!(
                "top_logprobs must be at most {MAX_TOP_LOGPROBS}"
            ))
            .param("top_logprobs"));
        }
        let logprobs = req.logprobs.then_some(top);
        let max_tokens = req.max_completion_tokens.or(req.max_tokens);
        let prepared = prepare(&st, ids, None, &req.sampling, max_tokens, None, logprobs)?;
        let job = Job {
            api: Api::Chat,
            model: req.model,
            adapter,
            prepared: vec![prepared],
            stream: req.sampling.stream,
            include_usage: req
                .sampling
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage),
            logprobs: req.logprobs,
        };
        run(st.clone(), job).await
    };
    go.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1/completions`.
pub(crate) async fn completions(State(st): AppState, body: Bytes) -> Response {
    let go = async {
        let req: CompletionRequest = parse(&body)?;
        let adapter = check_model(&st, &req.model)?;
        let encode = |t: &str| {
            st.tokenizer
                .encode(t, true)
                .map_err(|e| ApiError::bad_request(e.to_string()).param("prompt"))
        };
        let prompts: Vec<(Vec<u32>, Option<String>)> = match &req.prompt {
            Prompt::Text(t) => vec![(encode(t)?, Some(t.clone()))],
            Prompt::Texts(ts) => ts
                .iter()
                .map(|t| Ok((encode(t)?, Some(t.clone()))))
                .collect::<Result<_, ApiError>>()?,
            Prompt::Ids(ids) => vec![(ids.clone(), None)],
            Prompt::IdLists(l) => l.iter().map(|ids| (ids.clone(), None)).collect(),
        };
        if prompts.is_empty() {
            return Err(ApiError::bad_request("prompt must not be empty").param("prompt"));
        }
        if let Some(n) = req.logprobs
            && n > MAX_TOP_LOGPROBS
        {
            return Err(ApiError::bad_request(format!(
                "logprobs must be at most {MAX_TOP_LOGPROBS}"
            ))
            .param("logprobs"));
        }
        let vocab = st.engine.model().config().vocab_size;
        let mut prepared = Vec::new();
        for (ids, text) in prompts {
            if let Some(&bad) = ids.iter().find(|&&t| t as usize >= vocab) {
                return Err(ApiError::bad_request(format!(
                    "token id {bad} is outside the vocabulary of {vocab}"
                ))
                .param("prompt"));
            }
            let echo = if req.echo {
                Some(text.unwrap_or_else(|| st.tokenizer.decode(&ids, false).unwrap_or_default()))
            } else {
                None
            };
            // OpenAI's default completion length is 16 tokens.
            prepared.push(prepare(
                &st,
                ids,
                echo,
                &req.sampling,
                req.max_tokens,
                Some(16),
                req.logprobs,
            )?);
        }
        let job = Job {
            api: Api::Completions,
            model: req.model,
            adapter,
            prepared,
            stream: req.sampling.stream,
            include_usage: req
                .sampling
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage),
            logprobs: req.logprobs.is_some(),
        };
        run(st.clone(), job).await
    };
    go.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/models`: the base model, then each LoRA adapter with the base as its `parent`
/// and its directory as `root` (as vLLM lists them).
pub(crate) async fn models(State(st): AppState) -> Response {
    let max_model_len = st.engine.model().config().context_length();
    let card = |id: &str, root: &str, parent: Option<&str>| {
        json!({
            "id": id,
            "object": "model",
            "created": st.created,
            "owned_by": "slm",
            "root": root,
            "parent": parent,
            "max_model_len": max_model_len,
        })
    };
    let mut data = vec![card(&st.model_name, &st.model_name, None)];
    for name in st.engine.model().adapters() {
        let root = st.adapter_roots.get(&name).unwrap_or(&name);
        data.push(card(&name, root, Some(&st.model_name)));
    }
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /health`.
pub(crate) async fn health() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(st): AppState) -> Response {
    let text = prometheus::render(&st.engine.stats(), &st.model_name);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Anything else: an OpenAI-style 404.
pub(crate) async fn not_found() -> Response {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "no such route".into(),
        kind: "invalid_request_error",
        param: None,
        code: Some("not_found"),
    }
    .into_response()
}

/// A JSON array of strings, `None` for anything else.
fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_str().map(str::to_string))
        .collect()
}

/// `POST /v1/classify`: `{"model", "input": str | [str], "labels"?: [str]}` — each label's
/// probability (normalised over the labels) for each input, by label scoring through the
/// engine (vLLM's `/classify` shape plus `labels` and `log_probs`).
pub(crate) async fn classify(State(st): AppState, body: Bytes) -> Response {
    let go = async {
        let req: Value = parse(&body)?;
        let model = req["model"].as_str().unwrap_or_default().to_string();
        let adapter = check_model(&st, &model)?;
        let prompts = st.classifier_for(&model).ok_or_else(|| {
            ApiError::bad_request("this server has no classifier configured").param("model")
        })?;
        let inputs: Vec<String> = match &req["input"] {
            Value::String(s) => vec![s.clone()],
            v => strings(v).filter(|v| !v.is_empty()).ok_or_else(|| {
                ApiError::bad_request("input must be a string or strings").param("input")
            })?,
        };
        let labels: Vec<String> = match &req["labels"] {
            Value::Null => prompts.default_labels().ok_or_else(|| {
                ApiError::bad_request("labels are required: the model records no task")
                    .param("labels")
            })?,
            v => strings(v).filter(|l| l.len() >= 2).ok_or_else(|| {
                ApiError::bad_request("labels must list at least two strings").param("labels")
            })?,
        };
        let mut streams = Vec::new();
        let mut prompt_tokens = 0;
        for input in &inputs {
            let (prompt, candidates) = prompts
                .build(input, &labels)
                .map_err(|e| ApiError::bad_request(e).param("input"))?;
            prompt_tokens += prompt.len() + candidates.iter().map(Vec::len).sum::<usize>();
            streams.push(st.engine.score_with(adapter, prompt, candidates)?);
        }
        let done = futures_util::future::join_all(streams.into_iter().map(|s| s.completion()))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let mut data = Vec::new();
        for (index, c) in done.iter().enumerate() {
            let scores = c
                .scores
                .as_ref()
                .ok_or_else(|| ApiError::server_error("the engine returned no scores"))?;
            data.push(json!({
                "index": index,
                "label": labels[scores.best],
                "probs": scores.probs,
                "log_probs": scores.log_probs,
                "num_classes": labels.len(),
            }));
        }
        let metrics: Vec<&RequestMetrics> = done.iter().map(|c| &c.metrics).collect();
        Ok::<_, ApiError>(
            axum::Json(json!({
                "id": new_id("classify"),
                "object": "list",
                "created": now_secs(),
                "model": model,
                "labels": labels,
                "data": data,
                "usage": usage_of(&st, prompt_tokens, None, &metrics),
            }))
            .into_response(),
        )
    };
    go.await.unwrap_or_else(IntoResponse::into_response)
}
