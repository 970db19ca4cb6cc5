//! Is a whole chat answer good enough to return, or should a stronger model
//! try? Cheap, explainable checks of an OpenAI-format answer against what
//! its request asked for: cut off, empty, filtered, a refusal, hedging, a
//! very short answer to a long question, JSON the request's
//! `response_format` cannot take, tool calls outside the declared tools,
//! low token log-probabilities. Each weakness has a quality score; the
//! answer's quality is the lowest, and a tier's cascade escalates below its
//! threshold.

use serde::Deserialize;
use serde_json::Value;

use crate::config::cascade::Cascade;

/// What an answer was found to lack, worst first in [`Weakness::quality`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weakness {
    /// `finish_reason: length`: cut at the output limit.
    Truncated,
    /// `finish_reason: content_filter`.
    Filtered,
    /// No text and no tool call.
    Empty,
    /// `response_format` asked for JSON (or a schema's required keys) and
    /// the content is not that.
    InvalidJson,
    /// A tool call names no declared tool, lacks a required argument or has
    /// arguments that are not a JSON object; or a tool call was required
    /// and none came.
    ToolMismatch,
    /// The model declined (`message.refusal`, or an opening like "I can't help").
    Refusal,
    /// The provider's logprobs say the model was unsure of its tokens.
    LowConfidence,
    /// A few words in answer to a long prompt.
    Short,
    /// Several hedges ("I'm not sure", "I don't know", …).
    Hedging,
    /// One hedge.
    Hedge,
}

impl Weakness {
    /// Quality left by this weakness, in [0, 1].
    pub fn quality(self) -> f64 {
        match self {
            Weakness::Truncated
            | Weakness::Filtered
            | Weakness::Empty
            | Weakness::InvalidJson
            | Weakness::ToolMismatch => 0.0,
            Weakness::Refusal => 0.1,
            Weakness::LowConfidence => 0.3,
            Weakness::Short => 0.4,
            Weakness::Hedging => 0.45,
            Weakness::Hedge => 0.7,
        }
    }

    /// The name used in headers and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Weakness::Truncated => "truncated",
            Weakness::Filtered => "filtered",
            Weakness::Empty => "empty",
            Weakness::InvalidJson => "invalid_json",
            Weakness::ToolMismatch => "tool_mismatch",
            Weakness::Refusal => "refusal",
            Weakness::LowConfidence => "low_confidence",
            Weakness::Short => "short",
            Weakness::Hedging => "hedging",
            Weakness::Hedge => "hedge",
        }
    }

    pub const ALL: [Weakness; 10] = [
        Weakness::Truncated,
        Weakness::Filtered,
        Weakness::Empty,
        Weakness::InvalidJson,
        Weakness::ToolMismatch,
        Weakness::Refusal,
        Weakness::LowConfidence,
        Weakness::Short,
        Weakness::Hedging,
        Weakness::Hedge,
    ];
}

/// An answer's assessment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Assessment {
    /// Distinct weaknesses found, in the order checked.
    pub weaknesses: Vec<Weakness>,
}

impl Assessment {
    /// The lowest quality any weakness leaves (1 without one).
    pub fn quality(&self) -> f64 {
        self.weaknesses
            .iter()
            .map(|weakness| weakness.quality())
            .fold(1.0, f64::min)
    }

    pub fn is_weak(&self, cascade: &Cascade) -> bool {
        self.quality() < cascade.threshold
    }

    /// `truncated,hedge` (empty when none).
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.weaknesses.iter().map(|weakness| weakness.name()).collect();
        names.join(",")
    }

    fn note(&mut self, weakness: Weakness) {
        if !self.weaknesses.contains(&weakness) {
            self.weaknesses.push(weakness);
        }
    }
}

/// A question at least this long (characters of the last user message)
/// deserves more than a [`SHORT_ANSWER_CHARS`] answer.
const LONG_QUESTION_CHARS: usize = 1200;
const SHORT_ANSWER_CHARS: usize = 24;
/// An answer cut at a limit this small was cut by the client's choice: a
/// stronger model would be cut there too.
const MIN_USEFUL_OUTPUT_TOKENS: u64 = 32;
/// Refusals open the answer: only its start is searched.
const REFUSAL_SCAN_CHARS: usize = 200;
/// Hedges are counted in the answer's first few kilobytes.
const HEDGE_SCAN_BYTES: usize = 4096;

