//! What the router reads from a Responses request: its [`IngressView`].

use crate::request::{PromptView, ResponseFormatKind};
use crate::tokens;

use super::super::{tool_tokens, IngressView};
use super::{Format, Item, Part, Request, Role};

impl Request<'_> {
    /// What the router reads: the last user message's text, the rest as
    /// context tokens.
    pub fn view(&self) -> IngressView<'_> {
        let last_user = self
            .items
            .iter()
            .rposition(|item| matches!(item, Item::Message { role: Role::User, .. }));
        let mut view = IngressView {
            prompt: PromptView {
                has_tools: !self.functions.is_empty() || !self.builtin_tools.is_empty(),
                response_format: match self.format {
                    None => ResponseFormatKind::None,
                    Some(Format::JsonObject) => ResponseFormatKind::JsonObject,
                    Some(Format::JsonSchema { .. }) => ResponseFormatKind::JsonSchema,
                },
                ..PromptView::default()
            },
            system: self.instructions.as_deref().into_iter().collect(),
            ..IngressView::default()
        };
        let mut context = self.instructions.as_deref().map_or(0, tokens::estimate);
        for function in &self.functions {
            context = context.saturating_add(tool_tokens(
                &function.name,
                function.description.as_deref(),
                function.parameters,
            ));
        }
        for (position, item) in self.items.iter().enumerate() {
            context = context.saturating_add(tokens::PER_MESSAGE_OVERHEAD);
            match item {
                Item::Message { role, parts } => {
                    if *role == Role::User {
                        view.prompt.user_turns += 1;
                    }
                    for part in parts {
                        match (part, *role, Some(position) == last_user) {
                            (Part::Text(text), Role::User, true) => view.prompt.last_user_parts.push(text),
                            (Part::Text(text), Role::System, _) => {
                                view.system.push(text);
                                context = context.saturating_add(tokens::estimate(text));
                            }
                            (part, _, _) => context = context.saturating_add(part_tokens(part, &mut view)),
                        }
                    }
                }
                Item::FunctionCall { name, arguments, .. } => {
                    context = context
                        .saturating_add(tokens::estimate(name))
                        .saturating_add(tokens::estimate(arguments));
                }
                Item::FunctionCallOutput { output, .. } => {
                    view.tool_results += 1;
                    for part in output {
                        context = context.saturating_add(part_tokens(part, &mut view));
                    }
                }
                Item::Reasoning | Item::OpenAiOnly { .. } => {}
            }
        }
        view.prompt.context_tokens = context;
        view
    }
}

fn part_tokens(part: &Part<'_>, view: &mut IngressView<'_>) -> u32 {
    match part {
        Part::Text(text) => tokens::estimate(text),
        Part::Image { .. } => view.add_image(),
        Part::File(_) => view.add_document(),
        Part::OpenAiOnly { .. } => 0,
    }
}
