//! Chat templates of the families slm runs (Llama 3.1 / 3.2 with the date and tool preamble,
//! Phi-3.5, Qwen2.5, Mistral Nemo) render byte for byte as transformers renders them
//! (`tests/data/coverage/templates/renders.json`, made by `render_templates.py` with
//! transformers' own `render_jinja_template`).

mod common;

use common::*;
use slm_core::tokenizer::ChatTemplate;

#[test]
fn chat_templates_render_as_transformers() {
    let renders = json("coverage/templates/renders.json");
    let cases = renders["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    for case in cases {
        let name = case["template"].as_str().unwrap();
        let source =
            std::fs::read_to_string(fixture(&format!("coverage/templates/{name}"))).unwrap();
        let template = ChatTemplate::new(source).unwrap();
        let tools = case.get("tools").filter(|t| !t.is_null());
        let got = template
            .render_with(
                &case["messages"],
                case["add_generation_prompt"].as_bool().unwrap(),
                tools,
                case["extra"].as_object().unwrap(),
            )
            .unwrap_or_else(|e| panic!("{name} / {}: {e}", case["title"]));
        assert_eq!(
            got,
            case["rendered"].as_str().unwrap(),
            "{name} / {} (generation prompt {})",
            case["title"],
            case["add_generation_prompt"]
        );
    }
}

#[test]
fn llama3_preamble_dates_itself_without_date_string() {
    // Without `date_string` the Llama 3.x template calls strftime_now("%d %b %Y"), as
    // transformers provides it: today's date, not the template's "26 Jul 2024" fallback.
    let source = std::fs::read_to_string(fixture(
        "coverage/templates/meta-llama-Llama-3.2-3B-Instruct.jinja",
    ))
    .unwrap();
    let template = ChatTemplate::new(source).unwrap();
    let messages = serde_json::json!([{"role": "user", "content": "Hi"}]);
    let got = template
        .render_with(&messages, true, None, &serde_json::Map::new())
        .unwrap();
    let line = got
        .lines()
        .find(|l| l.starts_with("Today Date: "))
        .unwrap()
        .trim_start_matches("Today Date: ");
    let parts: Vec<&str> = line.split(' ').collect();
    assert_eq!(parts.len(), 3, "{line}");
    assert!(
        parts[0].len() == 2 && parts[0].parse::<u32>().is_ok(),
        "{line}"
    );
    assert!(parts[2].parse::<u32>().unwrap() >= 2026, "{line}");
}
