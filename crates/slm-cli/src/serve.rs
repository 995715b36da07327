//! `slm serve`: the OpenAI-compatible server (slm-infer's `server`) over the continuous-batching
//! engine, on the CPU fast path for GGUF files (or the burn decoder, any device), with this
//! machine's energy meters charging every request its share.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use slm_core::fast::{DEFAULT_BLOCK_SIZE, FastDecoderConfig, KvPool};
use slm_core::prelude::*;
use slm_core::step::{BatchedLm, PerSequence};
use slm_data::Example;
use slm_data::inputs::TaskSpec;
use slm_infer::engine::{Engine, EngineConfig};
use slm_infer::server::{ClassifyPrompts, ServerState, serve};

use crate::backend::BackendArg;
use crate::{DeviceArg, ModelArgs};

/// The flags of `slm serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// A .gguf file or a Hugging Face model directory (with its tokenizer).
    #[arg(long)]
    model: PathBuf,
    /// A peft LoRA adapter directory served beside the base as model `NAME` (repeatable):
    /// applied per request, unmerged, requests of different adapters batched together. Its
    /// `task.json` (from `slm finetune`), if any, gives `/v1/classify` its labels and prompt.
    #[arg(long = "adapter", value_name = "NAME=DIR", value_parser = parse_adapter)]
    adapters: Vec<(String, PathBuf)>,
    /// Where to run: `cpu` or `cuda:N` (the burn decoder).
    #[arg(long, default_value = "cpu", value_parser = crate::parse_device)]
    device: DeviceArg,
    /// `auto` (the fast path for GGUF on the CPU), `fast` or `burn`.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    backend: BackendArg,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one; the address is printed on stderr).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Requests allowed to wait; more are answered 429.
    #[arg(long, default_value_t = 256)]
    max_queue: usize,
    /// Sequences decoded together at most.
    #[arg(long, default_value_t = 32)]
    max_running: usize,
    /// Memory for the key/value cache, shared by all sequences (`1GiB`, `512MiB`, bytes).
    #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
    kv_memory: usize,
    /// The name requests use as `model` (default: the file or directory name).
    #[arg(long)]
    served_model_name: Option<String>,
    /// Threads of the fast path (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Grid region for `usage.gco2e` (ISO code, e.g. `FR`; default: world average).
    #[arg(long)]
    region: Option<String>,
}

/// `NAME=DIR`.
fn parse_adapter(s: &str) -> std::result::Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, dir)) if !name.is_empty() && !dir.is_empty() => {
            Ok((name.to_string(), PathBuf::from(dir)))
        }
        _ => Err(format!(
            "expected NAME=DIR (a peft adapter directory), got `{s}`"
        )),
    }
}

/// `1GiB`, `512MiB`, `64KiB`, `2GB`, or a plain number of bytes.
fn parse_bytes(s: &str) -> std::result::Result<usize, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("not a size: `{s}`"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit `{other}` (use KiB, MiB, GiB)")),
    };
    Ok((n * scale) as usize)
}

impl ServeArgs {
    /// The defaults of `slm serve --model PATH`, with `threads` (for `slm bench-serve`).
    pub(crate) fn for_model(model: &std::path::Path, threads: Option<usize>) -> Result<Self> {
        use clap::{Args, FromArgMatches};
        let mut argv = vec![
            "serve".to_string(),
            "--model".into(),
            model.display().to_string(),
        ];
        if let Some(t) = threads {
            argv.extend(["--threads".into(), t.to_string()]);
        }
        let matches =
            ServeArgs::augment_args(clap::Command::new("serve")).try_get_matches_from(argv)?;
        Ok(ServeArgs::from_arg_matches(&matches)?)
    }
}

/// What `slm serve` serves: the engine (on the fast path or burn) and the server state.
pub(crate) struct Served {
    pub(crate) engine: Engine,
    pub(crate) state: ServerState,
    pub(crate) name: String,
    pub(crate) fast: bool,
}

