//! Expressions and one-line templates over event data, for rules: a
//! condition (`data.total > 0`), an address (`{{ data.customer.email }}`),
//! a time (`{{ data.starts_at }}`). Same language and filters as the
//! templates; a missing value in a condition is simply false.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::Value;

/// Evaluates rule expressions. Cheap to share.
pub struct Expressions {
    env: Environment<'static>,
}

impl Default for Expressions {
    fn default() -> Self {
        Self::new()
    }
}

impl Expressions {
    pub fn new() -> Self {
        let mut env = Environment::new();
        // `data.discount > 0` on an event without a discount is false, and
        // `data.customer.email` without a customer is empty: not errors.
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_fuel(Some(20_000));
        env.set_auto_escape_callback(|_| AutoEscape::None);
        crate::filters::register(&mut env);
        Self { env }
    }

    /// Whether `expr` is a well-formed expression (for checking a rule when
    /// it is saved).
    pub fn check_condition(&self, expr: &str) -> Result<(), String> {
        self.env.compile_expression(expr).map(|_| ()).map_err(|e| describe(&e))
    }

    /// Evaluates a condition; its truth in the template language's sense.
    pub fn condition(&self, expr: &str, ctx: &Value) -> Result<bool, String> {
        let compiled = self.env.compile_expression(expr).map_err(|e| describe(&e))?;
        let v = compiled.eval(ctx).map_err(|e| describe(&e))?;
        Ok(v.is_true())
    }

    /// Whether `text` is a well-formed one-line template.
    pub fn check_text(&self, text: &str) -> Result<(), String> {
        self.env.template_from_str(text).map(|_| ()).map_err(|e| describe(&e))
    }

    /// Renders a one-line template, trimmed.
    pub fn text(&self, text: &str, ctx: &Value) -> Result<String, String> {
        let t = self.env.template_from_str(text).map_err(|e| describe(&e))?;
        t.render(ctx).map(|s| s.trim().to_string()).map_err(|e| describe(&e))
    }
}

fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_and_texts() {
        let x = Expressions::new();
        let ctx = json!({"data": {"total": 12.5, "customer": {"email": "jane@example.com"}, "score": 80}});
        assert!(x.condition("data.total > 0", &ctx).unwrap());
        assert!(!x.condition("data.score >= 90", &ctx).unwrap());
        assert!(!x.condition("data.discount > 0", &ctx).unwrap(), "missing is false");
        assert!(x.condition("'@example.com' in data.customer.email", &ctx).unwrap());
        assert!(x.check_condition("data.total >").is_err());
        assert_eq!(x.text("{{ data.customer.email }}", &ctx).unwrap(), "jane@example.com");
        assert_eq!(x.text("{{ data.nobody.email }}", &ctx).unwrap(), "", "missing renders empty");
        assert!(x.check_text("{{ data.customer.email").is_err());
        assert_eq!(x.text("<{{ data.customer.email }}>", &ctx).unwrap(), "<jane@example.com>", "no HTML escaping");
    }
}