const REFUSAL_OPENINGS: [&str; 12] = [
    "i'm sorry, but i can't",
    "i'm sorry, but i cannot",
    "sorry, i can't",
    "i can't help with",
    "i cannot help with",
    "i can't assist with",
    "i cannot assist with",
    "i'm unable to",
    "i am unable to",
    "i'm not able to help",
    "i won't be able to",
    "as an ai language model, i cannot",
];

const HEDGES: [&str; 12] = [
    "i'm not sure",
    "i am not sure",
    "not certain",
    "i don't know",
    "i do not know",
    "hard to say",
    "it's unclear",
    "it is unclear",
    "i might be wrong",
    "i could be wrong",
    "my best guess",
    "i'm guessing",
];

/// What the request asked of its answer, read from its chat body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Expectations {
    /// `response_format` asks for JSON; with a schema, its top-level
    /// `required` keys.
    pub json: Option<Vec<String>>,
    /// Declared function tools: name and required argument names.
    pub tools: Vec<(String, Vec<String>)>,
    /// `tool_choice` makes a tool call mandatory (`required` or a named function).
    pub tool_call_required: bool,
    /// Characters of the last user message.
    pub question_chars: usize,
    /// The output limit the answer was held to, if any.
    pub output_limit: Option<u64>,
}

/// The names a JSON schema object lists as `required`.
fn required_keys(schema: Option<&Value>) -> Vec<String> {
    schema
        .and_then(|schema| schema.get("required"))
        .and_then(Value::as_array)
        .map(|keys| keys.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// The text of a message's `content`: a string, or the `text` of its parts.
pub fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

impl Expectations {
    /// Read from a chat request body; a body that does not parse expects nothing.
    pub fn of_request(body: &[u8], output_limit: Option<u64>) -> Expectations {
        let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let format = request.get("response_format");
        let json = match format.and_then(|format| format.get("type")).and_then(Value::as_str) {
            Some("json_object") => Some(Vec::new()),
            Some("json_schema") => Some(required_keys(
                format
                    .and_then(|format| format.get("json_schema"))
                    .and_then(|schema| schema.get("schema")),
            )),
            _ => None,
        };
        let tools = request
            .get("tools")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|tool| tool.get("function"))
            .filter_map(|function| {
                let name = function.get("name")?.as_str()?.to_string();
                Some((name, required_keys(function.get("parameters"))))
            })
            .collect();
        let tool_call_required = match request.get("tool_choice") {
            Some(Value::String(choice)) => choice == "required",
            Some(Value::Object(choice)) => choice.get("type").and_then(Value::as_str) == Some("function"),
            _ => false,
        };
        let question_chars = request
            .get("messages")
            .and_then(Value::as_array)
            .and_then(|messages| {
                messages
                    .iter()
                    .rev()
                    .find(|message| message.get("role").and_then(Value::as_str) == Some("user"))
            })
            .map_or(0, |message| text_of(message.get("content")).chars().count());
        Expectations {
            json,
            tools,
            tool_call_required,
            question_chars,
            output_limit,
        }
    }
}

/// One choice as the assessment reads it.
struct ChoiceView {
    finish_reason: Option<String>,
    message: Option<Value>,
    mean_logprob: Option<f64>,
}

/// An answer's choices in the shape the assessment expects. Token
/// log-probabilities (one object per token: the bulk of an answer that
/// asked for them) are summed while parsing, never built as values.
#[derive(Deserialize)]
struct AnswerShape {
    #[serde(default)]
    choices: Vec<ChoiceShape>,
}

#[derive(Deserialize)]
struct ChoiceShape {
    #[serde(default)]
    finish_reason: Option<Value>,
    #[serde(default)]
    message: Option<Value>,
    #[serde(default)]
    logprobs: Option<LogprobsShape>,
}

#[derive(Deserialize)]
struct LogprobsShape {
    #[serde(default)]
    content: Option<Vec<TokenShape>>,
}

#[derive(Deserialize)]
struct TokenShape {
    #[serde(default)]
    logprob: Option<Value>,
}

/// The mean of the numbers among `logprobs` (non-numbers are skipped).
fn mean_of<'v>(logprobs: impl Iterator<Item = &'v Value>) -> Option<f64> {
    let (sum, count) = logprobs
        .filter_map(Value::as_f64)
        .fold((0.0, 0u32), |(sum, count), logprob| (sum + logprob, count + 1));
    (count > 0)
        .then(|| sum / f64::from(count))
        .filter(|mean| mean.is_finite())
}

