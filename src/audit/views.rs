//! Page structs for the audit log.

use askama::Template;
use askama_web::WebTemplate;

use crate::audit::event::AuditAction;
use crate::audit::repo::AuditRow;
use crate::clock::format_ms;
use crate::web::page::PageCtx;

pub struct AuditItem {
    pub when: String,
    pub actor: String,
    pub action: String,
    pub action_code: String,
    pub target: String,
    pub ip: String,
    pub details: String,
}

impl From<&AuditRow> for AuditItem {
    fn from(r: &AuditRow) -> Self {
        let actor = match (r.actor_kind.as_str(), &r.actor_name) {
            ("admin", Some(n)) => n.clone(),
            ("system", _) => "System (command line)".to_owned(),
            _ => "Anonymous".to_owned(),
        };
        let target = match (&r.target_kind, &r.target_id) {
            (Some(k), Some(id)) => format!("{k} {id}"),
            _ => String::new(),
        };
        let details = readable_details(&r.details);
        Self {
            when: format_ms(r.at),
            actor,
            action: AuditAction::label(&r.action).to_owned(),
            action_code: r.action.clone(),
            target,
            ip: r.ip.clone().unwrap_or_default(),
            details,
        }
    }
}

/// `{"reason":"wrong password","username":"alice"}` → `reason: wrong password · username: alice`.
fn readable_details(raw: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join(" · "),
        _ => raw.to_owned(),
    }
}

pub struct Pager {
    pub first_href: Option<String>,
    pub next_href: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "audit/list.html")]
pub struct AuditPage {
    pub ctx: PageCtx,
    pub items: Vec<AuditItem>,
    pub total: i64,
    pub pager: Pager,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_read_as_pairs() {
        assert_eq!(
            readable_details(r#"{"reason":"wrong password","n":2}"#),
            "n: 2 · reason: wrong password"
        );
        assert_eq!(readable_details("{}"), "");
        assert_eq!(readable_details("not json"), "not json");
    }
}
