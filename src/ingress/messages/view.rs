//! What the router reads from a Messages request: its [`IngressView`].

use crate::request::{PromptView, ResponseFormatKind};
use crate::tokens;

use super::super::{tool_tokens, IngressView};
use super::{Block, Message, Request, Speaker, Tool};

impl Request<'_> {
    /// What the router reads: the last user message's text (a user
    /// message that only returns tool results is part of the context, as
    /// a chat `tool` message is), the rest as context tokens.
    pub fn view(&self) -> IngressView<'_> {
        let is_instruction = |message: &Message<'_>| {
            message.speaker == Speaker::User && message.blocks.iter().any(|block| matches!(block, Block::Text(_)))
        };
        let last_user = self.messages.iter().rposition(is_instruction);
        let mut view = IngressView {
            prompt: PromptView {
                has_tools: !self.tools.is_empty(),
                response_format: if self.output_schema.is_some() {
                    ResponseFormatKind::JsonSchema
                } else {
                    ResponseFormatKind::None
                },
                ..PromptView::default()
            },
            system: self.system.iter().map(|text| text.as_ref()).collect(),
            ..IngressView::default()
        };
        let mut context = self
            .system
            .iter()
            .map(|text| tokens::estimate(text))
            .fold(0, u32::saturating_add);
        for tool in &self.tools {
            if let Tool::Custom {
                name,
                description,
                input_schema,
                ..
            } = tool
            {
                context = context.saturating_add(tool_tokens(name, description.as_deref(), Some(input_schema)));
            }
        }
        for (position, message) in self.messages.iter().enumerate() {
            if is_instruction(message) {
                view.prompt.user_turns += 1;
            }
            context = context.saturating_add(tokens::PER_MESSAGE_OVERHEAD);
            let last = Some(position) == last_user;
            for block in &message.blocks {
                if let (true, Block::Text(text)) = (last, block) {
                    view.prompt.last_user_parts.push(text);
                } else {
                    context = context.saturating_add(block_tokens(block, &mut view));
                }
            }
        }
        view.prompt.context_tokens = context;
        view
    }
}

/// Context tokens of a block outside the last user text, counting what
/// the view tallies on the way.
fn block_tokens(block: &Block<'_>, view: &mut IngressView<'_>) -> u32 {
    match block {
        Block::Text(text) | Block::DocumentText(text) => tokens::estimate(text),
        Block::Image(_) => view.add_image(),
        Block::Pdf { .. } => view.add_document(),
        Block::ToolUse { name, input, .. } => tokens::estimate(name).saturating_add(tokens::estimate(input.get())),
        Block::ToolResult { content, .. } => {
            view.tool_results += 1;
            content
                .iter()
                .map(|inner| block_tokens(inner, view))
                .fold(0, u32::saturating_add)
        }
        Block::Thinking | Block::AnthropicOnly { .. } => 0,
    }
}
