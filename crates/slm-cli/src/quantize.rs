//! `slm quantize`: slm-compress's [`quantize_gguf`] on any model slm loads (a LoRA adapter merged
//! in first), written as a GGUF that llama.cpp and Ollama run, with an Ollama `Modelfile` beside
//! it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::json;
use slm_compress::{
    ImportanceMatrix, InputStats, Modelfile, QuantType, QuantizeConfig, calibration_chunks,
    quantize_gguf,
};
use slm_core::prelude::*;

use crate::ModelArgs;

/// The flags of `slm quantize`.
#[derive(clap::Args, Debug)]
pub struct QuantizeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The file type, as llama-quantize names it.
    #[arg(long = "type", value_parser = [
        "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1",
        "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k",
    ])]
    qtype: String,
    /// Importance matrix: calibration text (UTF-8, cut into --calib-ctx-token chunks), or an
    /// imatrix .gguf written by llama.cpp's llama-imatrix.
    #[arg(long)]
    imatrix: Option<PathBuf>,
    /// Tokens per calibration chunk.
    #[arg(long, default_value_t = 512)]
    calib_ctx: usize,
    /// Calibration chunks used at most.
    #[arg(long, default_value_t = 32)]
    calib_chunks: usize,
    /// Every matrix the file type's default type (llama-quantize --pure).
    #[arg(long)]
    pure: bool,
    /// The output .gguf file.
    #[arg(long)]
    out: PathBuf,
    /// Where to write the Ollama Modelfile [default: `Modelfile` beside --out].
    #[arg(long)]
    modelfile: Option<PathBuf>,
    /// Write no Modelfile.
    #[arg(long, conflicts_with = "modelfile")]
    no_modelfile: bool,
}

/// Runs `slm quantize`, printing `{"out","type","file_type","bytes","params",
/// "bits_per_weight","tensor_types","imatrix","modelfile","template_family"}`.
pub fn run(args: QuantizeArgs) -> Result<()> {
    let qtype: QuantType = args.qtype.parse()?;
    let out_dir = match args.out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = args
        .out
        .file_name()
        .context("--out needs a file name")?
        .to_string_lossy()
        .into_owned();
    std::fs::create_dir_all(&out_dir).with_context(|| out_dir.display().to_string())?;

    // An adapter is merged and the model re-read as a Hugging Face directory (f32, in a
    // temporary directory beside --out), named after the base so the GGUF's general.name is
    // the model's.
    let needs_decoder =
        args.model.adapter.is_some() || is_calibration_text(args.imatrix.as_deref());
    let (ckpt, decoder) = if needs_decoder {
        let (ckpt, decoder) = crate::load(&args.model)?;
        (ckpt, Some(decoder.merge_adapters()))
    } else {
        (crate::open(&args.model.model)?, None)
    };
    let mut merged_dir = None;
    let ckpt = match (&args.model.adapter, &decoder) {
        (Some(_), Some(merged)) => {
            let stem = args
                .model
                .model
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into());
            let tmp = merged_dir.insert(tempfile::tempdir_in(&out_dir)?);
            let dir = tmp.path().join(stem);
            save_hf_dir(merged, ckpt.tokenizer.as_ref(), &dir, SaveDtype::F32)?;
            Checkpoint::open(&dir)?
        }
        _ => ckpt,
    };

    let mut config = QuantizeConfig::new(qtype);
    config.pure = args.pure;
    if let Some(path) = &args.imatrix {
        let shown = path.display().to_string();
        let matrix = if is_calibration_text(Some(path)) {
            let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
            let tokenizer = ckpt
                .tokenizer
                .as_ref()
                .context("the model has no tokenizer")?;
            let chunks = calibration_chunks(tokenizer, &text, args.calib_ctx, args.calib_chunks)?;
            let decoder = decoder.as_ref().context("calibration needs the model")?;
            let stats = InputStats::collect(decoder, &chunks)?;
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            ImportanceMatrix::from_stats(&stats, name)?
        } else {
            ImportanceMatrix::from_llama_imatrix(path)?
        };
        config = config.with_imatrix(matrix, shown);
    }
    if !qtype.is_quantized() && config.imatrix.is_some() {
        bail!("--imatrix only affects quantized types, not {qtype}");
    }

    let (writer, report) = quantize_gguf(&ckpt, &config)?;
    writer.write(&args.out)?;
    drop(merged_dir);

    let modelfile = if args.no_modelfile {
        None
    } else {
        let path = args
            .modelfile
            .clone()
            .unwrap_or_else(|| out_dir.join("Modelfile"));
        let m = Modelfile::new(&file_name, ckpt.tokenizer.as_ref());
        slm_core::io::write_atomic(&path, m.render().as_bytes())?;
        Some((path, m.template_family))
    };

    let mut tensor_types = std::collections::BTreeMap::<&str, usize>::new();
    for t in &report.tensors {
        *tensor_types.entry(t.ggml_type.name()).or_default() += 1;
    }
    println!(
        "{}",
        json!({
            "out": args.out,
            "type": qtype.name(),
            "file_type": qtype.file_type(),
            "bytes": std::fs::metadata(&args.out)?.len(),
            "params": report.params,
            "bits_per_weight": report.bits_per_weight,
            "tensor_types": tensor_types,
            "imatrix": config.imatrix.as_ref().map(|m| json!({
                "entries": m.entries.len(),
                "chunks": m.chunks,
                "weighted_tensors": report.weighted_tensors,
            })),
            "modelfile": modelfile.as_ref().map(|(p, _)| p),
            "template_family": modelfile.and_then(|(_, f)| f),
        })
    );
    Ok(())
}

/// Whether `--imatrix` names calibration text (anything but a `.gguf` file).
fn is_calibration_text(path: Option<&Path>) -> bool {
    path.is_some_and(|p| p.extension().is_none_or(|e| e != "gguf"))
}
