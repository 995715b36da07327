//! Natural language to SQL over a small SQLite schema, with a task model of 135M parameters:
//! a template-generated dataset, teacher-written paraphrases (synthetic augmentation), a LoRA
//! fine-tune, and execution accuracy (the predicted query's result set against the gold one's)
//! before and after, with the energy of every phase.
//!
//! ```text
//! cargo run --example text2sql              # ~20 minutes on 2 cores (dependencies built optimised)
//! cargo run --example text2sql -- --quick   # a slice: ~8 minutes
//! ```
//! SmolLM2-135M-Instruct is fetched into `~/.cache/slm` on first use. Generation is constrained
//! by a Lark grammar of the SELECT statements this schema admits (its tables and columns only),
//! so every prediction parses; what is left to measure is whether it means the right thing.
//! The tuned adapter is served unmerged on the CPU fast path beside the base model, through one
//! continuous-batching engine.

#[path = "../common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use clap::Parser;
use rusqlite::Connection;
use slm::core::checkpoint::Checkpoint;
use slm::core::fast::FastDecoderConfig;
use slm::core::peft::{ALL_PROJECTIONS, LoraConfig};
use slm::core::prelude::*;
use slm::core::step::AdapterId;
use slm::data::Example;
use slm::data::inputs::PromptTemplate;
use slm::data::synth::{AugmentConfig, GenerationRequest, QualityBounds, TeacherConfig};
use slm::data::synth::{TeacherGenerator, augment};
use slm::energy::{EnergyTracker, TrackerConfig, meters, report};
use slm::infer::constraint::{ConstraintCompiler, OutputConstraint};
use slm::infer::engine::{Engine, EngineConfig, Request};
use slm::infer::{GenerationConfig, SamplingParams};
use slm::train::{TrainConfig, Trainer, TuneMode};

#[derive(Parser)]
struct Args {
    /// A slice: fewer paraphrases, training steps and test questions.
    #[arg(long)]
    quick: bool,
    /// Where the adapter, the training logs and `results.json` go.
    #[arg(long, default_value = "target/text2sql")]
    out: PathBuf,
    /// Training steps (default: 120, or 40 with --quick).
    #[arg(long)]
    steps: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// The database: two tables, filled deterministically.

const SCHEMA: &str = "CREATE TABLE employees (id INTEGER PRIMARY KEY, name TEXT, department TEXT, \
city TEXT, salary INTEGER, hired INTEGER);\nCREATE TABLE departments (name TEXT PRIMARY KEY, \
budget INTEGER, floor INTEGER);";
const DEPARTMENTS: [&str; 6] = [
    "Sales",
    "Engineering",
    "Marketing",
    "Support",
    "Finance",
    "Legal",
];
const CITIES: [&str; 6] = ["Paris", "Berlin", "Madrid", "Rome", "Lisbon", "Vienna"];
const NAMES: [&str; 24] = [
    "Alice", "Bruno", "Chloe", "David", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas",
    "Karin", "Luca", "Marta", "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tara", "Umar",
    "Vera", "Wim", "Yara",
];

fn database() -> Result<Connection> {
    let db = Connection::open_in_memory()?;
    db.execute_batch(SCHEMA)?;
    for (i, name) in NAMES.iter().enumerate() {
        db.execute(
            "INSERT INTO employees VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            (
                i as i64 + 1,
                name,
                DEPARTMENTS[i % 6],
                CITIES[(i * 5 + i / 6) % 6],
                40_000 + (i as i64 * 7_919 % 61) * 1_000,
                2012 + (i as i64 * 7) % 11,
            ),
        )?;
    }
    for (i, d) in DEPARTMENTS.iter().enumerate() {
        let budget = 200_000 + 50_000 * ((i * 3) % 6) as i64;
        db.execute(
            "INSERT INTO departments VALUES (?1, ?2, ?3)",
            (d, budget, i as i64 + 1),
        )?;
    }
    Ok(db)
}

/// A query's result set as sorted rows of text (order-insensitive, as execution accuracy
/// is usually scored), or `None` when SQLite refuses the query.
fn result_set(db: &Connection, sql: &str) -> Option<Vec<String>> {
    let mut stmt = db.prepare(sql).ok()?;
    let cols = stmt.column_count();
    let mut rows: Vec<String> = stmt
        .query_map([], |row| {
            let cells: Vec<String> = (0..cols)
                .map(|c| match row.get_ref(c) {
                    Ok(v) => match v {
                        rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                        rusqlite::types::ValueRef::Real(f) => format!("{f:.4}"),
                        rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into(),
                        _ => "NULL".into(),
                    },
                    Err(_) => "?".into(),
                })
                .collect();
            Ok(cells.join("|"))
        })
        .ok()?
        .collect::<Result<_, _>>()
        .ok()?;
    rows.sort();
    Some(rows)
}