/// Loads the model and starts the engine, metered by this machine's meters.
pub(crate) fn build(args: &ServeArgs) -> Result<Served> {
    let ckpt = Checkpoint::open(&args.model)?;
    let tokenizer = Arc::new(
        ckpt.tokenizer
            .clone()
            .context("this model has no tokenizer; the server needs one")?,
    );
    let model_args = ModelArgs {
        model: args.model.clone(),
        adapter: None,
        device: args.device,
        backend: args.backend,
    };
    let fast = model_args.uses_fast_path(&ckpt)?;
    if !fast && !args.adapters.is_empty() {
        anyhow::bail!(
            "--adapter is served on the CPU fast path only (a model on the CPU with --backend \
             auto or fast)"
        );
    }
    let name = args.served_model_name.clone().unwrap_or_else(|| {
        args.model
            .file_stem()
            .map_or("model".into(), |s| s.to_string_lossy().into_owned())
    });
    let model: Arc<dyn BatchedLm> = if fast {
        let mut model = FastDecoderConfig {
            kv_budget_bytes: args.kv_memory,
            threads: args.threads,
            ..Default::default()
        }
        .init(&ckpt.config, ckpt.weights.as_ref())?;
        for (adapter, dir) in &args.adapters {
            if *adapter == name {
                anyhow::bail!("adapter name `{adapter}` is the base model's served name");
            }
            model
                .load_adapter(adapter, dir)
                .with_context(|| format!("loading adapter `{adapter}` from {}", dir.display()))?;
        }
        Arc::new(model)
    } else {
        // Counted in blocks as the fast path's pool would hold them in the same memory.
        let c = &ckpt.config;
        let per_token =
            KvPool::bytes_per_token(c.num_hidden_layers, c.num_key_value_heads * c.head_dim);
        let blocks = args.kv_memory / (per_token * DEFAULT_BLOCK_SIZE).max(1);
        Arc::new(PerSequence::new(
            crate::load_decoder(&ckpt, &model_args)?,
            DEFAULT_BLOCK_SIZE,
            blocks,
        ))
    };
    let engine = Engine::start_metered(
        model,
        Some(tokenizer.clone()),
        EngineConfig {
            max_queue: args.max_queue,
            max_running: args.max_running,
            ..Default::default()
        },
        slm_energy::default_meters(),
    )?;
    // `/v1/classify` scores labels as `slm eval` does: the model's task (task.json from `slm
    // finetune`) when it has one, else the default classifier prompt over the asked labels.
    let task = if args.model.is_dir() {
        TaskSpec::load(&args.model)?
    } else {
        None
    };
    let prompts = TaskPrompts {
        task,
        tokenizer: (*tokenizer).clone(),
        context: ckpt.config.context_length(),
    };
    let mut state = ServerState::new(engine.clone(), tokenizer.clone(), name.clone())
        .with_classifier(Arc::new(prompts));
    for (adapter, dir) in &args.adapters {
        let prompts = TaskSpec::load(dir)?.map(|task| {
            Arc::new(TaskPrompts {
                task: Some(task),
                tokenizer: (*tokenizer).clone(),
                context: ckpt.config.context_length(),
            }) as Arc<dyn ClassifyPrompts>
        });
        state = state.with_adapter(adapter, dir.display().to_string(), prompts);
    }
    if let Some(region) = &args.region {
        state = state.with_carbon(slm_energy::TrackerConfig::for_region(region)?.carbon);
    }
    Ok(Served {
        engine,
        state,
        name,
        fast,
    })
}

/// `/v1/classify`'s prompts from a [`TaskSpec`] (see [`build`]).
#[derive(Debug)]
struct TaskPrompts {
    task: Option<TaskSpec>,
    tokenizer: slm_core::tokenizer::Tokenizer,
    context: usize,
}

impl ClassifyPrompts for TaskPrompts {
    fn default_labels(&self) -> Option<Vec<String>> {
        self.task.as_ref().and_then(|t| t.labels.clone())
    }

    fn build(&self, input: &str, labels: &[String]) -> Result<(Vec<u32>, Vec<Vec<u32>>), String> {
        let task = match &self.task {
            Some(t) if t.labels.is_some() => t.clone(),
            _ => TaskSpec::classifier(labels.to_vec(), &self.tokenizer, self.context),
        };
        let example = Example::new("request", input);
        slm_train::label_prompt(&task, &self.tokenizer, &example, labels).map_err(|e| e.to_string())
    }
}

/// Runs `slm serve` until Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> Result<()> {
    let Served {
        state, name, fast, ..
    } = build(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
        let addr = listener.local_addr()?;
        eprintln!(
            "slm serve: `{name}` ({}) on http://{addr}/v1",
            if fast { "fast path" } else { "burn" }
        );
        serve(listener, state, shutdown_signal()).await?;
        eprintln!("slm serve: stopped");
        Ok(())
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
    }
}
