//! Reading what the tool evaluates: labelled prompts (JSONL with `prompt`
//! or `messages`, `weak`, `strong`, optional `type`), plain prompt files
//! (one prompt a line, `\n` for line breaks, as `examples/score` reads) and
//! Envoy access logs in the JSON format of `envoy/demo.yaml`.

use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};
use signalbox::request::{parse_chat, PromptView};

/// One prompt as a chat request body, so the classifier sees it exactly as
/// the filter would.
#[derive(Debug, Clone)]
pub struct Request {
    pub body: Vec<u8>,
}

impl Request {
    pub fn from_prompt(prompt: &str) -> Request {
        Request::from_messages(&json!([{"role": "user", "content": prompt}]))
    }

    pub fn from_messages(messages: &Value) -> Request {
        let body = json!({"model": "auto", "messages": messages});
        Request {
            body: body.to_string().into_bytes(),
        }
    }

    /// Calls `with` on the request's prompt view; `None` if the body is not
    /// a chat request the filter would accept.
    pub fn view<T>(&self, with: impl FnOnce(&PromptView<'_>) -> T) -> Option<T> {
        let request = parse_chat(&self.body).ok()?;
        Some(with(&request.prompt_view()))
    }
}

/// A prompt with how well a weak and a strong model answered it.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub request: Request,
    pub weak: f64,
    pub strong: f64,
    /// Prompt type (`chat`, `math`, …); `all` when the file gives none.
    pub kind: String,
    /// Where it came from; learning only compares prompts of one source.
    pub source: String,
}

#[derive(Deserialize)]
struct LabelledLine {
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<Value>,
    weak: f64,
    strong: f64,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))
}

pub fn read_labelled(path: &Path) -> Result<Vec<Labelled>, String> {
    let mut items = Vec::new();
    for (number, line) in read(path)?
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
    {
        let at = || format!("{}:{}", path.display(), number + 1);
        let row: LabelledLine = serde_json::from_str(line).map_err(|err| format!("{}: {err}", at()))?;
        let request = match (&row.prompt, &row.messages) {
            (Some(prompt), None) => Request::from_prompt(prompt),
            (None, Some(messages)) => Request::from_messages(messages),
            _ => return Err(format!("{}: give exactly one of `prompt` or `messages`", at())),
        };
        let kind = row.kind.unwrap_or_else(|| "all".to_string());
        items.push(Labelled {
            request,
            weak: row.weak,
            strong: row.strong,
            source: row.source.unwrap_or_else(|| kind.clone()),
            kind,
        });
    }
    Ok(items)
}

/// One prompt a line; `\n` in a line stands for a line break.
pub fn read_prompts(path: &Path) -> Result<Vec<Request>, String> {
    Ok(read(path)?
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| Request::from_prompt(&line.replace("\\n", "\n")))
        .collect())
}

/// What an access-log line tells about one routed request.
#[derive(Debug, Clone, Default)]
pub struct LoggedRequest {
    /// The prompt, when the tenant is audited (`audit_content`).
    pub request: Option<Request>,
    /// The score the filter gave it then.
    pub score: Option<f64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

/// Access-log lines of routed chat requests (`score` or `prompt` present).
/// Other lines (health checks, embeddings, pass-through) are skipped.
pub fn read_access_log(path: &Path) -> Result<Vec<LoggedRequest>, String> {
    let mut requests = Vec::new();
    for (number, line) in read(path)?.lines().enumerate() {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let text = |name: &str| {
            fields
                .get(name)
                .and_then(Value::as_str)
                .filter(|value| !value.is_empty())
        };
        let number_field = |name: &str| text(name).and_then(|value| value.parse::<f64>().ok());
        let logged = LoggedRequest {
            request: text("prompt").map(Request::from_prompt),
            score: number_field("score"),
            input_tokens: number_field("input_tokens").map(|tokens| tokens as u64),
            output_tokens: number_field("output_tokens").map(|tokens| tokens as u64),
        };
        if logged.request.is_none() && logged.score.is_none() {
            continue;
        }
        if logged.score.is_some_and(|score| !(0.0..=1.0).contains(&score)) {
            return Err(format!("{}:{}: score out of [0, 1]", path.display(), number + 1));
        }
        requests.push(logged);
    }
    Ok(requests)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("signalbox-eval-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn labelled_lines_take_a_prompt_or_messages() {
        let path = temp_file(
            "labelled.jsonl",
            concat!(
                r#"{"prompt":"hi","weak":1,"strong":1,"type":"chat"}"#,
                "\n",
                r#"{"messages":[{"role":"user","content":"2+2?"}],"weak":0,"strong":1}"#,
                "\n"
            ),
        );
        let items = read_labelled(&path).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].kind, "chat");
        assert_eq!(items[1].kind, "all");
        assert_eq!(
            items[1].request.view(|view| view.last_user_parts.join("")),
            Some("2+2?".to_string())
        );
        let both = temp_file("both.jsonl", r#"{"prompt":"a","messages":[],"weak":0,"strong":1}"#);
        assert!(read_labelled(&both).unwrap_err().contains(":1:"));
    }

    #[test]
    fn the_shipped_examples_read_as_the_manual_says() {
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let labelled = read_labelled(&examples.join("labelled.jsonl")).unwrap();
        assert_eq!(labelled.len(), 10);
        assert!(labelled.iter().all(|item| item.request.view(|_| ()).is_some()));
        let log = read_access_log(&examples.join("access.jsonl")).unwrap();
        assert_eq!(log.len(), 5);
        assert_eq!(log.iter().filter(|request| request.request.is_some()).count(), 2);
        assert_eq!(read_prompts(&examples.join("prompts.txt")).unwrap().len(), 14);
    }

    #[test]
    fn the_access_log_gives_prompts_scores_and_tokens_of_routed_requests() {
        let path = temp_file(
            "access.jsonl",
            concat!(
                r#"{"path":"/v1/chat/completions","score":"0.712","input_tokens":"120","output_tokens":"30","prompt":null}"#,
                "\n",
                r#"{"path":"/signalbox/health","score":null}"#,
                "\n",
                r#"{"path":"/v1/chat/completions","score":"0.100","prompt":"What is the capital of France?"}"#,
                "\nnot json\n"
            ),
        );
        let requests = read_access_log(&path).unwrap();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].score, Some(0.712));
        assert_eq!(requests[0].input_tokens, Some(120));
        assert!(requests[0].request.is_none());
        assert!(requests[1].request.is_some());
    }
}