// ---------------------------------------------------------------------------------------------
// The dataset: SQL templates, each with three phrasings of its question. The first two train;
// the third is held out for the test split, so the test asks in words training never showed.

struct Template {
    sql: &'static str,
    questions: [&'static str; 3],
}

const TEMPLATES: &[Template] = &[
    Template {
        sql: "SELECT COUNT(*) FROM employees WHERE department = '{dept}';",
        questions: [
            "How many employees work in {dept}?",
            "Count the people in the {dept} department.",
            "What is the headcount of {dept}?",
        ],
    },
    Template {
        sql: "SELECT AVG(salary) FROM employees WHERE department = '{dept}';",
        questions: [
            "What is the average salary in {dept}?",
            "How much does {dept} pay on average?",
            "Give the mean salary of the {dept} team.",
        ],
    },
    Template {
        sql: "SELECT name FROM employees WHERE city = '{city}';",
        questions: [
            "Who works in {city}?",
            "List the employees based in {city}.",
            "Name everyone located in {city}.",
        ],
    },
    Template {
        sql: "SELECT MAX(salary) FROM employees WHERE city = '{city}';",
        questions: [
            "What is the highest salary in {city}?",
            "What does the best paid person in {city} earn?",
            "Top salary among {city} employees?",
        ],
    },
    Template {
        sql: "SELECT name FROM employees WHERE department = '{dept}' AND city = '{city}';",
        questions: [
            "Who in {dept} works in {city}?",
            "List the {dept} employees based in {city}.",
            "Which {dept} staff are located in {city}?",
        ],
    },
    Template {
        sql: "SELECT name FROM employees WHERE salary > {n};",
        questions: [
            "Who earns more than {n}?",
            "List the employees with a salary above {n}.",
            "Which people are paid over {n}?",
        ],
    },
    Template {
        sql: "SELECT COUNT(*) FROM employees WHERE hired = {year};",
        questions: [
            "How many people were hired in {year}?",
            "Count the employees who joined in {year}.",
            "What number of staff started in {year}?",
        ],
    },
    Template {
        sql: "SELECT name FROM employees WHERE hired > {year};",
        questions: [
            "Who was hired after {year}?",
            "List the employees who joined after {year}.",
            "Which staff started later than {year}?",
        ],
    },
    Template {
        sql: "SELECT budget FROM departments WHERE name = '{dept}';",
        questions: [
            "What is the budget of {dept}?",
            "How much money does the {dept} department have?",
            "Show the {dept} budget.",
        ],
    },
    Template {
        sql: "SELECT name FROM departments WHERE floor = {floor};",
        questions: [
            "Which department is on floor {floor}?",
            "What department sits on floor {floor}?",
            "Name the department located on floor {floor}.",
        ],
    },
];

/// Every slot filling of `t`'s placeholders.
fn fillings(t: &Template) -> Vec<Vec<(&'static str, String)>> {
    let text = format!("{} {}", t.sql, t.questions[0]);
    let mut out = vec![Vec::new()];
    let slots: [(&str, Vec<String>); 5] = [
        (
            "{dept}",
            DEPARTMENTS.iter().map(|s| s.to_string()).collect(),
        ),
        ("{city}", CITIES.iter().map(|s| s.to_string()).collect()),
        ("{n}", (5..=9).map(|k| (k * 10_000).to_string()).collect()),
        ("{year}", (2013..=2021).map(|y| y.to_string()).collect()),
        ("{floor}", (1..=6).map(|f| f.to_string()).collect()),
    ];
    for (slot, values) in slots {
        if text.contains(slot) {
            out = out
                .into_iter()
                .flat_map(|f| {
                    values.iter().map(move |v| {
                        let mut f = f.clone();
                        f.push((slot, v.clone()));
                        f
                    })
                })
                .collect();
        }
    }
    out
}

fn fill(text: &str, filling: &[(&str, String)]) -> String {
    filling
        .iter()
        .fold(text.to_string(), |t, (slot, v)| t.replace(slot, v))
}

/// (train, test): the first two phrasings of every filling, and the third.
fn dataset() -> (Vec<Example>, Vec<Example>) {
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (ti, t) in TEMPLATES.iter().enumerate() {
        for (fi, f) in fillings(t).iter().enumerate() {
            let sql = fill(t.sql, f);
            let slots: Vec<&str> = f.iter().map(|(_, v)| v.as_str()).collect();
            for (qi, q) in t.questions.iter().enumerate() {
                let e = Example::new(format!("t{ti}-f{fi}-q{qi}"), fill(q, f))
                    .with_target(sql.clone())
                    .with_meta("slots", slots.join("|"));
                if qi < 2 { train.push(e) } else { test.push(e) }
            }
        }
    }
    (train, test)
}

/// The SELECT statements this schema admits, as a Lark grammar (llguidance's dialect).
fn sql_grammar() -> String {
    let col = "\"id\" | \"name\" | \"department\" | \"city\" | \"salary\" | \"hired\" | \"budget\" | \"floor\"";
    format!(
        r#"start: "SELECT " items " FROM " table where? order? ";"
items: item (", " item)*
item: column | agg "(" (column | "*") ")"
agg: "COUNT" | "AVG" | "MAX" | "MIN" | "SUM"
column: {col}
table: "employees" | "departments"
where: " WHERE " cond (" AND " cond)*
cond: column " " op " " value
op: "=" | ">" | "<" | ">=" | "<=" | "!="
value: /'[A-Za-z ]{{1,20}}'/ | /[0-9]{{1,7}}/
order: " ORDER BY " column (" ASC" | " DESC")? (" LIMIT " /[0-9]{{1,3}}/)?
"#
    )
}

fn main() -> Result<()> {
    let args = Args::parse();
    let steps = args.steps.unwrap_or(if args.quick { 40 } else { 120 });
    let tracker = EnergyTracker::new(meters::default_meters(), TrackerConfig::default())?;
    let gguf = common::smollm2()?;
    let base = Checkpoint::open(&gguf)?;
    let tokenizer = base
        .tokenizer
        .clone()
        .context("the GGUF has no tokenizer")?;
    let db = database()?;
    let template = PromptTemplate::chat(format!(
        "Write one SQLite query that answers the question over this schema:\n{SCHEMA}"
    ));

    // Phase 1: the templated dataset; gold queries checked against the database.
    let (mut train, mut test) = dataset();
    for e in train.iter().chain(&test) {
        let sql = e.target.as_deref().unwrap_or_default();
        ensure!(result_set(&db, sql).is_some(), "gold query fails: {sql}");
    }
    if args.quick {
        // Every fourth test question, all templates represented.
        test = test.into_iter().step_by(4).collect();
    }
    println!(
        "== dataset: {} train, {} test questions",
        train.len(),
        test.len()
    );

    // Phase 2: teacher paraphrases. The base model (few-shot, sampled) writes new questions
    // for a sample of the training queries; slm-data's filters drop duplicates and bad lengths,
    // and we drop any that lost a slot value (a paraphrase of another question).
    let fast = FastDecoderConfig::default().init(&base.config, base.weights.as_ref())?;
    {
        let _phase = tracker.phase("augmentation")?;
        let instruction = "Each text is a question about company data that the SQL query in \
                           its label answers. Write one more such question, in other words.";
        let mut teacher =
            TeacherGenerator::new(&fast, &tokenizer, TeacherConfig::new(instruction))?;
        let quality = QualityBounds {
            min_chars: 12,
            max_chars: 160,
            ..QualityBounds::default()
        };
        let config = AugmentConfig::new(quality);
        let by_sql = group_by_target(&train);
        let every = if args.quick { 8 } else { 3 };
        let (mut kept, mut dropped, mut lost_slot) = (Vec::new(), 0, 0);
        for (sql, seeds) in by_sql.iter().step_by(every) {
            let request = GenerationRequest {
                label: sql,
                seeds,
                count: 2,
            };
            let out = augment(&mut teacher, &request, &train, &test, &config, None)?;
            dropped += out.report.dropped.len();
            let slots = seeds[0].meta["slots"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            for mut e in out.kept {
                if slots.split('|').all(|s| e.input.contains(s)) {
                    e.target = e.label.take();
                    kept.push(e);
                } else {
                    lost_slot += 1;
                }
            }
        }
        println!(
            "== augmentation: {} paraphrases kept ({} dropped by the filters, {} lost a value), e.g. {:?}",
            kept.len(),
            dropped,
            lost_slot,
            kept.first().map(|e| &e.input)
        );
        train.extend(kept);
    }

    // Phase 3: LoRA on every projection; the adapter is saved as a peft directory.
    let adapter_dir = {
        let _phase = tracker.phase("training")?;
        let tokens = train
            .iter()
            .map(|e| template.tokenize(e, &tokenizer))
            .collect::<Result<Vec<_>, _>>()?;
        let config = TrainConfig {
            max_steps: Some(steps),
            batch_size: 8,
            seq_len: 192,
            lr: 1e-3,
            warmup: 0.1,
            seed: 7,
            ..TrainConfig::default()
        };
        let lora = LoraConfig::new(16, 32.0).with_targets(&ALL_PROJECTIONS);
        let model = base.load_decoder(&Device::flex().autodiff())?;
        println!("== training: LoRA r=16, {steps} steps of 8 examples");
        let (_, report) = Trainer::new(config, TuneMode::Lora(lora), args.out.clone(), "smollm2")
            .with_tokenizer(&tokenizer)
            .run(model, &tokens, None, false)?;
        println!("   final loss {:.3}", report.final_loss.unwrap_or(f64::NAN));
        args.out.join("adapter")
    };

    // Phase 4: execution accuracy of the base model and of the adapter, both through one
    // engine on the fast path (the adapter unmerged), every prediction grammar-constrained.
    let mut fast = fast;
    let adapter = fast.load_adapter("text2sql", &adapter_dir)?;
    let engine = Engine::start(
        Arc::new(fast),
        Some(Arc::new(tokenizer.clone())),
        EngineConfig::default(),
    )?;
    let compiler = ConstraintCompiler::new(&tokenizer, eos(&base.config)?, base.config.vocab_size)?;
    let grammar = compiler.compile(&OutputConstraint::Lark(sql_grammar()))?;
    let mut results =
        serde_json::json!({ "train": train.len(), "test": test.len(), "steps": steps });
    for (key, name, which) in [
        ("base", "base (zero-shot)", None),
        ("tuned", "LoRA-tuned", Some(adapter)),
    ] {
        let _phase = tracker.phase(&format!("evaluation/{key}"))?;
        let (correct, total) =
            accuracy(&engine, &template, &tokenizer, &grammar, which, &test, &db)?;
        let acc = correct as f64 / total as f64;
        println!(
            "== {name}: execution accuracy {correct}/{total} = {:.1}%",
            100.0 * acc
        );
        results[key] = serde_json::json!({ "correct": correct, "accuracy": acc });
    }
    engine.shutdown();
    let energy = tracker.stop()?;
    println!("{}", report::markdown_section(&energy, None));
    let path = args.out.join("results.json");
    report::write_atomic(&path, serde_json::to_string_pretty(&results)?.as_bytes())?;
    println!("results: {}", path.display());
    Ok(())
}

/// Training questions grouped by their gold query, in first-seen order.
fn group_by_target(train: &[Example]) -> Vec<(String, Vec<Example>)> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<(String, Vec<Example>)> = Vec::new();
    for e in train {
        let sql = e.target.clone().unwrap_or_default();
        let i = *index.entry(sql.clone()).or_insert_with(|| {
            groups.push((sql, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(e.clone());
    }
    groups
}

/// Correct predictions (same result set as the gold query) out of `test`, all submitted at
/// once so the engine batches them.
fn accuracy(
    engine: &Engine,
    template: &PromptTemplate,
    tokenizer: &Tokenizer,
    grammar: &slm::infer::constraint::Grammar,
    adapter: Option<AdapterId>,
    test: &[Example],
    db: &Connection,
) -> Result<(usize, usize)> {
    let settings = GenerationConfig {
        max_new_tokens: 64,
        sampling: SamplingParams::greedy(),
        ..Default::default()
    };
    let mut streams = Vec::new();
    for e in test {
        let prompt = tokenizer.encode(&template.render_prompt(&e.input, tokenizer)?, false)?;
        let mut request = Request::new(prompt, settings.clone()).with_grammar(grammar.clone());
        if let Some(a) = adapter {
            request = request.with_adapter(a);
        }
        streams.push(engine.submit(request)?);
    }
    let mut correct = 0;
    for (e, stream) in test.iter().zip(streams) {
        let predicted = stream.wait()?.text;
        let gold = result_set(db, e.target.as_deref().unwrap_or_default());
        let got = result_set(db, &predicted);
        if got.is_some() && got == gold {
            correct += 1;
        }
    }
    Ok((correct, test.len()))
}

fn eos(config: &ModelConfig) -> Result<u32> {
    config
        .eos_token_ids
        .first()
        .copied()
        .context("the model has no EOS token")
}
