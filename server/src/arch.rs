//! Per-architecture serving defaults: which tool-call and reasoning parsers and which chat
//! layout a model family was trained with, used when the flags do not say.

use glm_model::glm4moelite::GLM4_MOE_LITE;

/// GLM-4.5/4.6 layout: newlines between turns.
const GLM45_TEMPLATE: &str = include_str!("../fixtures/chat-templates/glm45.jinja");
/// GLM-4.7 layout: no newlines, the generation prompt ends in `<think>`.
const GLM47_TEMPLATE: &str = include_str!("../fixtures/chat-templates/glm47.jinja");

/// What a model family defaults to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchDefaults {
    pub tool_call_parser: Option<&'static str>,
    pub reasoning_parser: Option<&'static str>,
    /// Chat template used when the model directory ships none.
    pub fallback_template: &'static str,
}

/// Defaults for `architectures[0]` of config.json.
///
/// GLM-4.7-Flash (`Glm4MoeLiteForCausalLM`) is only served with the GLM-4.7 formats, so its
/// parsers default to `glm47` / `glm45` as its model card prescribes. `Glm4MoeForCausalLM`
/// covers GLM-4.5 through GLM-4.7, whose tool formats differ, so like vLLM nothing is
/// assumed there and the flags decide.
pub fn arch_defaults(architecture: &str) -> ArchDefaults {
    if architecture == GLM4_MOE_LITE {
        ArchDefaults {
            tool_call_parser: Some("glm47"),
            reasoning_parser: Some("glm45"),
            fallback_template: GLM47_TEMPLATE,
        }
    } else {
        ArchDefaults {
            tool_call_parser: None,
            reasoning_parser: None,
            fallback_template: GLM45_TEMPLATE,
        }
    }
}

/// A flag wins over the architecture's default.
pub fn resolve(flag: &Option<String>, default: Option<&'static str>) -> Option<String> {
    flag.clone().or_else(|| default.map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glm47_flash_defaults_to_glm47_tools_and_glm45_reasoning() {
        let d = arch_defaults("Glm4MoeLiteForCausalLM");
        assert_eq!(d.tool_call_parser, Some("glm47"));
        assert_eq!(d.reasoning_parser, Some("glm45"));
        assert!(d.fallback_template.contains("<think>"));
        assert_eq!(resolve(&None, d.tool_call_parser).as_deref(), Some("glm47"));
        assert_eq!(
            resolve(&Some("glm45".into()), d.tool_call_parser).as_deref(),
            Some("glm45"),
            "an explicit flag wins"
        );
    }

    #[test]
    fn glm4moe_assumes_no_parser() {
        let d = arch_defaults("Glm4MoeForCausalLM");
        assert_eq!(d.tool_call_parser, None);
        assert_eq!(d.reasoning_parser, None);
        assert_eq!(resolve(&None, d.tool_call_parser), None);
        assert_ne!(
            d.fallback_template,
            arch_defaults(GLM4_MOE_LITE).fallback_template
        );
    }
}