/// The answer's choices: read in the expected shape, or, when some field
/// has another, from a general JSON value (fields of unexpected shapes then
/// count as absent). An answer that is not JSON has none.
fn choices_of(answer: &[u8]) -> Vec<ChoiceView> {
    if let Ok(shaped) = serde_json::from_slice::<AnswerShape>(answer) {
        return shaped
            .choices
            .into_iter()
            .map(|choice| ChoiceView {
                finish_reason: choice
                    .finish_reason
                    .as_ref()
                    .and_then(Value::as_str)
                    .map(str::to_string),
                message: choice.message,
                mean_logprob: choice
                    .logprobs
                    .and_then(|logprobs| logprobs.content)
                    .and_then(|tokens| mean_of(tokens.iter().filter_map(|token| token.logprob.as_ref()))),
            })
            .collect();
    }
    let answer: Value = serde_json::from_slice(answer).unwrap_or(Value::Null);
    let choices = answer
        .get("choices")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    choices
        .iter()
        .map(|choice| ChoiceView {
            finish_reason: choice.get("finish_reason").and_then(Value::as_str).map(str::to_string),
            message: choice.get("message").cloned(),
            mean_logprob: choice
                .get("logprobs")
                .and_then(|logprobs| logprobs.get("content"))
                .and_then(Value::as_array)
                .and_then(|tokens| mean_of(tokens.iter().filter_map(|token| token.get("logprob")))),
        })
        .collect()
}

/// Assesses a whole OpenAI-format chat answer. An answer that is not JSON,
/// or has no choice, is [`Weakness::Empty`]; fields of unexpected shapes
/// count as absent.
pub fn assess(expectations: &Expectations, answer: &[u8], cascade: &Cascade) -> Assessment {
    let mut assessment = Assessment::default();
    let choices = choices_of(answer);
    if choices.is_empty() {
        assessment.note(Weakness::Empty);
    }
    for choice in &choices {
        assess_choice(expectations, choice, cascade, &mut assessment);
    }
    assessment
}

fn assess_choice(expectations: &Expectations, choice: &ChoiceView, cascade: &Cascade, assessment: &mut Assessment) {
    let client_cut = expectations
        .output_limit
        .is_some_and(|limit| limit < MIN_USEFUL_OUTPUT_TOKENS);
    match choice.finish_reason.as_deref() {
        Some("length") if !client_cut => assessment.note(Weakness::Truncated),
        Some("content_filter") => assessment.note(Weakness::Filtered),
        _ => {}
    }
    let message = choice.message.as_ref();
    let content = text_of(message.and_then(|message| message.get("content")));
    let content = content.trim();
    let tool_calls = message
        .and_then(|message| message.get("tool_calls"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let refused = message
        .and_then(|message| message.get("refusal"))
        .and_then(Value::as_str)
        .is_some_and(|refusal| !refusal.trim().is_empty());
    if refused {
        assessment.note(Weakness::Refusal);
    }
    if content.is_empty() && tool_calls.is_empty() {
        if !refused {
            assessment.note(Weakness::Empty);
        }
        return;
    }
    check_tool_calls(expectations, tool_calls, assessment);
    if content.is_empty() {
        return;
    }
    if let Some(required) = &expectations.json {
        if !is_json_with(content, required) {
            assessment.note(Weakness::InvalidJson);
        }
        // Structured output: phrasing checks do not apply.
        return;
    }
    let lowered = lowercase_prefix(content, HEDGE_SCAN_BYTES);
    let opening = lowered
        .char_indices()
        .nth(REFUSAL_SCAN_CHARS)
        .map_or(lowered.as_str(), |(end, _)| &lowered[..end]);
    if REFUSAL_OPENINGS.iter().any(|refusal| opening.contains(refusal)) {
        assessment.note(Weakness::Refusal);
    }
    match HEDGES.iter().filter(|hedge| lowered.contains(*hedge)).count() {
        0 => {}
        1 => assessment.note(Weakness::Hedge),
        _ => assessment.note(Weakness::Hedging),
    }
    if tool_calls.is_empty()
        && expectations.question_chars >= LONG_QUESTION_CHARS
        && content.chars().filter(|c| !c.is_whitespace()).count() < SHORT_ANSWER_CHARS
    {
        assessment.note(Weakness::Short);
    }
    if let Some(mean) = choice.mean_logprob {
        if mean < cascade.min_mean_logprob {
            assessment.note(Weakness::LowConfidence);
        }
    }
}

fn check_tool_calls(expectations: &Expectations, tool_calls: &[Value], assessment: &mut Assessment) {
    if tool_calls.is_empty() {
        if expectations.tool_call_required && !expectations.tools.is_empty() {
            assessment.note(Weakness::ToolMismatch);
        }
        return;
    }
    let matches = |call: &Value| {
        let Some(function) = call.get("function") else {
            return false;
        };
        let name = function.get("name").and_then(Value::as_str).unwrap_or_default();
        let Some((_, required)) = expectations.tools.iter().find(|(declared, _)| declared == name) else {
            return false;
        };
        match function.get("arguments") {
            Some(Value::String(arguments)) => is_json_with(arguments, required),
            Some(Value::Object(arguments)) => required.iter().all(|key| arguments.contains_key(key)),
            _ => required.is_empty(),
        }
    };
    if !tool_calls.iter().all(matches) {
        assessment.note(Weakness::ToolMismatch);
    }
}

/// Whether `text` is a JSON object holding every `required` key (a code
/// fence around it, as models often add, is tolerated).
fn is_json_with(text: &str, required: &[String]) -> bool {
    let trimmed = text.trim();
    let unfenced = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|inner| inner.trim_end().strip_suffix("```"))
        .unwrap_or(trimmed);
    match serde_json::from_str::<Value>(unfenced) {
        Ok(Value::Object(object)) => required.iter().all(|key| object.contains_key(key)),
        _ => false,
    }
}

/// The first `limit` bytes (at a character boundary), lowercased, with
/// typographic apostrophes made plain.
fn lowercase_prefix(text: &str, limit: usize) -> String {
    let mut end = text.len().min(limit);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_lowercase().replace('\u{2019}', "'")
}

/// What a chat stream (OpenAI's SSE chunks) said so far, as one whole
/// answer: its choices' text joined and their finish reason, or `None` when
/// it calls tools (a tool call's arguments are judged whole, not by prefix).
pub fn answer_from_stream(sse: &[u8]) -> Option<Value> {
    let mut text = String::new();
    let mut finish: Option<String> = None;
    for line in sse.split(|byte| *byte == b'\n') {
        let Some(data) = line.strip_prefix(b"data:") else {
            continue;
        };
        let Ok(chunk) = serde_json::from_slice::<Value>(data.trim_ascii()) else {
            continue;
        };
        for choice in chunk
            .get("choices")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let delta = choice.get("delta");
            if delta.and_then(|delta| delta.get("tool_calls")).is_some() {
                return None;
            }
            if let Some(piece) = delta.and_then(|delta| delta.get("content")).and_then(Value::as_str) {
                text.push_str(piece);
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                finish = Some(reason.to_string());
            }
        }
    }
    Some(serde_json::json!({
        "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": finish}]
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CASCADE: Cascade = Cascade {
        threshold: 0.5,
        min_mean_logprob: -1.0,
        stream_tokens: 0,
    };

    fn answer(message: Value, finish: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}]
        }))
        .unwrap()
    }

    fn text(content: &str) -> Vec<u8> {
        answer(json!({"role": "assistant", "content": content}), "stop")
    }

    fn weaknesses(expectations: &Expectations, body: &[u8]) -> Vec<Weakness> {
        assess(expectations, body, &CASCADE).weaknesses
    }

    fn plain() -> Expectations {
        Expectations::of_request(br#"{"messages":[]}"#, None)
    }

    #[test]
    fn a_plain_good_answer_passes() {
        let good = text("Paris is the capital of France; it has been since the 10th century.");
        let assessment = assess(&plain(), &good, &CASCADE);
        assert_eq!(assessment.weaknesses, vec![]);
        assert_eq!(assessment.quality(), 1.0);
        assert!(!assessment.is_weak(&CASCADE));
    }

    #[test]
    fn cut_filtered_and_empty_answers_are_worthless() {
        let cut = answer(json!({"role": "assistant", "content": "The first step is"}), "length");
        assert_eq!(weaknesses(&plain(), &cut), vec![Weakness::Truncated]);
        let filtered = answer(json!({"role": "assistant", "content": ""}), "content_filter");
        assert_eq!(
            weaknesses(&plain(), &filtered),
            vec![Weakness::Filtered, Weakness::Empty]
        );
        assert_eq!(weaknesses(&plain(), &text("   ")), vec![Weakness::Empty]);
        for broken in [&b"not json"[..], b"{}", br#"{"choices":[]}"#, b"\xff\xfe"] {
            assert_eq!(weaknesses(&plain(), broken), vec![Weakness::Empty], "{broken:?}");
        }
        assert!(assess(&plain(), &cut, &CASCADE).is_weak(&CASCADE));
    }

    #[test]
    fn refusals_are_found_in_the_opening_or_the_refusal_field() {
        for refusal in [
            "I'm sorry, but I can't help with that request.",
            "I\u{2019}m sorry, but I can\u{2019}t share that.",
            "As an AI language model, I cannot browse the web.",
        ] {
            assert_eq!(
                weaknesses(&plain(), &text(refusal)),
                vec![Weakness::Refusal],
                "{refusal}"
            );
        }
        let field = answer(
            json!({"role": "assistant", "content": null, "refusal": "I can't do that."}),
            "stop",
        );
        assert_eq!(weaknesses(&plain(), &field), vec![Weakness::Refusal]);
        // Far into a long answer, the phrase quotes someone else.
        let quoted = format!(
            "{} The clerk said: I'm unable to find it.",
            "Here is the history. ".repeat(20)
        );
        assert_eq!(weaknesses(&plain(), &text(&quoted)), vec![]);
    }

    #[test]
    fn one_hedge_is_tolerated_two_escalate() {
        let once = assess(
            &plain(),
            &text("I'm not sure, but the answer is probably 42."),
            &CASCADE,
        );
        assert_eq!(once.weaknesses, vec![Weakness::Hedge]);
        assert!(!once.is_weak(&CASCADE));
        let twice = assess(
            &plain(),
            &text("I don't know the exact figure; it's hard to say without the data."),
            &CASCADE,
        );
        assert_eq!(twice.weaknesses, vec![Weakness::Hedging]);
        assert!(twice.is_weak(&CASCADE));
    }

    #[test]
    fn a_few_words_are_short_only_for_a_long_question() {
        let question = "Explain, with examples, how the borrow checker treats two-phase borrows. ".repeat(20);
        let request = serde_json::json!({"messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": question}]},
            {"role": "assistant", "content": "Sure."},
            {"role": "user", "content": question}
        ]});
        let long_question = Expectations::of_request(request.to_string().as_bytes(), None);
        assert_eq!(long_question.question_chars, question.chars().count());
        assert_eq!(weaknesses(&long_question, &text("Yes.")), vec![Weakness::Short]);
        assert_eq!(weaknesses(&plain(), &text("Yes.")), vec![]);
        // A long system prompt (an agent's) does not make a short question long.
        let agent = serde_json::json!({"messages": [
            {"role": "system", "content": question},
            {"role": "user", "content": "Is the build green?"}
        ]});
        let agent = Expectations::of_request(agent.to_string().as_bytes(), None);
        assert_eq!(weaknesses(&agent, &text("Yes.")), vec![]);
    }

    #[test]
    fn a_cut_at_a_tiny_limit_the_client_chose_is_not_the_models_weakness() {
        let cut = answer(json!({"role": "assistant", "content": "The"}), "length");
        let tiny = Expectations::of_request(br#"{"max_tokens":1}"#, Some(1));
        assert_eq!(weaknesses(&tiny, &cut), vec![]);
        let roomy = Expectations::of_request(br#"{"max_tokens":400}"#, Some(400));
        assert_eq!(weaknesses(&roomy, &cut), vec![Weakness::Truncated]);
    }

    #[test]
    fn fields_in_other_valid_shapes_are_read_not_mistaken_for_an_empty_answer() {
        let parts = answer(
            json!({"role": "assistant", "content": [{"type": "text", "text": "Paris is the capital of France."}]}),
            "stop",
        );
        assert_eq!(weaknesses(&plain(), &parts), vec![]);
        let request =
            br#"{"tools":[{"type":"function","function":{"name":"weather","parameters":{"required":["city"]}}}]}"#;
        let expectations = Expectations::of_request(request, None);
        let object_arguments = answer(
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"type": "function", "function": {"name": "weather", "arguments": {"city": "Oslo"}}}
            ]}),
            "tool_calls",
        );
        assert_eq!(weaknesses(&expectations, &object_arguments), vec![]);
        let null_logprobs = serde_json::to_vec(&json!({"choices": [{
            "message": {"role": "assistant", "content": "Paris is the capital of France."},
            "logprobs": {"content": [{"token": "x", "logprob": null}, {"token": "y", "logprob": -0.1}]},
            "finish_reason": "stop"
        }]}))
        .unwrap();
        assert_eq!(weaknesses(&plain(), &null_logprobs), vec![]);
    }

    #[test]
    fn json_output_must_parse_and_hold_the_schemas_required_keys() {
        let object = Expectations::of_request(br#"{"response_format":{"type":"json_object"}}"#, None);
        assert_eq!(object.json, Some(vec![]));
        assert_eq!(weaknesses(&object, &text(r#"{"city":"Paris"}"#)), vec![]);
        assert_eq!(weaknesses(&object, &text("```json\n{\"city\":\"Paris\"}\n```")), vec![]);
        for invalid in [r#"Sure! {"city": "Paris""#, "[1,2]", "Paris"] {
            assert_eq!(
                weaknesses(&object, &text(invalid)),
                vec![Weakness::InvalidJson],
                "{invalid}"
            );
        }
        let schema = Expectations::of_request(
            br#"{"response_format":{"type":"json_schema","json_schema":{"name":"c","schema":{"type":"object","required":["city","country"]}}}}"#,
            None,
        );
        assert_eq!(schema.json, Some(vec!["city".to_string(), "country".to_string()]));
        assert_eq!(
            weaknesses(&schema, &text(r#"{"city":"Paris"}"#)),
            vec![Weakness::InvalidJson]
        );
        assert_eq!(weaknesses(&schema, &text(r#"{"city":"Paris","country":"FR"}"#)), vec![]);
        let plain_text = Expectations::of_request(br#"{"response_format":{"type":"text"}}"#, None);
        assert_eq!(plain_text.json, None);
    }

    #[test]
    fn tool_calls_must_name_a_declared_tool_with_its_required_arguments() {
        let request = br#"{"tools":[{"type":"function","function":{"name":"weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}],"tool_choice":"required"}"#;
        let expectations = Expectations::of_request(request, None);
        assert!(expectations.tool_call_required);
        let call = |name: &str, arguments: &str| {
            answer(
                json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": name, "arguments": arguments}}
                ]}),
                "tool_calls",
            )
        };
        assert_eq!(
            weaknesses(&expectations, &call("weather", r#"{"city":"Oslo"}"#)),
            vec![]
        );
        for (name, arguments) in [
            ("weather", "{}"),
            ("weather", "{\"city\":"),
            ("stocks", r#"{"city":"Oslo"}"#),
        ] {
            assert_eq!(
                weaknesses(&expectations, &call(name, arguments)),
                vec![Weakness::ToolMismatch],
                "{name} {arguments}"
            );
        }
        assert_eq!(
            weaknesses(&expectations, &text("It is sunny in Oslo today, as far as I can tell.")),
            vec![Weakness::ToolMismatch],
            "a tool call was required"
        );
        let optional = Expectations::of_request(
            br#"{"tools":[{"type":"function","function":{"name":"weather"}}]}"#,
            None,
        );
        assert!(!optional.tool_call_required);
        assert_eq!(weaknesses(&optional, &text("It is sunny in Oslo today.")), vec![]);
    }

    #[test]
    fn low_mean_logprob_is_low_confidence_against_the_configured_floor() {
        let with_logprobs = |logprobs: &[f64]| {
            let tokens: Vec<Value> = logprobs.iter().map(|lp| json!({"token": "x", "logprob": lp})).collect();
            serde_json::to_vec(&json!({"choices": [{
                "message": {"role": "assistant", "content": "The answer is 12 apples in total."},
                "logprobs": {"content": tokens},
                "finish_reason": "stop"
            }]}))
            .unwrap()
        };
        assert_eq!(weaknesses(&plain(), &with_logprobs(&[-0.1, -0.3, -0.2])), vec![]);
        assert_eq!(
            weaknesses(&plain(), &with_logprobs(&[-2.5, -1.9, -0.4])),
            vec![Weakness::LowConfidence]
        );
        let lenient = Cascade {
            min_mean_logprob: -3.0,
            ..CASCADE
        };
        assert_eq!(
            assess(&plain(), &with_logprobs(&[-2.5, -1.9, -0.4]), &lenient).weaknesses,
            vec![]
        );
        assert_eq!(
            weaknesses(&plain(), &with_logprobs(&[])),
            vec![],
            "no tokens, no judgement"
        );
    }

    #[test]
    fn the_worst_choice_decides_and_the_description_names_every_weakness() {
        let body = serde_json::to_vec(&json!({"choices": [
            {"message": {"role": "assistant", "content": "A complete and confident answer here."}, "finish_reason": "stop"},
            {"message": {"role": "assistant", "content": "I'm not sure, it is cut"}, "finish_reason": "length"}
        ]}))
        .unwrap();
        let assessment = assess(&plain(), &body, &CASCADE);
        assert_eq!(assessment.describe(), "truncated,hedge");
        assert_eq!(assessment.quality(), 0.0);
    }

    #[test]
    fn a_stream_so_far_reads_as_one_answer() {
        let sse = b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"I'm sorry, \"}}]}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\"but I can't help with that.\"},\"finish_reason\":null}]}\n\n\
data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        let answer = answer_from_stream(sse).unwrap();
        assert_eq!(
            answer["choices"][0]["message"]["content"],
            "I'm sorry, but I can't help with that."
        );
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
        let body = serde_json::to_vec(&answer).unwrap();
        assert_eq!(weaknesses(&plain(), &body), vec![Weakness::Refusal]);
        let tools = b"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0}]}}]}\n\n";
        assert_eq!(answer_from_stream(tools), None);
        let garbage = answer_from_stream(b"data: {not json\n\nevent: x\n\n").unwrap();
        assert_eq!(garbage["choices"][0]["message"]["content"], "");
    }

    #[test]
    fn hostile_answers_do_not_panic() {
        let multibyte = "é".repeat(5000);
        let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        for body in [
            text(&multibyte),
            text(&nested),
            br#"{"choices":[{"message":"x"}]}"#.to_vec(),
            br#"{"choices":[{"logprobs":{"content":[{"logprob":"NaN"}]}}]}"#.to_vec(),
            br#"{"choices":[{"message":{"content":"ok fine","tool_calls":[{"function":null}]}}]}"#.to_vec(),
        ] {
            let _ = assess(&plain(), &body, &CASCADE);
        }
        let json = Expectations::of_request(br#"{"response_format":{"type":"json_object"}}"#, None);
        assert_eq!(weaknesses(&json, &text(&nested)), vec![Weakness::InvalidJson]);
    }
}
